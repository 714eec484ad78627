"""Preference pairs for reward-model fitting: reading, the held-out split, and the one text
format used both to fit a reward model and to score with it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data import read_rows
from training.rollout import Prompt, prompt_text


@dataclass(frozen=True)
class PreferencePair:
    prompt: Prompt
    chosen: str
    rejected: str
    margin: float = 0.0
    """How much more ``chosen`` is preferred; 0 when the row has none."""


def _pair(index: int, row: dict[str, Any]) -> PreferencePair:
    prompt = row.get("prompt")
    if not isinstance(prompt, (str, list)):
        raise ValueError(f"row {index + 1}: prompt must be text or a list of chat messages")
    for key in ("chosen", "rejected"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"row {index + 1}: {key} must be text")
    margin = row.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                               or not math.isfinite(margin)):
        raise ValueError(f"row {index + 1}: margin must be a finite number or empty")
    return PreferencePair(prompt, row["chosen"], row["rejected"], float(margin or 0.0))


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """The run's JSONL of ``prompt``, ``chosen``, ``rejected`` and optional ``margin``."""
    pairs = [_pair(i, row) for i, row in enumerate(read_rows(path))]
    if not pairs:
        raise ValueError("the dataset has no preference pairs")
    return pairs


def split_pairs(pairs: list[PreferencePair], eval_fraction: float, seed: int
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out), drawn in a seeded order. A positive fraction holds out at least one
    pair and keeps at least one for training; with one pair, or fraction 0, nothing is held
    out."""
    if eval_fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(1, round(eval_fraction * len(pairs))), len(pairs) - 1)
    held_out = sorted(order[:n_eval])
    kept = sorted(order[n_eval:])
    return [pairs[i] for i in kept], [pairs[i] for i in held_out]


def format_pair(tokenizer: Any, prompt: Prompt, response: str) -> str:
    """The text a reward model reads for one (prompt, response).

    With a chat template: the prompt as a user message (chat prompts keep their messages) and
    the response as the assistant's turn. Without one: ``prompt + "\\n\\n" + response``, chat
    messages written as ``role: content`` lines."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                    else list(prompt))
        messages.append({"role": "assistant", "content": response})
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return prompt_text(prompt) + "\n\n" + response
