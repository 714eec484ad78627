"""The chart catalogue: every metric key the engine writes has a chart and a human title, and
dynamic keys (one per reward source, one per phase of the step) are matched by pattern."""
from __future__ import annotations

import pytest

from training.algorithms import chart_catalog
from training.charts import SECTIONS

CATALOG = chart_catalog()


@pytest.mark.parametrize("key, title", [
    ("reward/mean", "Reward: mean"),
    ("reward/length_2/mean", "Reward: length_2"),
    ("reward/length/std", "Reward std: length"),
    ("kl/mean", "KL to reference: k3 estimate"),
    ("perf/peak_mem_mb", "Peak memory"),
    ("perf/generate_s", "Seconds per step: generate"),
    ("perf/step_s", "Seconds per step: whole step"),
    ("eval/accuracy", "Pairwise accuracy: held out"),
    ("something/new", "something/new"),
])
def test_keys_read_as_titles(key, title):
    assert CATALOG.title_of(key) == title


def test_running_totals_are_on_no_chart():
    for key in ("perf/elapsed_s", "perf/tokens_total", "perf/pairs_total"):
        assert CATALOG.chart_of(key) is None


def test_every_chart_is_in_a_known_section_and_ids_are_unique():
    sections = {s for s, _ in SECTIONS}
    assert all(c.section in sections for c in CATALOG.charts)
    ids = [c.id for c in CATALOG.charts]
    assert len(ids) == len(set(ids))
    keyed = [c.series[0][0] for c in CATALOG.charts if c.key]
    assert {"reward/mean", "kl/mean", "entropy/mean", "completion/length_mean", "loss/total",
            "perf/tokens_per_s"} <= set(keyed)


def test_the_json_the_pages_read_names_patterns_as_regexes():
    data = CATALOG.as_json()
    reward = next(c for c in data["charts"] if c["id"] == "reward")
    assert reward["series"] == [["reward/mean", "mean"]] and reward["pattern"]
    assert "perf/elapsed_s" in data["hidden"]
