"""Writes to runs. Status changes are guarded transitions (conditional UPDATEs whose row count
says whether they happened); every write from a worker names its attempt and is refused when
that attempt is no longer the run's current one."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.http import Http404
from django.utils import timezone

from training.config import ConfigError, validate_hyperparameters, validate_rewards
from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.selectors import dataset_get_for_user
from webapp.errors import Invalid, ServiceError, WrongState
from webapp.limits import run_caps_check
from webapp.queueing import enqueue
from webapp.runs import events
from webapp.runs.models import Checkpoint, Metric, Run, RunStatus, Sample
from webapp.runs.registry import BASE_KINDS, model_resolve
from webapp.text import clean_name


class StaleAttempt(Exception):
    """The run moved on (cancelled, finished or re-attempted); this attempt must stop."""


# The dataset kinds each algorithm trains on.
DATASET_KINDS = {"grpo": (DatasetKind.PROMPTS,), "ppo": (DatasetKind.PROMPTS,),
                 "reward_model": (DatasetKind.PREFERENCES, DatasetKind.RANKINGS)}


def _dataset_for_run(user: AbstractBaseUser, dataset_id: Any, algorithm: str) -> Dataset:
    if dataset_id is None or dataset_id == "":
        raise Invalid("Pick a dataset for the run.", fields={"dataset": "required"})
    try:
        dataset = dataset_get_for_user(user=user, dataset_id=dataset_id)
    except Http404:  # not there, or not this user's
        raise Invalid(f"Dataset {dataset_id} does not exist or is not yours.",
                      fields={"dataset": "unknown dataset"}) from None
    kinds = DATASET_KINDS[algorithm]
    if dataset.kind not in kinds:
        wanted = " or ".join(DatasetKind(k).label.lower() for k in kinds)
        raise Invalid(f"A {algorithm} run trains on {wanted}; '{dataset.name}' holds "
                      f"{dataset.get_kind_display().lower()}.", fields={"dataset": "wrong kind"})
    return dataset


def _clean_rewards(owner: AbstractBaseUser, algorithm: str, rewards: Any,
                   dataset: Dataset) -> list[dict[str, Any]]:
    """Reward sources checked by the engine's rules, reward models against the registry."""
    if algorithm == "reward_model":
        if rewards:
            raise Invalid("Reward sources do not apply to reward-model runs; leave 'rewards' "
                          "out.", fields={"rewards": "not applicable"})
        return []
    clean = validate_rewards(rewards, columns=list(dataset.columns))
    for i, source in enumerate(clean):
        if source["type"] == "reward_model":
            model_resolve(user=owner, model_id=source["model"], field=f"rewards[{i}]",
                          kinds=("reward",))
    return clean


def run_create(*, owner: AbstractBaseUser, name: str, algorithm: str, dataset_id: Any,
               base_model: str, rewards: Any, hyperparameters: Any) -> Run:
    """Validate everything, store the run as queued, enqueue it once the row is committed."""
    name = clean_name(name or "", what="the run")
    if algorithm not in DATASET_KINDS:
        raise Invalid("algorithm must be one of " + ", ".join(DATASET_KINDS) + ".",
                      fields={"algorithm": "unsupported"})
    dataset = _dataset_for_run(owner, dataset_id, algorithm)
    entry = model_resolve(user=owner, model_id=str(base_model or ""),
                          kinds=BASE_KINDS[algorithm])
    try:
        clean_hp = validate_hyperparameters(algorithm, hyperparameters or {})
        clean_rewards = _clean_rewards(owner, algorithm, rewards, dataset)
    except ConfigError as exc:
        fields = {(k if k.startswith("rewards") else f"hyperparameters.{k}"): v
                  for k, v in exc.fields.items()}
        raise Invalid(f"Check these settings: {exc}.", fields=fields) from None
    run_caps_check(algorithm=algorithm, hyperparameters=clean_hp)
    with transaction.atomic():
        run = Run.objects.create(
            owner=owner, name=name, algorithm=algorithm, dataset=dataset,
            base_model=entry.id, rewards=clean_rewards, hyperparameters=clean_hp,
            max_steps=clean_hp["max_steps"],
            parent_checkpoint_id=entry.checkpoint_id)
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from workers.tasks import train_run_task  # the worker side imports training lazily

    events.reset(run_id)  # before the worker can write to it
    enqueue(train_run_task, run_id, on_failure=lambda error: Run.objects.filter(
        pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=error))


def run_cancel(*, run: Run) -> Run:
    """Queued runs end at once; running ones get the flag their training loop polls."""
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), cancel_requested=True):
        events.publish_end(run.pk, {"status": RunStatus.CANCELLED})
    elif not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            cancel_requested=True):
        run.refresh_from_db()
        raise WrongState(f"The run has already ended ({run.status}).")
    run.refresh_from_db()
    return run


# --- writes from the worker (each names its attempt) ---

def run_claim(*, run_id: int, worker: str) -> int | None:
    """Move a queued run to running with a new attempt id; None if it is not queued."""
    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, attempt=F("attempt") + 1, started_at=timezone.now(),
            heartbeat_at=timezone.now(), worker=worker[:200])
        if not claimed:
            return None
        attempt = Run.objects.values_list("attempt", flat=True).get(pk=run_id)
    events.publish(run_id, "status", {"status": RunStatus.RUNNING, "attempt": attempt})
    return attempt


def _current(run_id: int, attempt: int) -> Any:
    return Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING)


def run_heartbeat(*, run_id: int, attempt: int) -> None:
    if not _current(run_id, attempt).update(heartbeat_at=timezone.now()):
        raise StaleAttempt(f"run {run_id} attempt {attempt} is no longer current")


def run_should_stop(*, run_id: int, attempt: int) -> bool:
    """True once a cancel was asked for, or when this attempt is no longer the run's."""
    flags = _current(run_id, attempt).values_list("cancel_requested", flat=True).first()
    return flags is None or bool(flags)


def run_record_step(*, run_id: int, attempt: int, step: int,
                    metrics: Mapping[str, float]) -> None:
    """Store one step's metrics (idempotent per run/step/key) and push them to live viewers."""
    clean = {k: float(v) for k, v in metrics.items() if v == v}  # drop NaN
    with transaction.atomic():
        if not _current(run_id, attempt).update(step=step, heartbeat_at=timezone.now()):
            raise StaleAttempt(f"run {run_id} attempt {attempt} is no longer current")
        Metric.objects.bulk_create(
            [Metric(run_id=run_id, step=step, key=k, value=v) for k, v in clean.items()],
            ignore_conflicts=True)
    events.publish(run_id, "step", {"step": step, "metrics": clean})


def run_record_samples(*, run_id: int, attempt: int, step: int,
                       samples: Sequence[Mapping[str, Any]]) -> None:
    if not _current(run_id, attempt).exists():
        raise StaleAttempt(f"run {run_id} attempt {attempt} is no longer current")
    Sample.objects.bulk_create([Sample(run_id=run_id, step=step, **s) for s in samples],
                               ignore_conflicts=True)


def run_record_checkpoint(*, run_id: int, attempt: int, step: int, path: str, archive: str,
                          size_bytes: int, sha256: str) -> Checkpoint:
    if not _current(run_id, attempt).exists():
        raise StaleAttempt(f"run {run_id} attempt {attempt} is no longer current")
    checkpoint, _ = Checkpoint.objects.update_or_create(
        run_id=run_id, step=step,
        defaults={"path": path, "archive": archive, "size_bytes": size_bytes, "sha256": sha256})
    events.publish(run_id, "checkpoint", {"step": step, "id": checkpoint.pk})
    return checkpoint


def run_finish(*, run_id: int, attempt: int, status: str, error: str = "",
               stop_reason: str = "") -> bool:
    """End the run (succeeded, failed or cancelled) if this attempt still owns it."""
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        raise ServiceError(f"not a final status: {status}")
    done = _current(run_id, attempt).update(status=status, finished_at=timezone.now(),
                                            error=error[:20_000], stop_reason=stop_reason)
    if done:
        events.publish_end(run_id, {"status": status, "error": error[:2000],
                                    "stop_reason": stop_reason})
    return bool(done)
