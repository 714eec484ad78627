"""Handing work to the Celery workers."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)


def enqueue(task: Any, object_id: int, *, on_failure: Callable[[str], object]) -> str | None:
    """Send ``task(object_id)`` and return the task's id; when the broker cannot be reached,
    ``on_failure`` records the reason on the object, so nothing sits 'queued' forever without
    saying why."""
    try:  # the queue is read now, not when the app was configured: tests route per test
        return str(task.apply_async((object_id,), queue=settings.TRAINING_QUEUE).id)
    except Exception as exc:
        log.exception("could not enqueue %s(%s)", getattr(task, "name", task), object_id)
        on_failure(f"Could not reach the task queue: {exc}. Is Redis running?")
        return None
