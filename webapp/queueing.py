"""Handing work to the Celery workers, and asking the broker what it still holds.

The web process sends tasks *by name* through a producer app of its own (the same broker
settings as the workers'), so it never imports the workers' code, the engine or torch."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache

from celery import Celery
from django.conf import settings

log = logging.getLogger(__name__)

# The tasks the workers define (workers/tasks.py), by name.
TRAIN_RUN_TASK = "workers.tasks.train_run_task"
GENERATE_BATCH_TASK = "workers.tasks.generate_batch_task"
DOWNLOAD_MODEL_TASK = "workers.tasks.download_model_task"


@cache
def producer() -> Celery:
    """A Celery app that sends tasks and controls workers, configured as theirs is."""
    app = Celery("rlhf", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


def enqueue(task_name: str, object_id: int, *, on_failure: Callable[[str], object]
            ) -> str | None:
    """Send ``task_name(object_id)`` and return the task's id; when the broker cannot be
    reached, ``on_failure`` records the reason on the object, so nothing sits 'queued' forever
    without saying why."""
    try:  # the queue is read now, not when the app was configured: tests route per test
        return str(producer().send_task(task_name, (object_id,),
                                        queue=settings.TRAINING_QUEUE).id)
    except Exception as exc:
        log.exception("could not enqueue %s(%s)", task_name, object_id)
        on_failure(f"Could not reach the task queue: {exc}. Is Redis running?")
        return None


# Kombu's Redis transport keeps a queue as a list under its name (priorities other than 0
# under the name, this separator and the priority) and every message handed to a worker but
# not yet acknowledged in one hash; with early acknowledgement (CELERY_TASK_ACKS_LATE off) a
# task leaves both when a worker process starts it.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
MAX_MESSAGES_READ = 100_000  # a bound on one look; a queue longer than this is not judged


def queued_task_ids(queue: str | None = None) -> set[str] | None:
    """Ids of the tasks waiting in ``queue`` (default the training queue) or held by a worker
    that has not started them; None when the broker cannot tell (unreachable, not Redis, or
    too many messages to read), so callers never act on a guess."""
    app = producer()
    queue = queue or settings.TRAINING_QUEUE
    keys = [queue if p == 0 else f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS]
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            if client is None or not hasattr(client, "lrange"):
                return None
            if sum(client.llen(k) for k in keys) + client.hlen(UNACKED_KEY) > MAX_MESSAGES_READ:
                return None
            raw = [m for k in keys for m in client.lrange(k, 0, -1)]
            raw += [json.loads(v)[0] for v in client.hvals(UNACKED_KEY)]
    except Exception:
        log.exception("could not read the task queue")
        return None
    ids = set()
    for message in raw:
        try:
            payload = message if isinstance(message, dict) else json.loads(message)
            ids.add(str(payload["headers"]["id"]))
        except (ValueError, KeyError, TypeError):
            continue  # not a Celery task message (protocol 2)
    return ids
