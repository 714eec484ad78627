"""Deployment-wide caps on what one run or labeling batch may ask of a worker, whoever asks.

The engine's bounds (``training/config.py``) say what the algorithms can do; these say what
this server is willing to spend on one request, and an admin sets them per deployment
(``RLHF_MAX_*`` in the environment). A request over a cap is a 422 whose field message names
the setting, so a person knows it is a policy of this server, not a property of GRPO.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from training.algorithms import get_algorithm
from webapp.errors import Invalid

# hyperparameter -> (settings name, environment variable): whichever algorithm has it
_RUN_CAPS: dict[str, tuple[str, str]] = {
    "max_steps": ("MAX_STEPS", "RLHF_MAX_STEPS"),
    "prompts_per_step": ("MAX_PROMPTS_PER_STEP", "RLHF_MAX_PROMPTS_PER_STEP"),
    "group_size": ("MAX_GROUP_SIZE", "RLHF_MAX_GROUP_SIZE"),
    "max_new_tokens": ("MAX_NEW_TOKENS", "RLHF_MAX_NEW_TOKENS"),
    "max_length": ("MAX_SEQUENCE_LENGTH", "RLHF_MAX_SEQUENCE_LENGTH"),
}


def _over(value: Any, setting: str, env: str) -> str | None:
    cap = getattr(settings, setting)
    return f"at most {cap} on this server ({env})" if value > cap else None


def run_caps_check(*, algorithm: str, hyperparameters: Mapping[str, Any]) -> None:
    """Raise :class:`Invalid` naming every capped hyperparameter over its cap, and the
    sequences a step generates or scores (as the algorithm's config counts them)."""
    spec = get_algorithm(algorithm)
    assert spec is not None  # validated before
    fields: dict[str, str] = {}
    for name, (setting, env) in _RUN_CAPS.items():
        if name in hyperparameters and (problem := _over(hyperparameters[name], setting, env)):
            fields[f"hyperparameters.{name}"] = problem
    config = spec.config(**hyperparameters)
    total = config.sequences_per_step()
    if problem := _over(total, "MAX_COMPLETIONS_PER_STEP", "RLHF_MAX_COMPLETIONS_PER_STEP"):
        fields.setdefault(f"hyperparameters.{config.sequences_field}",
                          f"{total} completions per step: {problem}")
    _raise(fields)


def batch_caps_check(*, responses_per_prompt: int, max_new_tokens: int) -> None:
    """The caps a labeling batch shares with runs: K is a group, responses are completions."""
    fields: dict[str, str] = {}
    if problem := _over(responses_per_prompt, "MAX_GROUP_SIZE", "RLHF_MAX_GROUP_SIZE"):
        fields["responses_per_prompt"] = problem
    if problem := _over(max_new_tokens, "MAX_NEW_TOKENS", "RLHF_MAX_NEW_TOKENS"):
        fields["max_new_tokens"] = problem
    _raise(fields)


def _raise(fields: dict[str, str]) -> None:
    if fields:
        detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
        raise Invalid(f"Over this server's limits: {detail}.", fields=fields, code="over_limit")
