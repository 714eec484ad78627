"""Run configuration: one frozen dataclass per algorithm, and their validation.

This module imports no torch, so the web forms and the JSON API validate hyperparameters with
the very definitions the engine runs with. Every hyperparameter is a dataclass field whose
``metadata`` carries its help text and bounds; :func:`validate_hyperparameters` reads them.
Fields marked ``internal`` (paths, the device) are set by the worker, never by a user.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

Algorithm = Literal["grpo", "ppo", "reward_model"]
ALGORITHMS: tuple[str, ...] = ("grpo", "ppo", "reward_model")


def hp(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple[Any, ...] | None = None, nullable: bool = False,
       group: str = "optimisation") -> Any:
    """A user-settable hyperparameter with its help text and valid range."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "nullable": nullable,
            "group": group}
    return field(default=default, metadata=meta)


def internal(default: Any) -> Any:
    """A field the worker fills in (paths, device); never part of the hyperparameters."""
    return field(default=default, metadata={"internal": True})


@dataclass(frozen=True)
class RewardSpec:
    """One reward source of a run. ``type`` picks the function; the other fields are its
    arguments. Scores of all sources are summed with their ``weight``."""

    type: Literal["length", "regex", "exact_match", "reward_model"]
    weight: float = 1.0
    target: int | None = None
    """length: the number of characters that scores 0; others score ``-abs(target - len)``."""
    pattern: str | None = None
    """regex: a completion scores 1 when the pattern matches it whole (a full match, ``.``
    spanning lines), in RE2 syntax: see :func:`compile_reward_pattern`."""
    column: str | None = None
    """exact_match: the dataset column holding the reference answer."""
    model: str | None = None
    """reward_model: the registry id of a fitted reward model."""
    path: str | None = None
    """reward_model: its directory, filled in by the worker from ``model``."""


@dataclass(frozen=True)
class BaseConfig:
    """Settings every algorithm shares."""

    # --- set by the worker ---
    model_path: str = internal("")
    """Directory of the base model (a transformers ``save_pretrained`` directory)."""
    dataset_path: str = internal("")
    """JSONL file of the run's rows, as stored by the datasets app."""
    output_dir: str = internal("")
    """Where checkpoints go: ``<output_dir>/step-<n>/``."""
    device: str = internal("auto")
    """``auto`` picks CUDA when present, else CPU."""

    # --- hyperparameters ---
    max_steps: int = hp(20, "Optimiser steps to run.", lo=1, hi=100_000, group="schedule")
    learning_rate: float = hp(1e-5, "AdamW learning rate (constant after warm-up).",
                              lo=0.0, hi=1.0)
    warmup_steps: int = hp(0, "Steps of linear learning-rate warm-up from 0.", lo=0, hi=100_000)
    max_grad_norm: float = hp(1.0, "Clip the gradient's global norm to this value (0: no "
                              "clipping).",
                              lo=0.0, hi=1e6)
    seed: int = hp(0, "Seed for sampling, initialisation and data order.", lo=0, hi=2**31 - 1,
                   group="schedule")
    checkpoint_every: int = hp(0, "Save a checkpoint every N steps (0: only at the end).",
                               lo=0, hi=100_000, group="schedule")
    precision: str = hp("auto", "Parameter and compute dtype; auto is bf16 on a GPU that has "
                        "it, fp32 otherwise.", choices=("auto", "fp32", "bf16"), group="system")
    lora_rank: int = hp(0, "LoRA rank of the adapters trained on attention and MLP "
                        "projections; 0 trains every weight.", lo=0, hi=1024, group="system")
    gradient_checkpointing: bool = hp(False, "Recompute activations in the backward pass "
                                      "instead of keeping them: much less memory, about a "
                                      "third more compute.", group="system")

    @classmethod
    def hyperparameter_fields(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]

    def hyperparameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.hyperparameter_fields()}


@dataclass(frozen=True)
class RolloutConfig(BaseConfig):
    """Settings of the algorithms that sample completions from a policy (GRPO, PPO)."""

    rewards: tuple[RewardSpec, ...] = internal(())
    """Reward sources, validated separately from the hyperparameters."""
    activation_memory_mb: int = internal(1152)
    """With ``micro_batch_size`` 0: the memory in MB one forward/backward pass may add (its
    activations, and the accumulated gradients when the step is split); the step is split
    into the largest micro-batches that fit (estimated from the model's shape,
    :mod:`training.memory`). 1152 keeps SmolLM2-135M's default step (32 rows, micro-batches
    of 4) under 4 GB on a CPU, and runs one group of 8 in one pass; fewer rows per pass are
    slower (small matrix products). Not a form field yet: the worker leaves the default."""
    min_new_tokens: int = internal(0)
    """EOS is not sampled before this many tokens. Benchmarks set it to ``max_new_tokens`` so
    that two engines compared on the same prompts do exactly the same work."""

    prompts_per_step: int = hp(4, "Prompts drawn from the dataset for each step.", lo=1,
                               hi=4096, group="sampling")
    max_new_tokens: int = hp(64, "Longest completion in tokens; longer ones are truncated.",
                             lo=1, hi=32_768, group="sampling")
    temperature: float = hp(0.8, "Sampling temperature.", lo=0.01, hi=10.0, group="sampling")
    top_p: float = hp(1.0, "Nucleus sampling: keep the smallest token set with this much "
                      "probability.", lo=0.01, hi=1.0, group="sampling")
    use_chat_template: bool = hp(True, "Wrap plain-text prompts as a user message in the "
                                 "model's chat template (when it has one).", group="sampling")
    micro_batch_size: int = hp(0, "Sequences per forward/backward pass (0: as many as fit "
                               "a memory budget); lower it to save memory, the update stays "
                               "the same.", lo=0, hi=4096, group="system")
    kl_stop: float | None = hp(None, "Stop the run when mean KL to the reference exceeds this "
                               "(empty: never).", lo=0.0, hi=1e6, nullable=True,
                               group="schedule")
    samples_per_step: int = hp(8, "Completions kept per step for the samples table.", lo=0,
                               hi=256, group="schedule")


@dataclass(frozen=True)
class GRPOConfig(RolloutConfig):
    """Group Relative Policy Optimisation (DeepSeekMath), as summarised in MISSION.md."""

    group_size: int = hp(8, "Completions sampled per prompt (G); advantages are relative "
                         "within each group.", lo=2, hi=256, group="grpo")
    epsilon_low: float = hp(0.2, "Lower clip: the ratio is clipped below at 1 - epsilon_low.",
                            lo=0.0, hi=1.0, group="grpo")
    epsilon_high: float = hp(0.2, "Upper clip: the ratio is clipped above at 1 + epsilon_high "
                             "(DAPO raises it to 0.28).", lo=0.0, hi=10.0, group="grpo")
    beta: float = hp(0.04, "Weight of the k3 KL penalty to the reference; 0 drops the "
                     "reference model entirely.", lo=0.0, hi=100.0, group="grpo")
    loss_type: str = hp("grpo", "Loss aggregation: grpo (per-sequence token mean, then mean), "
                        "bnpo (mean over all tokens), dr_grpo (sum / (batch x max tokens)).",
                        choices=("grpo", "bnpo", "dr_grpo"), group="grpo")
    scale_rewards: str = hp("group", "Divide advantages by the group's std (group), the "
                            "batch's std (batch), or not at all (none, Dr. GRPO).",
                            choices=("group", "batch", "none"), group="grpo")
    num_iterations: int = hp(1, "Updates per generated batch (mu); above 1 the old log-probs "
                             "need one extra forward pass.", lo=1, hi=64, group="grpo")

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size


@dataclass(frozen=True)
class PPOConfig(RolloutConfig):
    """Proximal Policy Optimisation with a learned critic (Schulman et al. 2017; the RLHF
    recipe of Ziegler et al. 2019 and Ouyang et al. 2022), as summarised in MISSION.md."""

    ppo_epochs: int = hp(4, "Passes over each rollout's minibatches.", lo=1, hi=64, group="ppo")
    minibatches: int = hp(2, "Minibatches per epoch; must divide prompts_per_step.", lo=1,
                          hi=4096, group="ppo")
    gamma: float = hp(1.0, "Discount factor of GAE.", lo=0.0, hi=1.0, group="ppo")
    lam: float = hp(0.95, "GAE lambda: 1 is Monte-Carlo (low bias, high variance), 0 is "
                    "one-step TD (low variance, high bias).", lo=0.0, hi=1.0, group="ppo")
    kl_coef: float = hp(0.05, "Per-token KL penalty to the reference, subtracted from the "
                        "reward (the initial value when kl_target is set).", lo=0.0, hi=100.0,
                        group="ppo")
    kl_target: float | None = hp(None, "Adapt kl_coef to keep KL near this value (Ziegler et "
                                 "al.); empty keeps kl_coef fixed.", lo=0.0, hi=1e3,
                                 nullable=True, group="ppo")
    cliprange: float = hp(0.2, "Policy ratio clip epsilon.", lo=0.0, hi=10.0, group="ppo")
    cliprange_value: float = hp(0.2, "Value clip: new values stay within this of the old.",
                                lo=0.0, hi=1e6, group="ppo")
    vf_coef: float = hp(0.1, "Weight of the value loss.", lo=0.0, hi=100.0, group="ppo")
    entropy_coef: float = hp(0.0, "Weight of the entropy bonus (0: none).", lo=0.0, hi=10.0,
                             group="ppo")
    whiten_advantages: bool = hp(True, "Normalise advantages to zero mean and unit variance "
                                 "per rollout.", group="ppo")
    critic_init: str = hp("policy", "Critic backbone: a copy of the policy, or of the reward "
                          "model's backbone.", choices=("policy", "reward"), group="ppo")


@dataclass(frozen=True)
class RewardModelConfig(BaseConfig):
    """A scalar reward model fitted on preference pairs with the Bradley-Terry loss
    ``-log sigmoid(r_chosen - r_rejected - margin)``."""

    max_steps: int = hp(1000, "The most optimiser steps to run; epochs set the length "
                        "below it.", lo=1, hi=100_000, group="schedule")
    learning_rate: float = hp(2e-5, "AdamW learning rate (constant after warm-up).",
                              lo=0.0, hi=1.0)
    epochs: float = hp(2.0, "Passes over the training pairs (1 epoch: each pair once); "
                       "max_steps caps it.", lo=0.01, hi=1000.0, group="schedule")
    batch_size: int = hp(8, "Preference pairs per optimiser step.", lo=1, hi=4096,
                         group="reward_model")
    max_length: int = hp(512, "Longest prompt + response in tokens; longer ones are cut "
                         "from the left of the prompt.", lo=16, hi=32_768, group="reward_model")
    eval_fraction: float = hp(0.1, "Share of pairs held out, by prompt (no prompt on both "
                              "sides), to measure accuracy and margin; at least 20 pairs, at "
                              "most half; 0 holds out nothing.",
                              lo=0.0, hi=0.5, group="reward_model")
    eval_every: int = hp(0, "Measure the held-out pairs every N steps (0: ten times over the "
                         "run) and at the end.", lo=0, hi=100_000, group="reward_model")
    early_stop_patience: int = hp(3, "Stop when held-out accuracy has not improved for this "
                                  "many evaluations in a row (0: never).", lo=0, hi=1000,
                                  group="reward_model")

    def steps_for(self, train_pairs: int) -> int:
        """The run's length on ``train_pairs``: ``epochs`` passes of ``batch_size`` pairs a
        step, at most ``max_steps``, at least one step."""
        per_epoch = math.ceil(max(1, train_pairs) / self.batch_size)
        return max(1, min(self.max_steps, math.ceil(self.epochs * per_epoch)))

    def eval_interval(self, total_steps: int) -> int:
        return self.eval_every or max(1, math.ceil(total_steps / 10))


# A reward model's held-out set has at least this many pairs (or eval_fraction of them,
# whichever is more, within half the data): fewer give a score that moves in coarse steps,
# and the run page says so.
EVAL_MIN_PAIRS = 20


CONFIG_CLASSES: dict[str, type[BaseConfig]] = {
    "grpo": GRPOConfig, "ppo": PPOConfig, "reward_model": RewardModelConfig}
REWARD_TYPES = ("length", "regex", "exact_match", "reward_model")


PATTERN_MAX_CHARS = 2000
MAX_REWARD_SOURCES = 16
WEIGHT_MAX = 1e6  # a weight beyond this overflows float32 rewards into infinities


def compile_reward_pattern(pattern: str) -> Any:
    """A user's regex, compiled by RE2 (google-re2): matching takes time linear in the text
    for every pattern, so no pattern (``(a+)+$``, ``(.*)*ZZZ``) can hang a worker the way
    backtracking engines such as Python's ``re`` do. The price is RE2's syntax: no
    backreferences and no lookarounds. Raises ValueError with RE2's reason."""
    options = re2.Options()
    options.dot_nl = True  # '.' spans lines, as re.DOTALL
    options.log_errors = False  # the reason comes back in the exception
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        raise ValueError(str(reason)) from None
    except UnicodeEncodeError:
        raise ValueError("the pattern is not valid Unicode text") from None


class ConfigError(ValueError):
    """Invalid user settings; ``fields`` maps each offending name to a message."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Turn a JSON or form value into the field's type, or raise ValueError with a reason."""
    meta, kind = f.metadata, type(f.default) if f.default is not None else float
    if value is None or value == "":
        if meta.get("nullable"):
            return None
        raise ValueError("a value is required")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "on", "yes"):
            return True
        if str(value).lower() in ("false", "0", "off", "no"):
            return False
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole number")
        try:
            value = int(str(value)) if not isinstance(value, (int, float)) else int(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
    elif kind is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
    elif kind is str:
        value = str(value)
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError("must be one of " + ", ".join(map(str, meta["choices"])))
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ValueError(f"must be at least {meta['lo']:g}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ValueError(f"must be at most {meta['hi']:g}")
    return value


def validate_hyperparameters(algorithm: str, values: dict[str, Any]) -> dict[str, Any]:
    """Complete ``values`` with defaults and check each; ConfigError names every bad field."""
    cls = CONFIG_CLASSES.get(algorithm)
    if cls is None:
        raise ConfigError({"algorithm": "must be one of " + ", ".join(CONFIG_CLASSES)})
    if not isinstance(values, dict):
        raise ConfigError({"hyperparameters": "must be an object of name: value"})
    known = {f.name: f for f in cls.hyperparameter_fields()}
    errors = {k: "unknown hyperparameter for " + algorithm for k in values if k not in known}
    clean: dict[str, Any] = {}
    for name, f in known.items():
        try:
            clean[name] = _coerce(f, values[name]) if name in values else f.default
        except ValueError as exc:
            errors[name] = str(exc)
    if not errors and algorithm == "grpo" and clean["micro_batch_size"]:
        total = clean["prompts_per_step"] * clean["group_size"]
        if total % clean["micro_batch_size"]:
            errors["micro_batch_size"] = (f"must divide prompts_per_step x group_size ({total})")
    if not errors and algorithm == "grpo" and clean["kl_stop"] is not None and not clean["beta"]:
        errors["kl_stop"] = "needs beta > 0: with beta 0 there is no reference model to measure KL"
    if not errors and algorithm == "ppo":
        per_minibatch, rest = divmod(clean["prompts_per_step"], clean["minibatches"])
        if rest:
            errors["minibatches"] = f"must divide prompts_per_step ({clean['prompts_per_step']})"
        elif clean["micro_batch_size"] and per_minibatch % clean["micro_batch_size"]:
            errors["micro_batch_size"] = f"must divide the minibatch size ({per_minibatch})"
    if errors:
        raise ConfigError(errors)
    return clean


def validate_rewards(rewards: Any, *, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Check a list of reward sources; ``columns`` are the dataset's, for exact_match."""
    if not isinstance(rewards, list) or not rewards:
        raise ConfigError({"rewards": "give at least one reward source, e.g. "
                                      '[{"type": "length", "target": 200}]'})
    if len(rewards) > MAX_REWARD_SOURCES:
        raise ConfigError({"rewards": f"give at most {MAX_REWARD_SOURCES} reward sources"})
    errors: dict[str, str] = {}
    clean = []
    for i, r in enumerate(rewards):
        key = f"rewards[{i}]"
        if not isinstance(r, dict) or r.get("type") not in REWARD_TYPES:
            errors[key] = "type must be one of " + ", ".join(REWARD_TYPES)
            continue
        unknown = set(r) - {"type", "weight", "target", "pattern", "column", "model"}
        if unknown:
            errors[key] = "unknown field " + ", ".join(sorted(unknown))
            continue
        weight = r.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not math.isfinite(weight) or abs(weight) > WEIGHT_MAX:
            errors[key] = f"weight must be a finite number from -{WEIGHT_MAX:g} to {WEIGHT_MAX:g}"
            continue
        item: dict[str, Any] = {"type": r["type"], "weight": float(weight)}
        problem = _check_reward_args(r, item, columns)
        if problem:
            errors[key] = problem
        clean.append(item)
    if errors:
        raise ConfigError(errors)
    return clean


def _check_reward_args(r: dict[str, Any], item: dict[str, Any],
                       columns: list[str] | None) -> str | None:
    kind = r["type"]
    if kind == "length":
        target = r.get("target")
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target <= 1_000_000:
            return "length needs target, a whole number of characters (0 to 1000000)"
        item["target"] = target
    elif kind == "regex":
        pattern = r.get("pattern")
        if not isinstance(pattern, str) or not pattern or len(pattern) > PATTERN_MAX_CHARS:
            return (f"regex needs pattern, a regular expression of at most {PATTERN_MAX_CHARS} "
                    "characters")
        try:
            compile_reward_pattern(pattern)
        except ValueError as exc:
            return (f"pattern is not a valid regular expression ({exc}); patterns "
                    "use RE2 syntax, which has no backreferences or lookarounds")
        item["pattern"] = pattern
    elif kind == "exact_match":
        column = r.get("column", "answer")
        if not isinstance(column, str) or (columns is not None and column not in columns):
            return (f"exact_match needs column, one of the dataset's columns "
                    f"({', '.join(columns or [])})")
        item["column"] = column
    elif kind == "reward_model":
        model = r.get("model")
        if not isinstance(model, str) or not model:
            return "reward_model needs model, the id of a fitted reward model (GET /api/models)"
        item["model"] = model
    return None


def reward_source_names(rewards: list[dict[str, Any]]) -> list[str]:
    """Metric names of the sources: the type, numbered when a type occurs more than once."""
    counts: dict[str, int] = {}
    for r in rewards:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    seen: dict[str, int] = {}
    names = []
    for r in rewards:
        seen[r["type"]] = seen.get(r["type"], 0) + 1
        names.append(r["type"] if counts[r["type"]] == 1 else f"{r['type']}_{seen[r['type']]}")
    return names


def build_config(algorithm: str, hyperparameters: dict[str, Any], **internal_fields: Any
                 ) -> BaseConfig:
    """The frozen config a worker passes to ``train``; hyperparameters are validated again."""
    values = validate_hyperparameters(algorithm, hyperparameters)
    if "rewards" in internal_fields:
        internal_fields["rewards"] = tuple(RewardSpec(**r) for r in internal_fields["rewards"])
    return CONFIG_CLASSES[algorithm](**values, **internal_fields)
