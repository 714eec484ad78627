"""Time from launching a run through the API to its first step's metrics, end to end.

Starts what `make run` starts, in a scratch directory under var/ (its own SQLite database,
Redis queue and stream prefix, so it disturbs nothing): the web server and a Celery worker as
the Procfile runs it (one task per child). Then, ``--runs`` times: uploads nothing new,
launches a ``tiny-llama`` smoke run (the form's preset) with ``POST /api/runs`` and polls
``GET /api/runs/{id}/metrics`` until step 1 is there. Prints one JSON line: seconds from the
POST to the first metric row, per run (the first after the worker started, then runs whose
worker child was forked, and preloaded, while the previous run ended), and the load average.

    .venv/bin/python bench/first_step.py --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port  # noqa: E402

PY = sys.executable
SMOKE = {"max_steps": 4, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 16}



def request(url: str, token: str, *, data: bytes | None = None,
            content_type: str = "application/json") -> Any:
    req = urllib.request.Request(url, data=data, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def upload(base: str, token: str, path: Path) -> Any:
    boundary = "benchboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             for k, v in (("name", "first-step"), ("kind", "prompts"))]
    body = "".join(parts).encode() + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="prompts.jsonl"\r\nContent-Type: application/json\r\n\r\n').encode() + \
        path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return request(f"{base}/api/datasets", token, data=body,
                   content_type=f"multipart/form-data; boundary={boundary}")


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def start_services(scratch: Path, env: dict[str, str], port: int) -> list[subprocess.Popen]:
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True)
    log = open(scratch / "worker.log", "w")
    worker = subprocess.Popen(
        [PY, "-m", "celery", "-A", "workers", "worker", "--queues", env["RLHF_TRAINING_QUEUE"],
         "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--hostname", f"first-step-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    web = subprocess.Popen([PY, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wait_until(lambda: "ready." in (scratch / "worker.log").read_text(), 120, "the worker")
    return [worker, web]


def launch_and_wait(base: str, token: str, dataset: Any) -> dict[str, float]:
    started = time.perf_counter()
    run = request(f"{base}/api/runs", token, data=json.dumps({
        "name": "first-step", "algorithm": "grpo", "dataset": dataset,
        "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 20}],
        "hyperparameters": SMOKE}).encode())
    first = wait_until(
        lambda: request(f"{base}/api/runs/{run['id']}/metrics?after=0", token)["last_step"],
        120, "the first step")
    first_s = time.perf_counter() - started
    wait_until(lambda: request(f"{base}/api/runs/{run['id']}", token)["status"] in
               ("succeeded", "failed", "cancelled"), 300, "the run's end")
    return {"first_step_s": round(first_s, 2), "first_step": first,
            "done_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--gap", type=float, default=20.0,
                   help="seconds between a run's end and the next launch (a user does not "
                        "launch the instant a run ends; the new worker child gets ready)")
    p.add_argument("--no-preload", action="store_true",
                   help="the worker child imports the engine inside the task (as before)")
    a = p.parse_args()
    scratch = ROOT / "var" / "bench-first-step"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    port = free_port()
    env = {**os.environ, "RLHF_VAR_DIR": str(scratch), "RLHF_MODELS_DIR":
           str(ROOT / "var" / "models"), "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
           "RLHF_TRAINING_QUEUE": f"bench-first-step-{os.getpid()}",
           "RLHF_EVENTS_PREFIX": f"bench-first-step-{os.getpid()}:", "DJANGO_DEBUG": "0",
           "DJANGO_SECRET_KEY": "bench-only", "PYTHONUNBUFFERED": "1",
           "RLHF_WORKER_PRELOAD": "0" if a.no_preload else "1"}
    load_before = os.getloadavg()
    procs = start_services(scratch, env, port)
    try:
        out = subprocess.run([PY, "manage.py", "create_api_token", "bench"], cwd=ROOT, env=env,
                             check=True, capture_output=True, text=True)
        token = out.stdout.strip().splitlines()[-1]
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(base), 60, "the web server")
        data = scratch / "prompts.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"Summarize: story number {i}."}) + "\n"
                                for i in range(8)))
        dataset = upload(base, token, data)["id"]
        time.sleep(a.gap)  # the first child too gets ready before the first launch
        runs = []
        for _ in range(a.runs):
            runs.append(launch_and_wait(base, token, dataset))
            time.sleep(a.gap)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    firsts = [r["first_step_s"] for r in runs]
    print(json.dumps({
        "bench": "first_step", "model": "tiny-llama", "hyperparameters": SMOKE,
        "worker_preload": not a.no_preload, "gap_s": a.gap,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "first_step_s": firsts, "median_first_step_s": statistics.median(firsts),
        "runs": runs}))


def _up(base: str) -> bool:
    try:
        urllib.request.urlopen(f"{base}/api/openapi.json", timeout=5).read()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
