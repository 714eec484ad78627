"""PPO's pure pieces against values worked out by hand: GAE, masked whitening, the clipped
policy and value losses, explained variance."""
from __future__ import annotations

import math

import pytest
import torch

from training.advantages import gae, whiten
from training.losses import explained_variance, ppo_policy_loss, value_loss


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --- GAE ---
# rewards [0, 0, 1], values [0.5, 0.6, 0.7], V after the last token = 0
#   deltas (gamma 1): d2 = 1 + 0 - 0.7 = 0.3, d1 = 0 + 0.7 - 0.6 = 0.1, d0 = 0 + 0.6 - 0.5 = 0.1
#   lam 1: A2 = 0.3, A1 = 0.1 + 0.3 = 0.4, A0 = 0.1 + 0.4 = 0.5; returns = A + V = [1, 1, 1]
#   lam 0: A = deltas = [0.1, 0.1, 0.3]; returns = [0.6, 0.7, 1.0]


def test_gae_with_gamma_and_lambda_one_is_the_monte_carlo_return_minus_the_value():
    advantages, returns = gae(_t([0, 0, 1]), _t([0.5, 0.6, 0.7]), _t([1, 1, 1]),
                              gamma=1.0, lam=1.0)

    assert advantages.tolist() == [pytest.approx([0.5, 0.4, 0.3])]
    assert returns.tolist() == [pytest.approx([1.0, 1.0, 1.0])]


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    advantages, returns = gae(_t([0, 0, 1]), _t([0.5, 0.6, 0.7]), _t([1, 1, 1]),
                              gamma=1.0, lam=0.0)

    assert advantages.tolist() == [pytest.approx([0.1, 0.1, 0.3])]
    assert returns.tolist() == [pytest.approx([0.6, 0.7, 1.0])]


def test_gae_discounts_with_gamma_and_lambda():
    # rewards [0.2, 1.0], values [0.4, 0.5], gamma 0.9, lam 0.95
    #   d1 = 1.0 + 0.9 * 0 - 0.5 = 0.5                  A1 = 0.5
    #   d0 = 0.2 + 0.9 * 0.5 - 0.4 = 0.25               A0 = 0.25 + 0.9 * 0.95 * 0.5 = 0.6775
    #   returns = [0.6775 + 0.4, 0.5 + 0.5] = [1.0775, 1.0]
    advantages, returns = gae(_t([0.2, 1.0]), _t([0.4, 0.5]), _t([1, 1]), gamma=0.9, lam=0.95)

    assert advantages.tolist() == [pytest.approx([0.6775, 0.5])]
    assert returns.tolist() == [pytest.approx([1.0775, 1.0])]


def test_gae_ends_each_row_at_its_mask_and_ignores_what_lies_beyond():
    # row 0: the 3-token case above. row 1: one token, reward 2, value 0.5, then padding whose
    # rewards (5, 7) and values (9, 9) must change nothing: A0 = 2 + 0 - 0.5 = 1.5, R0 = 2.
    rewards = _t([0, 0, 1], [2, 5, 7])
    values = _t([0.5, 0.6, 0.7], [0.5, 9, 9])
    mask = _t([1, 1, 1], [1, 0, 0])

    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)

    assert advantages.tolist() == [pytest.approx([0.5, 0.4, 0.3]), pytest.approx([1.5, 0, 0])]
    assert returns.tolist() == [pytest.approx([1.0, 1.0, 1.0]), pytest.approx([2.0, 0, 0])]
    alone, _ = gae(_t([2]), _t([0.5]), _t([1]), gamma=1.0, lam=1.0)
    assert alone[0, 0] == advantages[1, 0]


# --- whitening ---
# [1, 2, 3, 4] kept, 100 masked out: mean 2.5, unbiased var (2.25 + 0.25 + 0.25 + 2.25) / 3
# = 5 / 3, std 1.29099 -> whitened [-1.16190, -0.38730, 0.38730, 1.16190]

def test_whiten_gives_zero_mean_and_unit_std_over_the_masked_entries():
    values, mask = _t([1, 2, 3, 4, 100]), _t([1, 1, 1, 1, 0])

    white = whiten(values, mask)[0]

    std = math.sqrt(5 / 3)
    assert white.tolist() == pytest.approx([-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0.0])
    kept = white[:4]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-6)


def test_whiten_without_shifting_the_mean_keeps_it():
    values, mask = _t([1, 2, 3, 4, 100]), _t([1, 1, 1, 1, 0])

    white = whiten(values, mask, shift_mean=False)[0]

    kept = white[:4]
    assert kept.mean().item() == pytest.approx(2.5)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-6)
    assert white[4].item() == 0.0


# --- clipped policy loss, cliprange 0.2 ---
# token  ratio  A    r*A    clip(r)*A  min    loss   clipped?
#   0    1.1   +1    1.1    1.1        1.1   -1.1   no (inside)
#   1    1.5   +1    1.5    1.2        1.2   -1.2   yes, high
#   2    0.5   -1   -0.5   -0.8       -0.8    0.8   yes, low
#   3    1.5   -1   -1.5   -1.2       -1.5    1.5   no (the unclipped term is the worse one)
#   4    0.5   +1    0.5    0.8        0.5   -0.5   no
#   5    padding (mask 0): ratio 9, A 100, ignored
# mean loss = (-1.1 - 1.2 + 0.8 + 1.5 - 0.5) / 5 = -0.1; 2 of 5 tokens clipped
RATIOS = [1.1, 1.5, 0.5, 1.5, 0.5, 9.0]
SIGNS = [1.0, 1.0, -1.0, -1.0, 1.0, 100.0]
MASK = [1, 1, 1, 1, 1, 0]


def _policy_loss():
    logprobs = torch.tensor([RATIOS], dtype=torch.float64).log().requires_grad_(True)
    old = torch.zeros_like(logprobs)
    loss, metrics = ppo_policy_loss(logprobs, old, torch.tensor([SIGNS], dtype=torch.float64),
                                    torch.tensor([MASK]), cliprange=0.2)
    return logprobs, loss, metrics


def test_ppo_policy_loss_takes_the_pessimistic_of_the_clipped_and_unclipped_terms():
    _, loss, metrics = _policy_loss()

    assert loss.item() == pytest.approx(-0.1)
    assert metrics["loss/policy"] == pytest.approx(-0.1)
    assert metrics["clip/policy_frac"] == pytest.approx(2 / 5)
    assert metrics["clip/high"] == pytest.approx(1 / 5)
    assert metrics["clip/low"] == pytest.approx(1 / 5)
    assert metrics["clip/region"] == pytest.approx(2 / 5)


def test_ppo_policy_loss_gives_no_gradient_through_clipped_tokens():
    logprobs, loss, _ = _policy_loss()

    loss.backward()

    # d(-r A / 5) / d logp = -r A / 5 where the unclipped term is used, 0 where clipped
    expected = [-1.1 / 5, 0.0, 0.0, 1.5 / 5, -0.5 / 5, 0.0]
    assert logprobs.grad is not None
    assert logprobs.grad[0].tolist() == pytest.approx(expected)


def test_ppo_policy_loss_reports_the_k3_approx_kl_between_old_and_new():
    # per token (r - 1) - log r: 1.1 -> 0.0046898, 1.5 -> 0.0945349, 0.5 -> 0.1931472;
    # (0.0046898 + 2 * 0.0945349 + 2 * 0.1931472) / 5 = 0.5800540 / 5 = 0.1160108
    _, _, metrics = _policy_loss()

    per_token = [(r - 1) - math.log(r) for r in RATIOS[:5]]
    assert metrics["kl/approx"] == pytest.approx(sum(per_token) / 5)
    assert metrics["kl/approx"] == pytest.approx(0.1160108, abs=1e-6)


def test_ppo_policy_loss_is_minus_the_advantage_when_nothing_moved():
    logprobs = torch.tensor([[-1.0, -2.0]])
    loss, metrics = ppo_policy_loss(logprobs, logprobs.clone(), torch.tensor([[2.0, -1.0]]),
                                    torch.tensor([[1, 1]]), cliprange=0.2)

    assert loss.item() == pytest.approx(-(2.0 - 1.0) / 2)
    assert metrics["kl/approx"] == 0.0 and metrics["clip/policy_frac"] == 0.0


# --- clipped value loss, cliprange_value 0.2 ---
# token  old   new   R     (new-R)^2   clip(new, old+-0.2)  (clipped-R)^2  max
#   0    0.0   1.0   1.0   0.0         0.2                  0.64           0.64  (clipped chosen)
#   1    0.0   0.1   1.0   0.81        0.1                  0.81           0.81  (equal: not)
#   2    0.0  -1.0   0.5   2.25       -0.2                  0.49           2.25
#   3    padding, ignored
# loss = 0.5 * (0.64 + 0.81 + 2.25) / 3 = 0.616667; clip fraction 1/3

def test_value_loss_takes_the_larger_of_the_clipped_and_unclipped_errors():
    values = torch.tensor([[1.0, 0.1, -1.0, 50.0]])
    old_values = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 1.0, 0.5, -50.0]])

    loss, metrics = value_loss(values, old_values, returns, torch.tensor([[1, 1, 1, 0]]),
                               cliprange_value=0.2)

    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 2.25) / 3)
    assert metrics["loss/value"] == pytest.approx(0.616667, abs=1e-6)
    assert metrics["value/clip_frac"] == pytest.approx(1 / 3)


def test_value_loss_without_movement_is_half_the_squared_error():
    values = torch.tensor([[1.0, 3.0]])

    loss, metrics = value_loss(values, values.clone(), torch.tensor([[2.0, 1.0]]),
                               torch.tensor([[1, 1]]), cliprange_value=0.2)

    assert loss.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    assert metrics["value/clip_frac"] == 0.0


# --- explained variance ---

def test_explained_variance_is_one_for_a_perfect_critic():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])

    assert explained_variance(returns.clone(), returns, torch.ones(1, 4)) == pytest.approx(1.0)


def test_explained_variance_is_zero_for_a_constant_prediction():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.0]])
    values = torch.tensor([[7.0, 7.0, 7.0, 7.0, -100.0]])  # the last entry is masked out

    ev = explained_variance(values, returns, torch.tensor([[1, 1, 1, 1, 0]]))

    assert ev == pytest.approx(0.0, abs=1e-6)


def test_explained_variance_counts_only_the_masked_entries():
    # returns [1, 2, 3, 4]: mean 2.5, var 1.25; errors R - V = [0, 0, 0, 1]: mean 0.25,
    # var (3 * 0.0625 + 0.5625) / 4 = 0.1875 -> 1 - 0.1875 / 1.25 = 0.85
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0, 9.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 3.0, 0.0]])

    ev = explained_variance(values, returns, torch.tensor([[1, 1, 1, 1, 0]]))

    assert ev == pytest.approx(0.85)


def test_explained_variance_is_zero_when_the_returns_do_not_vary():
    returns = torch.full((1, 3), 2.0)

    assert explained_variance(torch.zeros(1, 3), returns, torch.ones(1, 3)) == 0.0
