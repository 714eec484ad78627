"""A judge model as a reward: the score parsed from its reply (misses counted), the template
filled without format injection, tiny-llama judging in the engine, and a run rewarded by it
through the real worker."""
from __future__ import annotations

import json

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for
from tests.training_helpers import TINY_LLAMA, one_torch_thread
from training.judge import JudgeScorer, fill, parse_score


@pytest.mark.parametrize("reply, score", [
    ("8", 8.0), (" Score: 7/10", 7.0), ("10", 10.0), ("3.5 maybe", 3.0),
    ("11", None), ("ten", None), ("0", None), ("", None),
])
def test_the_score_is_the_first_number_from_1_to_10(reply, score):
    assert parse_score(reply) == score


def test_braces_in_the_texts_stay_text():
    assert fill("Q: {prompt} A: {completion}", "{completion}", "x = {1}") == \
        "Q: {completion} A: x = {1}"


def test_tiny_llama_judges_and_its_misses_are_counted():
    with one_torch_thread():
        judge = JudgeScorer(TINY_LLAMA, device="cpu", args={"batch_size": 2})
        scores = judge(["What is 2+2?"] * 3, ["4", "five", "I don't know"])

    assert len(scores) == 3 and all(s == 0.0 or 1.0 <= s <= 10.0 for s in scores)
    assert set(judge.last_metrics) == {"miss_frac", "tokens_per_s"}
    assert judge.last_metrics["miss_frac"] == sum(s == 0.0 for s in scores) / 3
    assert judge.last_metrics["tokens_per_s"] > 0


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_run_rewarded_by_a_judge_trains_on_the_worker(api, worker):
    dataset = upload_prompts(api, PROMPTS)
    response = api.post("/api/runs", json.dumps({
        "name": "judged", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [
            {"type": "length", "target": 30, "weight": 0.01},
            {"type": "judge", "model": "tiny-llama", "batch_size": 4}],
        "hyperparameters": {"max_steps": 1, "max_new_tokens": 8, "group_size": 2,
                            "prompts_per_step": 2}}), content_type="application/json")
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]

    done = wait_for(lambda: (r := api.get(f"/api/runs/{run_id}").json())["status"] in (
        "succeeded", "failed") and r, timeout=200, what="the judged run")

    assert done["status"] == "succeeded", done["error"]
    series = api.get(f"/api/runs/{run_id}/metrics").json()["series"]
    assert series["reward/judge/miss_frac"]["x"] == [1]
    assert series["reward/judge/tokens_per_s"]["y"][0] > 0


def test_a_judge_must_be_a_causal_lm_of_yours(api):
    dataset = upload_prompts(api, PROMPTS[:4])

    response = api.post("/api/runs", json.dumps({
        "name": "x", "algorithm": "grpo", "dataset": dataset["id"], "base_model": "tiny-llama",
        "rewards": [{"type": "judge", "model": "all-minilm-l6-v2"}]}),
        content_type="application/json")

    assert response.status_code == 422 and "rewards[0]" in response.json()["fields"]
