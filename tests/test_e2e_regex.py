"""A catastrophic regex reward through a real worker: with a backtracking engine the patterns
below never finish on a completion that fails to match (the worker hangs, and every queued
run waits behind it). On RE2 the run ends like any other and the next run starts."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def launch(api, dataset_id, rewards, **hyperparameters):
    response = api.post("/api/runs", json.dumps({
        "name": "regex", "algorithm": "grpo", "dataset": dataset_id, "base_model": "tiny-llama",
        "rewards": rewards, "hyperparameters": {"prompts_per_step": 2, "group_size": 4,
                                                **hyperparameters}}),
        content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_catastrophic_pattern_neither_hangs_the_worker_nor_delays_the_next_run(api, worker):
    dataset = upload_prompts(api, PROMPTS)
    hostile = launch(api, dataset["id"], [{"type": "regex", "pattern": "(.*)*ZZZ"},
                                          {"type": "regex", "pattern": "(a+)+$"}],
                     max_steps=2, max_new_tokens=64)
    following = launch(api, dataset["id"], [{"type": "length", "target": 20}], max_steps=1,
                       max_new_tokens=8)

    def ended(run_id):
        run = api.get(f"/api/runs/{run_id}").json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    first = wait_for(lambda: ended(hostile["id"]), timeout=300, what="the regex run to end")
    second = wait_for(lambda: ended(following["id"]), timeout=120, what="the next run to end")
    assert first["status"] == "succeeded", first["error"]
    assert second["status"] == "succeeded", second["error"]

    series = api.get(f"/api/runs/{hostile['id']}/metrics").json()["series"]
    lengths = series["completion/length_mean"]["y"]
    assert min(lengths) > 30  # long random completions, none of which matches
    assert series["reward/regex_1/mean"]["y"] == [0.0, 0.0]
    assert max(series["perf/step_s"]["y"]) < 60  # scoring is not where the time goes
    # the next run started as soon as the worker was free (a fresh child: model load)
    gap = (datetime.fromisoformat(second["started_at"])
           - datetime.fromisoformat(first["finished_at"])).total_seconds()
    assert gap < 60, f"the next run waited {gap:.0f}s after the regex run ended"
