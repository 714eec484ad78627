"""Losses as small pure functions returning ``(loss, metrics)``.

Token aggregation is expressed as per-token *weights* computed once for the whole step
(:func:`token_weights`), so splitting a step into micro-batches changes memory, never the
update: the step's loss is exactly the sum over micro-batches of ``(per_token * weights).sum()``.
"""

from __future__ import annotations

import torch


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): ``exp(d) - d - 1``, d = ref - logp.

    Unbiased, always >= 0, and low variance (Schulman, "Approximating KL divergence").
    """
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def token_weights(action_mask: torch.Tensor, loss_type: str, max_new_tokens: int
                  ) -> torch.Tensor:
    """(B, T) weights that turn per-token losses into the step loss by a plain sum.

    - ``grpo``: mean over each sequence's tokens, then mean over sequences (GRPO paper).
    - ``bnpo``: mean over all tokens of the batch.
    - ``dr_grpo``: sum over tokens / (B x max_new_tokens), a constant (Dr. GRPO), so long
      wrong answers are not favoured by the per-sequence length normalisation.
    """
    mask = action_mask.float()
    batch = mask.shape[0]
    if loss_type == "grpo":
        return mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0) / batch
    if loss_type == "bnpo":
        return mask / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return mask / (batch * max_new_tokens)
    raise ValueError(f"unknown loss_type {loss_type!r}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def clip_fractions(ratio: torch.Tensor, advantages: torch.Tensor, action_mask: torch.Tensor,
                   eps_low: float, eps_high: float) -> dict[str, float]:
    """Share of tokens whose update the clip removed, as TRL counts them.

    low: ratio < 1 - eps_low where A < 0; high: ratio > 1 + eps_high where A > 0.
    """
    mask = action_mask.float()
    low = ((ratio < 1 - eps_low) & (advantages < 0)).float()
    high = ((ratio > 1 + eps_high) & (advantages > 0)).float()
    return {
        "clip/low": masked_mean(low, mask).item(),
        "clip/high": masked_mean(high, mask).item(),
        "clip/region": masked_mean(torch.maximum(low, high), mask).item(),
    }


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
              ref_logprobs: torch.Tensor | None, advantages: torch.Tensor,
              action_mask: torch.Tensor, weights: torch.Tensor, *, eps_low: float,
              eps_high: float, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate with asymmetric clip plus ``beta`` x k3 KL, aggregated by ``weights``.

    Shapes: logprobs, old_logprobs, ref_logprobs, action_mask, weights (B, T); advantages (B,)
    (one per sequence, broadcast to its tokens) or (B, T) (one per token). Returns the
    (scalar) loss and token means of its parts over the masked tokens.
    """
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # (B, 1) | (B, T)
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T)
    mask = action_mask.float()
    metrics = {"loss/policy": (per_token * weights).sum().item()}
    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs)
        metrics["kl/mean"] = masked_mean(kl, mask).item()
        metrics["loss/kl"] = (beta * kl * weights).sum().item()
        if beta:
            per_token = per_token + beta * kl
    loss = (per_token * weights).sum()
    metrics.update(clip_fractions(ratio.detach(), adv.expand_as(ratio), action_mask,
                                  eps_low, eps_high))
    return loss, metrics


# --- PPO (policy and critic) ---
# PPO's losses are the mean over the masked tokens of the batch they are given (OpenRLHF's
# ``masked_mean``); the trainer weights each micro-batch by its share of the minibatch's tokens,
# so micro-batches change memory, never the update.


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                    advantages: torch.Tensor, action_mask: torch.Tensor, cliprange: float
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate ``-min(r * A, clip(r, 1 - eps, 1 + eps) * A)``, token mean.

    All inputs (B, T); ``advantages`` are per token (GAE). Metrics: ``loss/policy``;
    ``clip/policy_frac``, the share of tokens where the clipped term was chosen (TRL's
    ``clipfrac``); ``kl/approx``, the k3 estimate ``(r - 1) - log r`` of KL(old || new) (cleanrl's
    ``approx_kl``, never negative); and ``clip/low``, ``clip/high``, ``clip/region`` as GRPO's.
    """
    log_ratio = logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    mask = action_mask.float()
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        metrics = {
            "loss/policy": loss.item(),
            "clip/policy_frac": masked_mean((clipped > unclipped).float(), mask).item(),
            "kl/approx": masked_mean((ratio - 1) - log_ratio, mask).item(),
        }
        metrics.update(clip_fractions(ratio, advantages, action_mask, cliprange, cliprange))
    return loss, metrics


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               action_mask: torch.Tensor, cliprange_value: float
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss ``0.5 * max((v - R)^2, (clip(v, v_old +- c) - R)^2)``, token mean.

    All inputs (B, T). Metrics: ``loss/value`` and ``value/clip_frac``, the share of tokens
    where the clipped term was the larger one (and so chosen)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value,
                                              cliprange_value)
    unclipped_loss = (values - returns) ** 2  # (B, T)
    clipped_loss = (clipped_values - returns) ** 2
    mask = action_mask.float()
    loss = 0.5 * masked_mean(torch.max(unclipped_loss, clipped_loss), mask)
    clip_frac = masked_mean((clipped_loss > unclipped_loss).float(), mask)
    return loss, {"loss/value": loss.item(), "value/clip_frac": clip_frac.item()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
                       ) -> float:
    """``1 - Var(R - V) / Var(R)`` over the masked tokens: 1 is a perfect critic, 0 one no
    better than a constant, below 0 worse. 0 when the returns do not vary at all (cleanrl
    answers NaN there; a metric must stay a finite number)."""
    mask = mask.float()

    def variance(x: torch.Tensor) -> torch.Tensor:
        mean = masked_mean(x, mask)
        return masked_mean((x - mean) ** 2, mask)

    var_returns = variance(returns)
    if var_returns.item() == 0.0:
        return 0.0
    return float(1.0 - variance(returns - values) / var_returns)
