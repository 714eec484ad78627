"""Model references on pages read as names: a checkpoint is "run <name>, step n", linked to
its run, on the run page (its origin, its reward sources), the runs list, the compare diff,
the playground and a labeling batch; ``ckpt-<id>`` stays the API's id."""
from __future__ import annotations

import re

import pytest

from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from webapp.playground import services as playground
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.DATASETS_DIR = tmp_path / "datasets"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def visible_text(html: str) -> str:
    """What a person reads: no tags, no attribute values (titles keep the ids for tooltips),
    nor the run's configuration as JSON (folded; it shows the API's ids on purpose)."""
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    html = re.sub(r'<pre id="config-json">.*?</pre>', "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture
def lineage(user):
    """smoke-1 (GRPO) wrote a checkpoint at step 4; rm-1 fitted a reward model; "child"
    starts from smoke-1's checkpoint and rewards with rm-1's."""
    dataset = make_dataset(user)
    parent = make_run(user, dataset, name="smoke-1", steps=4)
    policy = write_checkpoint(parent, 4)
    rm = write_checkpoint(make_run(user, dataset, name="rm-1", algorithm="reward_model",
                                   steps=2, hyperparameters={"max_steps": 2}), 2)
    child = make_run(user, dataset, name="child", steps=1, rewards=[
        {"type": "reward_model", "model": rm.model_id, "weight": 1.0}])
    Run.objects.filter(pk=child.pk).update(base_model=policy.model_id,
                                           parent_checkpoint=policy)
    child.refresh_from_db()
    return parent, policy, rm, child


def test_the_run_page_names_the_checkpoints_it_started_and_rewards_from(signed_in, lineage):
    parent, policy, rm, child = lineage
    html = signed_in.get(f"/runs/{child.pk}/").content.decode()
    text = visible_text(html)
    assert "ckpt-" not in text
    assert re.search(r"run\s+smoke-1\s*, step 4", text)  # its origin
    assert re.search(r"run\s+rm-1\s*, step 2", text)  # its reward source
    assert f'href="/runs/{parent.pk}/"' in html
    # the API keeps the ids
    body = signed_in.get(f"/api/runs/{child.pk}").json()
    assert body["base_model"] == policy.model_id
    assert body["rewards"][0]["model"] == rm.model_id


def test_the_runs_list_and_the_compare_diff_name_checkpoints(signed_in, lineage):
    parent, _, _, child = lineage
    assert "ckpt-" not in visible_text(signed_in.get("/runs/").content.decode())
    text = visible_text(signed_in.get(f"/runs/compare/?ids={parent.pk},{child.pk}")
                        .content.decode())
    assert "ckpt-" not in text and "run smoke-1, step 4" in text


def test_the_playground_names_its_columns(signed_in, user, lineage):
    _, policy, _, _ = lineage
    first = playground.playground_generate(owner=user, model=policy.model_id, prompt="Hi")
    text = visible_text(signed_in.get(f"/playground/{first.pk}/").content.decode())
    assert re.search(r"run\s+smoke-1\s*, step 4", text) and "ckpt-" not in text
    assert "ckpt-" not in visible_text(signed_in.get("/playground/").content.decode())


def test_another_users_checkpoint_id_reads_as_an_id_not_as_their_run(client, other_user,
                                                                       lineage):
    from webapp.runs.naming import model_refs

    _, policy, _, _ = lineage
    ref = model_refs([policy.model_id], owner_id=other_user.pk)[policy.model_id]
    assert ref.text == policy.model_id and ref.url is None
