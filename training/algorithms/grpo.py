"""GRPO: G completions per prompt, advantages relative to the group, no critic."""

from __future__ import annotations

from dataclasses import dataclass

from training.algorithms import AlgorithmSpec, register_algorithm
from training.config import PolicyGradientConfig, hp


@dataclass(frozen=True)
class GRPOConfig(PolicyGradientConfig):
    """Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath)."""

    scale_rewards: str = hp("group", "Divide advantages by the group's std (group), the "
                            "batch's std (batch), or not at all (none, Dr. GRPO).",
                            choices=("group", "batch", "none"), group="grpo")


SPEC = register_algorithm(AlgorithmSpec(
    id="grpo", title="GRPO", order=10, config=GRPOConfig, engine="training.grpo",
    summary="Group Relative Policy Optimisation: G completions per prompt, each scored against "
            "its group's mean; no critic, a k3 KL penalty to the reference.",
    presets={
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 2,
            "group_size": 4, "max_new_tokens": 16},
        "Length control (seed article)": {
            "max_steps": 10, "prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64,
            "learning_rate": 1e-5, "temperature": 0.8, "beta": 0.04},
        "DAPO clip-higher, no KL": {
            "epsilon_low": 0.2, "epsilon_high": 0.28, "beta": 0.0, "loss_type": "bnpo"},
        "Dr. GRPO": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    }))
