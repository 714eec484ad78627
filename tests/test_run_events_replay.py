"""Every step once, in order, then the end, whichever way a worker's writes interleave with the
event stream's reads: the replay from the database (the live stream expired, Redis lost it, or
the viewer resumes from a ``db-<step>`` id) and the check whether a quiet run has ended."""
from __future__ import annotations

import pytest

from tests.runs_helpers import make_dataset, read_events
from webapp.runs import attempts, events
from webapp.runs.models import Run

END = {"status": "succeeded", "error": "", "stop_reason": ""}


@pytest.fixture
def running(user, transactional_db):
    run = Run.objects.create(owner=user, name="replay", algorithm="grpo",
                             dataset=make_dataset(user), base_model="tiny-llama", max_steps=3)
    events.reset(run.pk)
    attempts.run_claim(run_id=run.pk, worker="test")
    yield run
    events.reset(run.pk)


def _work(run: Run, steps: range) -> None:
    """What the worker does: store and publish each step, then end the run."""
    for step in steps:
        attempts.run_record_step(run_id=run.pk, attempt=1, step=step,
                                 metrics={"reward/mean": step / 3})
    attempts.run_finish(run_id=run.pk, attempt=1, status="succeeded")


def _received(api, run: Run, **headers) -> list[tuple[str, dict]]:
    return [(kind, data) for _, kind, data, _ in read_events(api, run.pk, **headers)]


@pytest.mark.parametrize("live_stream", [False, True], ids=["replayed", "live"])
def test_steps_stored_just_before_the_stream_reads_that_the_run_ended_all_arrive(
        api, running, monkeypatch, settings, live_stream):
    # Without the live stream, the worker's steps and its end land between the viewer finding
    # no stream and the replay's reads. With it, they land after a quiet wait on Redis, just
    # before the stream asks the database whether the run has ended.
    settings.SSE_KEEPALIVE_S = 1
    if not live_stream:
        events.reset(running.pk)  # the claim's status event is gone with the stream
    refresh = Run.refresh_from_db
    pending = [True]

    def worker_writes_then_refresh(self, *args, **kwargs):
        if pending and self.pk == running.pk:
            pending.clear()
            _work(running, range(1, 4))
        return refresh(self, *args, **kwargs)

    monkeypatch.setattr(Run, "refresh_from_db", worker_writes_then_refresh)
    received = _received(api, running)
    assert not pending, "the replay never read the run"
    assert [data["step"] for kind, data in received if kind == "step"] == [1, 2, 3]
    assert received[-1] == ("end", END)


def test_a_viewer_resuming_from_a_replayed_step_gets_each_later_step_once(
        api, running, monkeypatch):
    for step in (1, 2, 3):  # the live stream holds steps 1-3; the run ends after the replay
        attempts.run_record_step(run_id=running.pk, attempt=1, step=step,
                                 metrics={"reward/mean": step / 3})
    refresh = Run.refresh_from_db
    pending = [True]

    def refresh_then_the_run_ends(self, *args, **kwargs):
        refreshed = refresh(self, *args, **kwargs)
        if pending and self.pk == running.pk:
            pending.clear()
            attempts.run_finish(run_id=running.pk, attempt=1, status="succeeded")
        return refreshed

    monkeypatch.setattr(Run, "refresh_from_db", refresh_then_the_run_ends)
    received = _received(api, running, HTTP_LAST_EVENT_ID="db-1")
    assert not pending, "the replay never read the run"
    assert [data["step"] for kind, data in received if kind == "step"] == [2, 3]
    assert received[-1] == ("end", END)
