"""Reads of runs and their results. Every read that takes an id goes through
:func:`run_get_for_user`, so another user's run is a 404 everywhere."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, QuerySet
from django.http import Http404

from webapp.runs.models import Checkpoint, Metric, Run, Sample


def run_list(*, user: AbstractBaseUser | AnonymousUser, limit: int = 50,
             offset: int = 0) -> QuerySet[Run]:
    qs = Run.objects.filter(owner_id=user.pk).select_related("dataset")
    return qs[offset:offset + limit]


def run_get_for_user(*, user: AbstractBaseUser | AnonymousUser, run_id: int | str) -> Run:
    try:
        return Run.objects.select_related("dataset", "parent_checkpoint").get(
            pk=int(run_id), owner_id=user.pk)
    except (Run.DoesNotExist, ValueError, TypeError):
        raise Http404("No such run.") from None


def run_metrics_since(*, run: Run, after: int = 0) -> dict[str, Any]:
    """``{"last_step", "series": {key: {"x": [steps], "y": [values]}}}`` for steps > after."""
    series: dict[str, dict[str, list[float]]] = {}
    last = after
    rows = (Metric.objects.filter(run=run, step__gt=after)
            .order_by("step", "key").values_list("step", "key", "value"))
    for step, key, value in rows.iterator(chunk_size=5000):
        s = series.setdefault(key, {"x": [], "y": []})
        s["x"].append(step)
        s["y"].append(value)
        last = max(last, step)
    return {"last_step": last, "series": series}


def run_samples(*, run: Run, step: int | None = None) -> tuple[int | None, QuerySet[Sample]]:
    """Samples of ``step`` (default: the latest step that has any) and that step."""
    qs = Sample.objects.filter(run=run)
    if step is None:
        latest = qs.order_by("-step").values_list("step", flat=True).first()
        if latest is None:
            return None, qs.none()
        step = latest
    return step, qs.filter(step=step).order_by("index")


def run_sample_steps(*, run: Run) -> list[int]:
    return list(Sample.objects.filter(run=run).order_by("step")
                .values_list("step", flat=True).distinct())


def checkpoint_list(*, run: Run) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run=run).order_by("-step")


def checkpoint_get_for_user(*, user: AbstractBaseUser | AnonymousUser,
                            checkpoint_id: int | str) -> Checkpoint:
    try:
        return Checkpoint.objects.select_related("run").get(pk=int(checkpoint_id),
                                                            run__owner_id=user.pk)
    except (Checkpoint.DoesNotExist, ValueError, TypeError):
        raise Http404("No such checkpoint.") from None


def run_summary(*, run: Run) -> dict[str, float | None]:
    """Headline figures for the run page: peak memory, last throughput, time spent."""
    metrics = Metric.objects.filter(run=run)
    peak = metrics.filter(key="perf/peak_mem_mb").aggregate(v=Max("value"))["v"]
    last = {key: value for key, value in metrics.filter(
        key__in=("perf/tokens_per_s", "perf/elapsed_s"), step=run.step).values_list(
        "key", "value")}
    return {"peak_mem_mb": peak, "tokens_per_s": last.get("perf/tokens_per_s"),
            "elapsed_s": last.get("perf/elapsed_s")}
