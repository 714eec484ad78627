"""An algorithm and a reward type declared at test time, and nothing else written for them,
appear in the launch form, the API's schemas and validation, the worker's dispatch and
preload, and the charts: each is one declaration, read by every part of the product."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.conftest import PROMPTS, upload_prompts
from training.algorithms import AlgorithmSpec, register_algorithm, unregister_algorithm
from training.charts import Chart, one
from training.config import BaseConfig, hp
from training.reward_types import (
    RewardArg,
    RewardType,
    register_reward_type,
    unregister_reward_type,
)


@dataclass(frozen=True)
class ThrowawayConfig(BaseConfig):
    """A config with one knob of its own."""

    knob: int = hp(3, "How hard to turn the knob.", lo=1, hi=9, group="throwaway")


def shout_score(prompts, completions, rows, args):
    return [float(c.isupper()) * args["volume"] for c in completions]


@pytest.fixture
def throwaway():
    spec = register_algorithm(AlgorithmSpec(
        id="throwaway", title="Throwaway", summary="Turns a knob.", config=ThrowawayConfig,
        engine="tests.throwaway_engine", order=50,
        presets={"Loud": {"knob": 9}},
        charts=(Chart("knob", "Knob position", "other", one("throwaway/knob", "knob")),)))
    reward = register_reward_type(RewardType(
        id="shout", title="Shouting", help="volume when the completion is upper case.",
        args=(RewardArg("volume", "float", "a number from 0 to 10", lo=0, hi=10),),
        score=shout_score))
    yield spec, reward
    unregister_algorithm("throwaway")
    unregister_reward_type("shout")


def test_the_form_offers_the_new_algorithm_and_reward_type(client, user, throwaway):
    client.force_login(user)
    page = client.get("/runs/new/?algorithm=throwaway").content.decode()
    assert 'href="?algorithm=throwaway"' in page and "New Throwaway run" in page
    assert 'name="hp_knob"' in page and "How hard to turn the knob." in page
    assert "Loud" in page  # its preset
    grpo = client.get("/runs/new/?algorithm=grpo").content.decode()
    assert 'value="shout"' in grpo and 'name="reward-0-shout-volume"' in grpo


def test_the_api_describes_and_validates_both(api, user, throwaway, datasets_dir):
    schema = {f["name"]: f for f in api.get("/api/hyperparameters/throwaway").json()}
    assert schema["knob"]["default"] == 3 and schema["knob"]["hi"] == 9
    assert "throwaway" in [a["id"] for a in api.get("/api/algorithms").json()]
    shout = next(t for t in api.get("/api/rewards").json() if t["type"] == "shout")
    assert shout["args"][0]["name"] == "volume" and shout["args"][0]["hi"] == 10

    dataset = upload_prompts(api, PROMPTS)
    body = {"name": "t", "algorithm": "throwaway", "dataset": dataset["id"],
            "base_model": "tiny-llama", "rewards": [{"type": "shout", "volume": 2}],
            "hyperparameters": {"knob": 12}}
    refused = api.post("/api/runs", json.dumps(body), content_type="application/json")
    assert refused.status_code == 422
    assert refused.json()["fields"] == {"hyperparameters.knob": "must be at most 9"}
    body["rewards"] = [{"type": "shout", "volume": 11}]
    body["hyperparameters"] = {"knob": 4}
    refused = api.post("/api/runs", json.dumps(body), content_type="application/json")
    assert "rewards[0]" in refused.json()["fields"]
    body["rewards"] = [{"type": "shout", "volume": 2}]
    made = api.post("/api/runs", json.dumps(body), content_type="application/json")
    assert made.status_code == 201, made.content
    assert api.get("/api/runs?algorithm=throwaway").json()[0]["id"] == made.json()["id"]


def test_the_worker_dispatches_and_preloads_the_new_engine(api, user, throwaway,
                                                          transactional_db, settings,
                                                          tmp_path):
    from webapp.runs.models import Metric, Run
    from workers.celery import engine_modules
    from workers.training_job import run_training

    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    assert "tests.throwaway_engine" in engine_modules()
    dataset = upload_prompts(api, PROMPTS)
    # stored as the API stores it, but not queued: this test is the worker (a session worker
    # on the queue would take it first)
    run = {"id": Run.objects.create(
        owner=user, name="t", algorithm="throwaway", dataset_id=dataset["id"],
        base_model="tiny-llama", rewards=[{"type": "shout", "weight": 1.0, "volume": 2}],
        hyperparameters={"knob": 7, "max_steps": 2}, max_steps=2).pk}
    run_training(run["id"], worker="in-process")  # what the Celery task calls
    done = Run.objects.get(pk=run["id"])
    assert done.status == "succeeded", done.error
    values = dict(Metric.objects.filter(run=done, step=2).values_list("key", "value"))
    assert values["throwaway/knob"] == 7.0 and values["reward/shout/mean"] == 2.0
    assert done.reward_final == 2.0  # the summary reads the declared reward key


def test_the_run_page_charts_the_new_algorithms_metrics(client, user, throwaway):
    from tests.runs_helpers import make_dataset, make_run

    run = make_run(user, make_dataset(user), algorithm="throwaway", steps=2,
                   hyperparameters={"max_steps": 2, "knob": 3},
                   metrics=lambda s: {"throwaway/knob": 3.0})
    client.force_login(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Knob position" in page  # its chart, sent to the page in the catalogue
    assert "Throwaway" in page
