"""Hundreds of people watching live runs, and the site still answering.

Starts the web server as ``make run`` does (gunicorn, one ASGI worker) on a database of its
own, opens ``--viewers`` server-sent-event streams spread over ``--runs`` running runs, records
``--steps`` steps per run through the same services a training worker calls, and meanwhile
asks the API ten times a second. Prints one JSON line: how many viewers connected, how many got
every step and the end event, and the API's latency (p50 / p95 / max) while they watched.

``--server wsgi`` measures the threaded WSGI server the product used before (32 threads, one per
stream) on the same load, as the reference; ``both`` runs the two, one after the other.

    .venv/bin/python bench/sse_viewers.py                       # 500 viewers, ASGI and WSGI
    .venv/bin/python bench/sse_viewers.py --server asgi --viewers 200
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port, start_web  # noqa: E402


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()


def _prepare(runs: int) -> tuple[str, list[int]]:
    """A user with an API token and ``runs`` runs claimed by a pretend worker."""
    from django.core.management import call_command

    from webapp.accounts.services import api_token_create
    from webapp.datasets.models import Dataset
    from webapp.runs import attempts
    from webapp.runs.models import Run

    call_command("migrate", verbosity=0)
    user, token = api_token_create(username=f"viewer-{uuid.uuid4().hex[:6]}")
    dataset = Dataset.objects.create(owner=user, name="d", kind="prompts", rows=1,
                                     columns=["prompt"], file="d.jsonl")
    ids = []
    for i in range(runs):
        run = Run.objects.create(owner=user, name=f"live {i}", algorithm="grpo",
                                 dataset=dataset, base_model="tiny-llama", max_steps=1000)
        attempts.run_claim(run_id=run.pk, worker="bench")
        ids.append(run.pk)
    return token, ids


async def _viewer(port: int, token: str, run_id: int, got: list[int], state: dict) -> None:
    """One EventSource, reading until the end event; records the steps it saw."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout=30)
    except (TimeoutError, OSError):
        state["refused"] += 1
        return
    writer.write(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        state["refused"] += 1
        writer.close()
        return
    state["connected"] += 1
    kind = ""
    while line := await reader.readline():
        text = line.decode(errors="replace").strip()
        if text.startswith("event:"):
            kind = text[6:].strip()
        elif text.startswith("data:") and kind == "step":
            got.append(json.loads(text[5:])["step"])
        elif text.startswith("data:") and kind == "end":
            state["ended"] += 1
            break
    writer.close()


async def _get(port: int, token: str, path: str) -> bytes:
    """One GET on a fresh connection; the status line."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                 "\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=10)
    await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return status


async def _api_probe(port: int, token: str, stop: asyncio.Event, latencies: list[float],
                     errors: list[str], slow: list[float]) -> None:
    """GET /api/runs ten times a second on fresh connections, as scripts and pages do;
    ``slow`` gets the seconds since the probe started of each answer slower than 1 s."""
    began = time.perf_counter()
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status = await _get(port, token, "/api/runs?limit=20")
            if b" 200 " not in status:
                errors.append(status.decode(errors="replace").strip())
        except (TimeoutError, OSError) as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - start)
        if latencies[-1] > 1:
            slow.append(round(start - began, 1))
        await asyncio.sleep(0.1)


async def _publish(ids: list[int], steps: int, interval: float) -> None:
    from asgiref.sync import sync_to_async

    from webapp.runs import attempts

    for step in range(1, steps + 1):
        for run_id in ids:
            await sync_to_async(attempts.run_record_step)(
                run_id=run_id, attempt=1, step=step,
                metrics={"reward/mean": step / steps, "kl/mean": 0.01 * step})
        await asyncio.sleep(interval)
    for run_id in ids:
        await sync_to_async(attempts.run_finish)(run_id=run_id, attempt=1, status="succeeded")


async def _measure(port: int, token: str, ids: list[int], args: argparse.Namespace) -> dict:
    await _get(port, token, "/api/runs")  # a server that has been up has loaded its URLs
    state = {"connected": 0, "refused": 0, "ended": 0}
    seen: list[list[int]] = [[] for _ in range(args.viewers)]
    viewers = [asyncio.create_task(_viewer(port, token, ids[i % len(ids)], seen[i], state))
               for i in range(args.viewers)]
    stop, latencies, errors, slow = asyncio.Event(), [], [], []
    probe = asyncio.create_task(_api_probe(port, token, stop, latencies, errors, slow))
    await asyncio.sleep(args.connect_s)  # let every viewer connect before the steps start
    connected_before_steps = state["connected"]
    await _publish(ids, args.steps, args.interval)
    await asyncio.wait(viewers, timeout=args.drain_s)
    stop.set()
    await probe
    for task in viewers:
        task.cancel()
    complete = sum(s == list(range(1, args.steps + 1)) for s in seen)
    ms = sorted(1000 * x for x in latencies)
    return {"viewers": args.viewers, "connected": state["connected"],
            "connected_before_steps": connected_before_steps, "refused": state["refused"],
            "every_step_and_end": min(complete, state["ended"]),
            "api_requests": len(ms), "api_errors": len(errors),
            "api_p50_ms": round(statistics.median(ms), 1) if ms else None,
            "api_p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else None,
            "api_max_ms": round(ms[-1], 1) if ms else None, "api_slow_at_s": slow[:10],
            "api_error_kinds": sorted(set(errors))}


def run_one(kind: str, args: argparse.Namespace) -> dict:
    db = ROOT / "var" / "bench" / f"sse-{kind}.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    for old in db.parent.glob(db.name + "*"):
        old.unlink()
    env = {"DATABASE_URL": f"sqlite:///{db}", "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
           "RLHF_EVENTS_PREFIX": f"rlhf-bench-{uuid.uuid4().hex[:8]}:run-events:",
           "RLHF_SSE_KEEPALIVE_S": "5", "LOG_LEVEL": "WARNING"}
    _setup_django(env)
    token, ids = _prepare(args.runs)
    port = free_port()
    server = start_web(port, env, kind=kind)
    try:
        return asyncio.run(_measure(port, token, ids, args))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", choices=["asgi", "wsgi", "both"], default="both")
    p.add_argument("--viewers", type=int, default=500)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
    p.add_argument("--connect-s", type=float, default=10.0)
    p.add_argument("--drain-s", type=float, default=30.0)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    out: dict = {"load_avg": round(os.getloadavg()[0], 2)}
    for kind in (["asgi", "wsgi"] if args.server == "both" else [args.server]):
        # Each in a process of its own: Django is set up once per process.
        result = subprocess.run([sys.executable, __file__, "--one", kind, *sys.argv[1:]],
                                cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        out[kind] = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
