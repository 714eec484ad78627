"""What the run page shows besides its charts: times, attempts, the runs started from its
checkpoints, a reward model's held-out pairs, and the launch message until the run starts."""
from __future__ import annotations

import pytest

from tests.runs_helpers import make_dataset, make_run
from webapp.runs import attempts
from webapp.runs.models import Checkpoint, Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_a_reward_models_page_shows_held_out_pairs_not_policy_samples(signed_in, user):
    pairs = make_dataset(user, name="pairs", kind="preferences")
    run = make_run(user, pairs, algorithm="reward_model", steps=1, rewards=[],
                   hyperparameters={"max_steps": 1},
                   metrics=lambda s: {"eval/accuracy": 1.0, "loss/train": 0.5},
                   samples=lambda s: [{"index": 0, "prompt": "Which is kinder?",
                                       "completion": "Thank you!", "rejected": "Go away.",
                                       "rewards": {"chosen": 1.25, "rejected": -0.5},
                                       "reward": 1.75, "advantage": 0.0}])
    html = signed_in.get(f"/runs/{run.pk}/").content.decode()
    assert "Held-out pairs" in html and "Advantage" not in html
    for text in ("Which is kinder?", "Thank you!", "Go away.", "1.250", "-0.500", "1.750"):
        assert text in html
    body = signed_in.get(f"/api/runs/{run.pk}/samples").json()
    assert body[0]["rejected"] == "Go away."


def test_the_page_gives_times_attempts_and_the_runs_started_from_its_checkpoints(
        signed_in, user):
    data = make_dataset(user)
    parent = make_run(user, data, name="parent", steps=2)
    checkpoint = Checkpoint.objects.create(run=parent, step=2, path="p", archive="p.zip",
                                           size_bytes=1, sha256="0" * 64)
    child = Run.objects.create(owner=user, name="the child", algorithm="grpo", dataset=data,
                               base_model=checkpoint.model_id, parent_checkpoint=checkpoint,
                               max_steps=3)
    html = signed_in.get(f"/runs/{parent.pk}/").content.decode()
    assert 'id="run-times"' in html and parent.started_at.strftime("%Y-%m-%d %H:%M") in html
    assert "Runs started from these checkpoints" in html and "the child" in html
    assert f'href="/runs/{child.pk}/"' in html
    child_html = signed_in.get(f"/runs/{child.pk}/").content.decode()
    assert "not yet" in child_html  # not started


def test_attempts_are_listed_once_a_run_was_resumed(signed_in, user):
    run = make_run(user, make_dataset(user), steps=3, finish=None)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CRASHED, crashes=1)
    attempts.run_claim(run_id=run.pk, worker="second-worker")
    html = signed_in.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="attempts-table"' in html and "second-worker" in html
    assert 'data-resumes="0 "' in html  # no checkpoint: resumed from step 0


def test_the_launch_message_is_marked_so_the_page_can_drop_it(signed_in, user, api):
    from tests.conftest import PROMPTS, upload_prompts
    from webapp.runs.forms import RunForm

    dataset = upload_prompts(api, PROMPTS[:2])
    defaults = {name: field.initial for name, field in
                RunForm(user=user, algorithm="grpo").fields.items()
                if name.startswith("hp_") and field.initial is not None
                and field.initial is not False}
    response = signed_in.post("/runs/new/", {
        **defaults, "algorithm": "grpo", "name": "queued one", "dataset": dataset["id"],
        "base_model": "tiny-llama", "reward-0-type": "length", "reward-0-length-target": "30",
        "reward-0-weight": "1"}, follow=True)
    assert '<li class="launch success">Run &#x27;queued one&#x27; is queued.</li>' in \
        response.content.decode()
