"""Rule-based rewards. Every function has one signature,
``(prompts, completions, **kw) -> list[float]``, so sources combine by weight."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from training.config import RewardSpec, compile_reward_pattern

RewardFn = Callable[..., list[float]]


class RewardScorer(Protocol):
    """A learned reward: scores each (prompt, completion) pair; see training.reward_model."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]: ...
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def length_reward(prompts: Sequence[str], completions: Sequence[str], *, target: int,
                  **_: Any) -> list[float]:
    """``-abs(target - len(completion))`` in characters: 0 at the target, lower either side."""
    return [-float(abs(target - len(c))) for c in completions]


def regex_reward(prompts: Sequence[str], completions: Sequence[str], *, pattern: str,
                 **_: Any) -> list[float]:
    """1 when the whole completion (stripped) matches ``pattern`` (``.`` spans lines), else 0.
    RE2 matches in linear time, so a long completion cannot stall the step (see
    :func:`training.config.compile_reward_pattern`)."""
    compiled = compile_reward_pattern(pattern)
    return [1.0 if compiled.fullmatch(c.strip()) else 0.0 for c in completions]


def extract_answer(completion: str) -> str:
    """The text inside the last ``<answer>...</answer>``, or the whole completion."""
    found = _ANSWER.findall(completion)
    return (found[-1] if found else completion).strip()


def exact_match_reward(prompts: Sequence[str], completions: Sequence[str], *,
                       answers: Sequence[str | None], **_: Any) -> list[float]:
    """1 when the answer (see :func:`extract_answer`) equals the reference, else 0. A missing
    reference scores 0."""
    return [1.0 if a is not None and extract_answer(c) == str(a).strip() else 0.0
            for c, a in zip(completions, answers, strict=True)]


def score(specs: Sequence[RewardSpec], names: Sequence[str], prompts: Sequence[str],
          completions: Sequence[str], rows: Sequence[dict[str, Any]],
          scorers: Mapping[str, RewardScorer] | None = None
          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of all sources, shape (B,), and each source's raw scores by name.
    ``scorers`` holds the loaded reward models, by source name."""
    per_source: dict[str, torch.Tensor] = {}
    total = torch.zeros(len(completions))
    for spec, name in zip(specs, names, strict=True):
        if spec.type == "length":
            values = length_reward(prompts, completions, target=int(spec.target or 0))
        elif spec.type == "regex":
            values = regex_reward(prompts, completions, pattern=str(spec.pattern))
        elif spec.type == "exact_match":
            column = spec.column or "answer"
            values = exact_match_reward(prompts, completions,
                                        answers=[r.get(column) for r in rows])
        elif spec.type == "reward_model" and scorers and name in scorers:
            # the rows' own prompts: chat messages reach the reward model's chat template as
            # messages, exactly as it saw them when it was fitted
            values = scorers[name]([r.get("prompt", p) for r, p in zip(rows, prompts,
                                                                        strict=True)],
                                   completions)
        else:
            raise ValueError(f"reward source {name!r} ({spec.type}) has no scorer loaded")
        per_source[name] = torch.tensor(values, dtype=torch.float32)
        total += spec.weight * per_source[name]
    return total, per_source
