"""``GET /api/runs/{id}/events``: a run's steps as server-sent events.

Event ids are Redis Stream entry ids, so ``Last-Event-ID`` resumes exactly where a browser
left off. When the stream is gone (expired after the run ended, or Redis lost it) the steps are
replayed from the database with ids ``db-<step>``. After the final ``end`` event the server
closes the stream.

Under an ASGI server (``make run``, production) the stream is an async generator reading Redis
with ``redis.asyncio``: a viewer holds a socket and a coroutine, not a thread, so hundreds of
open run pages leave the site answering. Under WSGI (Django's test server) the same events come
from a blocking generator.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from importlib import import_module
from io import BytesIO
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from webapp.accounts.services import api_token_authenticate
from webapp.runs import events
from webapp.runs.models import Metric, Run
from webapp.runs.selectors import run_get_for_user

_EVENT_ID = re.compile(r"\d+-\d+|db-\d+")


def _user(request: HttpRequest) -> Any:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return api_token_authenticate(raw=header[7:].strip())
    return request.user if request.user.is_authenticated else None


def _event(entry_id: str, kind: str, data: dict[str, Any]) -> str:
    return f"id: {entry_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


def _end_data(run: Run) -> dict[str, Any]:
    return {"status": run.status, "error": run.error[:2000], "stop_reason": run.stop_reason}


def _replay_from_db(run: Run, after_step: int) -> tuple[list[str], int]:
    """The stored steps after ``after_step`` as events, and the last step among them."""
    steps: dict[int, dict[str, float]] = {}
    for step, key, value in (Metric.objects.filter(run=run, step__gt=after_step)
                             .order_by("step").values_list("step", "key", "value")):
        steps.setdefault(step, {})[key] = value
    replayed = [_event(f"db-{step}", "step", {"step": step, "metrics": metrics})
                for step, metrics in steps.items()]
    return replayed, max(steps, default=after_step)


def _db_after(last_id: str) -> int:
    return int(last_id[3:]) if last_id.startswith("db-") and last_id[3:].isdigit() else 0


def _replay_and_status(run: Run, last_id: str) -> tuple[list[str], bool, int]:
    """The replayed events, whether the run has ended (then they close the stream), and the
    last step replayed (the live stream's copies of it and earlier ones are then skipped).

    The status is read before the steps: a worker stores a step before it publishes it and
    all steps before it ends the run, so an ended run read first has every step stored. Read
    the other way round, a run that stored its last steps and ended between the two reads
    replayed an end with no steps before it."""
    run.refresh_from_db()
    ended = run.is_terminal
    out, through = _replay_from_db(run, _db_after(last_id))
    if ended:
        out.append(_event("db-end", "end", _end_data(run)))
    return out, ended, through


def _ended(run: Run) -> dict[str, Any] | None:
    run.refresh_from_db()
    return _end_data(run) if run.is_terminal else None


def _release_database() -> None:
    """A viewer may keep a stream open for hours while it waits on Redis; it must not hold a
    database connection all that time (PostgreSQL's are few). The next query reconnects."""
    if not connection.in_atomic_block:
        connection.close()


class _Follow:
    """What a viewer's live stream has read so far, and what the entries read next become;
    the blocking and the async streams share it and only do the reads.

    After a quiet wait the stream asks the database whether the run has ended (an end event
    may never reach Redis). If it has, the entries published between the wait and that
    answer are read first (without waiting), then the end is sent."""

    def __init__(self, last_id: str, replayed_through: int):
        self.last_id = last_id
        self.through = replayed_through  # steps up to it came from the database already
        self.ending: dict[str, Any] | None = None  # the end as the database has it
        self.done = False

    def block_ms(self) -> int | None:
        return None if self.ending is not None else settings.SSE_KEEPALIVE_S * 1000

    def take(self, entries: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """The events for ``entries`` read after :attr:`last_id`; :attr:`done` after the end."""
        out = []
        for entry_id, kind, data in entries:
            self.last_id = entry_id
            if kind == "step" and isinstance(data.get("step"), int) and (
                    data["step"] <= self.through):
                continue  # the replay sent it (the stream appeared while it read)
            out.append(_event(entry_id, kind, data))
            if kind == "end":
                self.done = True
                return out
        if not entries and self.ending is not None:
            out.append(_event(self.last_id, "end", self.ending))
            self.done = True
        return out

    def quiet(self, ending: dict[str, Any] | None) -> list[str]:
        """After a wait that read nothing: the database's answer whether the run ended."""
        self.ending = ending
        return [": keep-alive\n\n"] if ending is None else []


def event_stream(run: Run, last_id: str) -> Iterator[str]:
    """The blocking stream (WSGI): one thread per viewer."""
    yield "retry: 2000\n\n"
    through = 0
    if last_id.startswith("db-") or not events.stream_exists(run.pk):
        replayed, ended, through = _replay_and_status(run, last_id)
        yield from replayed
        if ended:
            return
        last_id = "0-0"
    follow = _Follow(last_id, through)
    while not follow.done:
        _release_database()
        entries = list(events.read(run.pk, follow.last_id, follow.block_ms()))
        yield from follow.take(entries)
        if not entries and not follow.done:
            yield from follow.quiet(_ended(run))


async def _in_pool(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a pool thread rather than Django's one thread for sync code (a burst of
    viewers must not queue every other request), leaving no database connection open there."""
    def call() -> Any:
        try:
            return fn(*args)
        finally:
            connection.close()

    return await sync_to_async(call, thread_sensitive=False)()


async def aevent_stream(run: Run, last_id: str) -> AsyncIterator[str]:
    """The same events as :func:`event_stream` for an ASGI server: waiting on Redis costs a
    coroutine, and the database is only asked (in Django's sync thread) on replays and
    after a quiet keep-alive period."""
    yield "retry: 2000\n\n"
    through = 0
    if last_id.startswith("db-") or not await events.astream_exists(run.pk):
        replayed, ended, through = await _in_pool(_replay_and_status, run, last_id)
        for event in replayed:
            yield event
        if ended:
            return
        last_id = "0-0"
    follow = _Follow(last_id, through)
    while not follow.done:
        entries = await events.aread(run.pk, follow.last_id, follow.block_ms())
        for event in follow.take(entries):
            yield event
        if not entries and not follow.done:
            for event in follow.quiet(await _in_pool(_ended, run)):
                yield event


def run_events(request: HttpRequest, run_id: int) -> HttpResponse:
    """The Django view of the stream (WSGI; under ASGI, :func:`asgi_run_events` answers
    first, outside the middleware)."""
    user = _user(request)
    if user is None:
        return JsonResponse({"error": "unauthorized",
                             "detail": "Send 'Authorization: Bearer <token>' or sign in."},
                            status=401)
    try:
        run = run_get_for_user(user=user, run_id=run_id)
    except Http404:
        return JsonResponse({"error": "not_found", "detail": "No such run."}, status=404)
    last_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0-0"
    if not _EVENT_ID.fullmatch(last_id):
        last_id = "0-0"  # not an id this server gave out: replay from the start
    stream = (aevent_stream(run, last_id) if isinstance(request, ASGIRequest)
              else event_stream(run, last_id))
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


# --- the same endpoint served straight from the ASGI server ---

EVENTS_PATH = re.compile(r"/api/runs/([1-9]\d{0,17})/events")  # canonical ids only


def _asgi_user(request: HttpRequest) -> Any:
    """The bearer token's user, or the session cookie's (as Django's auth middleware reads
    it, session hash checked)."""


    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return api_token_authenticate(raw=header[7:].strip())
    store = import_module(settings.SESSION_ENGINE).SessionStore
    request.session = store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    user = get_user(request)
    return user if user.is_authenticated else None


def _asgi_lookup(request: HttpRequest, run_id: int) -> tuple[Any, Run | None]:
    user = _asgi_user(request)
    if user is None:
        return None, None
    try:
        return user, run_get_for_user(user=user, run_id=run_id)
    except Http404:
        return user, None


async def asgi_run_events(scope: dict[str, Any], receive: Any, send: Any, run_id: int) -> None:
    """``GET /api/runs/{id}/events`` answered by the ASGI server itself, outside Django's
    middleware stack, whose sync middlewares would each take a turn on Django's single sync
    thread: a burst of viewers then queues every other request. Authentication and the
    permission check are those of the view; the stream is :func:`aevent_stream`."""
    request = ASGIRequest(scope, BytesIO())
    user, run = await _in_pool(_asgi_lookup, request, run_id)
    if run is None or request.method != "GET":
        status, body = (
            (405, {"error": "method_not_allowed", "detail": "Only GET reads the stream."})
            if request.method != "GET" else
            (401, {"error": "unauthorized", "detail": "Send 'Authorization: Bearer <token>' "
                   "or sign in."}) if user is None else
            (404, {"error": "not_found", "detail": "No such run."}))
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        return
    last_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0-0"
    if not _EVENT_ID.fullmatch(last_id):
        last_id = "0-0"
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"), (b"x-content-type-options", b"nosniff")]})

    async def stream() -> None:
        async for chunk in aevent_stream(run, last_id):
            await send({"type": "http.response.body", "body": chunk.encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(stream()), asyncio.ensure_future(disconnected())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
