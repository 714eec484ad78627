"""Writes to runs a person makes: create, cancel. Status changes are guarded transitions
(conditional UPDATEs whose row count says whether they happened). The worker's writes, each
naming its attempt, are in :mod:`webapp.runs.attempts`."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import Http404
from django.utils import timezone

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
from webapp.errors import Invalid, WrongState
from webapp.jobs import drop_task
from webapp.limits import run_caps_check
from webapp.runs import events
from webapp.runs.attempts import run_enqueue
from webapp.runs.models import CLAIMABLE_STATUSES, Run, RunStatus, RunTag
from webapp.runs.registry import model_resolve
from webapp.runs.tags import clean_notes, clean_tags
from webapp.text import clean_name


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


def run_create(*, owner: AbstractBaseUser, name: str, algorithm: str, dataset_id: Any,
               base_model: str, rewards: Any, hyperparameters: Any, tags: Any = None,
               notes: Any = None) -> Run:
    """Validate everything, store the run as queued, enqueue it once the row is committed."""
    name = clean_name(name or "", what="the run")
    tags, notes = clean_tags(tags), clean_notes(notes)
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
    run_caps_check(algorithm=algorithm, hyperparameters=clean_hp)
    with transaction.atomic():
        run = Run.objects.create(
            owner=owner, name=name, algorithm=algorithm, dataset=dataset,
            base_model=entry.id, rewards=clean_rewards, hyperparameters=clean_hp,
            max_steps=spec.config(**clean_hp).planned_steps(dataset.rows), notes=notes,
            parent_checkpoint_id=entry.checkpoint_id)
        RunTag.objects.bulk_create(RunTag(run=run, name=tag) for tag in tags)
        transaction.on_commit(lambda: run_enqueue(run.pk))
    return run


def run_update(*, run: Run, tags: Any = None, notes: Any = None) -> Run:
    """Replace the run's tags and/or notes (None leaves one as it is); any state."""
    clean = clean_tags(tags) if tags is not None else None
    text = clean_notes(notes) if notes is not None else None
    with transaction.atomic():
        if text is not None:
            Run.objects.filter(pk=run.pk).update(notes=text)
        if clean is not None:
            RunTag.objects.filter(run=run).exclude(name__in=clean).delete()
            have = set(RunTag.objects.filter(run=run).values_list("name", flat=True))
            RunTag.objects.bulk_create(RunTag(run=run, name=t) for t in clean if t not in have)
    run.refresh_from_db()
    return run


def run_cancel(*, run: Run) -> Run:
    """Runs waiting for a worker (queued, crashed, resuming) end at once and their task is
    dropped from the queue; running ones get the flag their training loop polls."""
    if Run.objects.filter(pk=run.pk, status__in=CLAIMABLE_STATUSES).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), cancel_requested=True):
        drop_task(run.task_id)
        events.publish_end(run.pk, {"status": RunStatus.CANCELLED})
    elif not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            cancel_requested=True):
        run.refresh_from_db()
        raise WrongState(f"The run has already ended ({run.status}).")
    run.refresh_from_db()
    return run

