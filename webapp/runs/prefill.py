"""What the launch form starts with when it is opened from another run:

- ``/runs/new/?from_run=<id>`` ("Run again"): that run's algorithm, dataset, base model,
  rewards and hyperparameters;
- ``/runs/new/?from_checkpoint=<id>`` ("Train from here"): the same, with the checkpoint as
  the base model. A reward model's checkpoint opens the reward-model form with it as the
  backbone to keep fitting;
- ``?base_model=ckpt-<id>`` without an algorithm (older "Train from here" links) is read as
  ``from_checkpoint``.

Plain ``?dataset=``, ``?base_model=``, ``?name=`` and ``?algorithm=`` still pre-fill one field
each (the dataset page's "Train on this dataset"). Another user's run or checkpoint is 404.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import Http404, HttpRequest, QueryDict

from training.algorithms import get_algorithm
from webapp.runs import selectors
from webapp.runs.models import Run

SIMPLE = ("dataset", "base_model", "name")


@dataclass
class Prefill:
    algorithm: str
    initial: dict[str, Any] = field(default_factory=dict)
    rewards: list[dict[str, Any]] | None = None  # None: the form's default reward
    note: str = ""


def _from_run(run: Run, *, base_model: str, name: str, note: str) -> Prefill:
    spec = get_algorithm(run.algorithm)
    if spec is None:
        raise Http404("This run's algorithm is no longer offered.")
    known = {f.name for f in spec.config.hyperparameter_fields()}
    initial: dict[str, Any] = {"name": name[:200], "dataset": run.dataset_id,
                               "base_model": base_model, "tags": ", ".join(run.tags)}
    initial |= {f"hp_{k}": v for k, v in run.hyperparameters.items() if k in known}
    return Prefill(algorithm=run.algorithm, initial=initial,
                   rewards=[dict(r) for r in run.rewards] or None, note=note)


def _checkpoint_id(query: QueryDict) -> str | None:
    if "from_checkpoint" in query:
        return query["from_checkpoint"]
    base = query.get("base_model", "")
    if base.startswith("ckpt-") and "algorithm" not in query:
        return base.removeprefix("ckpt-")
    return None


def prefill_from(request: HttpRequest, *, algorithm: str) -> Prefill:
    """The form's starting values for this request (see the module's docstring)."""
    query = request.GET
    if "from_run" in query:
        run = selectors.run_get_for_user(user=request.user, run_id=query["from_run"])
        return _from_run(run, base_model=run.base_model, name=f"{run.name} (again)",
                         note=f"Settings of run {run.pk} '{run.name}', as it was launched.")
    checkpoint_id = _checkpoint_id(query)
    if checkpoint_id is not None:
        checkpoint = selectors.checkpoint_get_for_user(user=request.user,
                                                       checkpoint_id=checkpoint_id)
        run = checkpoint.run
        return _from_run(run, base_model=checkpoint.model_id,
                         name=f"{run.name} from step {checkpoint.step}",
                         note=f"Starts from checkpoint {checkpoint.model_id} (run {run.pk} "
                              f"'{run.name}', step {checkpoint.step}) with that run's "
                              "settings.")
    return Prefill(algorithm=algorithm,
                   initial={k: query[k] for k in SIMPLE if k in query})
