"""Testing reward sources before a run: ``POST /api/rewards/score`` and the launch form's
"Test rewards" panel score pasted samples with the same declarations and code the engine
uses, so a person sees what a reward gives before spending a run on it. Rule-based sources
are scored here at once; a model-backed one (a reward model) needs its model loaded on a
worker, so it is refused here, naming the source, and scored in runs. The maths checks of
one request run in a process of its own with a time budget (``scoped_checker``)."""
from __future__ import annotations

from typing import Any

from training.config import ConfigError
from training.math_answers import scoped_checker
from training.reward_types import (
    get_reward_type,
    reward_source_names,
    validate_rewards,
)
from webapp.errors import Invalid

MAX_SAMPLES = 64
# the math reward here: a checking process of the request's own, 2 s a pair, 15 s in all
MATH_PAIR_S, MATH_BUDGET_S = 2.0, 15.0
TEXT_MAX_CHARS = 20_000
COLUMN_MAX_CHARS = 2_000


def _samples(samples: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    if not isinstance(samples, list) or not 1 <= len(samples) <= MAX_SAMPLES:
        raise Invalid(f"samples must be a list of 1 to {MAX_SAMPLES} objects with prompt and "
                      "completion.", fields={"samples": f"1 to {MAX_SAMPLES}"})
    prompts, completions, rows = [], [], []
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict) or not isinstance(sample.get("completion"), str):
            raise Invalid(f"Sample {i} needs a completion (text).",
                          fields={f"samples[{i}].completion": "required"})
        if "prompt" in sample and not isinstance(sample["prompt"], str):
            raise Invalid(f"Sample {i}: prompt must be text.",
                          fields={f"samples[{i}].prompt": "not text"})
        for key, value in sample.items():
            limit = TEXT_MAX_CHARS if key in ("prompt", "completion") else COLUMN_MAX_CHARS
            if not isinstance(key, str) or len(key) > 100 or isinstance(value, bool) or (
                    value is not None and not isinstance(value, (str, int, float))):
                raise Invalid(f"Sample {i}: {key!r} must be text or a number.",
                              fields={f"samples[{i}].{key}": "not text"})
            if isinstance(value, str) and len(value) > limit:
                raise Invalid(f"Sample {i}: {key} is longer than {limit} characters.",
                              fields={f"samples[{i}].{key}": "too long"})
        prompts.append(str(sample.get("prompt") or ""))
        completions.append(sample["completion"])
        rows.append(dict(sample))
    return prompts, completions, rows


def rewards_score(*, rewards: Any, samples: Any) -> dict[str, Any]:
    """Each source's score of each sample and the weighted total; Invalid naming the source
    or the sample at fault."""
    prompts, completions, rows = _samples(samples)
    columns = sorted({k for r in rows for k in r} - {"prompt", "completion"} | {"prompt"})
    try:
        clean = validate_rewards(rewards, columns=columns)
    except ConfigError as exc:
        raise Invalid(f"Check these reward sources: {exc}.", fields=exc.fields) from None
    for i, source in enumerate(clean):
        kind = get_reward_type(source["type"])
        if kind is None or kind.score is None:
            raise Invalid(f"Reward source {i} ({source['type']}) needs its model loaded on a "
                          "worker; a test here scores the rule-based sources, runs score all.",
                          fields={f"rewards[{i}]": "model-backed"})
    names = reward_source_names(clean)
    per_source: dict[str, list[float]] = {}
    extra: dict[str, float] = {}
    with scoped_checker(time_limit_s=MATH_PAIR_S, budget_s=MATH_BUDGET_S):
        for source, name in zip(clean, names, strict=True):
            kind = get_reward_type(source["type"])
            assert kind is not None and kind.score is not None
            args = {k: v for k, v in source.items() if k not in ("type", "weight")}
            per_source[name] = [float(v) for v in kind.score(prompts, completions, rows, args)]
            if kind.metrics is not None:
                extra |= {f"{name}/{k}": float(v)
                          for k, v in kind.metrics(prompts, completions, rows, args).items()}
    out = []
    for i in range(len(completions)):
        scores = {name: per_source[name][i] for name in names}
        total = sum(source["weight"] * scores[name]
                    for source, name in zip(clean, names, strict=True))
        out.append({"scores": scores, "total": total})
    return {"sources": names, "samples": out, "metrics": extra}
