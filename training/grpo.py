"""Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath), on the critic-free
step of :mod:`training.policy_gradient` (which lists the departures it shares).

Where GRPO itself departs from the paper:
- Group std is unbiased (as TRL) with 1e-4 added; advantage scaling can also use the batch std
  or none (Dr. GRPO, ``scale_rewards``).
- The KL penalty is the k3 estimator per token, in the loss, weighted by ``beta``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training import policy_gradient
from training.advantages import group_advantages
from training.algorithms.grpo import GRPOConfig
from training.loop import TrainResult
from training.metrics import MetricsSink
from training.policy_gradient import Estimator, Scored, setup_run

__all__ = ["ESTIMATOR", "setup_run", "train"]


def advantages(config: GRPOConfig, scored: Scored) -> tuple[torch.Tensor, dict[str, float]]:
    """``(r_i - mean(group)) / (std(group) + eps)`` per completion (see
    :func:`training.advantages.group_advantages` for the scaling options)."""
    return group_advantages(scored.rewards, config.group_size, config.scale_rewards)


ESTIMATOR = Estimator("grpo", advantages)  # type: ignore[arg-type]


def train(config: GRPOConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with GRPO; returns the result and the last step's metrics."""
    return policy_gradient.train(config, ESTIMATOR, sink=sink, should_stop=should_stop,
                                 resume_from=resume_from)
