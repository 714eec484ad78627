"""RLOO: G completions per prompt, each one's baseline the mean of the other G - 1."""

from __future__ import annotations

from dataclasses import dataclass

from training.algorithms import AlgorithmSpec, register_algorithm
from training.config import PolicyGradientConfig


@dataclass(frozen=True)
class RLOOConfig(PolicyGradientConfig):
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics"), with GRPO's clipped
    surrogate and k3 KL penalty in the loss."""


SPEC = register_algorithm(AlgorithmSpec(
    id="rloo", title="RLOO", order=30, config=RLOOConfig, engine="training.rloo",
    summary="REINFORCE Leave-One-Out: G completions per prompt, each one's advantage its "
            "reward minus the mean of the other G - 1; no critic, a k3 KL penalty in the loss.",
    presets={
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 2,
            "group_size": 4, "max_new_tokens": 16},
        "Back to Basics (k = 4)": {"group_size": 4, "beta": 0.05, "epsilon_low": 0.2,
                                   "epsilon_high": 0.2},
    }))
