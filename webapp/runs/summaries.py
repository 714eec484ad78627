"""The headline figures of a run (final and best reward, final KL, mean tokens/s, peak memory,
wall time), stored on the run so listing and comparing runs never scans their metrics.

:func:`summary_update_for_step` folds one step into the stored figures as it is recorded;
:func:`summary_refresh` computes them from every stored metric (after rows were removed, for
runs from before the fields existed, and as the reference the tests compare against).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from django.db.models import Max
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from training.algorithms import get_algorithm
from webapp.runs.models import Metric, Run


def reward_key(algorithm: str) -> str:
    """The metric that stands for "reward" in a run's summary, as its algorithm declares it
    (a reward model's is its held-out pairwise accuracy)."""
    spec = get_algorithm(algorithm)
    return spec.reward_key if spec else "reward/mean"

KL_KEY = "kl/mean"
PEAK_KEY = "perf/peak_mem_mb"
TOKENS_KEY, SECONDS_KEY = "perf/tokens_total", "perf/elapsed_s"
SUMMARY_FIELDS = ("reward_final", "reward_best", "kl_final", "tokens_per_s", "peak_mem_mb",
                  "wall_s")


class Summary(TypedDict):
    reward_final: float | None
    reward_best: float | None
    kl_final: float | None
    tokens_per_s: float | None
    peak_mem_mb: float | None
    wall_s: float | None


def summary_of(run: Run) -> Summary:
    return {f: getattr(run, f) for f in SUMMARY_FIELDS}  # type: ignore[return-value]


def _seconds_since(started: datetime | None, now: datetime) -> float | None:
    return (now - started).total_seconds() if started else None


def _throughput(metrics: Mapping[str, float]) -> float | None:
    tokens, seconds = metrics.get(TOKENS_KEY), metrics.get(SECONDS_KEY)
    if tokens is None or not seconds:
        return None
    return tokens / seconds


def summary_update_for_step(*, algorithm: str, metrics: Mapping[str, float],
                            started_at: datetime | None, now: datetime) -> dict[str, Any]:
    """The UPDATE arguments that fold one step's metrics into a run's stored summary."""
    fields: dict[str, Any] = {"wall_s": _seconds_since(started_at, now)}
    reward = metrics.get(reward_key(algorithm))
    if reward is not None:
        fields["reward_final"] = reward
        fields["reward_best"] = Greatest(Coalesce("reward_best", reward), reward)
    if KL_KEY in metrics:
        fields["kl_final"] = metrics[KL_KEY]
    if PEAK_KEY in metrics:
        peak = metrics[PEAK_KEY]
        fields["peak_mem_mb"] = Greatest(Coalesce("peak_mem_mb", peak), peak)
    throughput = _throughput(metrics)
    if throughput is not None:
        fields["tokens_per_s"] = throughput
    return fields


def _last_value(run: Run, key: str) -> float | None:
    return (Metric.objects.filter(run=run, key=key).order_by("-step")
            .values_list("value", flat=True).first())


def summary_refresh(*, run: Run) -> Summary:
    """Recompute the stored summary from the run's metrics and save it."""
    key = reward_key(run.algorithm)
    last_step = Metric.objects.filter(run=run).aggregate(s=Max("step"))["s"]
    at_last = dict(Metric.objects.filter(run=run, step=last_step,
                                         key__in=(TOKENS_KEY, SECONDS_KEY))
                   .values_list("key", "value")) if last_step else {}
    end = run.finished_at or timezone.now()
    run.reward_final = _last_value(run, key)
    run.reward_best = Metric.objects.filter(run=run, key=key).aggregate(
        v=Max("value"))["v"]
    run.kl_final = _last_value(run, KL_KEY)
    run.peak_mem_mb = Metric.objects.filter(run=run, key=PEAK_KEY).aggregate(
        v=Max("value"))["v"]
    run.tokens_per_s = _throughput(at_last)
    run.wall_s = _seconds_since(run.started_at, end) if last_step or run.finished_at else None
    run.save(update_fields=list(SUMMARY_FIELDS))
    return summary_of(run)
