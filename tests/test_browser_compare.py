"""In headless Chromium: pick two finished runs on the runs page, compare them, and use the
chart controls; completions side by side go to ranking."""
from __future__ import annotations

import os

import pytest

from tests.browser import chromium_page, sign_in
from tests.runs_helpers import grpo_metrics, make_dataset, make_run, sample_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PROMPTS = ["Summarize: a cat.", "Summarize: a dog."]


@pytest.fixture
def page():
    with chromium_page(height=1000) as tab:
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.console_errors = errors
        yield tab


def _chart(key: str) -> str:
    return f"document.querySelector('.chart[data-key=\"{key}\"]')"


def trace_y(page, key: str, trace: int) -> list[float]:
    return page.evaluate(f"{_chart(key)}.data.filter(t => !t.meta.raw)[{trace}].y")


@pytest.fixture
def runs(user, transactional_db):
    dataset = make_dataset(user)
    a = make_run(user, dataset, name="lr 1e-5", steps=60,
                 samples=sample_rows(PROMPTS, 2, "A"))
    b = make_run(user, dataset, name="lr 3e-5", steps=40,
                 hyperparameters={"max_steps": 100, "learning_rate": 3e-5, "group_size": 4,
                                  "beta": 0.04, "seed": 0},
                 metrics=lambda s: grpo_metrics(s, scale=2.0),
                 samples=sample_rows(PROMPTS, 2, "B"))
    return a, b


def test_two_runs_overlay_smooth_switch_axis_and_hide_together(page, live_server, runs):
    a, b = runs
    sign_in(page, live_server.url)
    page.goto(live_server.url + "/runs/")
    page.check(f"input[name=id][value='{a.pk}']")
    page.check(f"input[name=id][value='{b.pk}']")
    page.click("#compare-selected")
    page.wait_for_url(f"{live_server.url}/runs/compare/?ids={b.pk},{a.pk}")  # list order
    page.wait_for_function(f"{_chart('reward/mean')} && {_chart('reward/mean')}.data")

    names = page.evaluate(f"{_chart('reward/mean')}.data.map(t => t.name)")
    assert names == ["lr 3e-5", "lr 1e-5"]  # one trace per run
    colours = page.evaluate(f"{_chart('kl/mean')}.data.map(t => t.line.color)")
    assert colours == page.evaluate(f"{_chart('reward/mean')}.data.map(t => t.line.color)")
    assert colours[0] != colours[1]
    groups = page.evaluate("[...document.querySelectorAll('.chart-group')].map(g => "
                           "[g.dataset.section, g.open, g.querySelector('h2').textContent])")
    assert groups[0] == ["key", True, "Key metrics"]
    assert [g[0] for g in groups[1:4]] == ["reward", "loss", "optim"] and not any(
        g[1] for g in groups[1:])  # the rest folded
    titles = page.evaluate("[...document.querySelectorAll('.chart-group[open] .chart')].map("
                           "d => d.layout.title.text)")
    assert titles == ["Reward: mean", "KL to reference: k3 estimate", "Throughput: tokens/s"]
    # a folded section is drawn when opened, with human titles
    page.click(".chart-group[data-section='perf'] summary")
    page.wait_for_function(f"{_chart('perf/peak_mem_mb')}.data")
    assert page.evaluate(f"{_chart('perf/peak_mem_mb')}.layout.title.text") == "Peak memory"
    assert page.evaluate(f"{_chart('perf/peak_mem_mb')}.layout.yaxis.title.text") == "MB"
    assert page.evaluate("document.querySelector('.chart[data-key=\"perf/elapsed_s\"]')") \
        is None  # a running total is an x-axis, not a chart

    raw = trace_y(page, "reward/mean", 1)
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function(f"{_chart('reward/mean')}.data.length === 4")
    smoothed = trace_y(page, "reward/mean", 1)
    assert smoothed != raw and smoothed[0] == pytest.approx(raw[0])  # debiased start
    assert page.evaluate(f"{_chart('reward/mean')}.data.filter(t => t.meta.raw)[1].y") == raw

    page.select_option("#x-axis", "time")
    page.wait_for_function(f"{_chart('reward/mean')}.layout.xaxis.title.text === "
                           "'training time (s)'")
    page.wait_for_function(f"{_chart('reward/mean')}.data[3].x[0] === 10")
    assert page.evaluate(f"{_chart('reward/mean')}.data[3].x.at(-1)") == 600.0  # run a

    # Hide run b in the page's legend: it disappears on every chart.
    page.click(f".legend-item[data-run-id='{b.pk}']")
    page.wait_for_function(f"{_chart('reward/mean')}.data.find(t => t.name === 'lr 3e-5' "
                           "&& !t.meta.raw).visible === false")
    hidden = page.evaluate("[...document.querySelectorAll('.chart')].filter(d => d.data).map("
                           f"d => d.data.filter(t => t.meta.run === '{b.pk}').every("
                           "t => t.visible !== true))")
    assert all(hidden)
    assert page.get_attribute(f".legend-item[data-run-id='{b.pk}']", "aria-pressed") == "false"

    page.fill("#metric-filter", "kl/")
    page.wait_for_function("document.querySelector('.chart[data-key=\"reward/mean\"]').hidden")
    assert page.is_visible(".chart[data-key='kl/mean']")

    assert page.is_checked("#only-differences")  # what differs is what a person looks for
    shown = page.locator("#diff-table tbody tr:visible")
    assert shown.count() == 1 and "learning_rate" in shown.inner_text()
    if os.environ.get("SCREENSHOTS"):
        page.fill("#metric-filter", "")
        page.screenshot(path=os.environ["SCREENSHOTS"] + "/compare-1280.png", full_page=True)
    assert page.console_errors == []


def test_completions_side_by_side_go_to_ranking(page, live_server, runs, user):
    from webapp.labeling.models import Batch

    a, b = runs
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/compare/?ids={a.pk},{b.pk}")
    page.wait_for_selector("#side-a .sample")
    page.wait_for_selector("#side-b .sample")
    # Two runs: both sides at the last step they share (40).
    assert page.input_value("#side-a .side-step") == "40"
    assert page.input_value("#side-b .side-step") == "40"
    assert "A answer 0" in page.inner_text("#side-a") and "B answer" in page.inner_text("#side-b")
    assert "advantage" in page.inner_text("#side-a .sample")
    page.select_option("#side-b .side-run", str(a.pk))  # one run: its first and last step
    page.select_option("#side-b .side-step", "60")
    page.wait_for_function("document.querySelector('#side-b').innerText.includes('step 60')")
    page.locator("#side-a .sample input").nth(0).check()
    page.locator("#side-b .sample input").nth(1).check()
    page.fill("#batch-name", "policy at 40 and 60")
    page.click("#send-ranking")
    page.wait_for_selector("#sent-batch")
    batch = Batch.objects.get(name="policy at 40 and 60")
    assert batch.items.count() == 1 and batch.items.get().responses.count() == 2
    page.click("#sent-batch")
    page.wait_for_selector("#start-ranking")
    assert page.console_errors == []


def test_the_run_page_draws_constant_series_on_a_readable_axis(page, live_server, runs):
    a, _ = runs
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{a.pk}/")
    lr = "[...document.querySelectorAll('.chart')].find(c => c.dataset.title === 'Learning rate')"
    page.wait_for_function(f"{lr} && {lr}.layout")
    low, high = page.evaluate(f"{lr}.layout.yaxis.range")
    assert low == pytest.approx(0.5e-5) and high == pytest.approx(1.5e-5)  # 1e-5 is not 0
    titles = page.evaluate("[...document.querySelectorAll('.chart')].map(c => c.dataset.title)")
    assert "Reward std" in titles and titles.index("Reward") == 0
    # Keys keep their colours: the order is fixed, not the order they happened to arrive in.
    loss = "[...document.querySelectorAll('.chart')].find(c => c.dataset.title === 'Loss')"
    assert page.evaluate(f"{loss}.data.map(t => t.line.color)") == ["#1f77b4"]
    assert page.console_errors == []
