"""Send to ranking: completions two runs wrote become a batch another person ranks, and its
export gives the pairs of that ranking."""
from __future__ import annotations

import json

import pytest

from tests.runs_helpers import make_dataset, make_run, sample_rows
from webapp.labeling.models import Batch, Item, Response

pytestmark = pytest.mark.django_db

PROMPTS = ["Summarize: the cat sat on the mat.", "Summarize: the dog ran."]


@pytest.fixture
def two_runs(user):
    dataset = make_dataset(user)
    a = make_run(user, dataset, name="a", steps=2, samples=sample_rows(PROMPTS, 2, "A"))
    b = make_run(user, dataset, name="b", steps=2, samples=sample_rows(PROMPTS, 2, "B"))
    return a, b


def _refs(*triples):
    return [{"run": r, "step": s, "index": i} for r, s, i in triples]


def test_completions_from_two_runs_become_a_shared_batch_another_person_ranks(
        api, other_api, two_runs):
    a, b = two_runs
    # Prompt 0: run a's sample 0 and run b's samples 0 and 1, at step 2; prompt 1: a's 2 and 3.
    refs = _refs((a.pk, 2, 0), (b.pk, 2, 0), (a.pk, 2, 2), (b.pk, 2, 1), (a.pk, 2, 3))
    response = api.post("/api/labeling/batches/from-samples", {
        "name": "from training", "shared": True, "samples": refs},
        content_type="application/json")
    assert response.status_code == 201, response.content
    batch = response.json()
    assert (batch["status"], batch["items_total"], batch["origin"]) == ("ready", 2, "samples")
    assert batch["dataset"] is None

    first = other_api.get(f"/api/labeling/batches/{batch['id']}/next").json()
    assert first["prompt"] == PROMPTS[0]
    texts = [r["text"] for r in first["responses"]]
    assert texts == ["A answer 0 to 0 at step 2", "B answer 0 to 0 at step 2",
                     "B answer 1 to 0 at step 2!"]
    ids = [r["id"] for r in first["responses"]]
    ranked = other_api.post(f"/api/labeling/items/{first['item']}/ranking",
                            {"ranking": [[ids[2]], [ids[0], ids[1]]]},
                            content_type="application/json")
    assert ranked.status_code == 201, ranked.content

    export = api.get(f"/api/labeling/batches/{batch['id']}/export?format=pairs")
    lines = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert [(x["chosen"], x["rejected"], x["annotator"]) for x in lines] == [
        ("B answer 1 to 0 at step 2!", "A answer 0 to 0 at step 2", "mallory"),
        ("B answer 1 to 0 at step 2!", "B answer 0 to 0 at step 2", "mallory")]
    sources = list(Response.objects.filter(item__batch_id=batch["id"]).order_by(
        "item__index", "index").values_list("source", flat=True))
    assert sources[:3] == [{"run": a.pk, "step": 2, "index": 0},
                           {"run": b.pk, "step": 2, "index": 0},
                           {"run": b.pk, "step": 2, "index": 1}]


@pytest.mark.parametrize("samples,field", [
    (None, "samples"),
    ([{"run": 1, "step": 1}], "samples"),
    ("RUN", "samples"),
    ("ONE_PER_PROMPT", "samples[0]"),
    ("REPEATED", "samples[1]"),
    ("EXTRA_FIELD", "samples[0]"),
    ("MISSING", "samples[1]"),
    ("FOREIGN", "samples[1]"),
    ("NEGATIVE", "samples[0]"),
])
def test_bad_sample_lists_are_422_naming_the_entry_and_store_nothing(
        api, two_runs, other_user, samples, field):
    a, _ = two_runs
    theirs = make_run(other_user, make_dataset(other_user), steps=1,
                      samples=sample_rows(PROMPTS, 2, "T"))
    cases = {
        "RUN": {"run": a.pk},
        "ONE_PER_PROMPT": _refs((a.pk, 1, 0), (a.pk, 1, 2), (a.pk, 1, 3)),
        "REPEATED": _refs((a.pk, 1, 0), (a.pk, 1, 0)),
        "EXTRA_FIELD": [{"run": a.pk, "step": 1, "index": 0, "owner": 1}, *_refs((a.pk, 1, 1))],
        "MISSING": _refs((a.pk, 1, 0), (a.pk, 99, 1)),
        "FOREIGN": _refs((a.pk, 1, 0), (theirs.pk, 1, 1)),
        "NEGATIVE": _refs((a.pk, -1, 0), (a.pk, 1, 1)),
    }
    body = {"name": "bad", "samples": cases.get(samples, samples) if isinstance(samples, str)
            else samples}
    response = api.post("/api/labeling/batches/from-samples", body,
                        content_type="application/json")
    assert response.status_code == 422, response.content
    assert field in response.json()["fields"]
    assert not Batch.objects.exists() and not Item.objects.exists()
    if samples == "FOREIGN":
        assert str(theirs.pk) not in response.json()["detail"]


@pytest.mark.parametrize("name", [["a", None], {"x": 1}, 7, "bad\u202ename", "   "])
def test_a_name_that_is_not_a_name_is_a_422_not_a_server_error(api, two_runs, name):
    """schemathesis found ``{"name": [null, null]}`` answered with a 500."""
    a, b = two_runs
    response = api.post("/api/labeling/batches/from-samples", {
        "name": name, "samples": _refs((a.pk, 2, 0), (b.pk, 2, 0))},
        content_type="application/json")
    assert response.status_code == 422, response.content
    assert "name" in response.json()["fields"]
    assert not Batch.objects.exists()
