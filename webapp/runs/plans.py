"""A run's settings checked as one plan: the algorithm, the data set (the owner's, of a kind it
trains on), the base model and reward models (the owner's, of the kinds they take), the
hyperparameters and the deployment's caps. Creating a run stores a plan; estimating its
memory reads one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from training.algorithms import (
    AlgorithmSpec,
    algorithm_ids,
    get_algorithm,
    validate_hyperparameters,
)
from training.config import ConfigError
from training.reward_types import model_references, validate_rewards
from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.selectors import dataset_get_for_user
from webapp.errors import Invalid
from webapp.limits import run_caps_check
from webapp.runs.registry import ModelEntry, model_resolve


def _dataset_for_run(user: AbstractBaseUser, dataset_id: Any, spec: AlgorithmSpec) -> Dataset:
    if dataset_id is None or dataset_id == "":
        raise Invalid("Pick a dataset for the run.", fields={"dataset": "required"})
    try:
        dataset = dataset_get_for_user(user=user, dataset_id=dataset_id)
    except Http404:  # not there, or not this user's
        raise Invalid(f"Dataset {dataset_id} does not exist or is not yours.",
                      fields={"dataset": "unknown dataset"}) from None
    kinds = spec.dataset_kinds
    if dataset.kind not in kinds:
        wanted = " or ".join(DatasetKind(k).label.lower() for k in kinds)
        raise Invalid(f"A {spec.title} run trains on {wanted}; '{dataset.name}' holds "
                      f"{dataset.get_kind_display().lower()}.", fields={"dataset": "wrong kind"})
    return dataset


def _clean_rewards(owner: AbstractBaseUser, spec: AlgorithmSpec, rewards: Any,
                   dataset: Dataset) -> list[dict[str, Any]]:
    """Reward sources checked by their declarations; a source's model must be one of the
    owner's, of a kind the source takes."""
    if not spec.uses_rewards:
        if rewards:
            raise Invalid(f"Reward sources do not apply to {spec.title} runs; leave 'rewards' "
                          "out.", fields={"rewards": "not applicable"})
        return []
    clean = validate_rewards(rewards, columns=list(dataset.columns))
    for i, model_id, kind in model_references(clean):
        model_resolve(user=owner, model_id=model_id, field=f"rewards[{i}]",
                      kinds=kind.model_kinds)
    return clean


@dataclass(frozen=True)
class RunPlan:
    """A run's settings, validated: what :func:`run_create` stores and the estimate reads."""

    spec: AlgorithmSpec
    dataset: Dataset
    entry: ModelEntry
    hyperparameters: dict[str, Any]
    rewards: list[dict[str, Any]]


def run_plan(*, owner: AbstractBaseUser, algorithm: Any, dataset_id: Any, base_model: Any,
             rewards: Any, hyperparameters: Any) -> RunPlan:
    """Every setting of a run checked (Invalid naming the field), nothing stored."""
    spec = get_algorithm(algorithm) if isinstance(algorithm, str) else None
    if spec is None:
        raise Invalid("algorithm must be one of " + ", ".join(algorithm_ids()) + ".",
                      fields={"algorithm": "unsupported"})
    dataset = _dataset_for_run(owner, dataset_id, spec)
    entry = model_resolve(user=owner, model_id=str(base_model or ""), kinds=spec.base_kinds)
    try:
        clean_hp = validate_hyperparameters(algorithm, hyperparameters or {})
        clean_rewards = _clean_rewards(owner, spec, rewards, dataset)
    except ConfigError as exc:
        fields = {(k if k.startswith("rewards") else f"hyperparameters.{k}"): v
                  for k, v in exc.fields.items()}
        raise Invalid(f"Check these settings: {exc}.", fields=fields) from None
    run_caps_check(algorithm=spec.id, hyperparameters=clean_hp)
    return RunPlan(spec, dataset, entry, clean_hp, clean_rewards)
