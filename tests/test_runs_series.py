"""Downsampling by min/max buckets in the database, against a brute-force reference."""
from __future__ import annotations

import random

import pytest

from webapp.runs import series
from webapp.runs.attempts import run_claim, run_record_step
from webapp.runs.models import Metric, MetricBlock, Run, RunStatus

pytestmark = pytest.mark.django_db


def _run(user, dataset, **kw) -> Run:
    defaults = {"name": "r", "algorithm": "grpo", "dataset": dataset,
                "base_model": "tiny-llama", "max_steps": 100_000, "status": RunStatus.QUEUED}
    return Run.objects.create(owner=user, **(defaults | kw))


@pytest.fixture
def dataset(user):
    from webapp.datasets.models import Dataset

    return Dataset.objects.create(owner=user, name="d", kind="prompts", rows=1,
                                  columns=["prompt"], file="x.jsonl", size_bytes=1)


def _bulk(run: Run, values: dict[str, dict[int, float]]) -> None:
    Metric.objects.bulk_create([Metric(run=run, step=s, key=k, value=v)
                                for k, by_step in values.items() for s, v in by_step.items()])
    run.step = max(s for by_step in values.values() for s in by_step)
    run.save(update_fields=["step"])
    series.blocks_rebuild(run_id=run.pk)


def brute_force(points: list[tuple[int, float]], width: int) -> list[tuple[int, float]]:
    """Each bucket's lowest and highest point (the earliest among equal values) and the
    series' first and last point, in step order."""
    buckets: dict[int, list[tuple[int, float]]] = {}
    for step, value in points:
        buckets.setdefault((step - 1) // width, []).append((step, value))
    kept = {min(points), max(points)}
    for rows in buckets.values():
        kept.add(min(rows, key=lambda p: (p[1], p[0])))
        kept.add(min(rows, key=lambda p: (-p[1], p[0])))
    return sorted(kept)


def _spiky(n: int, width: int, rng: random.Random) -> dict[int, float]:
    """Gaussian noise with up to five spikes of +-1e6, each in a bucket of its own."""
    values = {s: rng.gauss(0, 1) for s in range(1, n + 1)}
    buckets = (n - 1) // width + 1
    for b in rng.sample(range(buckets), min(5, buckets)):
        step = rng.randint(b * width + 1, min(n, (b + 1) * width))
        values[step] = rng.choice([-1, 1]) * 1e6  # a spike no bucket may lose
    return values


@pytest.mark.parametrize("n,points", [(1000, 100), (777, 50), (5000, 1000), (4099, 300),
                                      (50, 10)])
def test_it_keeps_every_buckets_extremes_and_the_ends(user, dataset, n, points):
    rng = random.Random(n)
    run = _run(user, dataset)
    width = series.bucket_width(n, points) if n > points else 1
    values = {"reward/mean": _spiky(n, width, rng),
              "eval/accuracy": {s: float(rng.randint(0, 3)) for s in range(5, n + 1, 5)}}
    _bulk(run, values)
    got = series.series_downsampled(run=run, points=points)
    for key, by_step in values.items():
        expected = brute_force(sorted(by_step.items()), width)
        pairs = list(zip(got[key]["x"], got[key]["y"], strict=True))
        assert pairs == expected, key
        assert len(pairs) <= points
        assert all(a < b for a, b in zip(got[key]["x"], got[key]["x"][1:], strict=False))
    spikes = [s for s, v in values["reward/mean"].items() if abs(v) == 1e6]
    assert set(spikes) <= set(got["reward/mean"]["x"])


def test_a_short_series_comes_back_whole(user, dataset):
    run = _run(user, dataset)
    _bulk(run, {"kl/mean": {s: s / 10 for s in range(1, 41)}})
    got = series.series_downsampled(run=run, points=100)
    assert got["kl/mean"] == {"x": list(range(1, 41)), "y": [s / 10 for s in range(1, 41)]}


def test_blocks_built_step_by_step_equal_blocks_built_in_bulk(user, dataset):
    rng = random.Random(7)
    live = _run(user, dataset)
    attempt = run_claim(run_id=live.pk, worker="test")
    values: dict[str, dict[int, float]] = {"reward/mean": {}, "loss/policy": {}}
    for step in range(1, 70):
        metrics = {"reward/mean": rng.random(), "loss/policy": rng.random() - 0.5}
        for k, v in metrics.items():
            values[k][step] = v
        run_record_step(run_id=live.pk, attempt=attempt, step=step, metrics=metrics)
    bulk = _run(user, dataset)
    _bulk(bulk, values)
    fields = ("key", "width", "start", "min_step", "min_value", "max_step", "max_value",
              "first_step", "first_value", "last_step", "last_value")

    def blocks(run):
        return list(MetricBlock.objects.filter(run=run).order_by("width", "key", "start")
                    .values_list(*fields))

    assert blocks(live) == blocks(bulk)
    assert {w for _, w, *_ in blocks(live)} == {4, 8, 16, 32, 64}
    live.refresh_from_db()
    got = series.series_downsampled(run=live, points=20)
    width = series.bucket_width(69, 20)
    assert list(zip(got["reward/mean"]["x"], got["reward/mean"]["y"], strict=True)) == \
        brute_force(sorted(values["reward/mean"].items()), width)


def test_x_by_time_and_tokens_uses_the_runs_own_counters(user, dataset):
    run = _run(user, dataset)
    n = 3000
    _bulk(run, {"reward/mean": {s: (s % 97) / 97 for s in range(1, n + 1)},
                "perf/elapsed_s": {s: 1.5 * s for s in range(1, n + 1)},
                "perf/tokens_total": {s: 64.0 * s for s in range(1, n + 1)}})
    by_step = series.series_downsampled(run=run, points=200, keys=["reward/mean"])
    by_time = series.series_downsampled(run=run, points=200, keys=["reward/mean"], x="time")
    by_tokens = series.series_downsampled(run=run, points=200, keys=["reward/mean"],
                                          x="tokens")
    steps = by_step["reward/mean"]["x"]
    assert set(by_step) == {"reward/mean"}
    assert by_time["reward/mean"]["x"] == [1.5 * s for s in steps]
    assert by_tokens["reward/mean"]["x"] == [64.0 * s for s in steps]
    assert by_time["reward/mean"]["y"] == by_step["reward/mean"]["y"]


def test_truncating_forgets_blocks_past_the_step(user, dataset):
    run = _run(user, dataset)
    _bulk(run, {"reward/mean": {s: float(s) for s in range(1, 101)}})
    series.blocks_truncate(run_id=run.pk, after_step=50)
    ends = MetricBlock.objects.filter(run=run).values_list("start", "width")
    assert ends and max(start + width - 1 for start, width in ends) <= 50
    assert MetricBlock.objects.filter(run=run, width=4, start=45).exists()
