"""RLOO and REINFORCE++ end to end: launched through the API, trained on tiny-llama by the real
Celery worker, charted, listed and compared like GRPO runs."""
from __future__ import annotations

import json

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.mark.parametrize("algorithm, hyperparameters", [
    ("rloo", {"group_size": 2, "prompts_per_step": 2}),
    ("reinforce_pp", {"group_size": 1, "prompts_per_step": 3}),
])
def test_a_run_trains_on_the_worker_and_reads_like_any_other(api, worker, algorithm,
                                                             hyperparameters):
    dataset = upload_prompts(api, PROMPTS)
    response = api.post("/api/runs", json.dumps({
        "name": algorithm, "algorithm": algorithm, "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 30}],
        "hyperparameters": {"max_steps": 2, "max_new_tokens": 8, **hyperparameters}}),
        content_type="application/json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    done = wait_for(lambda: (r := api.get(f"/api/runs/{run_id}").json())["status"] in (
        "succeeded", "failed") and r, timeout=240, what=f"the {algorithm} run to end")
    assert done["status"] == "succeeded", done["error"]
    series = api.get(f"/api/runs/{run_id}/metrics").json()["series"]
    for key in ("reward/mean", "kl/mean", "loss/policy", "entropy/mean", "clip/region"):
        assert series[key]["x"] == [1, 2], key
    assert done["summary"]["reward_final"] is not None
    assert [r["id"] for r in api.get(f"/api/runs?algorithm={algorithm}").json()] == [run_id]
    checkpoints = api.get(f"/api/runs/{run_id}/checkpoints").json()
    assert checkpoints and checkpoints[0]["step"] == 2
    compare = api.get(f"/api/runs/compare?ids={run_id}").json()
    assert compare["runs"][0]["algorithm"] == algorithm
