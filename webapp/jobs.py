"""The life cycle runs and labeling batches share: enqueue, claim, heartbeat, current attempt,
stale attempts, reap.

A job row moves from a claimable status (queued, or crashed / resuming after a lost or
stopped attempt) to its running status by one conditional UPDATE that also bumps ``attempt``;
the row count says whether this worker won. Every later write of the attempt is guarded by
``status = running AND attempt = n``, so a zombie attempt (reaped, cancelled, superseded)
can write nothing. The reaper marks a job whose heartbeat is older than the timeout as
crashed, stops its task (a hung process does not stop on its own), and queues a new attempt
while the job has crashes left; out of them, the job fails with the reason. It also sends
again the task of a job that waits for a worker while the broker no longer holds that task
(Redis restarted without persistence, its data flushed): such a job would wait for ever.

Runs add their own steps (attempt rows, resuming from a checkpoint) around these in
:mod:`webapp.runs.services`; batches use them as they are.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is stored and run: its model, the statuses of its life cycle, and
    the name of the worker task that runs it."""

    name: str
    model: type[models.Model]
    running: str
    claimable: tuple[str, ...]
    crashed: str
    failed: str
    task: str


class StaleAttempt(Exception):
    """The job moved on (cancelled, finished, reaped or re-attempted); this attempt must
    stop."""


def job_enqueue(kind: JobKind, pk: int) -> None:
    """Send the job's task (by name) and remember its id, to drop it when the job is
    cancelled first; when the broker cannot be reached the job fails, saying why."""
    from webapp.queueing import enqueue

    task_id = enqueue(kind.task, pk, on_failure=lambda error: kind.model.objects.filter(
        pk=pk, status__in=kind.claimable).update(status=kind.failed,
                                                 finished_at=timezone.now(), error=error))
    if task_id:
        kind.model.objects.filter(pk=pk, status__in=kind.claimable).update(task_id=task_id)


def job_claim(kind: JobKind, pk: int, *, worker: str, task_id: str = "") -> int | None:
    """Move a claimable job to running with a new attempt; its number, or None when the job
    is not claimable (cancelled, finished, or claimed by another worker first). Call inside
    a transaction when more must happen atomically with the claim."""
    now = timezone.now()
    claimed = kind.model.objects.filter(pk=pk, status__in=kind.claimable).update(
        status=kind.running, attempt=F("attempt") + 1, heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now), worker=worker[:200],
        task_id=task_id[:200])
    if not claimed:
        return None
    return int(kind.model.objects.values_list("attempt", flat=True).get(pk=pk))


def job_current(kind: JobKind, pk: int, attempt: int) -> QuerySet[Any]:
    """The job as long as ``attempt`` is its running attempt (else an empty queryset)."""
    return kind.model.objects.filter(pk=pk, attempt=attempt, status=kind.running)


def job_heartbeat(kind: JobKind, pk: int, attempt: int) -> bool:
    """Mark the attempt alive; False when it is no longer current."""
    return bool(job_current(kind, pk, attempt).update(heartbeat_at=timezone.now()))


def stop_task(task_id: str) -> None:
    """Kill the worker process that executes ``task_id`` (a hung task heartbeats no more and
    would hold its worker for ever), or drop the task from the queue if it has not started.
    Best effort: a worker that is gone has nothing to stop."""
    if not task_id:
        return
    from webapp.queueing import producer

    try:
        producer().control.revoke(task_id, terminate=True, signal="SIGKILL")
    except Exception:  # the broker is down: the task's heartbeat check will catch it later
        log.exception("could not revoke task %s", task_id)


def drop_task(task_id: str) -> None:
    """Tell the workers to discard a queued task unrun (a cancelled job)."""
    if not task_id:
        return
    from webapp.queueing import producer

    try:
        producer().control.revoke(task_id)
    except Exception:
        log.exception("could not revoke task %s", task_id)


@dataclass(frozen=True)
class Reaped:
    pk: int
    attempt: int
    requeued: bool


def jobs_reap(kind: JobKind, *, on_reaped: Callable[[Any, bool], None],
              timeout_s: float | None = None, max_attempts: int | None = None) -> list[Reaped]:
    """Every running job of ``kind`` whose heartbeat is older than ``timeout_s``: crashed and
    requeued while it has crashes left (``max_attempts`` in all), failed otherwise.
    ``on_reaped(job, requeued)`` runs inside the same transaction (attempt rows, events,
    the requeue on commit)."""
    timeout_s = settings.RLHF_HEARTBEAT_TIMEOUT_S if timeout_s is None else timeout_s
    max_attempts = settings.RLHF_MAX_ATTEMPTS if max_attempts is None else max_attempts
    cutoff = timezone.now() - timedelta(seconds=timeout_s)
    reaped = []
    for job in kind.model.objects.filter(status=kind.running, heartbeat_at__lt=cutoff):
        requeue = job.crashes + 1 < max_attempts
        with transaction.atomic():
            changed = kind.model.objects.filter(
                pk=job.pk, status=kind.running, attempt=job.attempt,
                heartbeat_at__lt=cutoff).update(
                    status=kind.crashed if requeue else kind.failed,
                    crashes=F("crashes") + 1,
                    **({} if requeue else {"finished_at": timezone.now(),
                                           "error": _gave_up(job, timeout_s)}))
            if not changed:
                continue  # it sent a heartbeat meanwhile, or moved on
            job.refresh_from_db()
            on_reaped(job, requeue)
        stop_task(job.task_id)
        log.warning("%s %s attempt %s lost its heartbeat: %s", kind.name, job.pk, job.attempt,
                    "requeued" if requeue else "failed")
        reaped.append(Reaped(job.pk, job.attempt, requeue))
    return reaped


def _gave_up(job: Any, timeout_s: float) -> str:
    return (f"Gave up after {job.crashes + 1} attempts: each time the worker stopped sending "
            f"heartbeats for over {timeout_s:g} s (killed, out of memory, or hung). Attempt "
            f"{job.attempt} ran on {job.worker or 'an unknown worker'}.")


def jobs_resend_lost(kind: JobKind, *, waiting: set[str], missing_since: dict[int, float],
                     now: float, grace_s: float, resend: Callable[[int], None]) -> list[int]:
    """Jobs of ``kind`` that wait for a worker (claimable) while their task is not among
    ``waiting`` (the broker's task ids, :func:`webapp.queueing.queued_task_ids`): sent again
    once they have been missing for ``grace_s`` seconds by the clock ``now``. A task that a
    worker has just taken from the queue is missing for the moment until its job is claimed,
    hence the grace; a duplicate could anyway run nothing, since only one claim wins.
    ``missing_since`` (job id -> when first seen missing) is the caller's memory between
    passes, updated here. Returns the ids sent again."""
    waiting_jobs = kind.model.objects.filter(status__in=kind.claimable).values_list(
        "pk", "task_id")
    lost = {pk for pk, task_id in waiting_jobs if task_id and task_id not in waiting}
    for pk in list(missing_since):
        if pk not in lost:
            del missing_since[pk]  # found, claimed or ended meanwhile
    resent = []
    for pk in sorted(lost):
        first = missing_since.setdefault(pk, now)
        if now - first >= grace_s:
            log.warning("%s %s waits for a worker but the queue lost its task: sent again",
                        kind.name, pk)
            resend(pk)
            resent.append(pk)
            del missing_since[pk]
    return resent
