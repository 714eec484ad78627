"""The live event stream under the ASGI server ``make run`` starts (gunicorn with a uvicorn
worker): more viewers than the old threaded server had threads, every one of them gets every
step and the end, the API keeps answering meanwhile, and the stream's auth and permissions
hold (bearer token or session cookie; another user's run is a 404)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT, worker_env
from tests.runs_helpers import make_dataset
from webapp.accounts.services import api_token_create
from webapp.runs import attempts, events
from webapp.runs.models import Run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
VIEWERS = 40  # the threaded server this replaced had 32 threads: one per open stream


@pytest.fixture
def server(transactional_db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "webapp.asgi:application", "--worker-class",
         "uvicorn_worker.UvicornWorker", "--workers", "1", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning"], cwd=ROOT,
        env={**os.environ, **worker_env(), "RLHF_SSE_KEEPALIVE_S": "2"})
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the ASGI server did not start") from None
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


async def _open(port: int, path: str, headers: dict[str, str]):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()).strip():  # the headers
        pass
    return status, reader, writer


async def _events(reader) -> list[tuple[str, dict]]:
    """Events until the stream closes: (event type, data)."""
    out, kind = [], ""
    while line := await asyncio.wait_for(reader.readline(), timeout=60):
        text = line.decode().strip()
        if text.startswith("event:"):
            kind = text[6:].strip()
        elif text.startswith("data:"):
            out.append((kind, json.loads(text[5:])))
    return out


async def _status(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    status, reader, writer = await _open(port, path, {**headers, "Connection": "close"})
    body = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return status, body


@pytest.fixture
def running(user):
    run = Run.objects.create(owner=user, name="live", algorithm="grpo",
                             dataset=make_dataset(user), base_model="tiny-llama", max_steps=3)
    events.reset(run.pk)  # as run_create does: an earlier test's run had this id too
    attempts.run_claim(run_id=run.pk, worker="test")
    return run


def test_more_viewers_than_threads_all_get_every_step_while_the_api_answers(
        server, user, running):
    _, token = api_token_create(username=user.username)
    auth = {"Authorization": f"Bearer {token}"}

    async def scenario():
        streams = [await _open(server, f"/api/runs/{running.pk}/events", auth)
                   for _ in range(VIEWERS)]
        assert {status for status, _, _ in streams} == {200}
        listening = [asyncio.create_task(_events(reader)) for _, reader, _ in streams]
        api_status, body = await _status(server, "/api/runs", auth)  # 41 requests in flight
        assert api_status == 200 and json.loads(body)[0]["id"] == running.pk
        for step in (1, 2, 3):
            await asyncio.to_thread(attempts.run_record_step, run_id=running.pk, attempt=1,
                                    step=step, metrics={"reward/mean": step / 3})
        await asyncio.to_thread(attempts.run_finish, run_id=running.pk, attempt=1,
                                status="succeeded")
        return await asyncio.gather(*listening)

    for received in asyncio.run(scenario()):
        steps = [data["step"] for kind, data in received if kind == "step"]
        assert steps == [1, 2, 3] and received[-1] == ("end", {
            "status": "succeeded", "error": "", "stop_reason": ""})


def test_the_stream_needs_a_viewer_who_may_see_the_run(server, user, other_user, running,
                                                       client):
    _, theirs = api_token_create(username=other_user.username)
    client.force_login(user)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    path = f"/api/runs/{running.pk}/events"

    async def scenario():
        nobody = await _status(server, path, {})
        other = await _status(server, path, {"Authorization": f"Bearer {theirs}"})
        missing = await _status(server, "/api/runs/999999/events", cookie)
        lax_id = await _status(server, f"/api/runs/0{running.pk}/events", cookie)
        await asyncio.to_thread(attempts.run_finish, run_id=running.pk, attempt=1,
                                status="cancelled")
        mine = await _status(server, path, cookie)  # ended: replay, end event, close
        return nobody, other, missing, lax_id, mine

    nobody, other, missing, lax_id, mine = asyncio.run(scenario())
    assert nobody[0] == 401 and json.loads(nobody[1])["error"] == "unauthorized"
    assert other[0] == 404 and json.loads(other[1])["error"] == "not_found"
    assert missing[0] == 404 and lax_id[0] == 404
    assert mine[0] == 200 and b"event: end" in mine[1] and b'"cancelled"' in mine[1]
