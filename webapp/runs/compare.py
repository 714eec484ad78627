"""Reads for comparing runs: the settings diff, the summary with PPO-vs-GRPO ratios, the
overlaid series, and the prompts the runs' samples share."""
from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any, TypedDict

from django.db.models import Count, QuerySet
from django.http import Http404

from webapp.errors import Invalid
from webapp.runs.models import Run, Sample
from webapp.runs.series import Series, series_downsampled
from webapp.runs.summaries import summary_of

COMPARE_MAX_RUNS = 20


def ids_to_compare(*, user: Any, ids: str, tag: str | None) -> list[int]:
    """``?ids=1,2,3``, or with ``?tag=`` alone the user's newest runs with that tag."""
    if ids or not tag:
        return parse_run_ids(ids)
    found = list(Run.objects.filter(owner_id=user.pk, tag_rows__name=tag.strip()[:100])
                 .order_by("-created_at", "-id").values_list("pk", flat=True)
                 [:COMPARE_MAX_RUNS])
    if not found:
        raise Invalid(f"None of your runs has the tag '{tag[:100]}'.",
                      fields={"tag": "no run has it"})
    return found


def parse_run_ids(raw: str) -> list[int]:
    """``1,2,3`` -> ids, in order, without repeats. Anything that is not a canonical id is
    a 404, like an id that is not yours."""
    parts = [p for p in (raw or "").split(",") if p != ""]
    if not parts:
        raise Invalid("Name the runs to compare: ?ids=1,2,3.", fields={"ids": "required"})
    if len(parts) > COMPARE_MAX_RUNS:
        raise Invalid(f"Compare at most {COMPARE_MAX_RUNS} runs at once.",
                      fields={"ids": f"at most {COMPARE_MAX_RUNS}"})
    ids: list[int] = []
    for part in parts:
        if not (part.isascii() and part.isdigit()) or part != str(int(part)) or len(part) > 18:
            raise Http404("No such run.")
        if int(part) not in ids:
            ids.append(int(part))
    return ids


class DiffRow(TypedDict):
    field: str
    values: list[Any]
    differs: bool


def run_settings(run: Run) -> dict[str, Any]:
    """A run's settings flattened to ``field: value``: what it is, what it started from,
    each reward source's fields, each hyperparameter."""
    out: dict[str, Any] = {
        "algorithm": run.algorithm, "base_model": run.base_model,
        "parent_checkpoint": run.parent_checkpoint_id, "dataset": run.dataset_id}
    for i, source in enumerate(run.rewards):
        for name, value in source.items():
            out[f"rewards[{i}].{name}"] = value
    for name, value in run.hyperparameters.items():
        out[f"hyperparameters.{name}"] = value
    return out


def run_settings_diff(runs: Sequence[Run]) -> list[DiffRow]:
    """One row per setting any of the runs has (None where a run lacks it), in a stable
    order: identity, rewards, hyperparameters; ``differs`` when the values are not all
    equal."""
    settings = [run_settings(r) for r in runs]
    fields: dict[str, None] = {}
    for s in settings:
        fields.update(dict.fromkeys(s))
    rows: list[DiffRow] = []
    for name in fields:
        values = [s.get(name) for s in settings]
        rows.append({"field": name, "values": values,
                     "differs": any(v != values[0] for v in values[1:])})
    return rows


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def ppo_grpo_ratios(runs: Sequence[Run]) -> dict[str, float] | None:
    """When PPO and GRPO runs are compared: PPO's peak memory and tokens/s over GRPO's
    (means over the runs of each), the seed articles' "about half the memory" measured."""
    by_algo = {a: [summary_of(r) for r in runs if r.algorithm == a] for a in ("ppo", "grpo")}
    if not by_algo["ppo"] or not by_algo["grpo"]:
        return None
    out: dict[str, float] = {}
    for field in ("peak_mem_mb", "tokens_per_s"):
        ppo = _mean([s[field] for s in by_algo["ppo"]])  # type: ignore[literal-required]
        grpo = _mean([s[field] for s in by_algo["grpo"]])  # type: ignore[literal-required]
        if ppo is not None and grpo:
            out[f"{field}_ppo_over_grpo"] = ppo / grpo
    return out or None


def compare_series(runs: Sequence[Run], *, keys: Sequence[str] | None, points: int,
                   x: str) -> dict[str, Series]:
    return {str(r.pk): series_downsampled(run=r, points=points, keys=keys, x=x) for r in runs}


def sample_prompts(runs: Sequence[Run], *, limit: int = 100) -> QuerySet[Any]:
    """Prompts that occur in the runs' samples, those in the most runs first:
    ``{"prompt", "runs", "samples"}``."""
    return (Sample.objects.filter(run__in=[r.pk for r in runs]).values("prompt")
            .annotate(runs=Count("run", distinct=True), samples=Count("id"))
            .order_by("-runs", "-samples", "prompt")[:limit])
