"""The worker's writes to a run, each naming its attempt, and the reaper's.

A write whose attempt is no longer the run's current running one raises
:class:`StaleAttempt`, so a zombie worker (reaped, cancelled, superseded) corrupts nothing.
A new attempt of a run that crashed or was interrupted resumes from its last recorded
checkpoint: in the same transaction that claims the run, the metrics, samples and blocks the
dead attempt wrote after that checkpoint are removed, so every step appears exactly once.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from webapp import jobs
from webapp.queueing import TRAIN_RUN_TASK
from webapp.runs import events, series
from webapp.runs.models import (
    CLAIMABLE_STATUSES,
    AttemptOutcome,
    Checkpoint,
    Metric,
    Run,
    RunAttempt,
    RunStatus,
    Sample,
)
from webapp.runs.summaries import summary_refresh, summary_update_for_step

RUN_JOB = jobs.JobKind(name="run", model=Run, running=str(RunStatus.RUNNING),
                       claimable=tuple(str(s) for s in CLAIMABLE_STATUSES),
                       crashed=str(RunStatus.CRASHED), failed=str(RunStatus.FAILED),
                       task=TRAIN_RUN_TASK)
FINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
StaleAttempt = jobs.StaleAttempt


def run_enqueue(run_id: int, *, fresh: bool = True) -> None:
    """Queue a training task for the run. A fresh run starts with an empty event stream; a
    requeued one (crashed or interrupted: it resumes from its checkpoint) keeps its stream
    for the viewers it already has."""
    if fresh:
        events.reset(run_id)  # before the worker can write to it
    jobs.job_enqueue(RUN_JOB, run_id)


def requeue(run_id: int) -> None:
    run_enqueue(run_id, fresh=False)


def _current(run_id: int, attempt: int) -> Any:
    return jobs.job_current(RUN_JOB, run_id, attempt)


def _stale(run_id: int, attempt: int) -> StaleAttempt:
    return StaleAttempt(f"run {run_id} attempt {attempt} is no longer current")


def last_checkpoint(*, run_id: int) -> Checkpoint | None:
    return Checkpoint.objects.filter(run_id=run_id).order_by("-step").first()


def _forget_after(run: Run, step: int) -> None:
    """Remove what the run recorded after ``step`` and put its counters back there."""
    Metric.objects.filter(run=run, step__gt=step).delete()
    Sample.objects.filter(run=run, step__gt=step).delete()
    series.blocks_truncate(run_id=run.pk, after_step=step)
    Run.objects.filter(pk=run.pk).update(step=step)
    run.step = step
    summary_refresh(run=run)


def run_claim(*, run_id: int, worker: str, task_id: str = "", pid: int | None = None
              ) -> int | None:
    """Claim a queued, crashed or resuming run for a new attempt; its number, or None when
    the run is not waiting for a worker. A later attempt resumes from the last checkpoint
    (or from step 0 when there is none)."""
    with transaction.atomic():
        attempt = jobs.job_claim(RUN_JOB, run_id, worker=worker, task_id=task_id)
        if attempt is None:
            return None
        run = Run.objects.get(pk=run_id)
        resumed_from = None
        if attempt > 1:
            checkpoint = last_checkpoint(run_id=run_id)
            resumed_from = checkpoint.step if checkpoint else 0
            _forget_after(run, resumed_from)
        Run.objects.filter(pk=run_id).update(interrupt_requested=False)
        RunAttempt.objects.create(run_id=run_id, attempt=attempt, worker=worker[:200],
                                  started_at=timezone.now(), resumed_from_step=resumed_from,
                                  task_id=task_id[:200], pid=pid)
    events.publish(run_id, "status", {"status": RunStatus.RUNNING, "attempt": attempt})
    if resumed_from is not None:
        events.publish(run_id, "resume", {"step": resumed_from, "attempt": attempt})
    return attempt


def run_heartbeat(*, run_id: int, attempt: int) -> None:
    if not jobs.job_heartbeat(RUN_JOB, run_id, attempt):
        raise _stale(run_id, attempt)


def run_should_stop(*, run_id: int, attempt: int) -> bool:
    """True once a cancel was asked for, the worker is shutting down, or this attempt is no
    longer the run's."""
    flags = _current(run_id, attempt).values_list("cancel_requested",
                                                  "interrupt_requested").first()
    return flags is None or any(flags)


def run_set_total_steps(*, run_id: int, attempt: int, total: int) -> None:
    """The run's length as its engine worked it out (a reward model's epochs), for the
    progress bar and ETA."""
    if not _current(run_id, attempt).update(max_steps=max(1, int(total))):
        raise _stale(run_id, attempt)
    events.publish(run_id, "plan", {"max_steps": int(total)})


def run_record_step(*, run_id: int, attempt: int, step: int,
                    metrics: Mapping[str, float]) -> None:
    """Store one step's metrics (idempotent per run/step/key), fold them into the summary,
    build the blocks that end at this step, and push them to live viewers."""
    clean = {k: float(v) for k, v in metrics.items() if v == v}  # drop NaN
    now = timezone.now()
    with transaction.atomic():
        current = _current(run_id, attempt)
        algorithm, started_at = current.values_list("algorithm", "started_at").first() or (
            None, None)
        if algorithm is None or not current.update(
                step=step, heartbeat_at=now, **summary_update_for_step(
                    algorithm=algorithm, metrics=clean, started_at=started_at, now=now)):
            raise _stale(run_id, attempt)
        Metric.objects.bulk_create(
            [Metric(run_id=run_id, step=step, key=k, value=v) for k, v in clean.items()],
            ignore_conflicts=True)
        series.blocks_build_at(run_id=run_id, step=step)
    events.publish(run_id, "step", {"step": step, "metrics": clean})


def run_record_samples(*, run_id: int, attempt: int, step: int,
                       samples: Sequence[Mapping[str, Any]]) -> None:
    if not _current(run_id, attempt).exists():
        raise _stale(run_id, attempt)
    Sample.objects.bulk_create([Sample(run_id=run_id, step=step, **s) for s in samples],
                               ignore_conflicts=True)


def run_record_checkpoint(*, run_id: int, attempt: int, step: int, path: str, archive: str,
                          size_bytes: int, sha256: str) -> Checkpoint:
    """Record a checkpoint that is complete on disk, if this attempt is still current."""
    with transaction.atomic():
        if not _current(run_id, attempt).select_for_update().exists():
            raise _stale(run_id, attempt)
        checkpoint, _ = Checkpoint.objects.update_or_create(
            run_id=run_id, step=step, defaults={"path": path, "archive": archive,
                                                "size_bytes": size_bytes, "sha256": sha256})
    events.publish(run_id, "checkpoint", {"step": step, "id": checkpoint.pk})
    return checkpoint


def _end_attempt(run_id: int, attempt: int, outcome: str) -> None:
    RunAttempt.objects.filter(run_id=run_id, attempt=attempt).update(
        ended_at=timezone.now(), outcome=outcome)


def run_finish(*, run_id: int, attempt: int, status: str, error: str = "",
               stop_reason: str = "") -> bool:
    """End the run (succeeded, failed or cancelled) if this attempt still owns it."""
    if status not in FINAL:
        raise ValueError(f"not a final status: {status}")
    now = timezone.now()
    with transaction.atomic():
        started_at = _current(run_id, attempt).values_list("started_at", flat=True).first()
        done = _current(run_id, attempt).update(
            status=status, finished_at=now, error=error[:20_000], stop_reason=stop_reason,
            wall_s=(now - started_at).total_seconds() if started_at else None)
        if done:
            _end_attempt(run_id, attempt, AttemptOutcome(status))
    if done:
        events.publish_end(run_id, {"status": status, "error": error[:2000],
                                    "stop_reason": stop_reason})
    return bool(done)


def run_interrupted(*, run_id: int, attempt: int) -> bool:
    """The attempt stopped because its worker is shutting down, after writing a checkpoint:
    the run goes back to the queue (``resuming``) for the next worker."""
    with transaction.atomic():
        done = _current(run_id, attempt).update(status=RunStatus.RESUMING,
                                                interrupt_requested=False)
        if done:
            _end_attempt(run_id, attempt, str(AttemptOutcome.INTERRUPTED))
            transaction.on_commit(lambda: requeue(run_id))
    if done:
        events.publish(run_id, "status", {"status": RunStatus.RESUMING, "attempt": attempt})
    return bool(done)


def runs_interrupt_worker(*, worker: str) -> int:
    """Ask every run the worker is training to stop at the next step and checkpoint (the
    worker got SIGTERM: a deploy, ``docker compose stop``)."""
    return Run.objects.filter(worker=worker, status=RunStatus.RUNNING).update(
        interrupt_requested=True)


def _on_reaped(run: Run, requeued: bool) -> None:
    _end_attempt(run.pk, run.attempt, str(AttemptOutcome.CRASHED))
    if requeued:
        transaction.on_commit(lambda: requeue(run.pk))
        transaction.on_commit(lambda: events.publish(
            run.pk, "status", {"status": RunStatus.CRASHED, "attempt": run.attempt}))
    else:
        transaction.on_commit(lambda: events.publish_end(
            run.pk, {"status": RunStatus.FAILED, "error": run.error[:2000],
                     "stop_reason": "crashed"}))


def runs_reap(**kwargs: Any) -> list[jobs.Reaped]:
    """Crashed runs (no heartbeat for the timeout): requeued to resume, or failed."""
    return jobs.jobs_reap(RUN_JOB, on_reaped=_on_reaped, **kwargs)


def runs_resend_lost(**kwargs: Any) -> list[int]:
    """Runs waiting for a worker whose task the broker lost: queued again
    (:func:`webapp.jobs.jobs_resend_lost`)."""
    return jobs.jobs_resend_lost(RUN_JOB, resend=requeue, **kwargs)
