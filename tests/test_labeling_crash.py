"""A ranking batch whose generation stops sending heartbeats is reaped and a new attempt, on
the real worker, generates only the items not stored yet."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import PROMPTS, upload_prompts, wait_for
from webapp.labeling import services
from webapp.labeling.models import Batch, BatchStatus, Item

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_silent_batch_is_requeued_and_the_next_attempt_generates_the_rest(api, user, worker):
    dataset = upload_prompts(api, PROMPTS[:8])
    batch = Batch.objects.create(owner=user, name="b", dataset_id=dataset["id"],
                                 model="tiny-llama", responses_per_prompt=2, max_new_tokens=8,
                                 items_expected=8)  # not enqueued: attempt 1 is this test
    attempt = services.batch_claim(batch_id=batch.pk, worker="dies-halfway")
    services.batch_record_items(batch_id=batch.pk, attempt=attempt, items=[
        {"index": i, "prompt": PROMPTS[i]["prompt"], "prompt_text": PROMPTS[i]["prompt"],
         "responses": [f"kept {i} a", f"kept {i} b"]} for i in range(3)])
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    [reaped] = services.batches_reap(timeout_s=60, max_attempts=3)
    assert reaped.requeued and Batch.objects.get(pk=batch.pk).status == BatchStatus.CRASHED
    wait_for(lambda: Batch.objects.get(pk=batch.pk).status == BatchStatus.READY, timeout=240,
             what="the second attempt")
    items = list(Item.objects.filter(batch=batch).order_by("index"))
    assert [i.index for i in items] == list(range(8))
    assert [r.text for r in items[1].responses.order_by("index")] == ["kept 1 a", "kept 1 b"]
    assert all(i.responses.count() == 2 for i in items[3:])
    assert Batch.objects.get(pk=batch.pk).attempt == 2
    with pytest.raises(services.StaleAttempt):  # the first attempt can store nothing more
        services.batch_record_items(batch_id=batch.pk, attempt=attempt, items=[
            {"index": 9, "prompt": "p", "prompt_text": "p", "responses": ["x", "y"]}])


def test_out_of_attempts_a_batch_fails_with_the_reason(user, transactional_db):
    from tests.labeling_helpers import make_batch

    batch = make_batch(user, items=0)
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.GENERATING, attempt=3, crashes=2,
                                             heartbeat_at=timezone.now() - timedelta(hours=1))
    [reaped] = services.batches_reap(timeout_s=60, max_attempts=3)
    batch.refresh_from_db()
    assert not reaped.requeued and batch.status == BatchStatus.FAILED
    assert "Gave up after 3 attempts" in batch.error
