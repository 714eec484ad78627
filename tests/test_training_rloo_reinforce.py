"""RLOO and REINFORCE++: their advantages against values worked out by hand (and verl's
conventions), and a few real updates of the tiny model each, through the critic-free step."""
from __future__ import annotations

import math

import pytest
import torch

from tests.training_helpers import grpo_config, one_torch_thread
from training.metrics import ListSink
from training.policy_gradient import Scored
from training.reinforce_pp import advantages as reinforce_pp_advantages
from training.reinforce_pp import discounted_returns, token_rewards
from training.rloo import leave_one_out


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


# --- RLOO ---

def test_rloo_subtracts_the_mean_of_the_other_completions():
    # group 1: [1, 2, 3, 6]: 1 - (2+3+6)/3 = -8/3, 2 - 10/3 = -4/3, 3 - 9/3 = 0, 6 - 6/3 = 4
    # group 2: [5, 5, 5, 5] carries no signal: exactly 0
    advantages, metrics = leave_one_out(torch.tensor([1.0, 2, 3, 6, 5, 5, 5, 5]), 4)
    assert advantages.tolist() == pytest.approx([-8 / 3, -4 / 3, 0.0, 4.0, 0, 0, 0, 0])
    assert metrics["reward/frac_zero_std"] == 0.5


def test_rloo_with_two_completions_is_their_difference():
    advantages, _ = leave_one_out(torch.tensor([0.25, 1.0]), 2)
    assert advantages.tolist() == pytest.approx([-0.75, 0.75])


def test_rloo_matches_verls_estimator_on_random_groups():
    """verl's compute_rloo_outcome_advantage: score * n/(n-1) - group mean * n/(n-1)."""
    rewards = torch.randn(24, generator=torch.Generator().manual_seed(3))
    n = 6
    ours, _ = leave_one_out(rewards, n)
    means = rewards.view(-1, n).mean(dim=1).repeat_interleave(n)
    verl = rewards * n / (n - 1) - means * n / (n - 1)
    assert torch.allclose(ours, verl, atol=1e-6)


# --- REINFORCE++ ---

def close(actual: torch.Tensor, expected: list[list[float]]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=1e-5, rtol=0)


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
K1 = torch.tensor([[0.2, 0.0, 0.4], [0.1, 0.3, 9.0]])  # 9.0 is past row 2's end: ignored


def test_token_rewards_put_the_outcome_on_the_last_token_and_the_kl_on_every_token():
    rewards = token_rewards(torch.tensor([1.0, 0.0]), MASK, K1, beta=0.5)
    # row 1: -0.5 x [0.2, 0, 0.4] + [0, 0, 1]; row 2: -0.5 x [0.1, 0.3] + [0, 0], then padding
    close(rewards, [[-0.1, 0.0, 0.8], [-0.05, -0.15, 0.0]])


def test_returns_sum_the_rewards_ahead():
    returns = discounted_returns(torch.tensor([[-0.1, 0.0, 0.8], [-0.05, -0.15, 0.0]]),
                                 MASK, gamma=1.0)
    close(returns, [[0.7, 0.8, 0.8], [-0.2, -0.15, 0.0]])
    halved = discounted_returns(torch.tensor([[0.0, 0.0, 1.0]]), torch.ones(1, 3), gamma=0.5)
    close(halved, [[0.25, 0.5, 1.0]])


def test_reinforce_pp_advantages_are_the_returns_whitened_over_the_batch():
    # returns over the 5 completion tokens: 0.7, 0.8, 0.8, -0.2, -0.15; mean 0.39;
    # unbiased variance 1.072 / 4 = 0.268, std 0.517687
    config = grpo_config_for("reinforce_pp", beta=0.5)
    scored = Scored(torch.tensor([1.0, 0.0]), MASK, ref_logprobs=-K1,
                    old_logprobs=torch.zeros(2, 3))  # k1 = old - ref = K1
    advantages, metrics = reinforce_pp_advantages(config, scored)
    std = math.sqrt(1.072 / 4)
    expected = [[0.31 / std, 0.41 / std, 0.41 / std], [-0.59 / std, -0.54 / std, 0.0]]
    close(advantages, expected)
    # beta x the sum of each row's k1 (past row 2's end excluded): 0.3 and 0.2, mean 0.25
    assert metrics["reward/kl_penalty"] == pytest.approx(0.25)


def test_reinforce_pp_without_kl_whitens_the_outcomes_alone():
    config = grpo_config_for("reinforce_pp", beta=0.0)
    scored = Scored(torch.tensor([1.0, 0.0]), MASK, None, None)
    advantages, metrics = reinforce_pp_advantages(config, scored)
    # returns 1, 1, 1 and 0, 0: mean 0.6, unbiased variance 1.2 / 4 = 0.3
    std = math.sqrt(0.3)
    close(advantages, [[0.4 / std] * 3, [-0.6 / std, -0.6 / std, 0.0]])
    assert metrics["reward/kl_penalty"] == 0.0


def grpo_config_for(algorithm: str, **hyperparameters: object) -> object:
    """A config object for the estimators (their reads only: beta, gamma, group_size)."""
    from training.algorithms import get_algorithm

    spec = get_algorithm(algorithm)
    assert spec is not None
    return spec.config(**hyperparameters)  # type: ignore[arg-type]


# --- real updates ---

@pytest.mark.parametrize("algorithm, extra", [
    ("rloo", {"group_size": 2, "beta": 0.04}),
    ("reinforce_pp", {"group_size": 1, "prompts_per_step": 3, "beta": 0.05}),
    ("reinforce_pp", {"group_size": 2, "beta": 0.0}),
])
def test_a_few_steps_train_the_tiny_model(tmp_path, algorithm, extra):
    from training.algorithms import get_algorithm
    from training.loop import TrainResult

    spec = get_algorithm(algorithm)
    assert spec is not None
    engine = __import__(spec.engine, fromlist=["train"])
    config = grpo_config(tmp_path, algorithm=algorithm, max_steps=2, **extra)
    sink = ListSink()
    result, last = engine.train(config, sink=sink)
    assert isinstance(result, TrainResult) and result.steps == 2
    for _, metrics in sink.metrics:
        assert all(math.isfinite(v) for v in metrics.values())
        assert {"reward/mean", "loss/policy", "entropy/mean", "optim/grad_norm"} <= metrics.keys()
    if config.beta:
        assert "kl/mean" in last
    if algorithm == "reinforce_pp" and config.beta:
        assert "reward/kl_penalty" in last and "kl/k1" in last
    assert len(sink.samples[-1][1]) > 0 and result.checkpoints
