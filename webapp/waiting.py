"""Where a queued job stands: its place in the workers' queue and what runs ahead of it.

Runs and labeling batches (the playground's included) share one queue, taken oldest first.
What is ahead of a job: every job now running, and every job that waits for a worker and was
created before it. Another user's jobs are counted but not named. The wait is estimated only
when it can be: every job ahead is running and has shown its pace (steps, or prompts
generated), and then the first worker frees up when the soonest of them ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from webapp.labeling.models import CLAIMABLE_STATUSES as BATCH_WAITING
from webapp.labeling.models import Batch, BatchOrigin, BatchStatus
from webapp.runs.models import CLAIMABLE_STATUSES as RUN_WAITING
from webapp.runs.models import Run, RunStatus

SHOWN = 5  # jobs ahead named on a page; the rest are counted


@dataclass(frozen=True)
class Ahead:
    """A job ahead in the queue as the viewer may see it (another user's: no name, no link)."""

    kind: str  # run | labeling batch | playground
    name: str | None
    url: str | None
    status: str
    remaining_s: float | None


@dataclass(frozen=True)
class QueuePlace:
    position: int
    """1: the next job a free worker starts."""
    running: list[Ahead]
    queued: list[Ahead]
    running_total: int
    queued_total: int
    eta_s: float | None

    def as_json(self) -> dict[str, Any]:
        return {"position": self.position, "eta_s": self.eta_s,
                "running": self.running_total, "queued_ahead": self.queued_total}


def _run_remaining_s(run: Run, now: datetime) -> float | None:
    if run.status != RunStatus.RUNNING or not run.started_at or not run.step:
        return None
    pace = (now - run.started_at).total_seconds() / run.step
    return max(0.0, pace * (run.max_steps - run.step))


def _batch_remaining_s(batch: Batch, done: int, now: datetime) -> float | None:
    if batch.status != BatchStatus.GENERATING or not batch.started_at or not done:
        return None
    pace = (now - batch.started_at).total_seconds() / done
    return max(0.0, pace * (batch.items_expected - done))


def _as_run(run: Run, viewer_id: int, now: datetime) -> Ahead:
    mine = run.owner_id == viewer_id
    return Ahead("run", run.name if mine else None,
                 reverse("runs:detail", args=[run.pk]) if mine else None, run.status,
                 _run_remaining_s(run, now))


def _as_batch(batch: Batch, viewer_id: int, now: datetime) -> Ahead:
    mine = batch.owner_id == viewer_id
    kind = "playground" if batch.origin == BatchOrigin.PLAYGROUND else "labeling batch"
    url = None
    if mine:
        url = (reverse("playground:session", args=[batch.pk]) if kind == "playground"
               else reverse("labeling:detail", args=[batch.pk]))
    return Ahead(kind, batch.name if mine else None, url, batch.status,
                 _batch_remaining_s(batch, getattr(batch, "done", 0), now))


def queue_place(*, job: Run | Batch, viewer_id: int) -> QueuePlace | None:
    """The job's place while it waits for a worker; None once it has started or ended."""
    waiting = RUN_WAITING if isinstance(job, Run) else BATCH_WAITING
    if job.status not in waiting:
        return None
    now = timezone.now()
    earlier = Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    runs_queued = Run.objects.filter(earlier, status__in=RUN_WAITING).exclude(
        pk=job.pk if isinstance(job, Run) else None)
    batches_queued = Batch.objects.filter(earlier, status__in=BATCH_WAITING).exclude(
        pk=job.pk if isinstance(job, Batch) else None)
    runs_running = Run.objects.filter(status=RunStatus.RUNNING)
    batches_running = Batch.objects.filter(status=BatchStatus.GENERATING).annotate(
        done=Count("items"))
    running = ([_as_run(r, viewer_id, now) for r in runs_running.order_by("started_at")[:SHOWN]]
               + [_as_batch(b, viewer_id, now)
                  for b in batches_running.order_by("started_at")[:SHOWN]])
    queued = sorted([*runs_queued.order_by("created_at")[:SHOWN],
                     *batches_queued.order_by("created_at")[:SHOWN]],
                    key=lambda j: (j.created_at, j.pk))[:SHOWN]
    running_total = runs_running.count() + batches_running.count()
    queued_total = runs_queued.count() + batches_queued.count()
    eta = None
    if not queued_total and running_total == len(running) and running and all(
            a.remaining_s is not None for a in running):
        eta = min(a.remaining_s for a in running if a.remaining_s is not None)
    return QueuePlace(
        position=queued_total + 1, running=running[:SHOWN],
        queued=[_as_run(j, viewer_id, now) if isinstance(j, Run) else _as_batch(j, viewer_id, now)
                for j in queued],
        running_total=running_total, queued_total=queued_total, eta_s=eta)
