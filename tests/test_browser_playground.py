"""In headless Chromium with a real worker: the playground answers a prompt with a
checkpoint of a real run beside its base model, and the ticked completions become a
ranking batch opened on its ranking page."""
from __future__ import annotations

import pytest

from tests.browser import chromium_page, sign_in
from tests.conftest import PROMPTS, upload_prompts, wait_for
from webapp.labeling.models import Batch
from webapp.runs.models import Checkpoint, Run

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(400)]


def test_a_checkpoint_and_its_base_model_answer_and_the_ticked_go_to_ranking(
        live_server, worker, api, user):
    dataset = upload_prompts(api, PROMPTS[:4])
    run = api.post("/api/runs", {
        "name": "tuned", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 10}],
        "hyperparameters": {"max_steps": 1, "prompts_per_step": 2, "group_size": 2,
                            "max_new_tokens": 6}}, content_type="application/json").json()
    wait_for(lambda: Run.objects.get(pk=run["id"]).is_terminal, timeout=240, what="the run")
    checkpoint = Checkpoint.objects.get(run_id=run["id"])

    with chromium_page(timeout_ms=60_000) as page:
        sign_in(page, live_server.url)
        page.goto(f"{live_server.url}/playground/?model={checkpoint.model_id}")
        assert page.input_value("#id_model") == checkpoint.model_id
        page.fill("#id_prompt", "Name a cat.")
        page.fill("#id_responses_per_prompt", "2")
        page.fill("#id_max_new_tokens", "6")
        page.click("#generate")
        page.wait_for_url(f"{live_server.url}/playground/*/")
        # the page polls until a worker has written both columns
        page.wait_for_function(
            "document.querySelectorAll('.completion input[name=response]').length === 4",
            timeout=240_000)
        models = page.eval_on_selector_all(".completions", "cs => cs.map(c => c.dataset.model)")
        assert models == [checkpoint.model_id, "tiny-llama"]
        assert page.is_disabled("#send-to-ranking")
        boxes = page.locator(".completion input[name=response]")
        boxes.nth(0).check()
        boxes.nth(2).check()
        assert "2 ticked" in page.inner_text("#ticked")
        page.fill("#send-form input[name=name]", "cat names")
        page.click("#send-to-ranking")
        page.wait_for_url(f"{live_server.url}/labeling/*/rank/")
        assert page.locator(".rank-card").count() == 2
        assert "Name a cat." in page.inner_text("#prompt")
    assert Batch.objects.get(name="cat names").responses_per_prompt == 2
