"""``GET /api/runs/{id}/events``: a run's steps as server-sent events.

Event ids are Redis Stream entry ids, so ``Last-Event-ID`` resumes exactly where a browser
left off. When the stream is gone (expired after the run ended, or Redis lost it) the steps are
replayed from the database with ids ``db-<step>``. After the final ``end`` event the server
closes the stream.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
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


def _replay_from_db(run: Run, after_step: int) -> Iterator[str]:
    steps: dict[int, dict[str, float]] = {}
    for step, key, value in (Metric.objects.filter(run=run, step__gt=after_step)
                             .order_by("step").values_list("step", "key", "value")):
        steps.setdefault(step, {})[key] = value
    for step, metrics in steps.items():
        yield _event(f"db-{step}", "step", {"step": step, "metrics": metrics})


def _release_database() -> None:
    """A viewer may keep a stream open for hours while it waits on Redis; it must not hold a
    database connection all that time (PostgreSQL's are few). The next query reconnects."""
    if not connection.in_atomic_block:
        connection.close()


def event_stream(run: Run, last_id: str) -> Iterator[str]:
    yield "retry: 2000\n\n"
    if last_id.startswith("db-") or not events.stream_exists(run.pk):
        after = int(last_id[3:]) if last_id.startswith("db-") and last_id[3:].isdigit() else 0
        yield from _replay_from_db(run, after)
        run.refresh_from_db()
        if run.is_terminal:
            yield _event("db-end", "end", _end_data(run))
            return
        last_id = "0-0"
    block_ms = settings.SSE_KEEPALIVE_S * 1000
    while True:
        _release_database()
        got_any = False
        for entry_id, kind, data in events.read(run.pk, last_id, block_ms):
            got_any, last_id = True, entry_id
            yield _event(entry_id, kind, data)
            if kind == "end":
                return
        if not got_any:
            run.refresh_from_db()
            if run.is_terminal:  # ended without an end event reaching the stream
                yield _event(last_id, "end", _end_data(run))
                return
            yield ": keep-alive\n\n"


def run_events(request: HttpRequest, run_id: int) -> HttpResponse:
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
    response = StreamingHttpResponse(event_stream(run, last_id),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
