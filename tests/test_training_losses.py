"""Every loss against hand-worked values: k3 KL, token weights, the clipped GRPO surrogate and
clip fractions (and the promise that micro-batches with the step's weights change nothing),
PPO's clipped policy and value losses, explained variance."""
from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    clip_fractions,
    explained_variance,
    grpo_loss,
    k3_kl,
    ppo_policy_loss,
    token_weights,
    value_loss,
)

# --- k3 KL ---


@pytest.mark.parametrize(("logprob", "ref", "expected"), [
    (0.0, 0.0, 0.0),  # equal -> d = 0 -> e^0 - 0 - 1 = 0
    (-0.5, -0.5, 0.0),
    (-1.0, -2.0, math.exp(-1) + 1 - 1),  # d = ref - logp = -1 -> e^-1 + 1 - 1 = 0.36788
    (-2.0, -1.0, math.exp(1) - 1 - 1),  # d = +1 -> e - 1 - 1 = 0.71828
    (-3.0, -0.5, math.exp(2.5) - 2.5 - 1),  # d = 2.5 -> 12.18249 - 3.5 = 8.68249
])
def test_k3_kl_is_exp_d_minus_d_minus_one(logprob, ref, expected):
    kl = k3_kl(torch.tensor([logprob], dtype=torch.float64),
               torch.tensor([ref], dtype=torch.float64))

    assert kl.item() == pytest.approx(expected, abs=1e-12)


def test_k3_kl_is_never_negative():
    grid = torch.linspace(-12.0, 0.0, 61, dtype=torch.float64)
    logprobs, ref_logprobs = torch.meshgrid(grid, grid, indexing="ij")

    kl = k3_kl(logprobs, ref_logprobs)

    assert kl.min().item() >= 0.0
    assert torch.equal(kl.diagonal(), torch.zeros(61, dtype=torch.float64))


# --- token weights ---
# mask with lengths 3, 1 and 2 in a (3, 4) batch: 6 tokens, max_new_tokens 4
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])


def test_grpo_weights_average_each_sequence_then_the_sequences():
    weights = token_weights(MASK, "grpo", max_new_tokens=4)

    # row weight = 1 / (its length x 3 rows): 1/9, 1/3, 1/6
    expected = torch.tensor([[1 / 9, 1 / 9, 1 / 9, 0], [1 / 3, 0, 0, 0], [1 / 6, 1 / 6, 0, 0]])
    assert torch.allclose(weights, expected)
    assert weights.sum(dim=1).tolist() == pytest.approx([1 / 3] * 3)
    assert weights.sum().item() == pytest.approx(1.0)


def test_bnpo_weights_average_over_every_token_of_the_batch():
    weights = token_weights(MASK, "bnpo", max_new_tokens=4)

    assert torch.allclose(weights, MASK.float() / 6)  # 6 tokens in all
    assert weights.sum().item() == pytest.approx(1.0)


def test_dr_grpo_weights_divide_by_batch_times_max_new_tokens():
    weights = token_weights(MASK, "dr_grpo", max_new_tokens=4)

    assert torch.allclose(weights, MASK.float() / 12)  # 3 rows x 4 tokens
    assert weights.sum().item() == pytest.approx(6 / 12)
    # the denominator is the configured limit, not the width of this batch
    assert torch.allclose(token_weights(MASK, "dr_grpo", max_new_tokens=10), MASK.float() / 30)


def test_a_sequence_without_tokens_gets_zero_weight_not_nan():
    mask = torch.tensor([[0, 0], [1, 1]])

    weights = token_weights(mask, "grpo", max_new_tokens=2)

    assert weights.tolist() == [[0.0, 0.0], [0.25, 0.25]]  # 1 / 2 tokens / 2 rows


def test_token_weights_reject_an_unknown_loss_type():
    with pytest.raises(ValueError, match="unknown loss_type"):
        token_weights(MASK, "mean", max_new_tokens=4)


# --- the clipped surrogate ---


def _one_token_loss(ratio: float, advantage: float, eps_low: float, eps_high: float):
    logprobs = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    loss, metrics = grpo_loss(logprobs, torch.zeros(1, 1, dtype=torch.float64), None,
                              torch.tensor([advantage], dtype=torch.float64),
                              torch.ones(1, 1), torch.ones(1, 1, dtype=torch.float64),
                              eps_low=eps_low, eps_high=eps_high, beta=0.0)
    loss.backward()
    return loss.item(), logprobs.grad.item(), metrics


# eps_low 0.2, eps_high 0.28: the ratio is clipped to [0.8, 1.28];
# loss = -min(r * A, clip(r) * A); its gradient in logp is -A * r where the unclipped term is
# the minimum, 0 where the clipped one is.
@pytest.mark.parametrize(("ratio", "advantage", "loss", "grad"), [
    (1.1, 1.0, -1.1, -1.1),  # inside: -1.1
    (0.9, -2.0, 1.8, 1.8),  # inside: -(0.9 x -2) = 1.8
    (1.25, 1.0, -1.25, -1.25),  # inside thanks to eps_high 0.28 (0.2 would clip to 1.2)
    (1.5, 1.0, -1.28, 0.0),  # above, A > 0: min(1.5, 1.28) = 1.28, clipped, no gradient
    (1.5, -1.0, 1.5, 1.5),  # above, A < 0: min(-1.5, -1.28) = -1.5 keeps the penalty
    (0.5, -1.0, 0.8, 0.0),  # below, A < 0: min(-0.5, -0.8) = -0.8, clipped
    (0.75, -1.0, 0.8, 0.0),  # below 0.8 (0.75 would pass a symmetric 0.3)
    (0.5, 1.0, -0.5, -0.5),  # below, A > 0: min(0.5, 0.8) = 0.5 keeps the gradient
])
def test_grpo_loss_is_the_pessimistic_clipped_surrogate(ratio, advantage, loss, grad):
    value, gradient, metrics = _one_token_loss(ratio, advantage, eps_low=0.2, eps_high=0.28)

    assert value == pytest.approx(loss)
    assert gradient == pytest.approx(grad)
    assert metrics["loss/policy"] == pytest.approx(loss)
    assert "kl/mean" not in metrics  # no reference log-probs given


def test_grpo_loss_clip_bounds_are_asymmetric():
    # ratio 1.25, A = 1: eps_high 0.2 clips to 1.2, eps_high 0.28 does not
    assert _one_token_loss(1.25, 1.0, eps_low=0.2, eps_high=0.2)[0] == pytest.approx(-1.2)
    assert _one_token_loss(1.25, 1.0, eps_low=0.2, eps_high=0.28)[0] == pytest.approx(-1.25)
    # ratio 0.75, A = -1: eps_low 0.3 leaves it, eps_low 0.2 clips to 0.8
    assert _one_token_loss(0.75, -1.0, eps_low=0.3, eps_high=0.2)[0] == pytest.approx(0.75)
    assert _one_token_loss(0.75, -1.0, eps_low=0.2, eps_high=0.2)[0] == pytest.approx(0.8)


def test_grpo_loss_adds_beta_times_the_weighted_k3_kl():
    # one sequence of 2 tokens, ratio 1, A = 2: policy part -2 per token, grpo weights 1/2
    # ref - logp = [0, -1]: k3 = [0, e^-1 + 1 - 1 = 0.36788]
    # loss = -2 + 0.1 x (0.5 x 0 + 0.5 x 0.36788) = -2 + 0.018394 = -1.981606
    logprobs = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    ref_logprobs = torch.tensor([[-1.0, -3.0]], dtype=torch.float64)
    mask = torch.ones(1, 2)
    weights = token_weights(mask, "grpo", max_new_tokens=2).double()

    loss, metrics = grpo_loss(logprobs, logprobs, ref_logprobs, torch.tensor([2.0]).double(),
                              mask, weights, eps_low=0.2, eps_high=0.2, beta=0.1)

    kl = math.exp(-1)
    assert loss.item() == pytest.approx(-2 + 0.1 * 0.5 * kl)
    assert metrics["loss/policy"] == pytest.approx(-2.0)
    assert metrics["loss/kl"] == pytest.approx(0.1 * 0.5 * kl)
    assert metrics["kl/mean"] == pytest.approx(kl / 2)


def test_grpo_loss_with_beta_zero_reports_kl_but_does_not_add_it():
    logprobs = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    ref_logprobs = torch.tensor([[-1.0, -3.0]], dtype=torch.float64)
    mask = torch.ones(1, 2)

    loss, metrics = grpo_loss(logprobs, logprobs, ref_logprobs, torch.tensor([2.0]).double(),
                              mask, token_weights(mask, "grpo", 2).double(), eps_low=0.2,
                              eps_high=0.2, beta=0.0)

    assert loss.item() == pytest.approx(-2.0)
    assert metrics["kl/mean"] == pytest.approx(math.exp(-1) / 2)


# two sequences of lengths 3 and 1, ratio 1, advantages [1, -2]: per-token loss -A, i.e.
# [-1, -1, -1] and [2]. Padding positions hold a wild log-prob that must not count.
AGG_MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize(("loss_type", "expected"), [
    ("grpo", (-1 * 3 / 3 + 2 / 1) / 2),  # per-sequence means -1 and 2, then their mean: 0.5
    ("bnpo", (-3 + 2) / 4),  # 4 tokens: -0.25
    ("dr_grpo", (-3 + 2) / (2 * 4)),  # 2 rows x max_new_tokens 4: -0.125
])
def test_grpo_loss_aggregates_tokens_by_the_weights(loss_type, expected):
    logprobs = torch.tensor([[-1.0, -1.5, -0.5, 5.0], [-2.0, 5.0, 5.0, 5.0]])
    old_logprobs = logprobs.masked_fill(AGG_MASK == 0, 0.0)  # ratio e^5 on padding only
    weights = token_weights(AGG_MASK, loss_type, max_new_tokens=4)

    loss, metrics = grpo_loss(logprobs, old_logprobs, None, torch.tensor([1.0, -2.0]),
                              AGG_MASK, weights, eps_low=0.2, eps_high=0.2, beta=0.04)

    assert loss.item() == pytest.approx(expected)
    assert metrics["clip/region"] == 0.0  # the padding's huge ratio is not counted


# --- clip fractions ---


def test_clip_fractions_count_the_tokens_whose_update_the_clip_removed():
    # eps_low 0.2, eps_high 0.28: low is ratio < 0.8 with A < 0, high is ratio > 1.28 with A > 0
    ratio = torch.tensor([[0.7, 1.0, 1.4],  # A = -1: 0.7 is low; 1.4 with A < 0 is not high
                          [0.7, 1.4, 1.4]])  # A = +1: 0.7 with A > 0 is not low; 1.4 is high
    advantages = torch.tensor([[-1.0] * 3, [1.0] * 3])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the second 1.4 of row 2 is padding

    fractions = clip_fractions(ratio, advantages, mask, eps_low=0.2, eps_high=0.28)

    # 5 tokens: 1 low, 1 high, 2 in either
    assert fractions == pytest.approx({"clip/low": 1 / 5, "clip/high": 1 / 5,
                                       "clip/region": 2 / 5})


def test_grpo_loss_reports_the_clip_fractions_of_its_ratios():
    logprobs = torch.log(torch.tensor([[0.7, 1.0, 1.4], [0.7, 1.4, 1.4]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])

    _, metrics = grpo_loss(logprobs, torch.zeros(2, 3), None, torch.tensor([-1.0, 1.0]), mask,
                           token_weights(mask, "bnpo", 3), eps_low=0.2, eps_high=0.28, beta=0.0)

    assert metrics["clip/low"] == pytest.approx(0.2)
    assert metrics["clip/high"] == pytest.approx(0.2)
    assert metrics["clip/region"] == pytest.approx(0.4)


# --- micro-batches ---


def _linear_policy_batch(seed: int = 0):
    """A tiny linear 'policy': logprobs = log_softmax(x @ W)[target], with ragged lengths."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(6, 5, 4, generator=gen, dtype=torch.float64)  # (B, T, F)
    targets = torch.randint(0, 7, (6, 5), generator=gen)  # (B, T)
    lengths = torch.tensor([5, 1, 3, 4, 2, 5])
    mask = (torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B, T)
    weight = torch.randn(4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        base = torch.log_softmax(features @ weight, -1).gather(-1, targets.unsqueeze(-1))
        base = base.squeeze(-1)
        # old and reference log-probs away from the policy, so some ratios clip
        old_logprobs = base + 0.4 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
        ref_logprobs = base + 0.3 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.5, 0.0, 0.7], dtype=torch.float64)
    return features, targets, mask, weight, old_logprobs, ref_logprobs, advantages


def _loss_and_grad(loss_type: str, micro: int) -> tuple[float, torch.Tensor, dict[str, float]]:
    features, targets, mask, weight, old, ref, advantages = _linear_policy_batch()
    weights = token_weights(mask, loss_type, max_new_tokens=5).double()  # once, for the step
    total, clipped = 0.0, 0.0
    for start in range(0, 6, micro):
        mb = slice(start, start + micro)
        logprobs = torch.log_softmax(features[mb] @ weight, -1)
        logprobs = logprobs.gather(-1, targets[mb].unsqueeze(-1)).squeeze(-1)  # (b, T)
        loss, metrics = grpo_loss(logprobs, old[mb], ref[mb], advantages[mb], mask[mb],
                                  weights[mb], eps_low=0.2, eps_high=0.28, beta=0.04)
        loss.backward()
        total += loss.item()
        clipped += metrics["clip/region"] * float(mask[mb].sum())
    assert weight.grad is not None
    return total, weight.grad.clone(), {"clip/region": clipped / float(mask.sum())}


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_micro_batches_with_the_step_weights_give_the_same_loss_and_gradient(loss_type):
    whole_loss, whole_grad, whole = _loss_and_grad(loss_type, micro=6)

    for micro in (1, 2, 3):
        loss, grad, parts = _loss_and_grad(loss_type, micro=micro)
        assert loss == pytest.approx(whole_loss, rel=1e-12, abs=1e-12)
        assert torch.allclose(grad, whole_grad, rtol=1e-10, atol=1e-12)
        assert parts["clip/region"] == pytest.approx(whole["clip/region"])
    assert whole["clip/region"] > 0  # the case exercises the clip
    assert whole_grad.abs().sum() > 0


# --- PPO ---

def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# --- clipped policy loss, cliprange 0.2 ---
# token  ratio  A    r*A    clip(r)*A  min    loss   clipped?
#   0    1.1   +1    1.1    1.1        1.1   -1.1   no (inside)
#   1    1.5   +1    1.5    1.2        1.2   -1.2   yes, high
#   2    0.5   -1   -0.5   -0.8       -0.8    0.8   yes, low
#   3    1.5   -1   -1.5   -1.2       -1.5    1.5   no (the unclipped term is the worse one)
#   4    0.5   +1    0.5    0.8        0.5   -0.5   no
#   5    padding (mask 0): ratio 9, A 100, ignored
# mean loss = (-1.1 - 1.2 + 0.8 + 1.5 - 0.5) / 5 = -0.1; 2 of 5 tokens clipped
PPO_RATIOS = [1.1, 1.5, 0.5, 1.5, 0.5, 9.0]
PPO_SIGNS = [1.0, 1.0, -1.0, -1.0, 1.0, 100.0]
PPO_MASK = [1, 1, 1, 1, 1, 0]


def _policy_loss():
    logprobs = torch.tensor([PPO_RATIOS], dtype=torch.float64).log().requires_grad_(True)
    old = torch.zeros_like(logprobs)
    loss, metrics = ppo_policy_loss(logprobs, old, torch.tensor([PPO_SIGNS], dtype=torch.float64),
                                    torch.tensor([PPO_MASK]), cliprange=0.2)
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

    per_token = [(r - 1) - math.log(r) for r in PPO_RATIOS[:5]]
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
