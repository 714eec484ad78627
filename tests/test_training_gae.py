"""Advantage estimation against values worked out by hand: GAE and masked whitening (PPO's
losses are with the others in tests/test_training_losses.py)."""
from __future__ import annotations

import math

import pytest
import torch

from training.advantages import gae, whiten


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
