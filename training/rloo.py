"""RLOO, REINFORCE Leave-One-Out (Ahmadian et al. 2024), on the critic-free step of
:mod:`training.policy_gradient` (which lists the departures it shares).

Each completion's baseline is the mean reward of the other G - 1 completions of its prompt:
``A_i = r_i - mean_{j != i} r_j = G / (G - 1) * (r_i - mean(r))``, as verl's
``compute_rloo_outcome_advantage``. Where this departs from the paper:
- The update is the clipped surrogate with the k3 KL penalty in the loss, as GRPO's (the
  paper's RLOO is a plain REINFORCE step with the KL penalty in the reward); with one update
  per rollout the ratio is 1 and the surrogate is REINFORCE's gradient.
- Advantages are not divided by a standard deviation (as the paper and verl).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training import policy_gradient
from training.advantages import group_advantages
from training.algorithms.rloo import RLOOConfig
from training.loop import TrainResult
from training.metrics import MetricsSink
from training.policy_gradient import Estimator, Scored


def leave_one_out(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """``r_i`` minus the mean of the other rewards of its group, (B,), the G completions of a
    prompt adjacent; a group whose rewards are all equal gets exactly 0."""
    centred, metrics = group_advantages(rewards, group_size, scale="none")  # r_i - mean
    return centred * (group_size / (group_size - 1)), metrics


def advantages(config: RLOOConfig, scored: Scored) -> tuple[torch.Tensor, dict[str, float]]:
    return leave_one_out(scored.rewards, config.group_size)


ESTIMATOR = Estimator("rloo", advantages)  # type: ignore[arg-type]


def train(config: RLOOConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with RLOO; returns the result and the last step's metrics."""
    return policy_gradient.train(config, ESTIMATOR, sink=sink, should_stop=should_stop,
                                 resume_from=resume_from)
