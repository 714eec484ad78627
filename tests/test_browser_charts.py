"""The run page's live charts as a person reads them: a series that grows past its first range
stays inside the drawn y-axis (live and after a reload), tick labels never repeat, and the
legend names exactly the traces that can be seen."""
from __future__ import annotations

import pytest

from tests.browser import chromium_page, sign_in
from tests.runs_helpers import make_dataset, make_run
from webapp.runs import attempts

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def page():
    with chromium_page(height=1000) as tab:
        yield tab


def _chart(title: str) -> str:
    return ("[...document.querySelectorAll('#charts .chart')]"
            f".find(d => d.dataset.title === '{title}')")


def _points(title: str) -> str:
    return (f"(() => {{ const c = {_chart(title)}; return c && c.data ? "
            "Math.max(...c.data.map(t => t.x.length)) : 0; })()")


def _drawn(page, title: str) -> dict:
    """The chart's drawn y-range, its last point, its tick labels and legend entries."""
    return page.evaluate(f"""(() => {{
      const c = {_chart(title)};
      const full = c._fullLayout;
      const ticks = [...c.querySelectorAll('.ytick text')].map(t => t.textContent);
      const legend = [...c.querySelectorAll('.legend .traces .legendtext')].map(t => t.textContent);
      const last = c.data.map(t => t.y[t.y.length - 1]);
      const visible = c.data.filter(t => t.visible !== false && t.visible !== 'legendonly');
      const lines = c.querySelectorAll('.scatterlayer .trace').length;
      return {{range: full.yaxis.range, last, ticks, legend, showlegend: full.showlegend,
               traces: visible.map(t => t.name), lines}};
    }})()""")


def _tenfold(step: int) -> dict[str, float]:
    """Tokens per second that grow tenfold over the run; an entropy that barely moves; a mean
    reward equal to its only source's."""
    return {"perf/tokens_per_s": 10.0 * step, "entropy/mean": 10.7812 + 1e-5 * step,
            "reward/mean": -step / 2, "reward/length/mean": -step / 2}


def test_a_growing_series_stays_inside_the_drawn_axis_live_and_after_a_reload(
        page, live_server, user, transactional_db):
    run = make_run(user, make_dataset(user), steps=1, finish=None, metrics=_tenfold,
                   hyperparameters={"max_steps": 30})
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function(f"{_points('Throughput')} == 1")
    first = _drawn(page, "Throughput")
    assert first["range"][1] < 100  # drawn around the first point (10)

    for step in range(2, 31):
        attempts.run_record_step(run_id=run.pk, attempt=run.attempt, step=step,
                                 metrics=_tenfold(step))
    page.wait_for_function(f"{_points('Throughput')} == 30")
    page.wait_for_timeout(300)  # the relayout after the last append
    for when in ("live", "after a reload"):
        live = _drawn(page, "Throughput")
        lo, hi = live["range"]
        assert lo <= 300 <= hi, f"{when}: the last point (300) is outside the y-range {lo}..{hi}"
        assert lo <= 10, f"{when}: the first point (10) is outside the y-range {lo}..{hi}"
        entropy = _drawn(page, "Entropy")
        assert len(entropy["ticks"]) >= 2
        assert len(set(entropy["ticks"])) == len(entropy["ticks"]), \
            f"{when}: entropy tick labels repeat: {entropy['ticks']}"
        assert entropy["range"][0] <= entropy["last"][0] <= entropy["range"][1]
        reward = _drawn(page, "Reward")
        # the mean and its only source are one line: one legend entry naming both, or none
        assert reward["lines"] == 1, reward
        assert not reward["showlegend"] or len(reward["legend"]) == 1, reward
        if when == "live":
            page.reload()
            page.wait_for_function(f"{_points('Throughput')} == 30")
            page.wait_for_timeout(300)
