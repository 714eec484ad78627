"""End to end on real parts: the API, the real Redis, a real Celery worker process training the
tiny model, the live event stream, and a downloaded checkpoint loaded by plain transformers."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for
from tests.runs_helpers import read_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SMALL = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 12}


def launch(api, dataset_id, **hyperparameters):
    response = api.post("/api/runs", json.dumps({
        "name": "e2e", "algorithm": "grpo", "dataset": dataset_id, "base_model": "tiny-llama",
        "rewards": [{"type": "length", "target": 60, "weight": 1.0},
                    {"type": "regex", "pattern": "^[A-Za-z].*", "weight": 0.5}],
        "hyperparameters": {**SMALL, **hyperparameters}}), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_grpo_run_streams_its_steps_and_its_checkpoint_loads(api, worker, tmp_path):
    dataset = upload_prompts(api, PROMPTS)
    run = launch(api, dataset["id"], max_steps=4, checkpoint_every=2)
    assert run["status"] == "queued"

    events = read_events(api, run["id"])  # blocks until the run ends, then the server closes
    steps = [(t, data) for t, kind, data, _ in events if kind == "step"]
    assert [d["step"] for _, d in steps] == [1, 2, 3, 4]
    assert all(steps[i][0] < steps[i + 1][0] for i in range(3)), "steps arrived at once"
    assert events[-1][1] == "end" and events[-1][2]["status"] == "succeeded"
    for _, data in steps:
        for key in ("reward/mean", "reward/length/mean", "reward/regex/mean", "kl/mean",
                    "loss/policy", "clip/region", "completion/length_mean",
                    "perf/tokens_per_s", "perf/peak_mem_mb"):
            assert key in data["metrics"], key

    # a reconnecting viewer resumes after the last id it saw and misses nothing
    second_id = [e for e in events if e[1] == "step"][1][3]
    resumed = read_events(api, run["id"], HTTP_LAST_EVENT_ID=second_id)
    assert [d["step"] for _, kind, d, _ in resumed if kind == "step"] == [3, 4]
    assert resumed[-1][1] == "end"

    detail = api.get(f"/api/runs/{run['id']}").json()
    assert detail["status"] == "succeeded" and detail["step"] == 4
    assert detail["started_at"] and detail["finished_at"]
    metrics = api.get(f"/api/runs/{run['id']}/metrics?after=2").json()
    assert metrics["last_step"] == 4 and metrics["series"]["reward/mean"]["x"] == [3, 4]
    samples = api.get(f"/api/runs/{run['id']}/samples?step=4").json()
    assert samples and {"prompt", "completion", "rewards", "advantage"} <= set(samples[0])
    assert set(samples[0]["rewards"]) == {"length", "regex"}

    checkpoints = api.get(f"/api/runs/{run['id']}/checkpoints").json()
    assert [c["step"] for c in checkpoints] == [4, 2]
    final = checkpoints[0]
    # the bytes it takes on disk: the model, the optimizer state kept to resume, the zip
    disk = final["disk"]
    assert disk["archive"] == final["size_bytes"] and disk["training_state"] > disk["weights"]
    assert disk["total"] == disk["weights"] + disk["training_state"] + disk["archive"]
    response = api.get(f"/api/checkpoints/{final['id']}/download")
    assert response.status_code == 200
    blob = b"".join(response.streaming_content)
    assert len(blob) == final["size_bytes"]
    assert hashlib.sha256(blob).hexdigest() == final["sha256"]
    zipfile.ZipFile(io.BytesIO(blob)).extractall(tmp_path)
    folder = next(tmp_path.iterdir())
    assert folder.name == f"run-{run['id']}-step-4"  # two downloads never unpack onto each other
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["step"] == 4 and manifest["hyperparameters"]["max_steps"] == 4

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("Hello", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=2, do_sample=False).shape[1] >= 2

    models = {m["id"]: m for m in api.get("/api/models").json()}
    assert models[f"ckpt-{final['id']}"]["source"] == "checkpoint"


def test_cancel_stops_a_running_run_within_two_steps(api, worker):
    dataset = upload_prompts(api, PROMPTS)
    run = launch(api, dataset["id"], max_steps=500)
    url = f"/api/runs/{run['id']}"
    wait_for(lambda: api.get(url).json()["step"] >= 1, what="the first step")
    response = api.post(url + "/cancel")
    assert response.status_code == 202
    step_at_cancel = response.json()["step"]
    final = wait_for(lambda: (r := api.get(url).json())["status"] == "cancelled" and r,
                     timeout=60, what="the run to stop")
    assert final["step"] <= step_at_cancel + 2
    assert api.post(url + "/cancel").status_code == 409


def test_a_run_whose_data_vanished_fails_with_the_error_shown(api, worker):
    from webapp.datasets.models import Dataset

    dataset = upload_prompts(api, PROMPTS)
    Dataset.objects.get(pk=dataset["id"]).file_path.unlink()
    run = launch(api, dataset["id"], max_steps=2)
    final = wait_for(lambda: (r := api.get(f"/api/runs/{run['id']}").json())["status"]
                     == "failed" and r, what="the run to fail")
    assert "No such file" in final["error"]


def test_an_unknown_last_event_id_replays_the_whole_stream(api, worker):
    dataset = upload_prompts(api, PROMPTS)
    run = launch(api, dataset["id"], max_steps=2)
    read_events(api, run["id"])  # until it ends
    events = read_events(api, run["id"], HTTP_LAST_EVENT_ID="not-an-id; DROP")
    assert [d["step"] for _, kind, d, _ in events if kind == "step"] == [1, 2]
    assert events[-1][1] == "end"
