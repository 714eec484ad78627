"""REINFORCE++ (Hu 2025), on the critic-free step of :mod:`training.policy_gradient` (which lists
the departures it shares).

Each token's reward is ``-beta * k1_t`` (``k1 = logp_old - logp_ref``), and the completion's
outcome reward is added at its last token; returns are the discounted sums of the rewards
ahead, whitened over every completion token of the batch (not per prompt group), and the
policy is updated with the clipped surrogate, the KL already in the advantages (none in the
loss). This is verl's ``compute_reinforce_plus_plus_outcome_advantage`` after its
``apply_kl_penalty`` with the ``kl`` (k1) estimator. Where this departs from the paper:
- The whitening's variance is unbiased (Bessel), as verl's ``masked_whiten``.
- The k1 estimate is of the sampling policy (before this step's updates), as verl.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training import policy_gradient
from training.advantages import whiten
from training.algorithms.reinforce_pp import ReinforcePPConfig
from training.loop import TrainResult
from training.metrics import MetricsSink
from training.policy_gradient import Estimator, Scored


def token_rewards(outcomes: torch.Tensor, action_mask: torch.Tensor, kl: torch.Tensor | None,
                  beta: float) -> torch.Tensor:
    """(B, T): ``-beta * kl`` on every completion token, plus each row's outcome (B,) on its
    last token; 0 outside ``action_mask``."""
    mask = action_mask.float()
    rewards = torch.zeros_like(mask)  # (B, T)
    lengths = mask.sum(dim=1).long()  # (B,)
    rows = torch.nonzero(lengths > 0).squeeze(1)
    rewards[rows, lengths[rows] - 1] = outcomes.to(mask)[rows]
    if kl is not None and beta:
        rewards = rewards - beta * kl.to(mask) * mask
    return rewards * mask


def discounted_returns(rewards: torch.Tensor, action_mask: torch.Tensor, gamma: float
                       ) -> torch.Tensor:
    """(B, T): ``G_t = r_t + gamma * G_{t+1}`` over each row's tokens, 0 after its last."""
    mask = action_mask.float()
    returns = torch.zeros_like(rewards)  # (B, T)
    running = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def advantages(config: ReinforcePPConfig, scored: Scored
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Whitened returns (B, T) of the KL-penalised token rewards."""
    mask = scored.action_mask.float()
    kl = None
    if config.beta and scored.old_logprobs is not None and scored.ref_logprobs is not None:
        kl = (scored.old_logprobs - scored.ref_logprobs) * mask  # (B, T) k1
    rewards = token_rewards(scored.rewards, mask, kl, config.beta)
    returns = discounted_returns(rewards, mask, config.gamma)
    metrics = {"reward/kl_penalty": 0.0 if kl is None else
               (config.beta * kl.sum(dim=1)).mean().item()}
    if kl is not None:
        metrics["kl/k1"] = (kl.sum() / mask.sum().clamp(min=1.0)).item()
    return whiten(returns, mask), metrics


ESTIMATOR = Estimator("reinforce_pp", advantages, kl_in_reward=True)  # type: ignore[arg-type]


def train(config: ReinforcePPConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with REINFORCE++; returns the result and the last step's
    metrics."""
    return policy_gradient.train(config, ESTIMATOR, sink=sink, should_stop=should_stop,
                                 resume_from=resume_from)
