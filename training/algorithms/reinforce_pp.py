"""REINFORCE++: the KL penalty folded into each token's reward, advantages whitened over the
whole batch; no critic, one completion per prompt (or a group)."""

from __future__ import annotations

from dataclasses import dataclass

from training.algorithms import AlgorithmSpec, register_algorithm
from training.charts import Chart, one
from training.config import PolicyGradientConfig, hp


@dataclass(frozen=True)
class ReinforcePPConfig(PolicyGradientConfig):
    """REINFORCE++ (Hu 2025)."""

    prompts_per_step: int = hp(8, "Prompts drawn from the dataset for each step.", lo=1,
                               hi=4096, group="sampling")
    group_size: int = hp(1, "Completions sampled per prompt; the advantages are normalised "
                         "over the whole batch, so one is enough.", lo=1, hi=256,
                         group="policy")
    beta: float = hp(0.01, "Weight of the per-token KL penalty (k1, to the reference) "
                     "subtracted from each token's reward; 0 drops the reference model.",
                     lo=0.0, hi=100.0, group="policy")
    gamma: float = hp(1.0, "Discount of the returns over a completion's tokens.", lo=0.0,
                      hi=1.0, group="reinforce_pp")


SPEC = register_algorithm(AlgorithmSpec(
    id="reinforce_pp", title="REINFORCE++", order=40, config=ReinforcePPConfig,
    engine="training.reinforce_pp",
    summary="REINFORCE++: a per-token KL penalty folded into the reward, returns whitened over "
            "the whole batch, the clipped surrogate; no critic, one completion per prompt.",
    presets={
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 4,
            "group_size": 1, "max_new_tokens": 16},
        "Groups of 4 (REINFORCE++ with G samples)": {"group_size": 4, "prompts_per_step": 4},
    },
    charts=(Chart("kl_penalty", "KL penalty in the reward", "reward",
                  one("reward/kl_penalty", "beta x sum of k1")),)))
