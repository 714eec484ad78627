"""Which workers are up and what they offer. Each worker writes its presence (name, queues,
devices, pid) to Redis every ``RLHF_WORKER_PRESENCE_INTERVAL_S``, with a lifetime of three
intervals, so a worker that died drops off the list by itself; the Workers page and
``GET /api/workers`` read it, with the jobs each worker runs from the database."""
from __future__ import annotations

import json
import time
from typing import Any

import redis
from django.conf import settings

from webapp.labeling.models import Batch, BatchStatus
from webapp.runs.events import client
from webapp.runs.models import Run, RunStatus

MAX_WORKERS_LISTED = 500


def _key(name: str) -> str:
    return f"{settings.WORKER_PRESENCE_PREFIX}{name}"


def presence_client() -> redis.Redis:
    """A connection of the presence thread's own: the worker's children, forked from its
    process, never share its pool (or a lock a fork could catch held)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=5)


def presence_write(conn: redis.Redis, *, name: str, queues: list[str],
                   devices: list[dict[str, Any]], pid: int) -> None:
    """Say that worker ``name`` is up, for the next three intervals."""
    record = {"name": name, "queues": sorted(queues), "devices": devices, "pid": pid,
              "last_seen": time.time()}
    conn.set(_key(name), json.dumps(record), ex=3 * settings.WORKER_PRESENCE_INTERVAL_S)


def presence_remove(conn: redis.Redis, name: str) -> None:
    conn.delete(_key(name))


def _running(names: list[str]) -> dict[str, list[str]]:
    """The jobs each worker holds now: ``run-<id>`` and ``batch-<id>``."""
    out: dict[str, list[str]] = {n: [] for n in names}
    for run_id, worker in Run.objects.filter(status=RunStatus.RUNNING, worker__in=names
                                             ).values_list("pk", "worker"):
        out[worker].append(f"run-{run_id}")
    for batch_id, worker in Batch.objects.filter(status=BatchStatus.GENERATING,
                                                 worker__in=names).values_list("pk", "worker"):
        out[worker].append(f"batch-{batch_id}")
    return out


def workers_list() -> list[dict[str, Any]]:
    """Every worker up now, by name: queues, devices, when it last wrote, what it runs.
    Redis unreachable: an empty list (the page says no worker answers)."""
    try:
        keys = list(client().scan_iter(match=f"{settings.WORKER_PRESENCE_PREFIX}*",
                                       count=200))[:MAX_WORKERS_LISTED]
        raw = client().mget(keys) if keys else []
    except redis.RedisError:
        return []
    workers = []
    for value in raw:
        if value is None:  # expired between SCAN and MGET
            continue
        try:
            workers.append(json.loads(value))
        except ValueError:
            continue  # not ours
    workers.sort(key=lambda w: str(w.get("name")))
    running = _running([str(w.get("name")) for w in workers])
    return [w | {"running": running.get(str(w.get("name")), [])} for w in workers]
