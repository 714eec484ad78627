"""GRPO's group-relative advantages, against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from training.advantages import ADV_EPS, group_advantages

# rewards [1, 2, 3, 6] with group size 2 -> groups [1, 2] and [3, 6]
#   means: 1.5 and 4.5; centred: [-0.5, 0.5, -1.5, 1.5]
#   unbiased stds: sqrt((0.5^2 + 0.5^2) / 1) = sqrt(0.5) = 0.70711
#                  sqrt((1.5^2 + 1.5^2) / 1) = sqrt(4.5) = 2.12132
#   whole batch: mean 3, squared deviations 4 + 1 + 0 + 9 = 14, std sqrt(14 / 3) = 2.16025
REWARDS = torch.tensor([1.0, 2.0, 3.0, 6.0])
CENTRED = [-0.5, 0.5, -1.5, 1.5]


def test_group_advantages_divide_by_the_group_std():
    advantages, _ = group_advantages(REWARDS, group_size=2, scale="group")

    expected = [-0.5 / (math.sqrt(0.5) + 1e-4), 0.5 / (math.sqrt(0.5) + 1e-4),
                -1.5 / (math.sqrt(4.5) + 1e-4), 1.5 / (math.sqrt(4.5) + 1e-4)]
    assert advantages.tolist() == pytest.approx(expected, rel=1e-6)
    assert ADV_EPS == 1e-4


def test_group_advantages_divide_by_the_batch_std():
    advantages, _ = group_advantages(REWARDS, group_size=2, scale="batch")

    batch_std = math.sqrt(14 / 3)
    assert advantages.tolist() == pytest.approx([c / (batch_std + 1e-4) for c in CENTRED],
                                                rel=1e-6)


def test_group_advantages_without_scaling_are_the_centred_rewards():
    advantages, _ = group_advantages(REWARDS, group_size=2, scale="none")

    assert advantages.tolist() == pytest.approx(CENTRED)


def test_group_advantages_of_one_group_of_four():
    # [1, 2, 3, 6]: mean 3, centred [-2, -1, 0, 3], std sqrt(14 / 3) as for the batch
    advantages, metrics = group_advantages(REWARDS, group_size=4, scale="group")

    std = math.sqrt(14 / 3)
    assert advantages.tolist() == pytest.approx([c / (std + 1e-4) for c in (-2, -1, 0, 3)],
                                                rel=1e-6)
    assert metrics["reward/group_std_mean"] == pytest.approx(std)


def test_advantages_sum_to_zero_within_each_group():
    rewards = torch.tensor([0.3, -1.0, 2.5, 7.0, 7.5, 0.0, 1.0, 1.0, 4.0])
    for scale in ("group", "batch", "none"):
        advantages, _ = group_advantages(rewards, group_size=3, scale=scale)
        assert advantages.view(3, 3).sum(dim=1).abs().max().item() < 1e-5


def test_a_group_of_equal_rewards_gets_zero_advantage_and_counts_as_zero_std():
    # groups [1, 1] (std 0) and [2, 5] (std sqrt(4.5)): half the groups have no signal
    advantages, metrics = group_advantages(torch.tensor([1.0, 1.0, 2.0, 5.0]), group_size=2)

    assert not torch.isnan(advantages).any()
    assert advantages[:2].tolist() == [0.0, 0.0]
    assert advantages[2:].tolist() == pytest.approx([-1.5 / (math.sqrt(4.5) + 1e-4),
                                                     1.5 / (math.sqrt(4.5) + 1e-4)], rel=1e-6)
    assert metrics["reward/frac_zero_std"] == 0.5
    assert metrics["reward/group_std_mean"] == pytest.approx((0 + math.sqrt(4.5)) / 2)


def test_frac_zero_std_is_zero_when_every_group_varies_and_one_when_none_does():
    _, varied = group_advantages(REWARDS, group_size=2)
    _, flat = group_advantages(torch.tensor([3.0, 3.0, -1.0, -1.0]), group_size=2)

    assert varied["reward/frac_zero_std"] == 0.0
    assert flat["reward/frac_zero_std"] == 1.0


def test_group_advantages_reject_an_unknown_scaling():
    with pytest.raises(ValueError, match="unknown advantage scaling"):
        group_advantages(REWARDS, group_size=2, scale="median")


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_eight_rewards_of_0_7_are_an_equal_group_with_exactly_zero_advantage(scale):
    # 0.7 has no exact float32 form: the mean of eight of them is not 0.7 and their std is
    # about 6e-8, which divided by (std + 1e-4) gave advantages of 6e-4 of one sign.
    rewards = torch.full((8,), 0.7)
    assert rewards.std().item() > 0  # the rounding the detection must not be fooled by

    advantages, metrics = group_advantages(rewards, group_size=8, scale=scale)

    assert advantages.tolist() == [0.0] * 8
    assert metrics["reward/frac_zero_std"] == 1.0
    assert metrics["reward/group_std_mean"] == 0.0


def test_an_equal_group_beside_a_varied_one_leaves_the_varied_one_as_before():
    # group 1: eight 0.7s (no signal); group 2: [0, 1] x 4, mean 0.5, unbiased std
    # sqrt(8 * 0.25 / 7) = 0.53452
    rewards = torch.tensor([0.7] * 8 + [0.0, 1.0] * 4)

    advantages, metrics = group_advantages(rewards, group_size=8)

    std = math.sqrt(8 * 0.25 / 7)
    assert advantages[:8].tolist() == [0.0] * 8
    assert advantages[8:].tolist() == pytest.approx([-0.5 / (std + 1e-4), 0.5 / (std + 1e-4)] * 4,
                                                    rel=1e-6)
    assert metrics["reward/frac_zero_std"] == 0.5
