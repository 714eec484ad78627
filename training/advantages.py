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
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    centred = (grouped - mean).reshape(-1)  # (B,)
    if scale == "group":
        advantages = centred / (std.expand_as(grouped).reshape(-1) + ADV_EPS)
    elif scale == "batch":
        advantages = centred / (rewards.std() + ADV_EPS)
    elif scale == "none":
        advantages = centred
    else:
        raise ValueError(f"unknown advantage scaling {scale!r}")
    zero_std = torch.isclose(std, torch.zeros_like(std)).float()
    return advantages, {"reward/frac_zero_std": zero_std.mean().item(),
                        "reward/group_std_mean": std.mean().item()}
