"""PPO: a learned critic, per-token KL penalty in the reward, GAE, clipped updates."""

from __future__ import annotations

from dataclasses import dataclass

from training.algorithms import AlgorithmSpec, register_algorithm
from training.charts import Chart, one
from training.config import RolloutConfig, hp


@dataclass(frozen=True)
class PPOConfig(RolloutConfig):
    """Proximal Policy Optimisation with a learned critic (Schulman et al. 2017; the RLHF
    recipe of Ziegler et al. 2019 and Ouyang et al. 2022)."""

    ppo_epochs: int = hp(4, "Passes over each rollout's minibatches.", lo=1, hi=64, group="ppo")
    minibatches: int = hp(2, "Minibatches per epoch; must divide prompts_per_step.", lo=1,
                          hi=4096, group="ppo")
    gamma: float = hp(1.0, "Discount factor of GAE.", lo=0.0, hi=1.0, group="ppo")
    lam: float = hp(0.95, "GAE lambda: 1 is Monte-Carlo (low bias, high variance), 0 is "
                    "one-step TD (low variance, high bias).", lo=0.0, hi=1.0, group="ppo")
    kl_coef: float = hp(0.05, "Per-token KL penalty to the reference, subtracted from the "
                        "reward (the initial value when kl_target is set).", lo=0.0, hi=100.0,
                        group="ppo")
    kl_target: float | None = hp(None, "Adapt kl_coef to keep KL near this value (Ziegler et "
                                 "al.); empty keeps kl_coef fixed.", lo=0.0, hi=1e3,
                                 nullable=True, group="ppo")
    cliprange: float = hp(0.2, "Policy ratio clip epsilon.", lo=0.0, hi=10.0, group="ppo")
    cliprange_value: float = hp(0.2, "Value clip: new values stay within this of the old.",
                                lo=0.0, hi=1e6, group="ppo")
    vf_coef: float = hp(0.1, "Weight of the value loss.", lo=0.0, hi=100.0, group="ppo")
    entropy_coef: float = hp(0.0, "Weight of the entropy bonus (0: none).", lo=0.0, hi=10.0,
                             group="ppo")
    whiten_advantages: bool = hp(True, "Normalise advantages to zero mean and unit variance "
                                 "per rollout.", group="ppo")
    critic_init: str = hp("policy", "Critic backbone: a copy of the policy, or of the reward "
                          "model's backbone.", choices=("policy", "reward"), group="ppo")

    def problems(self) -> dict[str, str]:
        per_minibatch, rest = divmod(self.prompts_per_step, self.minibatches)
        if rest:
            return {"minibatches": f"must divide prompts_per_step ({self.prompts_per_step})"}
        if self.micro_batch_size and per_minibatch % self.micro_batch_size:
            return {"micro_batch_size": f"must divide the minibatch size ({per_minibatch})"}
        return {}


SPEC = register_algorithm(AlgorithmSpec(
    id="ppo", title="PPO", order=20, config=PPOConfig, engine="training.ppo",
    summary="Proximal Policy Optimisation with a learned critic: per-token KL penalty in the "
            "reward, GAE advantages, several epochs of clipped minibatch updates.",
    presets={
        "Smoke test (tiny-llama)": {
            "base_model": "tiny-llama", "max_steps": 4, "prompts_per_step": 4,
            "minibatches": 2, "max_new_tokens": 16},
        "InstructGPT-style (adaptive KL)": {
            "kl_coef": 0.1, "kl_target": 6.0, "ppo_epochs": 4, "cliprange": 0.2,
            "gamma": 1.0, "lam": 0.95},
    },
    charts=(
        Chart("value_loss", "Value loss", "critic", one("loss/value", "value loss")),
        Chart("critic", "Critic", "critic", (("value/explained_var", "explained variance"),
                                             ("value/clip_frac", "clipped share"))),
        Chart("value_mean", "Mean value", "critic", one("value/mean", "mean")),
        Chart("kl_approx", "Approximate KL, old to new policy", "kl",
              one("kl/approx", "approx KL")),
        Chart("kl_coef", "KL coefficient", "kl", one("kl/coef", "coefficient")),
        Chart("policy_clip", "Policy clip fraction", "clip",
              one("clip/policy_frac", "clipped share"), unit="share of tokens"),
    )))
