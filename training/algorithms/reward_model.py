"""Reward models: a scalar head fitted on preference pairs with the Bradley-Terry loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.algorithms import AlgorithmSpec, register_algorithm
from training.charts import Chart, one
from training.config import BaseConfig, hp

# A reward model's held-out set has at least this many pairs (or eval_fraction of them,
# whichever is more, within half the data): fewer give a score that moves in coarse steps,
# and the run page says so.
EVAL_MIN_PAIRS = 20
MINILM = "all-minilm-l6-v2"  # the bundled encoder's registry id


@dataclass(frozen=True)
class RewardModelConfig(BaseConfig):
    """A scalar reward model fitted on preference pairs with the Bradley-Terry loss
    ``-log sigmoid(r_chosen - r_rejected - margin)``."""

    max_steps: int = hp(1000, "The most optimiser steps to run; epochs set the length "
                        "below it.", lo=1, hi=100_000, group="schedule")
    learning_rate: float = hp(2e-5, "AdamW learning rate (constant after warm-up).",
                              lo=0.0, hi=1.0)
    epochs: float = hp(2.0, "Passes over the training pairs (1 epoch: each pair once); "
                       "max_steps caps it.", lo=0.01, hi=1000.0, group="schedule")
    batch_size: int = hp(8, "Preference pairs per optimiser step.", lo=1, hi=4096,
                         group="reward_model")
    sequences_field = "batch_size"

    max_length: int = hp(512, "Longest prompt + response in tokens; longer ones are cut "
                         "from the left of the prompt.", lo=16, hi=32_768, group="reward_model")
    eval_fraction: float = hp(0.1, "Share of pairs held out, by prompt (no prompt on both "
                              "sides), to measure accuracy and margin; at least 20 pairs, at "
                              "most half; 0 holds out nothing.",
                              lo=0.0, hi=0.5, group="reward_model")
    eval_every: int = hp(0, "Measure the held-out pairs every N steps (0: ten times over the "
                         "run) and at the end.", lo=0, hi=100_000, group="reward_model")
    early_stop_patience: int = hp(3, "Stop when held-out accuracy has not improved for this "
                                  "many evaluations in a row (0: never).", lo=0, hi=1000,
                                  group="reward_model")

    def steps_for(self, train_pairs: int) -> int:
        """The run's length on ``train_pairs``: ``epochs`` passes of ``batch_size`` pairs a
        step, at most ``max_steps``, at least one step."""
        per_epoch = math.ceil(max(1, train_pairs) / self.batch_size)
        return max(1, min(self.max_steps, math.ceil(self.epochs * per_epoch)))

    def planned_steps(self, rows: int) -> int:
        return self.steps_for(rows)  # an upper bound: the held-out pairs do not train

    def eval_interval(self, total_steps: int) -> int:
        return self.eval_every or max(1, math.ceil(total_steps / 10))

    def sequences_per_step(self) -> int:
        return 2 * self.batch_size  # a chosen and a rejected response per pair


SPEC = register_algorithm(AlgorithmSpec(
    id="reward_model", title="Reward model", order=90, config=RewardModelConfig,
    engine="training.reward_model",
    summary="A scalar head on a policy, an encoder or a reward model, fitted on preference "
            "pairs (or ranked lists) with the Bradley-Terry loss; scored on held-out prompts.",
    dataset_kinds=("preferences", "rankings"), base_kinds=("policy", "encoder", "reward"),
    produces="reward", uses_rewards=False, reward_key="eval/accuracy",
    reward_label="Held-out accuracy",
    presets={
        "Smoke test (tiny-llama)": {"base_model": "tiny-llama", "epochs": 1, "batch_size": 8,
                                    "max_length": 128},
        "MiniLM encoder": {"base_model": MINILM, "epochs": 3, "batch_size": 16,
                           "learning_rate": 5e-5, "max_length": 256},
    },
    charts=(
        Chart("rm_loss", "Training loss", "loss", (("loss/train", "training pairs"),
                                                   ("eval/loss", "held-out pairs")), key=True),
        Chart("accuracy", "Pairwise accuracy", "eval", (("eval/accuracy", "held out"),
                                                        ("train/accuracy", "training batch")),
              key=True),
        Chart("margin", "Held-out margin", "eval", one("eval/margin", "chosen − rejected")),
        Chart("scores", "Scores of chosen and rejected", "eval",
              (("reward/chosen_mean", "chosen"), ("reward/rejected_mean", "rejected"),
               ("reward/margin_mean", "margin"))),
    )))
