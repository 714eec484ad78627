"""The models page: the registry with each checkpoint's lineage back to the model it all
started from, its bytes on disk as the files are, and what uses it."""
from __future__ import annotations

import re

import pytest

from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from webapp.runs import checkpoints as ckpts
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def checkpoints_dir(settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"


@pytest.fixture
def chain(user):
    """tiny-llama -> run A (checkpoint at step 4) -> run B started from it (step 2)."""
    dataset = make_dataset(user)
    first = make_run(user, dataset, name="first run", steps=4)
    first_ckpt = write_checkpoint(first, 4, weights=3000, optimizer=6000)
    second = make_run(user, dataset, name="second run", steps=2)
    Run.objects.filter(pk=second.pk).update(parent_checkpoint=first_ckpt,
                                            base_model=first_ckpt.model_id)
    second.refresh_from_db()
    return first_ckpt, write_checkpoint(second, 2)


def test_a_checkpoint_reads_back_to_the_model_it_all_started_from(chain):
    first, second = chain
    lineage = ckpts.checkpoint_lineage(second)
    assert [(a.model_id, a.step) for a in lineage] == [(first.model_id, 4), ("tiny-llama", None)]
    assert lineage[0].run.name == "first run"
    assert [a.model_id for a in ckpts.checkpoint_lineage(first)] == ["tiny-llama"]


def test_the_bytes_on_disk_are_those_of_the_files(chain):
    first, _ = chain
    disk = ckpts.checkpoint_disk_usage(first)
    files = [p for p in first.directory.rglob("*") if p.is_file()]
    state = sum(p.stat().st_size for p in files if "training_state" in p.parts)
    assert disk.training_state == state == 6000
    assert disk.weights == sum(p.stat().st_size for p in files) - state
    assert disk.archive == first.archive_path.stat().st_size == first.size_bytes
    assert disk.total == disk.weights + disk.training_state + disk.archive


def test_the_state_folder_is_the_engines():
    from training.checkpoints import STATE_DIR

    assert ckpts.STATE_DIR == STATE_DIR  # the web process names it without importing torch


def test_the_page_shows_lineage_sizes_and_users_and_hides_others(client, user, other_user,
                                                                 chain):
    first, second = chain
    client.force_login(user)
    html = client.get("/models/").content.decode()
    assert "tiny-llama" in html and "SmolLM2-135M-Instruct" in html
    row = re.search(rf'data-checkpoint-id="{second.pk}".*?</tr>', html, re.S).group(0)
    assert "first run" in row and "step 4" in row and "tiny-llama" in row  # its lineage
    assert f"?from_checkpoint={second.pk}" in row
    first_row = re.search(rf'data-checkpoint-id="{first.pk}".*?</tr>', html, re.S).group(0)
    assert "second run" in first_row and "started from it" in first_row
    assert "disabled" in first_row and "Delete" in first_row  # in use: it cannot go
    total = ckpts.checkpoint_disk_usage(first).total
    assert f"{total / 1024:.1f}" in first_row  # bytes on disk, all of them

    client.force_login(other_user)
    assert "first run" not in client.get("/models/").content.decode()


def test_the_api_lists_each_checkpoints_parent(api, chain):
    first, second = chain
    models = {m["id"]: m for m in api.get("/api/models").json()}
    assert models[second.model_id]["parent"] == first.model_id
    assert models[first.model_id]["parent"] == "tiny-llama"
    checkpoints = api.get(f"/api/runs/{first.run_id}/checkpoints").json()
    assert checkpoints[0]["disk"]["total"] == ckpts.checkpoint_disk_usage(first).total
