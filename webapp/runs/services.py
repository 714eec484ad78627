"""Writes to runs a person makes: create, cancel. Status changes are guarded transitions
(conditional UPDATEs whose row count says whether they happened). The worker's writes, each
naming its attempt, are in :mod:`webapp.runs.attempts`."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from webapp.errors import WrongState
from webapp.jobs import drop_task
from webapp.runs import events
from webapp.runs.attempts import run_enqueue
from webapp.runs.estimates import refuse_if_too_large
from webapp.runs.models import CLAIMABLE_STATUSES, Run, RunStatus, RunTag
from webapp.runs.plans import run_plan
from webapp.runs.tags import clean_notes, clean_tags
from webapp.text import clean_name


def run_create(*, owner: AbstractBaseUser, name: str, algorithm: str, dataset_id: Any,
               base_model: str, rewards: Any, hyperparameters: Any, tags: Any = None,
               notes: Any = None) -> Run:
    """Validate everything, store the run as queued, enqueue it once the row is committed.
    A run no worker up now could hold is refused (422), saying what would shrink it."""
    name = clean_name(name or "", what="the run")
    tags, notes = clean_tags(tags), clean_notes(notes)
    plan = run_plan(owner=owner, algorithm=algorithm, dataset_id=dataset_id,
                    base_model=base_model, rewards=rewards, hyperparameters=hyperparameters)
    refuse_if_too_large(owner=owner, plan=plan)
    spec, dataset, entry = plan.spec, plan.dataset, plan.entry
    with transaction.atomic():
        run = Run.objects.create(
            owner=owner, name=name, algorithm=spec.id, dataset=dataset,
            base_model=entry.id, rewards=plan.rewards, hyperparameters=plan.hyperparameters,
            max_steps=spec.config(**plan.hyperparameters).planned_steps(dataset.rows),
            notes=notes, parent_checkpoint_id=entry.checkpoint_id)
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

