"""A model directory registered by a staff user, in the API or on the models page: checked as
the engine would load it before anything is stored, offered to every user, trainable; refused
with the reason (not a directory, not a model, pickle weights, remote code), and only staff may."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.architectures import BY_ID, save_model
from tests.conftest import PROMPTS, upload_prompts
from webapp.runs.models import RegisteredModel


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    return save_model(BY_ID["qwen3"], tmp_path_factory.mktemp("qwen3"))


@pytest.fixture
def staff_api(api, user):
    user.is_staff = True
    user.save()
    return api


def _register(client, **body):
    return client.post("/api/models", json.dumps(body), content_type="application/json")


def test_a_registered_directory_is_every_users_to_train(staff_api, other_api, qwen3_dir):
    response = _register(staff_api, path=str(qwen3_dir), name="Tiny Qwen3")

    assert response.status_code == 201, response.content
    model = response.json()
    assert (model["id"], model["source"], model["kind"], model["ready"]) == (
        "tiny-qwen3", "local", "policy", True)
    assert model["card"]["architecture"] == "Qwen3ForCausalLM"
    theirs = {m["id"]: m for m in other_api.get("/api/models").json()}
    assert theirs["tiny-qwen3"]["name"] == "Tiny Qwen3 (registered)"
    dataset = upload_prompts(other_api, PROMPTS[:4])
    run = other_api.post("/api/runs", json.dumps({
        "name": "on a registered model", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": "tiny-qwen3", "rewards": [{"type": "length", "target": 20}]}),
        content_type="application/json")
    assert run.status_code == 201 and run.json()["base_model"] == "tiny-qwen3"


def _pickled(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _remote_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "m.X"}}))


def _not_a_model(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink()
    (folder / "notes.txt").write_text("hello")


@pytest.mark.parametrize("change, reason", [
    (_pickled, "pickle_weights"), (_remote_code, "remote_code"), (_not_a_model, "not_a_model"),
])
def test_what_the_engine_may_not_load_is_refused_and_nothing_stored(
        staff_api, qwen3_dir, tmp_path, change, reason):
    folder = tmp_path / "copy"
    shutil.copytree(qwen3_dir, folder)
    change(folder)

    response = _register(staff_api, path=str(folder), name="refused")

    assert response.status_code == 422
    assert response.json()["fields"] == {"path": reason}
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("path, problem", [
    ("models/x", "not absolute"), ("/no/such/dir", "not a directory"), ("", "required"),
])
def test_a_path_that_is_no_directory_is_named(staff_api, path, problem):
    response = _register(staff_api, path=path, name="x")

    assert response.status_code == 422 and response.json()["fields"]["path"] == problem


def test_an_id_taken_is_a_409_and_only_staff_register(staff_api, other_api, qwen3_dir):
    assert _register(staff_api, path=str(qwen3_dir), name="tiny-llama").status_code == 409
    assert _register(staff_api, path=str(qwen3_dir), name="mine").status_code == 201
    assert _register(staff_api, path=str(qwen3_dir), name="Mine").status_code == 409

    response = _register(other_api, path=str(qwen3_dir), name="theirs")

    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert list(RegisteredModel.objects.values_list("model_id", flat=True)) == ["mine"]


def test_staff_register_from_the_models_page(client, user, other_user, qwen3_dir):
    client.force_login(other_user)
    assert 'id="register-model"' not in client.get("/models/").content.decode()
    client.post("/models/register/", {"path": str(qwen3_dir), "name": "sneaky"})
    assert not RegisteredModel.objects.exists()

    user.is_staff = True
    user.save()
    client.force_login(user)
    page = client.post("/models/register/", {"path": str(qwen3_dir), "name": "From the page"},
                       follow=True).content.decode()

    assert "Registered" in page and "from-the-page" in page
    assert "Qwen3ForCausalLM" in page
