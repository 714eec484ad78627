"""Tags and notes on runs (launch, PATCH, filter, compare by tag), the exports of metrics and
samples (matching the stored rows), and a queued run's place in the queue, through the API."""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import PROMPTS, upload_prompts
from tests.runs_helpers import make_dataset, make_run, sample_rows
from webapp.runs.models import Metric, Run, Sample

pytestmark = pytest.mark.django_db


def _patch(client, run_id, body):
    return client.patch(f"/api/runs/{run_id}", json.dumps(body),
                        content_type="application/json")


def _launch(api, dataset_id, **extra):
    body = {"name": "tagged", "algorithm": "grpo", "dataset": dataset_id,
            "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 10}],
            "hyperparameters": {"max_steps": 2}} | extra
    return api.post("/api/runs", json.dumps(body), content_type="application/json")


def test_tags_and_notes_are_set_at_launch_replaced_by_patch_and_filter_the_list(
        api, user, datasets_dir):
    dataset = upload_prompts(api, PROMPTS)
    response = _launch(api, dataset["id"], tags=["baseline", " lr-sweep ", "baseline"],
                       notes="Trying a shorter target.")
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["tags"] == ["baseline", "lr-sweep"]  # stripped, duplicates dropped
    assert run["notes"] == "Trying a shorter target."
    other = _launch(api, dataset["id"], name="untagged").json()

    listed = api.get("/api/runs?tag=lr-sweep").json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert api.get("/api/runs?tag=nothing").json() == []

    changed = _patch(api, run["id"], {"tags": ["final"]})
    assert changed.status_code == 200 and changed.json()["tags"] == ["final"]
    assert changed.json()["notes"] == "Trying a shorter target."  # left as it was
    assert _patch(api, run["id"], {"notes": "done"}).json()["notes"] == "done"
    assert api.get("/api/runs?tag=lr-sweep").json() == []
    assert [r["id"] for r in api.get("/api/runs?tag=final").json()] == [run["id"]]
    assert api.get(f"/api/runs/{other['id']}").json()["tags"] == []


@pytest.mark.parametrize("body, field", [
    ({"tags": ["a,b"]}, "tags"), ({"tags": "x" * 41}, "tags"),
    ({"tags": [f"t{i}" for i in range(17)]}, "tags"), ({"tags": [1]}, "tags"),
    ({"tags": ["a\u202eb"]}, "tags"), ({"notes": "n" * 20_001}, "notes"), ({"notes": 5}, "notes"),
])
def test_bad_tags_and_notes_are_a_422_naming_the_field_and_change_nothing(
        api, user, body, field):
    run = make_run(user, make_dataset(user), steps=1)
    response = _patch(api, run.pk, body)
    assert response.status_code == 422, response.content
    assert field in response.json()["fields"]
    run.refresh_from_db()
    assert run.tags == [] and run.notes == ""


def test_patch_needs_a_field_refuses_others_and_hides_foreign_runs(api, other_api, user):
    run = make_run(user, make_dataset(user), steps=1)
    assert _patch(api, run.pk, {}).status_code == 422
    assert _patch(api, run.pk, {"name": "renamed"}).status_code == 422
    assert _patch(other_api, run.pk, {"tags": ["mine"]}).status_code == 404
    assert other_api.get(f"/api/runs/{run.pk}/export").status_code == 404


def test_compare_by_tag_takes_the_tagged_runs(api, user):
    dataset = make_dataset(user)
    a, b = make_run(user, dataset, name="a", steps=2), make_run(user, dataset, name="b", steps=2)
    make_run(user, dataset, name="c", steps=2)
    for run in (a, b):
        _patch(api, run.pk, {"tags": ["sweep"]})
    body = api.get("/api/runs/compare?tag=sweep").json()
    assert sorted(r["name"] for r in body["runs"]) == ["a", "b"]
    assert api.get("/api/runs/compare?tag=none-has-it").status_code == 422


def test_metric_exports_hold_exactly_the_stored_rows(api, user):
    run = make_run(user, make_dataset(user), steps=5)
    stored = {(m.step, m.key): m.value for m in Metric.objects.filter(run=run)}

    response = api.get(f"/api/runs/{run.pk}/export?what=metrics&format=jsonl")
    assert response.status_code == 200
    assert f"run-{run.pk}-metrics.jsonl" in response["Content-Disposition"]
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert {(r["step"], r["key"]): r["value"] for r in lines} == stored
    assert len(lines) == len(stored)

    response = api.get(f"/api/runs/{run.pk}/export?what=metrics&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["step"]) for r in table] == [1, 2, 3, 4, 5]
    from_csv = {(int(r["step"]), k): float(v) for r in table for k, v in r.items()
                if k != "step" and v != ""}
    assert from_csv == stored  # every value, to the last digit


def test_sample_exports_hold_the_stored_samples(api, user):
    run = make_run(user, make_dataset(user), steps=2,
                   samples=sample_rows(["Summarize: a cat, \"quoted\"\nover lines."], 2, "A"))
    response = api.get(f"/api/runs/{run.pk}/export?what=samples&format=jsonl")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    stored = list(Sample.objects.filter(run=run).order_by("step", "index"))
    assert [(r["step"], r["index"], r["completion"], r["rewards"], r["advantage"])
            for r in rows] == [(s.step, s.index, s.completion, s.rewards, s.advantage)
                               for s in stored]
    assert "rejected" not in rows[0]
    response = api.get(f"/api/runs/{run.pk}/export?what=samples&format=csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["prompt"] for r in table] == [s.prompt for s in stored]  # quotes, newlines kept
    assert json.loads(table[0]["rewards"]) == stored[0].rewards


@pytest.mark.parametrize("query", ["what=weights", "format=xlsx", "what=metrics&format=zip"])
def test_an_unknown_export_is_a_422(api, user, query):
    run = make_run(user, make_dataset(user), steps=1)
    assert api.get(f"/api/runs/{run.pk}/export?{query}").status_code == 422


def test_a_queued_run_says_its_place_and_when_a_worker_frees_up(api, user):
    dataset = make_dataset(user)
    running = make_run(user, dataset, name="running", steps=10, finish=None,
                       hyperparameters={"max_steps": 20})
    queued = [Run.objects.create(owner=user, name=f"q{i}", algorithm="grpo", dataset=dataset,
                                 base_model="tiny-llama", max_steps=5) for i in range(2)]
    first, second = (api.get(f"/api/runs/{r.pk}").json()["queue"] for r in queued)
    assert first["position"] == 1 and first["running"] == 1 and first["queued_ahead"] == 0
    assert first["eta_s"] is not None and first["eta_s"] >= 0  # the running run's pace
    assert second["position"] == 2 and second["queued_ahead"] == 1
    assert second["eta_s"] is None  # a queued job ahead has shown no pace yet
    assert api.get(f"/api/runs/{running.pk}").json()["queue"] is None
