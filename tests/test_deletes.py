"""Deleting runs, checkpoints, datasets and labeling batches: files go from disk too, what
another object depends on cannot go and the refusal names the dependants, another user's
objects are 404, and a refusal changes nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.labeling_helpers import make_batch, rank_in_order
from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from webapp.datasets.models import Dataset
from webapp.labeling.models import Batch, BatchStatus
from webapp.runs import events
from webapp.runs.deletion import remove_paths
from webapp.runs.models import Checkpoint, Metric, Run, RunStatus, Sample

# Committed transactions, as in production: files go once the delete has committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def checkpoints_dir(settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    return settings.CHECKPOINTS_DIR


@pytest.fixture
def finished(user):
    """An ended GRPO run with metrics, samples, a checkpoint on disk and a live stream."""
    run = make_run(user, make_dataset(user), name="parent", steps=3,
                   samples=lambda step: [{"index": 0, "prompt": "p", "completion": "c",
                                          "rewards": {}, "reward": 0.0, "advantage": 0.0}])
    return run, write_checkpoint(run, 3)


def child_of(checkpoint: Checkpoint, **fields) -> Run:
    return Run.objects.create(owner=checkpoint.run.owner, name=fields.pop("name", "child"),
                              algorithm="grpo", dataset=checkpoint.run.dataset,
                              base_model=checkpoint.model_id, max_steps=1,
                              status=RunStatus.SUCCEEDED, **fields)


def test_an_ended_run_goes_with_its_metrics_samples_files_and_stream(api, finished,
                                                                     checkpoints_dir):
    run, checkpoint = finished
    directory, archive = checkpoint.directory, checkpoint.archive_path
    assert directory.is_dir() and archive.is_file() and events.stream_exists(run.pk)
    response = api.delete(f"/api/runs/{run.pk}")
    assert response.status_code == 204
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Metric.objects.filter(run_id=run.pk).exists()
    assert not Sample.objects.filter(run_id=run.pk).exists()
    assert not Checkpoint.objects.filter(pk=checkpoint.pk).exists()
    assert not directory.exists() and not archive.exists()
    assert not (Path(checkpoints_dir) / f"run-{run.pk}").exists()
    assert not events.stream_exists(run.pk)


def test_a_run_still_running_cannot_be_deleted(api, user):
    run = make_run(user, make_dataset(user), steps=1, finish=None)
    response = api.delete(f"/api/runs/{run.pk}")
    assert response.status_code == 409
    assert "running" in response.json()["detail"] and "cancel it" in response.json()["detail"]
    assert Run.objects.filter(pk=run.pk).exists()


def test_a_run_whose_checkpoint_another_run_started_from_names_that_run(api, finished):
    run, checkpoint = finished
    child = child_of(checkpoint, name="the child", parent_checkpoint=checkpoint)
    response = api.delete(f"/api/runs/{run.pk}")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"run {child.pk} 'the child' started from it" in detail
    assert Run.objects.filter(pk=run.pk).exists() and checkpoint.directory.is_dir()


def test_a_checkpoint_used_as_a_reward_names_the_run_that_uses_it(api, user):
    fitted = make_run(user, make_dataset(user, "pairs", "preferences"), name="rm",
                      algorithm="reward_model", steps=1, rewards=[],
                      metrics=lambda s: {"loss/train": 1.0}, hyperparameters={"max_steps": 1})
    checkpoint = write_checkpoint(fitted, 1)
    user_run = make_run(user, make_dataset(user, "prompts2"), name="rewarded", steps=1,
                        rewards=[{"type": "reward_model", "model": checkpoint.model_id,
                                  "weight": 1.0}])
    for path in (f"/api/checkpoints/{checkpoint.pk}", f"/api/runs/{fitted.pk}"):
        response = api.delete(path)
        assert response.status_code == 409, path
        assert f"run {user_run.pk} 'rewarded' uses it as a reward" in response.json()["detail"]
    api.delete(f"/api/runs/{user_run.pk}")
    assert api.delete(f"/api/checkpoints/{checkpoint.pk}").status_code == 204
    assert not checkpoint.directory.exists() and not checkpoint.archive_path.exists()
    assert Run.objects.filter(pk=fitted.pk).exists()  # the run stays, without it


def test_a_checkpoint_a_batch_is_generating_with_cannot_go(api, finished, user):
    _, checkpoint = finished
    dataset = make_dataset(user, "for the batch")
    batch = Batch.objects.create(owner=user, name="gen", dataset=dataset,
                                 model=checkpoint.model_id, responses_per_prompt=2,
                                 items_expected=1, status=BatchStatus.GENERATING)
    response = api.delete(f"/api/checkpoints/{checkpoint.pk}")
    assert response.status_code == 409
    assert f"labeling batch {batch.pk} 'gen' is generating with it" in response.json()["detail"]


def test_the_checkpoint_of_a_run_that_may_resume_from_it_stays(api, user):
    run = make_run(user, make_dataset(user), steps=2, finish=None)
    checkpoint = write_checkpoint(run, 2)
    response = api.delete(f"/api/checkpoints/{checkpoint.pk}")
    assert response.status_code == 409 and "resume" in response.json()["detail"]


def test_a_dataset_goes_with_its_file_unless_runs_or_batches_use_it(api, user, datasets_dir):
    from tests.conftest import PROMPTS, upload_prompts

    used = upload_prompts(api, PROMPTS[:3], name="used")
    free = upload_prompts(api, PROMPTS[:3], name="free")
    dataset = Dataset.objects.get(pk=used["id"])
    run = Run.objects.create(owner=user, name="on it", algorithm="grpo", dataset=dataset,
                             base_model="tiny-llama", max_steps=1, status=RunStatus.FAILED)
    batch = make_batch(user, name="also on it")
    Batch.objects.filter(pk=batch.pk).update(dataset=dataset)
    response = api.delete(f"/api/datasets/{used['id']}")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"run {run.pk} 'on it'" in detail and f"labeling batch {batch.pk} 'also on it'" in detail
    assert dataset.file_path.exists()

    path = Dataset.objects.get(pk=free["id"]).file_path
    assert api.delete(f"/api/datasets/{free['id']}").status_code == 204
    assert not path.exists() and not Dataset.objects.filter(pk=free["id"]).exists()


def test_a_batch_goes_with_its_rankings_and_the_datasets_made_from_it_stay(api, user,
                                                                         datasets_dir):
    batch = make_batch(user, items=2)
    rank_in_order(api, batch.items.order_by("index").first().pk)
    made = api.post(f"/api/labeling/batches/{batch.pk}/dataset").json()
    assert api.delete(f"/api/labeling/batches/{batch.pk}").status_code == 204
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert Dataset.objects.get(pk=made["id"]).source_batch is None  # a copy: it stays


def test_a_generating_batch_cannot_be_deleted(api, user):
    batch = make_batch(user)
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.GENERATING)
    response = api.delete(f"/api/labeling/batches/{batch.pk}")
    assert response.status_code == 409 and "still generating" in response.json()["detail"]


def test_other_peoples_objects_are_404_and_stay(other_api, finished, user):
    run, checkpoint = finished
    batch = make_batch(user, shared=True)  # shared: they may rank in it, not delete it
    for path in (f"/api/runs/{run.pk}", f"/api/checkpoints/{checkpoint.pk}",
                 f"/api/datasets/{run.dataset_id}", f"/api/labeling/batches/{batch.pk}"):
        response = other_api.delete(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found", path
    assert Run.objects.filter(pk=run.pk).exists() and Batch.objects.filter(pk=batch.pk).exists()


def test_the_pages_delete_and_show_a_refusal_as_a_message(client, user, finished):
    run, checkpoint = finished
    child_of(checkpoint, name="kid", parent_checkpoint=checkpoint)
    client.force_login(user)
    response = client.post(f"/runs/{run.pk}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == f"/runs/{run.pk}/"
    assert "cannot be deleted" in response.content.decode() and "kid" in response.content.decode()
    models = client.get("/models/").content.decode()
    assert "in use by run" in models  # its delete button is disabled, saying why
    other = make_run(user, make_dataset(user, "second"), name="lonely", steps=1)
    response = client.post(f"/runs/{other.pk}/delete/")
    assert response.status_code == 302 and response.url == "/runs/"
    assert not Run.objects.filter(pk=other.pk).exists()


def test_files_outside_the_checkpoints_directory_are_never_removed(tmp_path, checkpoints_dir):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    remove_paths([outside, Path(checkpoints_dir) / ".." / "precious.txt", Path(checkpoints_dir)])
    assert outside.read_text() == "keep me"
