"""Reward functions operators install: the example package (tests/reward_plugin_example),
installed for these tests as pip would leave it (its package and a dist-info with its entry
points, on the path of this process and of a worker of its own), is offered by the API with
its title, help and arguments, scores samples, trains a run on the real worker, and a plugin
that returns the wrong number of scores fails its own run saying so."""
from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import PROMPTS, WorkerProcess, upload_prompts, wait_for, worker_env
from training.reward_plugins import discover
from training.reward_types import get_reward_type

EXAMPLE = Path(__file__).parent / "reward_plugin_example"


def test_a_plugin_not_installed_is_a_422(api):
    """(First: the module installs the example for the tests after this one.)"""
    response = api.post("/api/rewards/score", json.dumps({
        "rewards": [{"type": "keyword", "word": "x"}], "samples": [{"completion": "x"}]}),
        content_type="application/json")

    assert response.status_code == 422 and "rewards[0]" in response.json()["fields"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example as pip installs it: the package, and a dist-info naming its entry points."""
    site = tmp_path_factory.mktemp("site-packages")
    shutil.copytree(EXAMPLE / "rlhf_keyword_reward", site / "rlhf_keyword_reward")
    info = site / "rlhf_keyword_reward-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlhf-keyword-reward\n"
                                   "Version: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[rlhf_workbench.rewards]\nkeyword = rlhf_keyword_reward:keyword\n"
        "broken = rlhf_keyword_reward:broken\n")
    sys.path.insert(0, str(site))
    try:
        assert discover() == ["broken", "keyword"]
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("rlhf_keyword_reward", None)
        discover()


def test_an_installed_plugin_is_offered_with_its_declaration(api, installed):
    types = {t["type"]: t for t in api.get("/api/rewards").json()}

    keyword = types["keyword"]
    assert keyword["title"] == "Keyword"
    assert keyword["help"].startswith("1 when the completion contains the keyword")
    assert [a["name"] for a in keyword["args"]] == ["word"]


def test_it_scores_like_a_built_in_and_a_wrong_count_is_named(api, installed):
    samples = [{"completion": "Yes, please."}, {"completion": "No."}]

    scored = api.post("/api/rewards/score", json.dumps({
        "rewards": [{"type": "keyword", "word": "please"}], "samples": samples}),
        content_type="application/json")
    broken = get_reward_type("broken")

    assert [s["scores"]["keyword"] for s in scored.json()["samples"]] == [1.0, 0.0]
    with pytest.raises(RuntimeError, match="'broken' returned 1 scores for 2 completions"):
        broken.score(["", ""], ["a", "b"], [{}, {}], {})


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_runs_train_with_a_plugin_and_a_broken_one_fails_only_its_run(
        api, installed, settings, transactional_db, tmp_path):
    queue = f"test-plugin-{uuid.uuid4().hex[:8]}"
    settings.TRAINING_QUEUE = queue
    worker = WorkerProcess(queue, tmp_path / "worker.log", name="plugin", env=worker_env() | {
        "RLHF_TRAINING_QUEUE": queue, "PYTHONPATH": str(installed)})
    try:
        worker.wait_ready()
        dataset = upload_prompts(api, PROMPTS)
        runs = {}
        for reward in ("keyword", "broken"):
            response = api.post("/api/runs", json.dumps({
                "name": reward, "algorithm": "grpo", "dataset": dataset["id"],
                "base_model": "tiny-llama",
                "rewards": [{"type": reward, "word": "the"} if reward == "keyword"
                            else {"type": reward}],
                "hyperparameters": {"max_steps": 1, "max_new_tokens": 8, "group_size": 2,
                                    "prompts_per_step": 2}}), content_type="application/json")
            assert response.status_code == 201, response.content
            runs[reward] = response.json()["id"]

        ended = {name: wait_for(lambda i=run_id: (r := api.get(f"/api/runs/{i}").json())[
            "status"] in ("succeeded", "failed") and r, timeout=200, what=f"the {name} run")
            for name, run_id in runs.items()}
    finally:
        worker.stop()

    assert ended["keyword"]["status"] == "succeeded", ended["keyword"]["error"]
    assert ended["broken"]["status"] == "failed"
    assert "reward plugin 'broken' returned 3 scores for 4 completions" in \
        ended["broken"]["error"]
