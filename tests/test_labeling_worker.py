"""The generation job's bookkeeping without a model: claiming, chunked storing, attempt
guards and the end states (tests/test_labeling_e2e.py runs the real thing)."""
from __future__ import annotations

import pytest

from tests.labeling_helpers import make_batch
from webapp.labeling import services
from webapp.labeling.models import Batch, BatchStatus, Item
from workers import labeling_job

pytestmark = pytest.mark.django_db


def queued(user, items=10):
    batch = make_batch(user, items=0)
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.QUEUED, items_expected=items)
    return batch


def test_a_batch_is_claimed_once(user):
    batch = queued(user)
    assert services.batch_claim(batch_id=batch.pk, worker="w1") == 1
    assert services.batch_claim(batch_id=batch.pk, worker="w2") is None
    batch.refresh_from_db()
    assert batch.status == "generating" and batch.started_at and batch.worker == "w1"


def test_items_are_stored_a_chunk_at_a_time_so_the_count_grows(user):
    batch = queued(user, items=10)
    attempt = services.batch_claim(batch_id=batch.pk, worker="w")
    prompts = [(i, f"prompt {i}") for i in range(10)]
    seen_before_each_chunk = []

    def sample(chunk):
        seen_before_each_chunk.append(Item.objects.filter(batch=batch).count())
        return [f"{p} / answer {k}" for p in chunk for k in range(3)]  # K adjacent per prompt

    labeling_job._generate_chunks(batch.pk, attempt, 3, prompts, sample, str)
    assert seen_before_each_chunk == [0, 4, 8]
    items = list(Item.objects.filter(batch=batch).order_by("index"))
    assert [i.index for i in items] == list(range(10))
    assert list(items[5].responses.values_list("text", flat=True)) == [
        "prompt 5 / answer 0", "prompt 5 / answer 1", "prompt 5 / answer 2"]
    assert services.batch_finish(batch_id=batch.pk, attempt=attempt, status="ready")
    batch.refresh_from_db()
    assert batch.status == "ready" and batch.finished_at


def test_a_stale_attempt_can_neither_store_nor_finish(user):
    batch = queued(user)
    attempt = services.batch_claim(batch_id=batch.pk, worker="w")
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.FAILED)
    with pytest.raises(services.StaleAttempt):
        services.batch_record_items(batch_id=batch.pk, attempt=attempt, items=[
            {"index": 0, "prompt": "p", "prompt_text": "p", "responses": ["a", "b"]}])
    assert not services.batch_finish(batch_id=batch.pk, attempt=attempt, status="ready")
    assert not Item.objects.exists()
    with pytest.raises(services.ServiceError):
        services.batch_finish(batch_id=batch.pk, attempt=attempt, status="queued")

