"""How fast the compare endpoint and the runs list answer on a database of long runs.

Fills a fresh database with 10 runs x 10,000 steps x 15 metric keys (1.5M metric rows, with
their min/max blocks) plus 190 short runs, then times, in this process through Django's test
client (server time: routing, auth, queries, JSON):

- ``GET /api/runs/compare`` for the 10 long runs, all 15 keys, ``points=1000`` (x by step,
  and by time);
- ``GET /api/runs?limit=200`` (the runs list of 200 runs with their summaries).

Each database is measured in its own child process; the parent prints one JSON line:

    .venv/bin/python bench/compare_load.py                 # SQLite and the local PostgreSQL
    .venv/bin/python bench/compare_load.py --db sqlite --steps 2000

PostgreSQL: ``--postgres-url`` (default the local server of the development machine); the
script creates and drops its own database ``rlhf_bench``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["reward/mean", "reward/std", "reward/frac_zero_std", "kl/mean", "entropy/mean",
        "loss/policy", "clip/low", "clip/high", "clip/region", "completion/length_mean",
        "completion/truncated_frac", "optim/lr", "optim/grad_norm", "perf/elapsed_s",
        "perf/tokens_total"]


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _values(run: int, steps: int) -> list[tuple[int, str, float]]:
    """Noisy curves of full double precision, as real metrics are."""
    rng = random.Random(run)
    rows = []
    walk = 0.0
    for step in range(1, steps + 1):
        walk += rng.gauss(0, 0.01)
        for k, key in enumerate(KEYS):
            if key == "perf/elapsed_s":
                value = 31.7 * step
            elif key == "perf/tokens_total":
                value = 512.0 * step
            else:
                value = math.tanh(step / 2000 + k) + walk + rng.gauss(0, 0.05)
            rows.append((step, key, value))
    return rows


def _fill(args: argparse.Namespace) -> tuple[object, list[int]]:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from webapp.datasets.models import Dataset
    from webapp.runs import series, summaries
    from webapp.runs.models import Metric, Run, RunStatus

    user = get_user_model().objects.create_user("bench", password="bench-pass-123")
    dataset = Dataset.objects.create(owner=user, name="bench", kind="prompts", rows=1,
                                     columns=["prompt"], file="bench.jsonl")
    long_ids = []
    table = Metric._meta.db_table
    for r in range(args.runs):
        run = Run.objects.create(owner=user, name=f"long {r}", algorithm="grpo",
                                 dataset=dataset, base_model="tiny-llama",
                                 max_steps=args.steps, step=args.steps,
                                 status=RunStatus.SUCCEEDED,
                                 hyperparameters={"learning_rate": 1e-5 * (r + 1)})
        rows = [(run.pk, s, k, v) for s, k, v in _values(r, args.steps)]
        with transaction.atomic(), connection.cursor() as cursor:
            for i in range(0, len(rows), 20_000):
                cursor.executemany(f"INSERT INTO {table} (run_id, step, key, value) "
                                   "VALUES (%s, %s, %s, %s)", rows[i:i + 20_000])
        with transaction.atomic():
            series.blocks_rebuild(run_id=run.pk)
        summaries.summary_refresh(run=run)
        long_ids.append(run.pk)
        _progress(f"  run {r + 1}/{args.runs}: {len(rows)} metric rows and their blocks")
    short = [Run(owner=user, name=f"short {i}", algorithm="grpo", dataset=dataset,
                 base_model="tiny-llama", max_steps=10, step=10, reward_final=i / 190,
                 reward_best=i / 190, status=RunStatus.SUCCEEDED)
             for i in range(args.list_runs - args.runs)]
    Run.objects.bulk_create(short)
    return user, long_ids


def _time(client, url: str, repeats: int) -> dict[str, float]:
    seconds, size, zipped = [], 0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        seconds.append(time.perf_counter() - start)
        assert response.status_code == 200, response.content[:500]
        size = len(response.content)
        zipped = len(gzip.compress(response.content, 6))
    return {"median_ms": round(1000 * statistics.median(seconds), 1),
            "best_ms": round(1000 * min(seconds), 1), "json_mb": round(size / 1e6, 3),
            "gzip_mb": round(zipped / 1e6, 3)}


def child(args: argparse.Namespace) -> dict:
    import django

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from webapp.runs.models import Metric, MetricBlock

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    user, ids = _fill(args)
    fill_s = time.perf_counter() - started
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    query = f"/api/runs/compare?ids={','.join(map(str, ids))}&points={args.points}"
    client.get(query)  # warm the caches once, as a server that has been up would be
    return {"metric_rows": Metric.objects.count(), "block_rows": MetricBlock.objects.count(),
            "fill_s": round(fill_s, 1),
            "compare_step": _time(client, query, args.repeats),
            "compare_time": _time(client, query + "&x=time", args.repeats),
            "list_200": _time(client, f"/api/runs?limit={args.list_runs}", args.repeats)}


def _prepare(db: str, args: argparse.Namespace) -> str:
    if db == "sqlite":
        path = ROOT / "var" / "bench" / "compare.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in path.parent.glob(path.name + "*"):
            p.unlink()
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(args.postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS rlhf_bench")
        conn.execute("CREATE DATABASE rlhf_bench")
    return args.postgres_url.rsplit("/", 1)[0] + "/rlhf_bench"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--list-runs", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--database-url", help=argparse.SUPPRESS)  # set for the child process
    args = p.parse_args()
    if args.database_url:
        print(json.dumps(child(args)))
        return
    out: dict = {"runs": args.runs, "steps": args.steps, "keys": len(KEYS),
                 "points": args.points, "load_avg": round(os.getloadavg()[0], 2)}
    for db in (["sqlite", "postgres"] if args.db == "both" else [args.db]):
        _progress(f"{db}: filling a fresh database")
        url = _prepare(db, args)
        result = subprocess.run(
            [sys.executable, __file__, "--database-url", url, *sys.argv[1:]],
            cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        out[db] = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
