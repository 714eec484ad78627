"""Example reward plugins (TRL's reward-function signature: prompts and completions, and each
of the rows' columns as a list, in; one float per completion out)."""
from __future__ import annotations

from training.reward_types import RewardArg


def keyword(prompts: list[str], completions: list[str], **kwargs: object) -> list[float]:
    """1 when the completion contains the keyword (case-insensitive), else 0."""
    word = str(kwargs.get("word", "")).lower()
    return [1.0 if word and word in c.lower() else 0.0 for c in completions]


keyword.title = "Keyword"  # type: ignore[attr-defined]
keyword.reward_args = (  # type: ignore[attr-defined]
    RewardArg("word", "text", "the word a good completion contains", placeholder="please"),)


def broken(prompts: list[str], completions: list[str], **kwargs: object) -> list[float]:
    """Returns one score too few: a run using it fails, saying so."""
    return [0.0] * (len(completions) - 1)
