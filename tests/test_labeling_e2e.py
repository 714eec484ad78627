"""End to end: a real Celery worker process generates a ranking batch on the tiny model, and
the items can then be ranked and turned into a preferences dataset through the API."""
from __future__ import annotations

import json

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def create_batch(api, dataset_id, **overrides):
    payload = {"name": "e2e batch", "dataset": dataset_id, "model": "tiny-llama",
               "responses_per_prompt": 3, "max_new_tokens": 12, "shared": False} | overrides
    response = api.post("/api/labeling/batches", json.dumps(payload),
                        content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_worker_generates_k_responses_per_prompt(api, worker):
    from webapp.labeling.models import Item, Response

    dataset = upload_prompts(api, PROMPTS[:4])
    batch = create_batch(api, dataset["id"])
    assert batch["status"] == "queued" and batch["items_expected"] == 4
    url = f"/api/labeling/batches/{batch['id']}"
    final = wait_for(lambda: (b := api.get(url).json())["status"] in ("ready", "failed") and b,
                     timeout=180, what="the batch to be generated")
    assert final["status"] == "ready", final["error"]
    assert final["items_total"] == 4 and final["started_at"] and final["finished_at"]
    items = list(Item.objects.filter(batch_id=batch["id"]).order_by("index"))
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert [i.prompt for i in items] == [p["prompt"] for p in PROMPTS[:4]]
    for item in items:
        assert Response.objects.filter(item=item).count() == 3
        assert sorted(item.responses.values_list("index", flat=True)) == [0, 1, 2]

    # the generated items are ranked and become pairs
    item = api.get(url + "/next").json()
    ids = [r["id"] for r in item["responses"]]
    response = api.post(f"/api/labeling/items/{item['item']}/ranking",
                        json.dumps({"ranking": [[i] for i in ids]}),
                        content_type="application/json")
    assert response.status_code == 201, response.content
    pairs = b"".join(api.get(url + "/export?format=pairs").streaming_content).splitlines()
    assert len(pairs) == 3 - _identical_pairs(item)


def _identical_pairs(item) -> int:
    """ranking_pairs drops a pair of identical texts (a random tiny model may repeat itself)."""
    texts = [r["text"] for r in item["responses"]]
    return sum(texts[i] == texts[j] for i in range(3) for j in range(i + 1, 3))


def test_a_batch_whose_data_vanished_fails_with_the_error_shown(api, worker):
    from webapp.datasets.models import Dataset

    dataset = upload_prompts(api, PROMPTS[:2])
    Dataset.objects.get(pk=dataset["id"]).file_path.unlink()
    batch = create_batch(api, dataset["id"])
    url = f"/api/labeling/batches/{batch['id']}"
    final = wait_for(lambda: (b := api.get(url).json())["status"] in ("ready", "failed") and b,
                     timeout=120, what="the batch to fail")
    assert final["status"] == "failed" and "No such file" in final["error"]
    assert final["items_total"] == 0
