"""The run life cycle without workers: reaping, resuming from the last checkpoint, stale
attempts' late writes, the attempt budget, cancelling runs that wait for a worker."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.runs_helpers import grpo_metrics, make_dataset, make_run
from webapp.runs import attempts, summaries
from webapp.runs.models import Checkpoint, Metric, MetricBlock, Run, RunAttempt, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(user, settings):
    settings.TRAINING_QUEUE = "test-nobody-listens"  # requeued attempts must not start here
    run = make_run(user, make_dataset(user), steps=12, finish=None)
    for step in (4, 8):
        Checkpoint.objects.create(run=run, step=step, path=f"p{step}", archive=f"p{step}.zip",
                                  size_bytes=1, sha256="0" * 64)
    return run


def _silence(run: Run, seconds: float = 600) -> None:
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_a_live_heartbeat_is_not_reaped(running):
    assert attempts.runs_reap(timeout_s=60) == []
    assert Run.objects.get(pk=running.pk).status == RunStatus.RUNNING


def test_a_silent_run_is_crashed_requeued_and_resumed_from_its_last_checkpoint(running):
    _silence(running)
    [reaped] = attempts.runs_reap(timeout_s=60, max_attempts=3)
    assert reaped.requeued
    run = Run.objects.get(pk=running.pk)
    assert (run.status, run.crashes) == (RunStatus.CRASHED, 1)
    assert RunAttempt.objects.get(run=run, attempt=1).outcome == "crashed"

    assert attempts.run_claim(run_id=run.pk, worker="w2") == 2
    run.refresh_from_db()
    assert (run.status, run.step) == (RunStatus.RUNNING, 8)
    steps = sorted(set(Metric.objects.filter(run=run).values_list("step", flat=True)))
    assert steps == list(range(1, 9))  # what attempt 1 wrote after step 8 is gone
    ends = [b.start + b.width - 1 for b in MetricBlock.objects.filter(run=run)]
    assert ends and max(ends) == 8
    assert run.reward_final == pytest.approx(grpo_metrics(8)["reward/mean"])
    stored = summaries.summary_of(run)
    del stored["wall_s"]  # of a running run: until now, so it differs from call to call
    assert stored == pytest.approx({k: v for k, v in summaries.summary_refresh(run=run).items()
                                    if k != "wall_s"})
    assert RunAttempt.objects.get(run=run, attempt=2).resumed_from_step == 8


def test_the_dead_attempts_late_writes_are_refused_after_the_resume(running):
    _silence(running)
    attempts.runs_reap(timeout_s=60)
    attempts.run_claim(run_id=running.pk, worker="w2")
    for write in (
        lambda: attempts.run_record_step(run_id=running.pk, attempt=1, step=13,
                                         metrics={"reward/mean": 1.0}),
        lambda: attempts.run_record_samples(run_id=running.pk, attempt=1, step=13, samples=[]),
        lambda: attempts.run_record_checkpoint(run_id=running.pk, attempt=1, step=13,
                                               path="zombie", archive="zombie.zip",
                                               size_bytes=1, sha256="0" * 64),
        lambda: attempts.run_heartbeat(run_id=running.pk, attempt=1),
    ):
        with pytest.raises(attempts.StaleAttempt):
            write()
    assert not attempts.run_finish(run_id=running.pk, attempt=1, status=RunStatus.SUCCEEDED)
    assert not attempts.run_interrupted(run_id=running.pk, attempt=1)
    assert attempts.run_should_stop(run_id=running.pk, attempt=1)
    assert not Checkpoint.objects.filter(path="zombie").exists()
    assert Run.objects.get(pk=running.pk).step == 8


def test_a_run_without_a_checkpoint_restarts_from_step_0_with_its_series_cleared(running):
    Checkpoint.objects.filter(run=running).delete()
    _silence(running)
    attempts.runs_reap(timeout_s=60)
    attempts.run_claim(run_id=running.pk, worker="w2")
    assert not Metric.objects.filter(run=running).exists()
    assert RunAttempt.objects.get(run=running, attempt=2).resumed_from_step == 0


def test_out_of_attempts_the_run_fails_with_the_reason(running):
    for attempt in (1, 2):
        _silence(running)
        assert attempts.runs_reap(timeout_s=60, max_attempts=3)[0].requeued
        assert attempts.run_claim(run_id=running.pk, worker=f"w{attempt + 1}") == attempt + 1
    _silence(running)
    [reaped] = attempts.runs_reap(timeout_s=60, max_attempts=3)
    run = Run.objects.get(pk=running.pk)
    assert not reaped.requeued and run.status == RunStatus.FAILED and run.finished_at
    assert "Gave up after 3 attempts" in run.error and "heartbeats" in run.error


def test_cancelling_a_crashed_run_ends_it_at_once(running, api, user):
    _silence(running)
    attempts.runs_reap(timeout_s=60)
    response = api.post(f"/api/runs/{running.pk}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert attempts.run_claim(run_id=running.pk, worker="late") is None


def test_a_worker_shutting_down_interrupts_only_its_own_runs(running, user):
    other = make_run(user, running.dataset, steps=1, finish=None)
    Run.objects.filter(pk=other.pk).update(worker="somebody-else")
    assert attempts.runs_interrupt_worker(worker="test-worker") == 1
    assert attempts.run_should_stop(run_id=running.pk, attempt=1)
    assert not attempts.run_should_stop(run_id=other.pk, attempt=1)
    assert attempts.run_interrupted(run_id=running.pk, attempt=1)
    run = Run.objects.get(pk=running.pk)
    assert (run.status, run.interrupt_requested, run.crashes) == (RunStatus.RESUMING, False, 0)
    assert RunAttempt.objects.get(run=run, attempt=1).outcome == "interrupted"
    assert attempts.run_claim(run_id=run.pk, worker="next") == 2
