"""Run configuration shared by every algorithm: the ``hp()`` field metadata that forms, the
API and the engine read, the base config classes, and value coercion.

This module imports no torch, so the web forms and the JSON API validate hyperparameters with
the very definitions the engine runs with. Every hyperparameter is a dataclass field whose
``metadata`` carries its help text and bounds. Fields marked ``internal`` (paths, the device)
are set by the worker, never by a user. Each algorithm's own config class lives beside its
declaration in :mod:`training.algorithms`; reward sources are declared in
:mod:`training.reward_types`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    """One reward source of a run: its type (:mod:`training.reward_types`), its weight in the
    sum, and its arguments as the user gave them (validated). ``path`` is the directory of a
    model-backed source's model, filled in by the worker from the model's registry id."""

    type: str
    weight: float = 1.0
    args: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None

    @classmethod
    def from_dict(cls, source: Mapping[str, Any]) -> RewardSpec:
        """From the stored form ``{"type", "weight", <args>..., "path"?}``."""
        rest = {k: v for k, v in source.items() if k not in ("type", "weight", "path")}
        return cls(type=source["type"], weight=float(source.get("weight", 1.0)), args=rest,
                   path=source.get("path"))

    def as_dict(self) -> dict[str, Any]:
        """The stored form, without the server's path (manifests name models by id)."""
        return {"type": self.type, "weight": self.weight, **self.args}


@dataclass(frozen=True)
class EngineSwitches:
    """The engine's speed and memory measures, each on by default. A benchmark turns one off
    to measure what it buys (``bench/ablations.py``); nobody else sets these. Read by the
    backend a run is prepared with (:mod:`training.backend`) and by the code it steers."""

    own_sampler: bool = True
    """Sample with our decode loop (:mod:`training.decode`); off: ``model.generate``."""
    lean_decoder: bool = True
    """Decode Llama-like models through :mod:`training.llama_decode`'s fused layers."""
    packed_decode: bool = True
    """Decode through weights laid out once for few-row products (the model's own forward)."""
    onednn: str = "measured"
    """oneDNN for the CPU's fp32 products: ``measured`` (where a probe found it faster),
    ``always`` or ``never``."""
    onednn_training: bool = True
    """oneDNN for the passes that train too (off: only for those without gradient)."""
    in_place_gradients: bool = True
    """Layers add their weight gradients straight into ``.grad``."""
    fused_head: bool = True
    """The LM head's log-probabilities by one fused function, not autograd."""
    share_prompts: bool = True
    """Rows with the same prompt share its forward pass."""
    frozen_passes_whole: bool = True
    """Passes without gradient take as many rows as their own budget allows, not the
    training micro-batches."""
    fused_adamw: bool = True
    """AdamW's fused kernel (and on the CPU its moments in flat buffers)."""
    return_freed_memory: bool = True
    """glibc hands freed tensors back to the system (a fixed mmap threshold)."""
    keep_training_heap: bool = True
    """The updates' blocks up to 8 MB come from a heap kept from one step to the next."""
    keep_heap_between_steps: bool = True
    """Each phase's heap is kept for the next step's same phase (off: trimmed after it)."""


@dataclass(frozen=True)
class BaseConfig:
    """Settings every algorithm shares."""

    # --- set by the worker ---
    model_path: str = internal("")
    """Directory of the base model (a transformers ``save_pretrained`` directory)."""
    model_id: str = internal("")
    """The base model's registry id, for manifests (which never name server paths)."""
    dataset_path: str = internal("")
    """JSONL file of the run's rows, as stored by the datasets app."""
    output_dir: str = internal("")
    """Where checkpoints go: ``<output_dir>/step-<n>/``."""
    device: str = internal("auto")
    """``auto`` picks CUDA when present, else CPU."""
    rewards: tuple[RewardSpec, ...] = internal(())
    """Reward sources (algorithms that declare ``uses_rewards``), validated separately from
    the hyperparameters."""
    engine: EngineSwitches = internal(EngineSwitches())
    """The engine's speed measures, all on; benchmarks turn one off."""

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

    def problems(self) -> dict[str, str]:
        """Rules between fields (a micro-batch that must divide a batch), by field name; each
        bound of a single field is already checked by its ``hp()`` metadata."""
        return {}

    # The hyperparameter a person changes to do less per step (named in a cap's refusal).
    sequences_field = "max_steps"

    def sequences_per_step(self) -> int:
        """Sequences one step generates or scores, for the deployment's per-step cap."""
        return 1

    def planned_steps(self, rows: int) -> int:
        """The run's length as known before its worker reads the data (``rows`` in its data
        set); the engine may settle it later (:meth:`MetricsSink.log_total_steps`)."""
        return self.max_steps


@dataclass(frozen=True)
class RolloutConfig(BaseConfig):
    """Settings of the algorithms that sample completions from a policy (GRPO, PPO)."""

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

    sequences_field = "prompts_per_step"

    def sequences_per_step(self) -> int:
        return self.prompts_per_step


@dataclass(frozen=True)
class PolicyGradientConfig(RolloutConfig):
    """Settings of the policy-gradient algorithms without a critic (GRPO, RLOO, REINFORCE++):
    G completions per prompt, the clipped surrogate with asymmetric bounds, a KL penalty to
    the reference weighted by ``beta`` (where it goes is the algorithm's), token
    aggregation, and updates per rollout."""

    group_size: int = hp(8, "Completions sampled per prompt (G); advantages are relative "
                         "within each group.", lo=2, hi=256, group="policy")
    epsilon_low: float = hp(0.2, "Lower clip: the ratio is clipped below at 1 - epsilon_low.",
                            lo=0.0, hi=1.0, group="policy")
    epsilon_high: float = hp(0.2, "Upper clip: the ratio is clipped above at 1 + epsilon_high "
                             "(DAPO raises it to 0.28).", lo=0.0, hi=10.0, group="policy")
    beta: float = hp(0.04, "Weight of the KL penalty to the reference; 0 drops the "
                     "reference model entirely.", lo=0.0, hi=100.0, group="policy")
    loss_type: str = hp("grpo", "Loss aggregation: grpo (per-sequence token mean, then mean), "
                        "bnpo (mean over all tokens), dr_grpo (sum / (batch x max tokens)).",
                        choices=("grpo", "bnpo", "dr_grpo"), group="policy")
    num_iterations: int = hp(1, "Updates per generated batch (mu); above 1 the old log-probs "
                             "need one extra forward pass.", lo=1, hi=64, group="policy")

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    def sequences_per_step(self) -> int:
        return self.completions_per_step

    def problems(self) -> dict[str, str]:
        total = self.completions_per_step
        if self.micro_batch_size and total % self.micro_batch_size:
            return {"micro_batch_size": f"must divide prompts_per_step x group_size ({total})"}
        if self.kl_stop is not None and not self.beta:
            return {"kl_stop": "needs beta > 0: with beta 0 there is no reference model to "
                               "measure KL"}
        return {}


class ConfigError(ValueError):
    """Invalid user settings; ``fields`` maps each offending name to a message."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


def coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Turn a JSON or form value into the field's type, or raise ValueError with a reason."""
    return coerce_value(f.metadata, type(f.default) if f.default is not None else float,
                        value)


def coerce_value(meta: Mapping[str, Any], kind: type, value: Any) -> Any:
    """``value`` as a ``kind`` (bool, int, float, str) within the bounds and choices of
    ``meta`` (``hp()`` metadata), or ValueError saying what is wrong."""
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
