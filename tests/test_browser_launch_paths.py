"""In headless Chromium: a preset says what it changed (the smoke test picks tiny-llama),
and "Run again" launches a run with the settings of the one it clones."""
from __future__ import annotations

import pytest

from tests.browser import chromium_page, sign_in
from tests.conftest import PROMPTS, upload_prompts
from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def page():
    with chromium_page(timeout_ms=20_000) as tab:
        yield tab


def test_the_smoke_preset_picks_tiny_llama_and_says_what_it_changed(
        page, live_server, api, user, transactional_db, settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path
    checkpoint = write_checkpoint(make_run(user, make_dataset(user), steps=1), 1)
    upload_prompts(api, PROMPTS[:4])
    sign_in(page, live_server.url)
    page.goto(live_server.url + "/runs/new/")
    assert page.is_hidden("#preset-changes")
    page.select_option("#id_base_model", checkpoint.model_id)  # some other model first
    page.select_option("#preset", "Smoke test (tiny-llama)")
    assert page.input_value("#id_base_model") == "tiny-llama"
    said = page.inner_text("#preset-changes")
    assert f"base_model: {checkpoint.model_id} → tiny-llama" in said
    assert "max_steps: 20 → 4" in said and "group_size: 8 → 4" in said
    assert "learning_rate" not in said  # it did not change that one
    assert page.eval_on_selector("#id_hp_max_steps", "e => e.classList.contains('changed')")
    page.fill("#id_hp_max_steps", "5")  # editing a field clears its mark
    assert not page.eval_on_selector("#id_hp_max_steps", "e => e.classList.contains('changed')")
    page.select_option("#preset", "Smoke test (tiny-llama)")
    assert "max_steps: 5 → 4" in page.inner_text("#preset-changes")


def test_run_again_launches_the_same_settings(page, live_server, api, user, transactional_db):
    dataset = upload_prompts(api, PROMPTS[:4])
    original = api.post("/api/runs", {
        "name": "first", "algorithm": "ppo", "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 33, "weight": 2.0}],
        "hyperparameters": {"max_steps": 3, "ppo_epochs": 2, "kl_coef": 0.3}},
        content_type="application/json").json()
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/new/?from_run={original['id']}")
    assert "Settings of run" in page.inner_text("#prefill-note")
    assert page.input_value("#id_name") == "first (again)"
    page.click("#launch")
    page.wait_for_url(f"{live_server.url}/runs/*/")
    again = Run.objects.exclude(pk=original["id"]).get()
    assert again.algorithm == "ppo" and again.name == "first (again)"
    assert again.rewards == original["rewards"]
    assert again.hyperparameters == original["hyperparameters"]
    assert again.dataset_id == dataset["id"] and again.base_model == "tiny-llama"


def test_the_minilm_preset_picks_the_minilm_encoder(page, live_server, user, transactional_db):
    from webapp.runs.registry import MINILM

    sign_in(page, live_server.url)
    page.goto(live_server.url + "/runs/new/?algorithm=reward_model")
    assert page.input_value("#id_base_model") != MINILM
    page.select_option("#preset", "MiniLM encoder")
    assert page.input_value("#id_base_model") == MINILM
    said = page.inner_text("#preset-changes")
    assert f"→ {MINILM}" in said and "epochs: 2.0 → 3" in said
    # the dropdown shows whole names: no option is cut by its box
    cut = page.eval_on_selector("#id_base_model", """e => {
      const ctx = document.createElement('canvas').getContext('2d');
      ctx.font = getComputedStyle(e).font;
      return [...e.options].some(o => ctx.measureText(o.text).width > e.clientWidth - 24);
    }""")
    assert not cut
