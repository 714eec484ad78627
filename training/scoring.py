"""Scoring a step's completions: every reward source of the run (declared in
:mod:`training.reward_types`), each model-backed one loaded once, summed with its weight."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from training.config import RewardSpec
from training.reward_types import get_reward_type


class RewardScorer(Protocol):
    """A loaded model-backed source: scores each (prompt, completion) pair; the prompt is the
    row's own (chat messages stay messages, as the reward model saw them when fitted)."""

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]: ...


def _loader(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def load_scorers(specs: Sequence[RewardSpec], names: Sequence[str], device: torch.device
                 ) -> dict[str, RewardScorer]:
    """The run's model-backed sources, each loaded once, by source name."""
    out: dict[str, RewardScorer] = {}
    for spec, name in zip(specs, names, strict=True):
        kind = get_reward_type(spec.type)
        if kind is None:
            raise ValueError(f"reward source {name!r}: unknown type {spec.type!r}")
        if kind.load is not None:
            if not spec.path:
                raise ValueError(f"reward source {name!r} ({spec.type}) has no model path")
            out[name] = _loader(kind.load)(spec.path, device=device, args=spec.args)
    return out


def score(specs: Sequence[RewardSpec], names: Sequence[str], prompts: Sequence[str],
          completions: Sequence[str], rows: Sequence[Mapping[str, Any]],
          scorers: Mapping[str, RewardScorer] | None = None
          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of all sources, shape (B,), and each source's raw scores by name."""
    per_source: dict[str, torch.Tensor] = {}
    total = torch.zeros(len(completions))
    for spec, name in zip(specs, names, strict=True):
        kind = get_reward_type(spec.type)
        if kind is not None and kind.score is not None:
            values = kind.score(prompts, completions, rows, spec.args)
        elif scorers and name in scorers:
            values = scorers[name]([r.get("prompt", p) for r, p in zip(rows, prompts,
                                                                        strict=True)],
                                   completions)
        else:
            raise ValueError(f"reward source {name!r} ({spec.type}) has no scorer loaded")
        per_source[name] = torch.tensor(values, dtype=torch.float32)
        total += spec.weight * per_source[name]
    return total, per_source


def source_metrics(specs: Sequence[RewardSpec], names: Sequence[str], prompts: Sequence[str],
                   completions: Sequence[str], rows: Sequence[Mapping[str, Any]],
                   scorers: Mapping[str, RewardScorer] | None = None) -> dict[str, float]:
    """What the sources say of the batch beyond their scores, ``reward/<name>/<key>``: a
    rule-based type's declared ``metrics``, a loaded scorer's ``last_metrics``."""
    out: dict[str, float] = {}
    for spec, name in zip(specs, names, strict=True):
        kind = get_reward_type(spec.type)
        said: Mapping[str, float] = {}
        if kind is not None and kind.metrics is not None:
            said = kind.metrics(prompts, completions, rows, spec.args)
        elif scorers and name in scorers:
            said = getattr(scorers[name], "last_metrics", None) or {}
        out |= {f"reward/{name}/{key}": float(value) for key, value in said.items()}
    return out
