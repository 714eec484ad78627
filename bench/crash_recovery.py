"""Crash recovery measured: kills and restarts against a real worker and the real reaper.

Starts a Celery worker and the reaper (``manage.py reap``) as ``make run`` does, on a database
and queue of their own, with the default settings unless told otherwise (heartbeat timeout
120 s, reaper every 30 s, 3 attempts). Then:

1. ``--kills`` runs (tiny-llama, checkpoint every 5 steps), each with its worker child
   SIGKILLed at a random step (as the kernel's OOM killer would): time from the kill to
   ``crashed``, to ``running`` again, the final status, and steps recorded twice or missing;
2. a rolling restart: SIGTERM to the worker during a run, a new worker started: the run
   must continue from the checkpoint written at shutdown and lose nothing.

Prints one JSON line.

    .venv/bin/python bench/crash_recovery.py                   # the defaults: about 15 min
    .venv/bin/python bench/crash_recovery.py --timeout 20 --reaper-every 5 --kills 2
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen:
    proc = _spawn([sys.executable, "-m", "celery", "-A", "workers", "worker", "--queues", queue,
                   "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "INFO",
                   "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"], env, log)
    _wait(lambda: "ready." in log.read_text(), 120, "the worker")
    return proc


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"gave up waiting for {what}")


def _launch(user, dataset, steps: int, checkpoint_every: int) -> int:
    from webapp.runs import services

    run = services.run_create(
        owner=user, name=f"crash {uuid.uuid4().hex[:4]}", algorithm="grpo",
        dataset_id=dataset.pk, base_model="tiny-llama",
        rewards=[{"type": "length", "target": 30}],
        hyperparameters={"max_steps": steps, "checkpoint_every": checkpoint_every,
                         "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 24})
    return run.pk


def _state(run_id: int) -> tuple[str, int, int]:
    from webapp.runs.models import Run

    return Run.objects.values_list("status", "step", "attempt").get(pk=run_id)


def _steps_ok(run_id: int, steps: int) -> dict[str, int]:
    from collections import Counter

    from webapp.runs.models import Metric

    counts = Counter(Metric.objects.filter(run_id=run_id, key="reward/mean")
                     .values_list("step", flat=True))
    return {"duplicated": sum(c > 1 for c in counts.values()),
            "missing": sum(s not in counts for s in range(1, steps + 1))}


def _kill_one(run_id: int, steps: int, rng: random.Random) -> dict:
    from webapp.runs.models import RunAttempt

    at = rng.randint(6, steps - 5)
    _wait(lambda: _state(run_id)[1] >= at, 300, f"step {at}")
    pid = RunAttempt.objects.get(run_id=run_id, attempt=1).pid
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _state(run_id)[0] == "crashed" or _state(run_id)[2] > 1, 600, "crashed")
    crashed = time.monotonic()
    _wait(lambda: _state(run_id)[0] == "running" and _state(run_id)[2] > 1, 600, "running")
    running = time.monotonic()
    _wait(lambda: _state(run_id)[0] in ("succeeded", "failed", "cancelled"), 900, "the end")
    return {"killed_at_step": at, "to_crashed_s": round(crashed - killed, 1),
            "to_running_again_s": round(running - killed, 1), "status": _state(run_id)[0],
            "resumed_from": RunAttempt.objects.get(run_id=run_id, attempt=2).resumed_from_step,
            **_steps_ok(run_id, steps)}


def _rolling_restart(user, dataset, env, queue, logs: Path, worker) -> dict:
    from webapp.runs.models import RunAttempt

    run_id = _launch(user, dataset, 30, 0)
    _wait(lambda: _state(run_id)[1] >= 8, 300, "step 8")
    stopped = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=300)
    shutdown_s = time.monotonic() - stopped
    status_after_stop, step_at_stop, _ = _state(run_id)
    new = _worker(env, queue, logs / "worker-2.log")
    _wait(lambda: _state(run_id)[0] in ("succeeded", "failed", "cancelled"), 900, "the end")
    new.terminate()
    new.wait(timeout=120)
    attempts = list(RunAttempt.objects.filter(run_id=run_id).order_by("attempt")
                    .values_list("outcome", "resumed_from_step"))
    return {"status_after_sigterm": status_after_stop, "shutdown_s": round(shutdown_s, 1),
            "step_at_sigterm": step_at_stop, "attempts": attempts,
            "final_status": _state(run_id)[0], "runs_lost": int(_state(run_id)[0] != "succeeded"),
            **_steps_ok(run_id, 30)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--timeout", type=int, default=None, help="RLHF_HEARTBEAT_TIMEOUT_S")
    p.add_argument("--reaper-every", type=int, default=None, help="RLHF_REAPER_INTERVAL_S")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logs = ROOT / "var" / "bench" / "crash"
    logs.mkdir(parents=True, exist_ok=True)
    db = logs / "crash.sqlite3"
    for old in logs.glob("crash.sqlite3*"):
        old.unlink()
    queue = f"bench-crash-{uuid.uuid4().hex[:6]}"
    env = {"DATABASE_URL": f"sqlite:///{db}", "RLHF_TRAINING_QUEUE": queue,
           "RLHF_VAR_DIR": str(logs / "var"), "RLHF_MODELS_DIR": str(ROOT / "var" / "models"),
           "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
           "RLHF_EVENTS_PREFIX": f"rlhf-bench-{queue}:"}
    if args.timeout:
        env["RLHF_HEARTBEAT_TIMEOUT_S"] = str(args.timeout)
    if args.reaper_every:
        env["RLHF_REAPER_INTERVAL_S"] = str(args.reaper_every)
    _setup(env)
    from django.conf import settings

    from tests.conftest import PROMPTS
    from webapp.accounts.services import api_token_create
    from webapp.datasets.services import dataset_create_from_rows

    user, _ = api_token_create(username="crash-bench")
    dataset = dataset_create_from_rows(owner=user, name="p", kind="prompts", rows=PROMPTS)
    worker = _worker(env, queue, logs / "worker-1.log")
    reaper = _spawn([sys.executable, "manage.py", "reap"], env, logs / "reaper.log")
    rng = random.Random(args.seed)
    try:
        kills = []
        for i in range(args.kills):
            kills.append(_kill_one(_launch(user, dataset, args.steps, 5), args.steps, rng))
            print(f"kill {i + 1}/{args.kills}: {kills[-1]}", file=sys.stderr, flush=True)
        restart = _rolling_restart(user, dataset, env, queue, logs, worker)
    finally:
        reaper.terminate()
        worker.terminate()
    ok = [k for k in kills if k["status"] == "succeeded" and not k["duplicated"]
          and not k["missing"]]
    print(json.dumps({
        "heartbeat_timeout_s": settings.RLHF_HEARTBEAT_TIMEOUT_S,
        "reaper_interval_s": settings.RLHF_REAPER_INTERVAL_S,
        "load_avg": round(os.getloadavg()[0], 2),
        "kills_recovered": f"{len(ok)}/{len(kills)}",
        "max_to_running_again_s": max((k["to_running_again_s"] for k in kills), default=None),
        "kills": kills, "rolling_restart": restart}))


if __name__ == "__main__":
    main()
