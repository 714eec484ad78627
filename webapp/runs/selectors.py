"""Reads of runs and their results. Every read that takes an id goes through
:func:`run_get_for_user`, so another user's run is a 404 everywhere."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, OrderBy, QuerySet
from django.http import Http404

from training.algorithms import algorithm_ids
from webapp.errors import Invalid
from webapp.runs.models import Checkpoint, Metric, Run, RunStatus, RunTag, Sample
from webapp.runs.summaries import Summary, summary_of

# ?ordering= names and the column each sorts by; "-name" sorts descending. Runs without a
# value (a reward model has no KL) come last either way.
RUN_ORDERINGS = {
    "created_at": "created_at", "name": "name", "status": "status", "algorithm": "algorithm",
    "step": "step", "base_model": "base_model", "dataset": "dataset__name",
    "reward_final": "reward_final", "reward_best": "reward_best", "kl_final": "kl_final",
    "tokens_per_s": "tokens_per_s", "peak_mem_mb": "peak_mem_mb", "wall_s": "wall_s",
}
DEFAULT_ORDERING = "-created_at"
QUERY_MAX = 200


@dataclass(frozen=True)
class RunFilters:
    """What ``GET /api/runs`` and the runs page filter by; None means any."""

    algorithm: str | None = None
    status: str | None = None
    dataset: int | None = None
    base_model: str | None = None
    q: str | None = None
    tag: str | None = None
    ordering: str = DEFAULT_ORDERING

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> RunFilters:
        """From query parameters; a value that cannot be one is a 422 naming it."""
        fields: dict[str, str] = {}

        def text(name: str) -> str | None:
            value = str(params.get(name) or "").strip()
            if len(value) > QUERY_MAX:
                fields[name] = f"at most {QUERY_MAX} characters"
            return value or None

        algorithm, status, base_model, q, tag = (text("algorithm"), text("status"),
                                                 text("base_model"), text("q"), text("tag"))
        if algorithm and algorithm not in algorithm_ids():
            fields["algorithm"] = "one of " + ", ".join(algorithm_ids())
        if status and status not in RunStatus.values:
            fields["status"] = "one of " + ", ".join(RunStatus.values)
        dataset = text("dataset")
        if dataset and not (dataset.isascii() and dataset.isdigit() and len(dataset) < 19):
            fields["dataset"] = "a dataset id"
        ordering = text("ordering") or DEFAULT_ORDERING
        if ordering.removeprefix("-") not in RUN_ORDERINGS:
            fields["ordering"] = "one of " + ", ".join(RUN_ORDERINGS) + " (- for descending)"
        if fields:
            raise Invalid("Check these filters: " + "; ".join(
                f"{k}: {v}" for k, v in fields.items()) + ".", fields=fields)
        return cls(algorithm=algorithm, status=status,
                   dataset=int(dataset) if dataset else None, base_model=base_model, q=q,
                   tag=tag, ordering=ordering)


def _order(ordering: str) -> list[OrderBy]:
    column = F(RUN_ORDERINGS[ordering.removeprefix("-")])
    first = column.desc(nulls_last=True) if ordering.startswith("-") else column.asc(
        nulls_last=True)
    return [first, F("id").desc()]


def run_list(*, user: AbstractBaseUser | AnonymousUser, filters: RunFilters | None = None,
             limit: int = 50, offset: int = 0) -> QuerySet[Run]:
    """The user's runs matching ``filters``, sorted by its ordering, one page of them."""
    return run_filtered(user=user, filters=filters).select_related(
        "dataset").prefetch_related("attempts", "tag_rows")[offset:offset + limit]


def run_filtered(*, user: AbstractBaseUser | AnonymousUser,
                 filters: RunFilters | None = None) -> QuerySet[Run]:
    f = filters or RunFilters()
    qs = Run.objects.filter(owner_id=user.pk)
    if f.algorithm:
        qs = qs.filter(algorithm=f.algorithm)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.dataset is not None:
        qs = qs.filter(dataset_id=f.dataset)
    if f.base_model:
        qs = qs.filter(base_model=f.base_model)
    if f.tag:
        qs = qs.filter(tag_rows__name=f.tag)
    if f.q:
        qs = qs.filter(name__icontains=f.q)
    return qs.order_by(*_order(f.ordering))


def run_base_models(*, user: AbstractBaseUser | AnonymousUser) -> list[str]:
    """The base models the user's runs started from, for the list's filter."""
    return list(Run.objects.filter(owner_id=user.pk).order_by("base_model")
                .values_list("base_model", flat=True).distinct())


def run_tags(*, user: AbstractBaseUser | AnonymousUser) -> list[str]:
    """Every tag on the user's runs, for the list's filter."""
    return list(RunTag.objects.filter(run__owner_id=user.pk).order_by("name")
                .values_list("name", flat=True).distinct())


def run_get_for_user(*, user: AbstractBaseUser | AnonymousUser, run_id: int | str) -> Run:
    try:
        return Run.objects.select_related("dataset", "parent_checkpoint").get(
            pk=int(run_id), owner_id=user.pk)
    except (Run.DoesNotExist, ValueError, TypeError):
        raise Http404("No such run.") from None


def runs_get_for_user(*, user: AbstractBaseUser | AnonymousUser, run_ids: list[int]
                      ) -> list[Run]:
    """The runs in ``run_ids`` order; a 404 when any is missing or another user's (the
    answer does not say which, so ids do not leak)."""
    found = {r.pk: r for r in Run.objects.filter(pk__in=run_ids, owner_id=user.pk)
             .select_related("dataset", "parent_checkpoint__run")
             .prefetch_related("attempts", "tag_rows")}
    if len(found) != len(set(run_ids)):
        raise Http404("No such run.")
    return [found[i] for i in run_ids]


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


def run_samples(*, run: Run, step: int | None = None, prompt: str | None = None
                ) -> tuple[int | None, QuerySet[Sample]]:
    """Samples of ``step`` (default: the latest step that has any) and that step; only
    those of ``prompt`` when given."""
    qs = Sample.objects.filter(run=run)
    if prompt is not None:
        qs = qs.filter(prompt=prompt)
    if step is None:
        latest = qs.order_by("-step").values_list("step", flat=True).first()
        if latest is None:
            return None, qs.none()
        step = latest
    return step, qs.filter(step=step).order_by("index")


def run_sample_steps(*, run: Run, prompt: str | None = None) -> list[int]:
    qs = Sample.objects.filter(run=run)
    if prompt is not None:
        qs = qs.filter(prompt=prompt)
    return list(qs.order_by("step").values_list("step", flat=True).distinct())


def run_children(*, run: Run) -> QuerySet[Run]:
    """The owner's runs that started from one of this run's checkpoints."""
    return (Run.objects.filter(parent_checkpoint__run=run, owner_id=run.owner_id)
            .select_related("parent_checkpoint").order_by("created_at"))


def checkpoint_list(*, run: Run) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run=run).order_by("-step")


def checkpoint_get_for_user(*, user: AbstractBaseUser | AnonymousUser,
                            checkpoint_id: int | str) -> Checkpoint:
    try:
        return Checkpoint.objects.select_related("run").get(pk=int(checkpoint_id),
                                                            run__owner_id=user.pk)
    except (Checkpoint.DoesNotExist, ValueError, TypeError):
        raise Http404("No such checkpoint.") from None


def run_summary(*, run: Run) -> Summary:
    """Headline figures for the run page, as stored when steps were recorded."""
    return summary_of(run)


SPLIT_KEYS = ("eval/pairs", "eval/prompts", "data/train_pairs", "data/prompts")


def reward_model_split(*, run: Run) -> dict[str, int] | None:
    """How a reward-model run split its pairs (from its last evaluation): ``eval_pairs``,
    ``eval_prompts``, ``train_pairs``, ``prompts``; None before the first evaluation."""
    if not run.produces_reward_model:
        return None
    last = (Metric.objects.filter(run=run, key="eval/pairs").order_by("-step")
            .values_list("step", flat=True).first())
    if last is None:
        return None
    values = dict(Metric.objects.filter(run=run, step=last, key__in=SPLIT_KEYS)
                  .values_list("key", "value"))
    names = {"eval/pairs": "eval_pairs", "eval/prompts": "eval_prompts",
             "data/train_pairs": "train_pairs", "data/prompts": "prompts"}
    return {names[k]: int(v) for k, v in values.items()}
