"""``manage.py reap``: the reaper. Every ``RLHF_REAPER_INTERVAL_S`` it finds runs and ranking
batches whose heartbeat is older than ``RLHF_HEARTBEAT_TIMEOUT_S``, marks them crashed,
stops their task and queues a new attempt that resumes them (or fails them, out of
attempts). It also sends again the task of a run or batch that waits for a worker while the
broker has not held its task for ``RLHF_HEARTBEAT_TIMEOUT_S`` (Redis restarted empty).

It is a process of its own rather than a Celery beat task: beat only sends tasks, and a
reaping task would wait in the queue behind the very run it has to reap on a worker with one
slot, so it would need a worker of its own anyway. One small loop does both jobs.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from webapp.labeling.services import batches_reap, batches_resend_lost
from webapp.queueing import queued_task_ids
from webapp.runs.attempts import runs_reap, runs_resend_lost

log = logging.getLogger(__name__)


@dataclass
class LostTasks:
    """What the reaper remembers between passes: since when each waiting job's task has been
    missing from the broker (job id -> monotonic seconds), per kind."""

    runs: dict[int, float] = field(default_factory=dict)
    batches: dict[int, float] = field(default_factory=dict)


def reap_once(lost: LostTasks | None = None) -> dict[str, int]:
    runs = runs_reap()
    batches = batches_reap()
    found = {"runs": len(runs), "batches": len(batches), "resent": 0}
    waiting = queued_task_ids() if lost is not None else None
    if lost is not None and waiting is not None:  # None: the broker cannot tell now
        now, grace = time.monotonic(), settings.RLHF_HEARTBEAT_TIMEOUT_S
        found["resent"] = len(runs_resend_lost(
            waiting=waiting, missing_since=lost.runs, now=now, grace_s=grace)) + len(
            batches_resend_lost(waiting=waiting, missing_since=lost.batches, now=now,
                                grace_s=grace))
    return found


class Command(BaseCommand):
    help = "Mark jobs without a heartbeat as crashed and resume them (loops; --once for one pass)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--every", type=float, default=None,
                            help="seconds between passes (default RLHF_REAPER_INTERVAL_S)")

    def handle(self, *args: Any, once: bool = False, every: float | None = None,
               **opts: Any) -> None:
        interval = every or settings.RLHF_REAPER_INTERVAL_S
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"reaper: every {interval:g} s, heartbeat timeout "
                          f"{settings.RLHF_HEARTBEAT_TIMEOUT_S} s, "
                          f"{settings.RLHF_MAX_ATTEMPTS} attempts")
        lost = LostTasks()
        while not stop.is_set():
            close_old_connections()
            try:
                found = reap_once(lost)
                if found["runs"] or found["batches"]:
                    self.stdout.write(f"reaper: {found['runs']} run(s), {found['batches']} "
                                      "batch(es) lost their heartbeat")
                if found["resent"]:
                    self.stdout.write(f"reaper: {found['resent']} waiting job(s) whose task "
                                      "the queue had lost, sent again")
            except Exception:  # the database or broker is down for a moment: try again
                log.exception("reaper pass failed")
            if once:
                return
            stop.wait(interval)
