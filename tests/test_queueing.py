"""When the broker cannot be reached, a launched run or batch says so instead of waiting."""
from __future__ import annotations

import pytest

from tests.conftest import PROMPTS, upload_prompts
from webapp.labeling.models import Batch
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_down():
    from webapp.queueing import producer

    app = producer()
    keys = ("broker_url", "broker_connection_retry", "broker_connection_max_retries")
    before = {key: app.conf[key] for key in keys}
    app.conf.update(broker_url="redis://127.0.0.1:1/0",  # nothing listens on port 1
                    broker_connection_retry=False, broker_connection_max_retries=0)
    app.pool.force_close_all()
    yield
    app.conf.update(before)
    app.pool.force_close_all()
    # a closed pool is not reopened: the next send gets a new app and new connection pools
    from kombu import pools

    producer.cache_clear()
    pools.reset()


def test_a_run_launched_while_the_broker_is_down_fails_with_the_reason(api, broker_down):
    dataset = upload_prompts(api, PROMPTS[:2])
    response = api.post("/api/runs", {"name": "r", "dataset": dataset["id"],
                                      "base_model": "tiny-llama",
                                      "rewards": [{"type": "length", "target": 5}]},
                        content_type="application/json")
    assert response.status_code == 201
    run = Run.objects.get()
    assert run.status == "failed" and "task queue" in run.error


def test_a_batch_created_while_the_broker_is_down_fails_with_the_reason(api, broker_down):
    dataset = upload_prompts(api, PROMPTS[:2])
    response = api.post("/api/labeling/batches", {"name": "b", "dataset": dataset["id"],
                                                  "model": "tiny-llama",
                                                  "responses_per_prompt": 2},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    batch = Batch.objects.get()
    assert batch.status == "failed" and "task queue" in batch.error
