"""In headless Chromium: sign in, launch a GRPO run through the form, and watch the live page's
charts gain points as the real worker trains, without a reload."""
from __future__ import annotations

import pytest

from tests.browser import chromium_page, sign_in
from tests.conftest import PROMPTS, upload_prompts
from tests.runs_helpers import make_dataset, make_run

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def page():
    with chromium_page(height=1000) as tab:
        yield tab


# The reward chart, drawn (and created) when the first step arrives.
POINTS = ("(() => { const c = document.getElementById('chart-0');"
          " return c && c.data ? Math.max(...c.data.map(t => t.x.length)) : 0; })()")


def points(page):
    return page.evaluate(POINTS)


def test_a_run_launched_from_the_form_draws_its_charts_live_and_cancels(
        page, live_server, worker, api, user):
    dataset = upload_prompts(api, PROMPTS, name="cats")
    sign_in(page, live_server.url)

    page.goto(live_server.url + "/runs/new/")
    page.fill("#id_name", "browser run")
    page.select_option("#id_dataset", str(dataset["id"]))
    page.select_option("#preset", "Smoke test (tiny-llama)")
    assert page.input_value("#id_hp_group_size") == "4"  # the preset filled the form
    assert page.input_value("#id_base_model") == "tiny-llama"  # and picked the model
    page.fill("#id_hp_max_steps", "200")  # long enough to be watched, then cancelled
    page.fill("input[name=reward-0-length-target]", "40")
    page.click("#launch")
    page.wait_for_url(f"{live_server.url}/runs/*/")

    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(f"{POINTS} > 0")
    first = points(page)
    page.wait_for_function(f"{POINTS} > {first}")
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel run 'browser run'?"
    page.click("#cancel-run")
    page.wait_for_selector("#run-status:has-text('cancelled')", timeout=120_000)
    page.wait_for_selector("#checkpoints a:has-text('Download zip')")
    assert first < points(page) < 200
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert page.locator("#samples-table tbody tr").count() > 0
    assert page.locator("#checkpoints a:has-text('Download zip')").count() == 1
    assert "reward/length/mean" in page.evaluate(
        "document.getElementById('chart-0').data.map(t => t.meta.key).join(',')")
    # the only source equals the mean: one line, its legend entry naming both
    assert "mean = length" in page.evaluate(
        "document.getElementById('chart-0').data.map(t => t.name).join(',')")


def test_the_form_shows_errors_next_to_the_fields_and_launches_nothing(page, live_server, api,
                                                                      user, transactional_db):
    from webapp.runs.models import Run

    dataset = upload_prompts(api, PROMPTS, name="cats")
    sign_in(page, live_server.url)
    page.goto(live_server.url + "/runs/new/")
    page.fill("#id_name", "bad run")
    page.select_option("#id_dataset", str(dataset["id"]))
    page.select_option("#id_base_model", "tiny-llama")
    page.fill("input[name=reward-0-length-target]", "")
    page.evaluate("document.getElementById('id_hp_epsilon_low').removeAttribute('max')")
    page.fill("#id_hp_epsilon_low", "3")
    page.click("#launch")
    page.wait_for_selector(".error")
    text = page.inner_text("main")
    assert "at most 1" in text.lower() or "less than or equal to 1" in text.lower()
    assert not Run.objects.exists()


def test_a_burst_of_events_refreshes_every_card_it_names(page, live_server, user,
                                                         transactional_db):
    """The last checkpoint, status changes and steps arrive together at the end of a run; each
    card they name must be fetched again, none dropped for another card's refresh."""
    from webapp.runs import events
    from webapp.runs.models import Checkpoint

    run = make_run(user, make_dataset(user), steps=2, finish=None)
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function(f"{POINTS} == 2")
    assert page.locator("#checkpoints a:has-text('Download zip')").count() == 0
    Checkpoint.objects.create(run=run, step=2, path="p", archive="p.zip", size_bytes=1,
                              sha256="0" * 64)
    for kind in ("status", "checkpoint", "status", "status"):
        events.publish(run.pk, kind, {"status": "running", "step": 2})
    page.wait_for_selector("#checkpoints a:has-text('Download zip')", timeout=15_000)
