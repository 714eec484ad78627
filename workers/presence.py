"""The worker's presence: a thread of the worker's parent process that writes its name,
queues and devices (:mod:`training.devices`, read without torch) every
``RLHF_WORKER_PRESENCE_INTERVAL_S``, and removes them when the worker stops
(:mod:`webapp.workers_presence` reads them). Started and stopped by :mod:`workers.celery`."""
from __future__ import annotations

import logging
import os
import threading

from django.conf import settings

from training.devices import worker_devices
from webapp.workers_presence import presence_client, presence_remove, presence_write

log = logging.getLogger(__name__)
_stop = threading.Event()
_name: list[str] = []


def _beat(name: str, queues: list[str]) -> None:
    conn = presence_client()
    while True:
        try:
            devices = [d.as_json() for d in worker_devices(settings.WORKER_DEVICES)]
            presence_write(conn, name=name, queues=queues, devices=devices, pid=os.getpid())
        except Exception:  # Redis away for a moment: say so, try again next interval
            log.exception("could not write the presence of %s", name)
        if _stop.wait(settings.WORKER_PRESENCE_INTERVAL_S):
            return


def start(name: str, queues: list[str]) -> None:
    """Write the presence of worker ``name`` now and every interval, on a thread."""
    _name.append(name)
    threading.Thread(target=_beat, args=(name, queues), daemon=True,
                     name="worker-presence").start()


def stop() -> None:
    _stop.set()
    for name in _name:
        try:
            presence_remove(presence_client(), name)
        except Exception:  # gone anyway within three intervals
            log.exception("could not remove the presence of %s", name)
