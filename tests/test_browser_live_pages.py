"""Pages that follow their object's state without a reload, and ask before they cancel: a
labeling batch page from queued to generating to ready, a queued run's place in the queue.
The worker's part is played by the same services a worker calls, so each state can be held
while the page is looked at."""
from __future__ import annotations

import pytest

from tests.browser import chromium_page, sign_in
from tests.conftest import PROMPTS, upload_prompts
from tests.runs_helpers import make_dataset, make_run
from webapp.jobs import drop_task
from webapp.labeling import services as labeling
from webapp.labeling.models import Batch, BatchStatus

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def page():
    with chromium_page(timeout_ms=20_000) as tab:
        yield tab


def _items(n: int) -> list[dict]:
    return [{"index": i, "prompt": f"Prompt {i}", "prompt_text": f"Prompt {i}",
             "responses": [f"answer {j} to {i}" for j in range(2)]} for i in range(n)]


def test_the_batch_page_follows_queued_generating_ready_without_a_reload(
        page, live_server, api, user, transactional_db):
    dataset = upload_prompts(api, PROMPTS[:2], name="two prompts")
    sign_in(page, live_server.url)
    page.goto(live_server.url + "/labeling/")
    page.fill("#id_name", "live batch")
    page.select_option("#id_dataset", str(dataset["id"]))
    page.select_option("#id_model", "tiny-llama")
    page.fill("#id_responses_per_prompt", "2")
    page.click("#create-batch")
    page.wait_for_url(f"{live_server.url}/labeling/*/")
    batch = Batch.objects.get(name="live batch")
    drop_task(batch.task_id)  # this test plays the worker
    page.evaluate("window.__sameDocument = true")

    assert page.inner_text("#batch-status") == "queued"
    assert "is queued" in page.inner_text(".messages")
    assert "1st in line" in page.inner_text("#queue-place")
    assert "once it has finished generating" in page.inner_text("#delete-batch")

    attempt = labeling.batch_claim(batch_id=batch.pk, worker="test")
    labeling.batch_record_items(batch_id=batch.pk, attempt=attempt, items=_items(1))
    page.wait_for_selector("#batch-status:text-is('generating')")
    assert page.locator(".messages li.launch").count() == 0  # "is queued" is no longer news
    assert page.locator("#queue-place").count() == 0
    assert "1 of 2 prompts generated" in page.inner_text("#batch-items")

    labeling.batch_record_items(batch_id=batch.pk, attempt=attempt, items=_items(2)[1:])
    labeling.batch_finish(batch_id=batch.pk, attempt=attempt, status=BatchStatus.READY)
    page.wait_for_selector("#batch-status:text-is('ready')")
    page.wait_for_selector("#delete-batch button:has-text('Delete batch')")
    assert "once it has finished" not in page.inner_text("#delete-batch")
    assert page.is_visible("#start-ranking")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


def test_a_queued_run_shows_what_runs_ahead_and_cancel_asks_first(
        page, live_server, user, other_user, transactional_db):
    from webapp.runs.models import Run

    ahead = make_run(user, make_dataset(user), name="ahead", steps=5, finish=None,
                     hyperparameters={"max_steps": 50})
    theirs = make_run(other_user, make_dataset(other_user, name="theirs"), name="secret",
                      steps=0, finish=None)
    theirs.status = "queued"  # waiting for a worker, created before ours
    theirs.save(update_fields=["status"])
    mine = Run.objects.create(owner=user, name="mine", algorithm="grpo",
                              dataset=ahead.dataset, base_model="tiny-llama",
                              rewards=ahead.rewards, hyperparameters=ahead.hyperparameters,
                              max_steps=50)
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{mine.pk}/")
    place = page.inner_text("#queue-place")
    assert "2nd in line" in place
    assert "ahead" in place and "left" in place  # our own run, named, with its time left
    assert "a run of another user" in place and "secret" not in place

    questions: list[str] = []

    def dismiss(dialog):
        questions.append(dialog.message)
        dialog.dismiss()
    page.once("dialog", dismiss)
    page.click("#cancel-run")
    page.wait_for_timeout(500)
    assert questions and "Cancel run 'mine'" in questions[0]
    mine.refresh_from_db()
    assert mine.status == "queued"  # said no: nothing happened

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    page.wait_for_selector("#run-status:text-is('cancelled')")
    mine.refresh_from_db()
    assert mine.status == "cancelled"
