"""The runs API: launching, validation, permissions, metrics, cancel, and attempt guards.
These tests use the database only; tests/test_e2e_training.py runs a real worker."""
from __future__ import annotations

import json

import pytest

from tests.conftest import PROMPTS, upload_prompts
from webapp.runs import attempts
from webapp.runs.models import Checkpoint, Metric, Run, RunStatus

pytestmark = pytest.mark.django_db


def body(dataset_id, **overrides):
    payload = {"name": "r", "algorithm": "grpo", "dataset": dataset_id,
               "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 50}],
               "hyperparameters": {"max_steps": 3}}
    payload.update(overrides)
    return payload


def post_run(client, payload):
    return client.post("/api/runs", json.dumps(payload), content_type="application/json")


@pytest.fixture
def dataset(api):
    return upload_prompts(api, PROMPTS[:4])


@pytest.fixture
def run(api, dataset):
    response = post_run(api, body(dataset["id"]))
    assert response.status_code == 201, response.content
    return response.json()


def test_a_launch_returns_the_stored_run_with_every_default_filled_in(api, run):
    assert run["status"] == "queued" and run["step"] == 0 and run["max_steps"] == 3
    assert run["hyperparameters"]["group_size"] == 8
    assert run["hyperparameters"]["loss_type"] == "grpo"
    assert run["rewards"] == [{"type": "length", "target": 50, "weight": 1.0}]
    assert api.get(f"/api/runs/{run['id']}").json()["id"] == run["id"]
    assert [r["id"] for r in api.get("/api/runs").json()] == [run["id"]]


@pytest.mark.parametrize("overrides, field", [
    ({"name": ""}, "name"),
    ({"algorithm": "dpo"}, "algorithm"),
    ({"dataset": None}, "dataset"),
    ({"dataset": 999999}, "dataset"),
    ({"base_model": "gpt-9"}, "base_model"),
    ({"hyperparameters": {"group_size": 1}}, "hyperparameters.group_size"),
    ({"hyperparameters": {"learning_rate": "fast"}}, "hyperparameters.learning_rate"),
    ({"hyperparameters": {"max_steps": 2.5}}, "hyperparameters.max_steps"),
    ({"hyperparameters": {"loss_type": "mean"}}, "hyperparameters.loss_type"),
    ({"hyperparameters": {"warp_factor": 9}}, "hyperparameters.warp_factor"),
    ({"hyperparameters": {"prompts_per_step": 3, "group_size": 2, "micro_batch_size": 4}},
     "hyperparameters.micro_batch_size"),
    ({"rewards": []}, "rewards"),
    ({"rewards": [{"type": "magic"}]}, "rewards[0]"),
    ({"rewards": [{"type": "length"}]}, "rewards[0]"),
    ({"rewards": [{"type": "regex", "pattern": "(unclosed"}]}, "rewards[0]"),
    ({"rewards": [{"type": "exact_match", "column": "answer"}]}, "rewards[0]"),
    ({"rewards": [{"type": "length", "target": 5, "weight": "heavy"}]}, "rewards[0]"),
])
def test_a_bad_launch_is_a_422_naming_the_field_and_stores_nothing(api, dataset, overrides,
                                                                    field):
    response = post_run(api, body(dataset["id"], **overrides))
    assert response.status_code == 422, response.content
    error = response.json()
    assert error["error"] == "invalid" and error["detail"]
    assert field in error["fields"], error
    assert not Run.objects.exists()


def test_malformed_json_is_a_400(api):
    response = api.post("/api/runs", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_a_run_needs_a_prompts_dataset_not_preference_pairs(api, user):
    import io

    f = io.BytesIO(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    f.name = "prefs.jsonl"
    prefs = api.post("/api/datasets", {"file": f, "name": "prefs", "kind": "preferences"})
    assert prefs.status_code == 201
    response = post_run(api, body(prefs.json()["id"]))
    assert response.status_code == 422 and response.json()["fields"]["dataset"] == "wrong kind"


def test_another_users_dataset_cannot_be_trained_on(other_api, dataset):
    response = post_run(other_api, body(dataset["id"]))
    assert response.status_code == 422 and "dataset" in response.json()["fields"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("method, path", [
    ("get", "/api/runs/{run}"), ("get", "/api/runs/{run}/metrics"),
    ("get", "/api/runs/{run}/samples"), ("get", "/api/runs/{run}/checkpoints"),
    ("post", "/api/runs/{run}/cancel"), ("get", "/api/runs/{run}/events"),
    ("get", "/api/checkpoints/{checkpoint}/download"),
])
def test_another_users_run_is_a_404_on_every_route(other_api, run, method, path):
    checkpoint = Checkpoint.objects.create(run_id=run["id"], step=1, path="x", archive="x.zip",
                                           size_bytes=1, sha256="0" * 64)
    url = path.format(run=run["id"], checkpoint=checkpoint.pk)
    response = getattr(other_api, method)(url)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert other_api.get("/api/runs").json() == []


@pytest.mark.parametrize("method, path", [
    ("get", "/api/runs"), ("post", "/api/runs"), ("get", "/api/models"),
    ("get", "/api/runs/1/metrics"), ("get", "/api/runs/1/events"),
    ("get", "/api/checkpoints/1/download"), ("get", "/api/datasets"),
])
def test_no_token_is_a_401(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_wrong_token_is_a_401(client):
    response = client.get("/api/runs", HTTP_AUTHORIZATION="Bearer rlhf_not-a-token")
    assert response.status_code == 401


def test_cancelling_a_queued_run_ends_it_at_once_and_twice_is_a_409(api, run):
    response = api.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    again = api.post(f"/api/runs/{run['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "wrong_state"


def test_metrics_return_only_steps_after_the_cursor(api, run):
    Metric.objects.bulk_create([Metric(run_id=run["id"], step=s, key=k, value=s * 10 + i)
                                for s in (1, 2, 3) for i, k in enumerate(["reward/mean",
                                                                          "kl/mean"])])
    data = api.get(f"/api/runs/{run['id']}/metrics?after=1").json()
    assert data["last_step"] == 3
    assert data["series"]["reward/mean"] == {"x": [2, 3], "y": [20.0, 30.0]}
    assert data["series"]["kl/mean"] == {"x": [2, 3], "y": [21.0, 31.0]}
    assert api.get(f"/api/runs/{run['id']}/metrics?after=3").json() == {
        "last_step": 3, "series": {}}


def test_writes_from_a_stale_attempt_are_refused(run):
    attempt = attempts.run_claim(run_id=run["id"], worker="w1")
    assert attempt == 1
    attempts.run_record_step(run_id=run["id"], attempt=1, step=1, metrics={"reward/mean": 1.0})
    attempts.run_record_step(run_id=run["id"], attempt=1, step=1, metrics={"reward/mean": 9.0})
    assert list(Metric.objects.values_list("step", "value")) == [(1, 1.0)]  # idempotent
    Run.objects.filter(pk=run["id"]).update(attempt=2)  # a newer attempt took over
    with pytest.raises(attempts.StaleAttempt):
        attempts.run_record_step(run_id=run["id"], attempt=1, step=2, metrics={"x": 1.0})
    assert not attempts.run_finish(run_id=run["id"], attempt=1, status=RunStatus.SUCCEEDED)
    assert attempts.run_should_stop(run_id=run["id"], attempt=1)
    assert Metric.objects.count() == 1
    assert Run.objects.get(pk=run["id"]).status == RunStatus.RUNNING


def test_a_run_can_be_claimed_once(run):
    assert attempts.run_claim(run_id=run["id"], worker="w1") == 1
    assert attempts.run_claim(run_id=run["id"], worker="w2") is None


def test_the_models_list_has_the_bundled_tiny_model_and_checkpoints_of_own_runs(api, other_api,
                                                                                run):
    checkpoint = Checkpoint.objects.create(run_id=run["id"], step=3, path="p", archive="p.zip",
                                           size_bytes=1, sha256="0" * 64)
    mine = {m["id"]: m for m in api.get("/api/models").json()}
    assert mine["tiny-llama"]["source"] == "bundled"
    assert mine[f"ckpt-{checkpoint.pk}"] == {"id": f"ckpt-{checkpoint.pk}", "kind": "policy",
                                             "source": "checkpoint", "ready": True,
                                             "revision": None, "problem": None,
                                             "card": None,  # no files at "p"
                                             "name": "r · step 3", "checkpoint": checkpoint.pk,
                                             "run": run["id"], "step": 3,
                                             "parent": "tiny-llama"}
    assert mine["tiny-llama"]["parent"] is None and mine["tiny-llama"]["run"] is None
    theirs = {m["id"] for m in other_api.get("/api/models").json()}
    assert f"ckpt-{checkpoint.pk}" not in theirs


def test_a_run_from_a_checkpoint_records_its_lineage(api, dataset, run):
    checkpoint = Checkpoint.objects.create(run_id=run["id"], step=3, path="p", archive="p.zip",
                                           size_bytes=1, sha256="0" * 64)
    child = post_run(api, body(dataset["id"], base_model=f"ckpt-{checkpoint.pk}")).json()
    assert child["parent_checkpoint"] == checkpoint.pk
    assert child["base_model"] == f"ckpt-{checkpoint.pk}"


def test_the_openapi_document_describes_the_runs_api(client):
    doc = client.get("/api/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}/metrics", "/api/datasets",
            "/api/checkpoints/{checkpoint_id}/download"} <= set(doc["paths"])


def test_the_hyperparameter_schema_lists_defaults_and_help(api):
    fields = {f["name"]: f for f in api.get("/api/hyperparameters/grpo").json()}
    assert fields["group_size"]["default"] == 8 and fields["group_size"]["help"]
    assert fields["loss_type"]["choices"] == ["grpo", "bnpo", "dr_grpo"]
    assert api.get("/api/hyperparameters/sft").status_code == 404


def upload(client, kind, lines, name="data"):
    import io

    f = io.BytesIO("".join(json.dumps(r) + "\n" for r in lines).encode())
    f.name = f"{name}.jsonl"
    response = client.post("/api/datasets", {"file": f, "name": name, "kind": kind})
    assert response.status_code == 201, response.content
    return response.json()


PAIRS = [{"prompt": "p", "chosen": "short", "rejected": "a much longer answer"}]


def test_a_reward_model_run_takes_preference_pairs_and_no_rewards(api, dataset):
    prefs = upload(api, "preferences", PAIRS)
    response = post_run(api, body(prefs["id"], algorithm="reward_model", rewards=None,
                                  hyperparameters={"batch_size": 4}))
    assert response.status_code == 201, response.content
    assert response.json()["hyperparameters"]["eval_fraction"] == 0.1
    wrong = post_run(api, body(dataset["id"], algorithm="reward_model", rewards=None))
    assert wrong.status_code == 422 and wrong.json()["fields"]["dataset"] == "wrong kind"
    with_rewards = post_run(api, body(prefs["id"], algorithm="reward_model"))
    assert with_rewards.status_code == 422 and "rewards" in with_rewards.json()["fields"]


def test_a_reward_model_run_can_start_from_the_minilm_encoder_but_grpo_cannot(api, dataset):
    prefs = upload(api, "preferences", PAIRS)
    models = {m["id"]: m for m in api.get("/api/models").json()}
    assert models["all-minilm-l6-v2"]["kind"] == "encoder"
    ok = post_run(api, body(prefs["id"], algorithm="reward_model", rewards=None,
                            base_model="all-minilm-l6-v2"))
    assert ok.status_code == 201, ok.content
    refused = post_run(api, body(dataset["id"], base_model="all-minilm-l6-v2"))
    assert refused.status_code == 422 and "base_model" in refused.json()["fields"]


def test_a_reward_model_source_must_name_a_fitted_reward_model(api, dataset, run):
    policy = Checkpoint.objects.create(run_id=run["id"], step=3, path="p", archive="p.zip",
                                       size_bytes=1, sha256="0" * 64)
    for model in ("no-such-model", f"ckpt-{policy.pk}"):
        response = post_run(api, body(dataset["id"], algorithm="ppo", rewards=[
            {"type": "reward_model", "model": model}]))
        assert response.status_code == 422, response.content
        assert "rewards[0]" in response.json()["fields"]
    prefs = upload(api, "preferences", PAIRS)
    rm_run = post_run(api, body(prefs["id"], algorithm="reward_model", rewards=None)).json()
    fitted = Checkpoint.objects.create(run_id=rm_run["id"], step=5, path="r", archive="r.zip",
                                       size_bytes=1, sha256="1" * 64)
    ppo = post_run(api, body(dataset["id"], algorithm="ppo", rewards=[
        {"type": "reward_model", "model": f"ckpt-{fitted.pk}", "weight": 2.0},
        {"type": "length", "target": 40}], hyperparameters={"prompts_per_step": 4}))
    assert ppo.status_code == 201, ppo.content
    assert ppo.json()["rewards"][0] == {"type": "reward_model", "model": f"ckpt-{fitted.pk}",
                                        "weight": 2.0}


def test_ppo_minibatches_must_divide_the_prompts(api, dataset):
    response = post_run(api, body(dataset["id"], algorithm="ppo",
                                  hyperparameters={"prompts_per_step": 3, "minibatches": 2}))
    assert response.status_code == 422
    assert "hyperparameters.minibatches" in response.json()["fields"]


def test_a_new_run_starts_with_an_empty_event_stream(api, dataset, transactional_db):
    from webapp.runs import events

    events.publish_end(999_999, {"status": "cancelled"})  # left over under a reused id
    Run.objects.all().delete()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.db.models.Model.save", _save_with_id(999_999))
        # not sent to the queue: a session worker listening there would claim the run and
        # write its first events before this test looks
        mp.setattr("webapp.jobs.job_enqueue", lambda kind, pk: None)
        run = post_run(api, body(dataset["id"])).json()
    assert run["id"] == 999_999
    assert not events.stream_exists(999_999)


def _save_with_id(pk):
    from django.db.models import Model

    original = Model.save

    def save(self, *args, **kwargs):
        if isinstance(self, Run) and self.pk is None:
            self.pk = pk
        return original(self, *args, **kwargs)
    return save
