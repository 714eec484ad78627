"""Models from the machine's Hugging Face cache: a cache in the hub's own layout holding a tiny
Qwen2 and a tiny Qwen3 is listed as ``hf:<org>/<name>`` with revision and card, offered by the
forms, refused with the reason where the engine may not load a model, and trained end to end
by the real worker, which reads the same cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from tests.architectures import BY_ID, build_model, save_model
from tests.conftest import PROMPTS, upload_prompts, wait_for
from tests.hf_cache import cache_model, empty
from tests.training_helpers import tiny_tokenizer
from webapp.runs.models import Run

QWEN2, QWEN3 = "test-org/tiny-qwen2", "test-org/tiny-qwen3"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    return {arch: save_model(BY_ID[arch], tmp_path_factory.mktemp(arch))
            for arch in ("qwen2.5", "qwen3")}


@pytest.fixture
def hf_cache(model_dirs) -> Path:
    """The cache the web process and the test worker both read (tests/settings.py), holding
    the two tiny models; emptied afterwards."""
    cache = empty(Path(settings.HF_HUB_CACHE))
    cache_model(cache, QWEN2, model_dirs["qwen2.5"])
    cache_model(cache, QWEN3, model_dirs["qwen3"])
    yield cache
    empty(cache)


def _refused_copy(cache: Path, repo_id: str, source: Path, tmp_path: Path, change) -> None:
    folder = tmp_path / repo_id.replace("/", "_")
    shutil.copytree(source, folder)
    change(folder)
    cache_model(cache, repo_id, folder)


def _models(api) -> dict[str, dict]:
    return {m["id"]: m for m in api.get("/api/models").json()}


def test_each_cached_model_is_listed_with_its_revision_and_card(api, hf_cache):
    models = _models(api)

    qwen3 = models[f"hf:{QWEN3}"]
    commit = (hf_cache / "models--test-org--tiny-qwen3" / "refs" / "main").read_text()
    assert (qwen3["source"], qwen3["kind"], qwen3["ready"], qwen3["revision"]) == (
        "hf_cache", "policy", True, commit)
    snapshot = hf_cache / "models--test-org--tiny-qwen3" / "snapshots" / commit
    model = build_model(BY_ID["qwen3"])
    assert qwen3["card"] == {
        "architecture": "Qwen3ForCausalLM", "model_type": "qwen3",
        "kind": "policy", "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32", "context_length": 512, "vocab_size": len(tiny_tokenizer()),
        "chat_template": True, "disk_bytes": sum(f.stat().st_size for f in snapshot.iterdir()),
        "hidden_size": 64, "layers": 2,
        "algorithms": ["grpo", "ppo", "rloo", "reinforce_pp", "reward_model"]}
    assert models[f"hf:{QWEN2}"]["card"]["architecture"] == "Qwen2ForCausalLM"


def test_what_the_engine_may_not_load_is_listed_with_the_reason_and_refused(
        api, hf_cache, model_dirs, tmp_path):
    def pickled(folder: Path) -> None:
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")

    def remote_code(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
        (folder / "config.json").write_text(json.dumps(config))

    dataset = upload_prompts(api, PROMPTS[:4])
    _refused_copy(hf_cache, "test-org/pickled", model_dirs["qwen3"], tmp_path, pickled)
    _refused_copy(hf_cache, "test-org/remote", model_dirs["qwen3"], tmp_path, remote_code)
    models = _models(api)

    for repo, reason in (("test-org/pickled", "pickle"), ("test-org/remote", "auto_map")):
        entry = models[f"hf:{repo}"]
        assert entry["ready"] is False and entry["card"] is None
        assert reason in entry["problem"]
        response = api.post("/api/runs", json.dumps({
            "name": "x", "algorithm": "grpo", "dataset": dataset["id"], "base_model": f"hf:{repo}",
            "rewards": [{"type": "length", "target": 20}]}), content_type="application/json")
        assert response.status_code == 422
        assert response.json()["fields"] == {"base_model": "refused"}
        assert reason in response.json()["detail"]
    assert not Run.objects.exists()


def test_the_forms_offer_the_cached_models(client, user, hf_cache):
    client.force_login(user)

    page = client.get("/runs/new/").content.decode()
    models_page = client.get("/models/").content.decode()

    assert f'value="hf:{QWEN3}"' in page and f'value="hf:{QWEN2}"' in page
    assert QWEN3 in models_page and "Qwen3ForCausalLM" in models_page


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("repo, architecture", [(QWEN3, "Qwen3ForCausalLM"),
                                                (QWEN2, "Qwen2ForCausalLM")])
def test_a_cached_model_trains_end_to_end_on_the_worker(api, worker, hf_cache, repo,
                                                        architecture):
    dataset = upload_prompts(api, PROMPTS)
    response = api.post("/api/runs", json.dumps({
        "name": "from the cache", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": f"hf:{repo}", "rewards": [{"type": "length", "target": 30}],
        "hyperparameters": {"max_steps": 2, "max_new_tokens": 8, "group_size": 2,
                            "prompts_per_step": 2}}), content_type="application/json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]

    done = wait_for(lambda: (r := api.get(f"/api/runs/{run_id}").json())["status"] in (
        "succeeded", "failed") and r, timeout=240, what="the run from the cache to end")

    assert done["status"] == "succeeded", done["error"]
    checkpoint = api.get(f"/api/runs/{run_id}/checkpoints").json()[0]
    child = _models(api)[checkpoint["model_id"]]
    assert child["parent"] == f"hf:{repo}"
    assert child["card"]["architecture"] == architecture
