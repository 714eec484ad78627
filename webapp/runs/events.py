"""The live metric stream: one Redis Stream per run.

Workers append an entry per step (and one when the run ends); the server-sent-events view reads
from a client's last entry id, so a reconnecting browser loses nothing. The database keeps the
full history; the stream is trimmed and expires a while after the run ends.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio
from django.conf import settings


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True,
                                socket_connect_timeout=5, health_check_interval=30,
                                # longer than the blocking XREAD of the event stream
                                socket_timeout=settings.SSE_KEEPALIVE_S + 15)


def stream_key(run_id: int) -> str:
    return f"{settings.EVENTS_STREAM_PREFIX}{run_id}"


def publish(run_id: int, kind: str, data: dict[str, Any]) -> str:
    """Append one event; returns its stream entry id."""
    return str(client().xadd(stream_key(run_id), {"type": kind, "data": json.dumps(data)},
                             maxlen=settings.EVENTS_STREAM_MAXLEN, approximate=True))


def publish_end(run_id: int, data: dict[str, Any]) -> None:
    """The final event; the stream then lives on for late viewers, then expires."""
    publish(run_id, "end", data)
    client().expire(stream_key(run_id), settings.EVENTS_STREAM_TTL_S)


def reset(run_id: int) -> None:
    """Start a new run's stream empty: a stream left under the same id (a deleted run, or a
    rolled-back one whose id was handed out again) must not replay into it."""
    client().delete(stream_key(run_id))


def stream_exists(run_id: int) -> bool:
    return bool(client().exists(stream_key(run_id)))


def read(run_id: int, after_id: str, block_ms: int | None
         ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Entries after ``after_id``, waiting up to ``block_ms`` for the first (``None``: not at
    all; Redis reads 0 as for ever): (id, type, data)."""
    found: Any = client().xread({stream_key(run_id): after_id}, block=block_ms, count=200)
    for _key, entries in found or []:
        for entry_id, fields in entries:
            yield entry_id, fields.get("type", "step"), json.loads(fields.get("data", "{}"))


# --- the same reads for the ASGI event streams ---

_aclients: dict[int, redis.asyncio.Redis] = {}


def aclient() -> redis.asyncio.Redis:
    """One asyncio client (and connection pool) per event loop: the server's loop shares it
    among all its viewers."""
    loop = id(asyncio.get_running_loop())
    if loop not in _aclients:
        _aclients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, decode_responses=True, socket_connect_timeout=5,
            health_check_interval=30, socket_timeout=settings.SSE_KEEPALIVE_S + 15,
            max_connections=settings.SSE_MAX_REDIS_CONNECTIONS)
    return _aclients[loop]


async def astream_exists(run_id: int) -> bool:
    return bool(await aclient().exists(stream_key(run_id)))


async def aread(run_id: int, after_id: str, block_ms: int | None
                ) -> list[tuple[str, str, dict[str, Any]]]:
    """As :func:`read`, awaited."""
    found: Any = await aclient().xread({stream_key(run_id): after_id}, block=block_ms, count=200)
    return [(entry_id, fields.get("type", "step"), json.loads(fields.get("data", "{}")))
            for _key, entries in found or [] for entry_id, fields in entries]
