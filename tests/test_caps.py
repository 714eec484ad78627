"""Deployment-wide caps (RLHF_MAX_*): what one run or labeling batch may ask of a worker,
whoever asks. Over a cap is a 422 that names the setting, from the API and from the form;
nothing is stored."""
from __future__ import annotations

import json

import pytest

from tests.conftest import PROMPTS, upload_prompts
from webapp.labeling.models import Batch
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def post_run(client, dataset_id, algorithm="grpo", **hyperparameters):
    payload = {"name": "big", "algorithm": algorithm, "dataset": dataset_id,
               "base_model": "tiny-llama", "hyperparameters": hyperparameters}
    if algorithm != "reward_model":
        payload["rewards"] = [{"type": "length", "target": 50}]
    return client.post("/api/runs", json.dumps(payload), content_type="application/json")


@pytest.fixture
def dataset(api):
    return upload_prompts(api, PROMPTS[:4])


def test_the_issues_run_of_4096_x_256_x_32768_x_100000_is_refused_naming_each_cap(api, dataset):
    response = post_run(api, dataset["id"], prompts_per_step=4096, group_size=256,
                        max_new_tokens=32_768, max_steps=100_000)

    assert response.status_code == 422
    fields = response.json()["fields"]
    assert fields == {
        "hyperparameters.max_steps": "at most 10000 on this server (RLHF_MAX_STEPS)",
        "hyperparameters.prompts_per_step":
            "at most 256 on this server (RLHF_MAX_PROMPTS_PER_STEP)",
        "hyperparameters.group_size": "at most 64 on this server (RLHF_MAX_GROUP_SIZE)",
        "hyperparameters.max_new_tokens": "at most 4096 on this server (RLHF_MAX_NEW_TOKENS)",
    }
    assert response.json()["error"] == "over_limit"
    assert not Run.objects.exists()


def test_completions_per_step_are_capped_as_a_product(api, dataset, settings):
    # 32 prompts x 64 completions: each under its own cap, 2048 together over 1024
    response = post_run(api, dataset["id"], prompts_per_step=32, group_size=64)

    assert response.status_code == 422
    assert response.json()["fields"] == {"hyperparameters.prompts_per_step": (
        "2048 completions per step: at most 1024 on this server "
        "(RLHF_MAX_COMPLETIONS_PER_STEP)")}
    settings.MAX_COMPLETIONS_PER_STEP = 2048
    assert post_run(api, dataset["id"], prompts_per_step=32, group_size=64).status_code == 201


def test_an_admin_sets_the_caps_per_deployment(api, dataset, settings):
    settings.MAX_STEPS = 5
    settings.MAX_NEW_TOKENS = 16
    assert post_run(api, dataset["id"], max_steps=5, max_new_tokens=16).status_code == 201
    response = post_run(api, dataset["id"], max_steps=6, max_new_tokens=17)
    assert set(response.json()["fields"]) == {"hyperparameters.max_steps",
                                              "hyperparameters.max_new_tokens"}
    assert Run.objects.count() == 1


def test_ppo_and_reward_model_runs_are_capped_too(api, dataset, settings):
    settings.MAX_PROMPTS_PER_STEP = 8
    settings.MAX_SEQUENCE_LENGTH = 256
    response = post_run(api, dataset["id"], "ppo", prompts_per_step=16, minibatches=2)
    assert "RLHF_MAX_PROMPTS_PER_STEP" in response.json()["fields"][
        "hyperparameters.prompts_per_step"]
    pairs = b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    from django.core.files.uploadedfile import SimpleUploadedFile
    prefs = api.post("/api/datasets", {"file": SimpleUploadedFile("p.jsonl", pairs),
                                       "name": "p", "kind": "preferences"}).json()
    response = post_run(api, prefs["id"], "reward_model", max_length=512)
    assert "RLHF_MAX_SEQUENCE_LENGTH" in response.json()["fields"][
        "hyperparameters.max_length"]
    assert not Run.objects.exists()


def test_the_form_shows_the_cap_on_its_field(client, user, dataset, settings):
    from training.algorithms.grpo import GRPOConfig

    settings.MAX_GROUP_SIZE = 4
    client.force_login(user)
    form = {"algorithm": "grpo", "name": "r", "dataset": dataset["id"],
            "base_model": "tiny-llama", "reward-0-type": "length", "reward-0-length-target": "50"}
    for f in GRPOConfig.hyperparameter_fields():
        if f.default is not None and f.default is not False:
            form[f"hp_{f.name}"] = str(f.default)
    form["hp_group_size"] = "8"
    response = client.post("/runs/new/", form)
    assert response.status_code == 422
    assert "RLHF_MAX_GROUP_SIZE" in response.content.decode()
    assert not Run.objects.exists()


def test_a_labeling_batch_is_capped_by_the_same_settings(api, dataset, settings):
    settings.MAX_NEW_TOKENS = 32
    settings.MAX_GROUP_SIZE = 3
    response = api.post("/api/labeling/batches", json.dumps({
        "name": "b", "dataset": dataset["id"], "model": "tiny-llama",
        "responses_per_prompt": 4, "max_new_tokens": 64}), content_type="application/json")
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "responses_per_prompt": "at most 3 on this server (RLHF_MAX_GROUP_SIZE)",
        "max_new_tokens": "at most 32 on this server (RLHF_MAX_NEW_TOKENS)"}
    assert not Batch.objects.exists()
