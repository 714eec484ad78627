"""Labeling batches made directly in the database, and the API calls the labeling tests share."""
from __future__ import annotations

import json

from webapp.datasets.models import Dataset
from webapp.labeling.models import Batch, BatchStatus, Item, Response


def make_batch(owner, *, k: int = 3, items: int = 3, shared: bool = False,
               texts=None, prompts=None, name: str = "batch") -> Batch:
    """A ready batch with ``items`` items of ``k`` distinct responses each."""
    dataset = Dataset.objects.create(owner=owner, name="prompts", kind="prompts", rows=items,
                                     columns=["prompt"], file="none.jsonl")
    batch = Batch.objects.create(owner=owner, name=name, dataset=dataset, model="tiny-llama",
                                 responses_per_prompt=k, shared=shared, items_expected=items,
                                 status=BatchStatus.READY)
    for i in range(items):
        prompt = prompts[i] if prompts else f"Prompt number {i}: say something nice."
        text = prompt if isinstance(prompt, str) else "\n".join(
            f"{m['role']}: {m['content']}" for m in prompt)
        item = Item.objects.create(batch=batch, index=i, prompt=prompt, prompt_text=text)
        for j in range(k):
            Response.objects.create(item=item, index=j,
                                    text=texts[j] if texts else f"Answer {j} to prompt {i}.")
    return batch


def response_ids(item_id: int) -> list[int]:
    return list(Response.objects.filter(item_id=item_id).order_by("index")
                .values_list("pk", flat=True))


def post(client, url, payload=None):
    return client.post(url, json.dumps(payload if payload is not None else {}),
                       content_type="application/json")


def rank(client, item_id, ranking):
    return post(client, f"/api/labeling/items/{item_id}/ranking", {"ranking": ranking})


def rank_in_order(client, item_id):
    response = rank(client, item_id, [[rid] for rid in response_ids(item_id)])
    assert response.status_code == 201, response.content
    return response.json()


def next_item(client, batch_id):
    return client.get(f"/api/labeling/batches/{batch_id}/next")


def export(client, batch_id, fmt):
    response = client.get(f"/api/labeling/batches/{batch_id}/export?format={fmt}")
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
