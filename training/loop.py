"""The step loop every trainer shares: preparing a run (device, dtype, seeds, the saved state
to resume from), running its steps with cancel, early stops and the checkpoint cadence, and
the learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from training.backend import Backend, backend_for
from training.checkpoints import load_training_state
from training.config import BaseConfig
from training.metrics import MetricsSink, SampleRecord
from training.runtime import resolve_device, resolve_dtype, seed_everything

StepOutcome = tuple[dict[str, float], list[SampleRecord]]
C = TypeVar("C", bound=BaseConfig)
S = TypeVar("S")


@dataclass
class TrainResult:
    steps: int
    stop_reason: str  # max_steps | cancelled | kl_stop | early_stop
    checkpoints: list[str] = field(default_factory=list)


def kl_stop_check(config: Any, state: Any, metrics: dict[str, float]) -> str | None:
    """``kl_stop`` when ``kl/mean`` passed it (algorithms with a reference have one)."""
    kl_stop = getattr(config, "kl_stop", None)
    if kl_stop is not None and metrics.get("kl/mean", 0.0) > kl_stop:
        return "kl_stop"
    return None


def run_steps(config: C, state: S,
              step_fn: Callable[[C, S, Callable[[], bool]], StepOutcome | None], *,
              backend: Backend, start: int, sink: MetricsSink, should_stop: Callable[[], bool],
              save: Callable[[C, S, int, MetricsSink], str],
              stop_check: Callable[[C, S, dict[str, float]], str | None] = kl_stop_check
              ) -> tuple[TrainResult, dict[str, float]]:
    """Steps ``start + 1`` to ``max_steps``, each logged to ``sink``; stops early on
    ``should_stop`` (before a step, or during its generation: that step is dropped) or when
    ``stop_check`` gives a reason after a step (by default: ``kl/mean`` past ``kl_stop``).
    Samples are logged when a step returns some. Saves every ``checkpoint_every`` steps and
    after the last step done unless it was just saved. Returns the result and the last
    step's metrics. ``backend`` gets back what the steps kept at the end."""
    result = TrainResult(steps=start, stop_reason="max_steps")
    metrics: dict[str, float] = {}
    saved_at = start
    for step in range(start + 1, config.max_steps + 1):
        if should_stop():
            result.stop_reason = "cancelled"
            break
        outcome = step_fn(config, state, should_stop)
        if outcome is None:  # cancelled during generation; the step is dropped
            result.stop_reason = "cancelled"
            break
        metrics, samples = outcome
        result.steps = step
        sink.log_metrics(step, metrics)
        if samples:
            sink.log_samples(step, samples)
        reason = stop_check(config, state, metrics)
        if reason:
            result.stop_reason = reason
            break
        if config.checkpoint_every and step % config.checkpoint_every == 0 and \
                step < config.max_steps:
            result.checkpoints.append(save(config, state, step, sink))
            saved_at = step
    if result.steps > saved_at:
        result.checkpoints.append(save(config, state, result.steps, sink))
    backend.release()  # what the steps kept for the next step
    return result, metrics


def prepare(config: BaseConfig, resume_from: str | None
            ) -> tuple[Backend, torch.dtype, dict[str, Any] | None]:
    """The device's backend (chosen once, here) and the dtype from the config, every RNG
    seeded, and the saved training state when resuming from a checkpoint directory."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    backend = backend_for(device, config.engine)
    backend.start()
    seed_everything(config.seed)
    return backend, dtype, load_training_state(Path(resume_from)) if resume_from else None


def warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int
                     ) -> torch.optim.lr_scheduler.LambdaLR:
    """A constant learning rate after a linear warm-up over ``warmup_steps`` scheduler steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0)
