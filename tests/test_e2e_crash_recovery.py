"""Crash recovery end to end, with real worker processes, the real reaper process and the real
Redis: a worker child killed mid-run (as an OOM kill does), a worker asked to stop (a deploy),
and a hung child are each followed by a new attempt that resumes from the last checkpoint and
succeeds with every step exactly once. Short heartbeat timeouts come through the settings."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.conftest import PROMPTS, ROOT, WorkerProcess, upload_prompts, wait_for, worker_env
from webapp.runs.models import Metric, Run, RunAttempt, Sample

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Heartbeats every second, reaped after four silent seconds, checked every second.
FAST = {"RLHF_HEARTBEAT_INTERVAL_S": "1", "RLHF_HEARTBEAT_TIMEOUT_S": "4",
        "RLHF_REAPER_INTERVAL_S": "1", "RLHF_MAX_ATTEMPTS": "3"}


@pytest.fixture
def queue(settings, transactional_db):
    """A queue of this test only, so the session's worker never takes these runs."""
    name = f"test-crash-{uuid.uuid4().hex[:8]}"
    settings.TRAINING_QUEUE = name
    return name


@pytest.fixture
def start_worker(queue, tmp_path):
    started: list[WorkerProcess] = []

    def start(name: str = "w") -> WorkerProcess:
        w = WorkerProcess(queue, tmp_path / f"{name}.log", name=name,
                          env=worker_env() | FAST | {"RLHF_TRAINING_QUEUE": queue})
        started.append(w.wait_ready())
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def reaper(queue, tmp_path):
    log = open(tmp_path / "reaper.log", "w")
    proc = subprocess.Popen([sys.executable, "manage.py", "reap"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, **worker_env(), **FAST,
                                 "RLHF_TRAINING_QUEUE": queue, "PYTHONUNBUFFERED": "1"})
    yield proc
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def launch(api, *, steps: int, checkpoint_every: int, name: str = "crash me") -> int:
    dataset = upload_prompts(api, PROMPTS)
    response = api.post("/api/runs", {
        "name": name, "dataset": dataset["id"], "base_model": "tiny-llama",
        "rewards": [{"type": "length", "target": 30}],
        "hyperparameters": {"max_steps": steps, "checkpoint_every": checkpoint_every,
                            "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 24,
                            "samples_per_step": 4}}, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def status(run_id: int) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run_id)


def step(run_id: int) -> int:
    return Run.objects.values_list("step", flat=True).get(pk=run_id)


def child_pid(run_id: int, attempt: int) -> int:
    return wait_for(lambda: RunAttempt.objects.filter(run_id=run_id, attempt=attempt)
                    .values_list("pid", flat=True).first(), what="the attempt's pid")


def assert_each_step_once(run_id: int, steps: int) -> None:
    recorded = list(Metric.objects.filter(run_id=run_id, key="reward/mean")
                    .order_by("step").values_list("step", flat=True))
    assert recorded == list(range(1, steps + 1))
    sample_steps = sorted(set(Sample.objects.filter(run_id=run_id)
                              .values_list("step", flat=True)))
    assert sample_steps == list(range(1, steps + 1))
    assert Sample.objects.filter(run_id=run_id).count() == 4 * steps


def outcomes(run_id: int) -> list[tuple[int, str, int | None]]:
    return list(RunAttempt.objects.filter(run_id=run_id).order_by("attempt")
                .values_list("attempt", "outcome", "resumed_from_step"))


def test_a_killed_worker_child_is_reaped_and_the_run_resumes_from_its_checkpoint(
        api, start_worker, reaper):
    start_worker()
    run_id = launch(api, steps=20, checkpoint_every=5)
    wait_for(lambda: step(run_id) >= 7, timeout=180, what="step 7")
    os.kill(child_pid(run_id, 1), signal.SIGKILL)  # as the kernel's OOM killer does

    wait_for(lambda: status(run_id) == "crashed" or RunAttempt.objects.filter(
        run_id=run_id, attempt=2).exists(), timeout=60, what="the reaper")
    wait_for(lambda: status(run_id) == "succeeded", timeout=240, what="the resumed run")
    (first, second) = outcomes(run_id)
    assert first[:2] == (1, "crashed")
    assert second[:2] == (2, "succeeded") and second[2] in (5, 10, 15)
    assert_each_step_once(run_id, 20)
    run = Run.objects.get(pk=run_id)
    assert run.crashes == 1 and run.step == 20
    assert f"attempt-2{os.sep}step-20" in run.checkpoints.get(step=20).path


def test_a_worker_asked_to_stop_checkpoints_and_the_next_worker_resumes(api, start_worker):
    first = start_worker("first")
    run_id = launch(api, steps=16, checkpoint_every=0)  # no checkpoint but the one at shutdown
    wait_for(lambda: step(run_id) >= 4, timeout=180, what="step 4")
    first.proc.send_signal(signal.SIGTERM)  # a deploy: docker compose stop, a rolling restart
    first.proc.wait(timeout=90)
    assert status(run_id) == "resuming"
    stopped_at = step(run_id)
    assert Run.objects.get(pk=run_id).checkpoints.filter(step=stopped_at).exists()

    start_worker("second")
    wait_for(lambda: status(run_id) == "succeeded", timeout=240, what="the resumed run")
    assert outcomes(run_id) == [(1, "interrupted", None), (2, "succeeded", stopped_at)]
    assert_each_step_once(run_id, 16)
    assert Run.objects.get(pk=run_id).crashes == 0  # a deploy costs no attempt


def test_a_hung_child_is_killed_and_the_next_queued_run_is_not_held_up(
        api, start_worker, reaper):
    worker = start_worker()
    hung = launch(api, steps=16, checkpoint_every=5, name="hangs")
    wait_for(lambda: step(hung) >= 2, timeout=180, what="step 2")
    behind = launch(api, steps=3, checkpoint_every=0, name="queued behind it")
    pid = child_pid(hung, 1)
    os.kill(pid, signal.SIGSTOP)  # no more heartbeats, and it would never finish on its own

    wait_for(lambda: status(behind) == "succeeded", timeout=180, what="the run queued behind")
    wait_for(lambda: status(hung) == "succeeded", timeout=240, what="the resumed run")
    assert outcomes(hung)[0][:2] == (1, "crashed")
    assert_each_step_once(hung, 16)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the reaper had its task killed
    task_id = RunAttempt.objects.get(run_id=hung, attempt=1).task_id
    assert f"Terminating {task_id} (9)" in worker.log()  # SIGKILL, sent by the revoke


def test_cancelled_queued_runs_are_dropped_from_the_queue_unrun(api, start_worker):
    worker = start_worker()
    busy = launch(api, steps=40, checkpoint_every=0, name="busy")
    wait_for(lambda: status(busy) == "running", timeout=120, what="the first run")
    waiting = [launch(api, steps=2, checkpoint_every=0, name=f"w{i}") for i in range(3)]
    task_ids = list(Run.objects.filter(pk__in=waiting).values_list("task_id", flat=True))
    assert all(task_ids)
    for run_id in waiting:
        assert api.post(f"/api/runs/{run_id}/cancel").status_code == 202
    api.post(f"/api/runs/{busy}/cancel")
    last = launch(api, steps=2, checkpoint_every=0, name="last")
    wait_for(lambda: status(last) == "succeeded", timeout=180, what="the run after them")
    log = worker.log()
    for task_id in task_ids:
        assert f"Discarding revoked task: workers.tasks.train_run_task[{task_id}]" in log
    assert {status(r) for r in waiting} == {"cancelled"}


def test_a_waiting_run_whose_task_the_broker_lost_is_sent_again(api, start_worker, queue,
                                                                 settings):
    """Redis restarted empty (no persistence) or flushed while runs waited for a worker:
    the reaper sends the task of each waiting run again once it has been missing for the
    grace (the heartbeat timeout), not before, and not for a cancelled run; a worker then
    trains the run in one attempt."""
    import time

    import redis

    from webapp.queueing import queued_task_ids
    from webapp.runs.management.commands.reap import LostTasks, reap_once

    run_id = launch(api, steps=2, checkpoint_every=0)  # no worker on this queue yet
    cancelled = launch(api, steps=2, checkpoint_every=0, name="cancelled")
    assert api.post(f"/api/runs/{cancelled}/cancel").status_code == 202
    lost_id = Run.objects.get(pk=run_id).task_id
    assert lost_id in (queued_task_ids() or set())
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)  # what the restart did
    assert lost_id not in (queued_task_ids() or set())

    settings.RLHF_HEARTBEAT_TIMEOUT_S = 1.5
    lost = LostTasks()
    assert reap_once(lost)["resent"] == 0  # missing once: a worker may have just taken it
    assert Run.objects.get(pk=run_id).task_id == lost_id
    time.sleep(1.6)
    assert reap_once(lost)["resent"] == 1
    resent_id = Run.objects.get(pk=run_id).task_id
    assert resent_id != lost_id and resent_id in (queued_task_ids() or set())
    assert reap_once(lost)["resent"] == 0 and not lost.runs  # in the queue again
    assert status(cancelled) == "cancelled"

    start_worker()
    wait_for(lambda: status(run_id) == "succeeded", timeout=180, what="the resent run")
    assert [o[:2] for o in outcomes(run_id)] == [(1, "succeeded")]
    assert_each_step_once(run_id, 2)
