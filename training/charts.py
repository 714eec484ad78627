"""What the engine's metric keys mean to a person: the charts they are drawn on, with titles,
series labels and axis units, grouped in sections.

The charts every algorithm shares are here; an algorithm's own are in its declaration
(:mod:`training.algorithms`), which joins both into the catalogue the run page (a chart per
entry, every series of it) and the compare page (a chart per key, titled
``"<chart>: <label>"``, in the entry's section) read. It imports no torch, so the web process
can read it. A key no chart names is still stored and compared, under its raw name in the
"Other" section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Sections in the order pages show them; "key" holds the charts a comparison opens with.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("key", "Key metrics"), ("reward", "Reward"), ("kl", "KL and entropy"),
    ("loss", "Losses"), ("clip", "Clipping"), ("critic", "Critic"),
    ("completion", "Completions"), ("eval", "Held-out evaluation"),
    ("optim", "Optimiser"), ("perf", "Speed and memory"), ("other", "Other"))


@dataclass(frozen=True)
class Chart:
    """One chart: the keys it draws (``series``: key and the label its line gets) and/or a
    ``pattern`` whose first group labels the keys it matches (one per reward source)."""

    id: str
    title: str
    section: str
    series: tuple[tuple[str, str], ...] = ()
    pattern: str | None = None
    unit: str = ""
    """The y-axis title; empty when the chart's title says it."""
    key: bool = False
    """Shown in the comparison's "Key metrics" section, open by default."""

    def label(self, key: str) -> str | None:
        """The label of ``key``'s line on this chart, or None when the chart does not draw it."""
        for k, label in self.series:
            if k == key:
                return label
        if self.pattern:
            match = re.fullmatch(self.pattern, key)
            if match:
                return match.group(1)
        return None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "section": self.section,
                "series": [list(s) for s in self.series], "pattern": self.pattern,
                "unit": self.unit, "key": self.key}


# Keys kept for the x-axes and exports (running totals, a reward model's split), drawn on no
# chart.
HIDDEN_KEYS = frozenset({"perf/elapsed_s", "perf/tokens_total", "perf/pairs_total",
                         "eval/pairs", "eval/prompts", "data/train_pairs", "data/prompts"})


@dataclass(frozen=True)
class Catalog:
    charts: tuple[Chart, ...]
    hidden: frozenset[str] = field(default_factory=lambda: HIDDEN_KEYS)

    def chart_of(self, key: str) -> tuple[Chart, str] | None:
        if key in self.hidden:
            return None
        for chart in self.charts:
            label = chart.label(key)
            if label is not None:
                return chart, label
        return None

    def title_of(self, key: str) -> str:
        """A key as a person reads it on its own: ``Reward: length``, ``KL to reference``."""
        found = self.chart_of(key)
        if found is None:
            return key
        chart, label = found
        single = len(chart.series) == 1 and chart.pattern is None
        return chart.title if single else f"{chart.title}: {label}"

    def as_json(self) -> dict[str, Any]:
        return {"sections": [list(s) for s in SECTIONS],
                "charts": [c.as_json() for c in self.charts], "hidden": sorted(self.hidden)}


def one(key: str, label: str) -> tuple[tuple[str, str], ...]:
    return ((key, label),)


COMMON_CHARTS: tuple[Chart, ...] = (
    Chart("reward", "Reward", "reward", one("reward/mean", "mean"),
          pattern=r"reward/([^/]+)/mean", key=True),
    Chart("reward_std", "Reward std", "reward", one("reward/std", "all completions"),
          pattern=r"reward/([^/]+)/std"),
    Chart("group_std", "Reward std within groups", "reward",
          one("reward/group_std_mean", "mean over groups")),
    Chart("frac_zero_std", "Groups whose rewards are all equal", "reward",
          one("reward/frac_zero_std", "share"), unit="share of groups"),
    Chart("kl", "KL to reference", "kl", (("kl/mean", "k3 estimate"), ("kl/k1", "k1")),
          key=True),
    Chart("entropy", "Entropy", "kl", one("entropy/mean", "mean per token"),
          unit="nats", key=True),
    Chart("loss", "Loss", "loss", (("loss/total", "total"), ("loss/policy", "policy"),
                                   ("loss/kl", "KL term"), ("loss/entropy", "entropy")),
          key=True),
    Chart("clip", "Clip ratios", "clip", (("clip/region", "either side"),
                                          ("clip/low", "low"), ("clip/high", "high")),
          unit="share of tokens"),
    Chart("length", "Completion length", "completion",
          (("completion/length_mean", "mean"), ("completion/length_min", "min"),
           ("completion/length_max", "max")), unit="tokens", key=True),
    Chart("chars", "Completion length in characters", "completion",
          one("completion/chars_mean", "mean"), unit="characters"),
    Chart("truncated", "Truncated share", "completion",
          one("completion/truncated_frac", "share"), unit="share of completions"),
    Chart("grad_norm", "Gradient norm", "optim", (("optim/grad_norm", "trained model"),
                                                  ("optim/value_grad_norm", "critic"))),
    Chart("lr", "Learning rate", "optim", one("optim/lr", "learning rate")),
    Chart("throughput", "Throughput", "perf", (("perf/tokens_per_s", "tokens/s"),
                                               ("perf/pairs_per_s", "pairs/s")),
          unit="per second", key=True),
    Chart("step_time", "Seconds per step", "perf", one("perf/step_s", "whole step"),
          pattern=r"perf/([a-z]+)_s", unit="seconds"),
    Chart("memory", "Peak memory", "perf", one("perf/peak_mem_mb", "peak"), unit="MB"),
)
