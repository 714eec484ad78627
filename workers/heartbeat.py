"""A thread that keeps a job's heartbeat fresh while the job works, even inside a long step."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``RLHF_HEARTBEAT_INTERVAL_S`` until stopped; ``beat`` returning
    False (the attempt is no longer current) ends the thread."""

    def __init__(self, name: str, beat: Callable[[], bool]):
        super().__init__(daemon=True, name=f"heartbeat-{name}")
        self.beat = beat
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(settings.RLHF_HEARTBEAT_INTERVAL_S):
                try:
                    if not self.beat():
                        return
                except Exception:  # a transient database error must not kill the job
                    log.exception("heartbeat %s failed", self.name)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
