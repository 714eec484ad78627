"""The whole RLHF loop on real parts: a worker generates a labeling batch, two people rank it
through the API, the rankings become pairs, a reward model is fitted on them, and a short PPO
run trains against that reward model."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def finished(client, url):
    """Wait until the run or batch at ``url`` leaves its working states; returns its JSON."""
    def done():
        body = client.get(url).json()
        return body if body["status"] in ("ready", "succeeded", "failed", "cancelled") else None
    return wait_for(done, timeout=240, what=url)


def rank_everything(client, batch_id):
    """Rank every item as a person who prefers shorter answers; returns how many were ranked."""
    ranked = 0
    while True:
        response = client.get(f"/api/labeling/batches/{batch_id}/next")
        if response.status_code == 204:
            return ranked
        item = response.json()
        order = sorted(item["responses"], key=lambda r: (len(r["text"]), r["id"]))
        posted = client.post(f"/api/labeling/items/{item['item']}/ranking",
                             json.dumps({"ranking": [[r["id"]] for r in order]}),
                             content_type="application/json")
        assert posted.status_code == 201, posted.content
        ranked += 1


def post_json(client, url, payload):
    return client.post(url, json.dumps(payload), content_type="application/json")


def test_rankings_become_a_reward_model_that_a_ppo_run_trains_against(api, other_api, worker,
                                                                      tmp_path):
    prompts = upload_prompts(api, PROMPTS[:4])
    batch = post_json(api, "/api/labeling/batches", {
        "name": "shorter is better", "dataset": prompts["id"], "model": "tiny-llama",
        "responses_per_prompt": 3, "shared": True})
    assert batch.status_code == 201, batch.content
    batch_url = f"/api/labeling/batches/{batch.json()['id']}"
    assert finished(api, batch_url)["status"] == "ready"
    assert api.get(batch_url).json()["items_total"] == 4

    assert rank_everything(api, batch.json()["id"]) == 4
    assert rank_everything(other_api, batch.json()["id"]) == 4
    progress = api.get(batch_url).json()
    assert progress["items_ranked_by_you"] == 4 and progress["rankings_total"] == 8

    export = api.get(batch_url + "/export?format=pairs")
    body = b"".join(export.streaming_content).decode()
    lines = [json.loads(line) for line in body.splitlines() if line]
    assert {line["annotator"] for line in lines} == {"alice", "mallory"}
    assert all(len(line["chosen"]) <= len(line["rejected"]) for line in lines)
    # 2 people x 4 items x 3 pairs, less any pair of identical generated texts
    assert 0 < len(lines) <= 24

    dataset = api.post(batch_url + "/dataset")
    assert dataset.status_code == 201, dataset.content
    assert dataset.json()["kind"] == "preferences" and dataset.json()["rows"] == len(lines)

    rm = post_json(api, "/api/runs", {
        "name": "rm", "algorithm": "reward_model", "dataset": dataset.json()["id"],
        "base_model": "tiny-llama", "hyperparameters": {
            "max_steps": 6, "epochs": 10, "batch_size": 8, "max_length": 96,
            "learning_rate": 2e-3, "eval_fraction": 0.25, "eval_every": 3}})
    assert rm.status_code == 201, rm.content
    rm_done = finished(api, f"/api/runs/{rm.json()['id']}")
    assert rm_done["status"] == "succeeded", rm_done["error"]
    rm_metrics = api.get(f"/api/runs/{rm.json()['id']}/metrics").json()["series"]
    assert rm_metrics["eval/accuracy"]["x"][-1] == 6 == rm_done["max_steps"]  # max_steps caps
    assert {"loss/train", "eval/margin"} <= set(rm_metrics)
    checkpoint = api.get(f"/api/runs/{rm.json()['id']}/checkpoints").json()[0]
    reward_model = f"ckpt-{checkpoint['id']}"
    models = {m["id"]: m for m in api.get("/api/models").json()}
    assert models[reward_model]["kind"] == "reward"

    archive = api.get(f"/api/checkpoints/{checkpoint['id']}/download")
    zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))).extractall(tmp_path)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = next(tmp_path.iterdir())
    classifier = AutoModelForSequenceClassification.from_pretrained(folder)
    assert classifier.config.num_labels == 1
    AutoTokenizer.from_pretrained(folder)

    ppo = post_json(api, "/api/runs", {
        "name": "ppo", "algorithm": "ppo", "dataset": prompts["id"], "base_model": "tiny-llama",
        "rewards": [{"type": "reward_model", "model": reward_model}],
        "hyperparameters": {"max_steps": 2, "prompts_per_step": 2, "minibatches": 1,
                            "ppo_epochs": 2, "max_new_tokens": 8}})
    assert ppo.status_code == 201, ppo.content
    ppo_done = finished(api, f"/api/runs/{ppo.json()['id']}")
    assert ppo_done["status"] == "succeeded", ppo_done["error"]
    series = api.get(f"/api/runs/{ppo.json()['id']}/metrics").json()["series"]
    for key in ("reward/mean", "reward/reward_model/mean", "loss/value",
                "value/explained_var", "value/clip_frac", "kl/approx", "perf/peak_mem_mb"):
        assert series[key]["x"] == [1, 2], key
