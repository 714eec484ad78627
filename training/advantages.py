"""Advantage estimation."""

from __future__ import annotations

import torch

ADV_EPS = 1e-4  # as TRL: keeps a group of identical rewards at advantage 0, not NaN


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group"
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's group-relative advantages.

    ``rewards`` is (B,) with the G completions of each prompt adjacent. Each completion gets
    ``r_i - mean(group)``, divided by the group's std (``scale="group"``), by the whole batch's
    std (``"batch"``), or left unscaled (``"none"``, Dr. GRPO). Stds are unbiased (Bessel), as
    in TRL. Returns (advantages (B,), metrics).
    """
    grouped = rewards.view(-1, group_size)  # (num_prompts, G)
    # A group whose rewards are all equal carries no signal. Its float mean need not equal
    # the rewards (eight rewards of 0.7 average to 0.7 + 6e-8 in float32), which would leave
    # a std of 6e-8 and advantages of 6e-4 of one sign; so equal groups are found by
    # comparing the values themselves and get exactly 0.
    equal = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)  # (num_prompts, 1)
    mean = torch.where(equal, grouped[:, :1], grouped.mean(dim=1, keepdim=True))
    std = torch.where(equal, torch.zeros_like(mean), grouped.std(dim=1, keepdim=True))
    centred = (grouped - mean).reshape(-1)  # (B,); exactly 0 in equal groups
    if scale == "group":
        advantages = centred / (std.expand_as(grouped).reshape(-1) + ADV_EPS)
    elif scale == "batch":
        advantages = centred / (rewards.std() + ADV_EPS)
    elif scale == "none":
        advantages = centred
    else:
        raise ValueError(f"unknown advantage scaling {scale!r}")
    return advantages, {"reward/frac_zero_std": equal.float().mean().item(),
                        "reward/group_std_mean": std.mean().item()}


def gae(rewards: torch.Tensor, values: torch.Tensor, action_mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016) over completion tokens.

    ``rewards``, ``values`` and ``action_mask`` are (B, T); token t of a row is the action taken
    in state t, ``values[:, t]`` is V(state t). Per token
    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``.
    Rows may end early: values and rewards outside ``action_mask`` are ignored, and the value
    after a row's last token is 0 (the episode ends there: no bootstrap). Returns
    ``(advantages, returns)``, both (B, T), 0 outside the mask, ``returns = advantages + values``.
    """
    mask = action_mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(values)  # (B, T)
    running = torch.zeros_like(values[:, 0])  # (B,) A_{t+1}
    next_values = torch.zeros_like(values[:, 0])  # (B,) V_{t+1}, 0 after the last token
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_values = values[:, t]
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Scale ``values`` to unit variance over the entries where ``mask`` is 1, and centre them
    on 0 (or keep their mean with ``shift_mean=False``). The variance is unbiased (Bessel), as
    TRL's ``masked_whiten``; entries outside the mask come back as 0."""
    mask = mask.to(values.dtype)
    count = mask.sum()
    mean = (values * mask).sum() / count.clamp(min=1.0)
    var = (((values - mean) * mask) ** 2).sum() / (count - 1).clamp(min=1.0)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask
