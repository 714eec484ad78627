"""The engine of the throwaway algorithm tests/test_declarations.py registers: it trains
nothing, and reports what a worker handed it (its config and its reward sources' scores)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.loop import TrainResult
from training.metrics import MetricsSink, NullSink
from training.reward_types import get_reward_type


def train(config: Any, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    sink = sink or NullSink()
    metrics: dict[str, float] = {}
    for step in range(1, config.max_steps + 1):
        metrics = {"throwaway/knob": float(config.knob), "reward/mean": float(step)}
        for spec in config.rewards:  # a rule-based source scores a fixed completion
            kind = get_reward_type(spec.type)
            assert kind is not None and kind.score is not None
            metrics[f"reward/{spec.type}/mean"] = kind.score(["p"], ["HELLO"], [{}],
                                                             spec.args)[0]
        sink.log_metrics(step, metrics)
    return TrainResult(steps=config.max_steps, stop_reason="max_steps"), metrics
