"""Preference pairs for reward-model fitting: reading, the held-out split, and the one text
format used both to fit a reward model and to score with it."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.algorithms.reward_model import EVAL_MIN_PAIRS
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


# The held-out set: never more than half the pairs.
EVAL_MAX_SHARE = 0.5


@dataclass(frozen=True)
class Split:
    train: list[PreferencePair]
    eval: list[PreferencePair]
    prompts: int
    """Distinct prompts in the data set."""
    eval_prompts: int
    """Prompts whose pairs are all held out (no prompt is on both sides)."""


def prompt_key(prompt: Prompt) -> str:
    """One text per distinct prompt (chat prompts by their messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def split_pairs(pairs: list[PreferencePair], eval_fraction: float, seed: int) -> Split:
    """Training and held-out pairs, split by prompt: every pair of a prompt lands on the same
    side, so the held-out score measures prompts the model never trained on (pairs of one
    prompt share its text and often its responses; split pair by pair, a model that learns
    the prompts scores well without generalising). Whole prompts, in a seeded order, are held
    out until at least ``max(EVAL_MIN_PAIRS, eval_fraction x pairs)`` pairs are, as long as
    the training side keeps at least half the pairs. ``eval_fraction`` 0, or a single prompt,
    holds out nothing."""
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(prompt_key(pair.prompt), []).append(i)
    keys = list(groups)
    if eval_fraction <= 0 or len(keys) < 2:
        return Split(list(pairs), [], len(keys), 0)
    random.Random(seed).shuffle(keys)
    wanted = max(EVAL_MIN_PAIRS, math.ceil(eval_fraction * len(pairs)))
    allowed = math.floor(EVAL_MAX_SHARE * len(pairs))
    held: set[int] = set()
    held_prompts = 0
    for key in keys[:-1]:  # the last prompt always trains
        if len(held) >= wanted:
            break
        if len(held) + len(groups[key]) > allowed:
            continue  # too big to hold out; a smaller prompt may still fit
        held.update(groups[key])
        held_prompts += 1
    train = [p for i, p in enumerate(pairs) if i not in held]
    return Split(train, [p for i, p in enumerate(pairs) if i in held], len(keys), held_prompts)


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
