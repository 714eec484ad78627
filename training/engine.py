"""What the GRPO and PPO trainers share: the run's state, loading the policy and the reward
models, the step loop with its cancel / KL-stop / checkpoint cadence, frozen log-probs, the
step's rollout metrics and samples, and checkpoints.

Nothing here is specific to one algorithm; :mod:`training.grpo` and :mod:`training.ppo` say
where each departs from its paper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from training.checkpoints import load_training_state, restore_optimizer, save_checkpoint_dir
from training.config import BaseConfig, RolloutConfig
from training.data import PromptSampler
from training.logprobs import CHUNK_ELEMENTS
from training.memory import auto_micro_batch, inference_bytes, largest_split
from training.metrics import MetricsSink, SampleRecord
from training.modelhub import load_causal_lm
from training.rewards import RewardScorer
from training.rollout import Rollout, completion_logprobs, generate, render_prompt
from training.runtime import (
    Stopwatch,
    onednn_linears,
    peak_memory_mb,
    release_freed_memory,
    resolve_device,
    resolve_dtype,
    return_freed_memory_to_the_os,
    rng_state,
    seed_everything,
    set_rng_state,
    use_gradient_checkpointing,
    weights_in_own_memory,
)

MAX_PROMPT_TOKENS = 1024

StepOutcome = tuple[dict[str, float], list[SampleRecord]]


@dataclass
class TrainResult:
    steps: int
    stop_reason: str  # max_steps | cancelled | kl_stop | early_stop
    checkpoints: list[str] = field(default_factory=list)


@dataclass
class State:
    """What a step needs besides the config; saved with checkpoints for resume."""

    policy: Any
    reference: Any | None
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: PromptSampler
    rows: list[dict[str, Any]]
    source_names: list[str]
    device: torch.device
    scorers: dict[str, RewardScorer] = field(default_factory=dict)
    elapsed_s: float = 0.0
    tokens_total: int = 0


C = TypeVar("C", bound=BaseConfig)
S = TypeVar("S")


# --- the step loop ---

def kl_stop_check(config: Any, state: Any, metrics: dict[str, float]) -> str | None:
    """``kl_stop`` when ``kl/mean`` passed it (algorithms with a reference have one)."""
    kl_stop = getattr(config, "kl_stop", None)
    if kl_stop is not None and metrics.get("kl/mean", 0.0) > kl_stop:
        return "kl_stop"
    return None


def run_steps(config: C, state: S,
              step_fn: Callable[[C, S, Callable[[], bool]], StepOutcome | None], *,
              start: int, sink: MetricsSink, should_stop: Callable[[], bool],
              save: Callable[[C, S, int, MetricsSink], str],
              stop_check: Callable[[C, S, dict[str, float]], str | None] = kl_stop_check
              ) -> tuple[TrainResult, dict[str, float]]:
    """Steps ``start + 1`` to ``max_steps``, each logged to ``sink``; stops early on
    ``should_stop`` (before a step, or during its generation: that step is dropped) or when
    ``stop_check`` gives a reason after a step (by default: ``kl/mean`` past ``kl_stop``).
    Samples are logged when a step returns some. Saves every ``checkpoint_every`` steps and
    after the last step done unless it was just saved. Returns the result and the last
    step's metrics."""
    result = TrainResult(steps=start, stop_reason="max_steps")
    metrics: dict[str, float] = {}
    saved_at = start
    for step in range(start + 1, config.max_steps + 1):
        if should_stop():
            result.stop_reason = "cancelled"
            break
        outcome = step_fn(config, state, should_stop)
        if outcome is None:  # cancelled during generation; the step is dropped
            result.stop_reason = "cancelled"
            break
        metrics, samples = outcome
        result.steps = step
        sink.log_metrics(step, metrics)
        if samples:
            sink.log_samples(step, samples)
        reason = stop_check(config, state, metrics)
        if reason:
            result.stop_reason = reason
            break
        if config.checkpoint_every and step % config.checkpoint_every == 0 and \
                step < config.max_steps:
            result.checkpoints.append(save(config, state, step, sink))
            saved_at = step
    if result.steps > saved_at:
        result.checkpoints.append(save(config, state, result.steps, sink))
    release_freed_memory()  # what the steps' heap kept for the next step
    return result, metrics


# --- setup ---

def load_policy(config: RolloutConfig, device: torch.device, dtype: torch.dtype,
                resume_from: str | None, saved: dict[str, Any] | None, *,
                with_reference: bool) -> tuple[Any, Any]:
    """The policy and, when ``with_reference``, a frozen reference (the initial policy).
    With LoRA no reference is built: it is the policy with its adapters disabled."""
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        base = load_causal_lm(config.model_path, dtype=dtype, device=device)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                          target_modules="all-linear", lora_dropout=0.0)
        policy = get_peft_model(base, lora)
        if saved is not None and saved["adapter"] is not None:
            set_peft_model_state_dict(policy, saved["adapter"])
        return use_gradient_checkpointing(policy, config.gradient_checkpointing), None
    full: Any = weights_in_own_memory(
        load_causal_lm(resume_from or config.model_path, dtype=dtype, device=device))
    use_gradient_checkpointing(full, config.gradient_checkpointing)
    reference = None
    if with_reference:
        reference = load_causal_lm(config.model_path, dtype=dtype, device=device)
        reference.eval().requires_grad_(False)
    return full, reference


def load_scorers(config: RolloutConfig, names: Sequence[str], device: torch.device
                 ) -> dict[str, RewardScorer]:
    """The run's reward models, loaded once, by reward-source name."""
    from training.reward_model import RewardModelScorer

    return {name: RewardModelScorer(str(spec.path), device=device)
            for spec, name in zip(config.rewards, names, strict=True)
            if spec.type == "reward_model"}


def prepare(config: BaseConfig, resume_from: str | None
            ) -> tuple[torch.device, torch.dtype, dict[str, Any] | None]:
    """Device and dtype from the config, every RNG seeded, and the saved training state when
    resuming from a checkpoint directory."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    if device.type == "cpu":
        return_freed_memory_to_the_os()
    seed_everything(config.seed)
    return device, dtype, load_training_state(Path(resume_from)) if resume_from else None


def warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int
                     ) -> torch.optim.lr_scheduler.LambdaLR:
    """A constant learning rate after a linear warm-up over ``warmup_steps`` scheduler steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0)


def restore_progress(state: State, saved: dict[str, Any], *, scheduler_steps: int) -> int:
    """Put back the optimizer, schedule, sampler, RNG and counters of a saved run; returns
    the step it had reached."""
    restore_optimizer(state.optimizer, saved)
    state.scheduler.last_epoch = scheduler_steps
    state.sampler.load_state(saved["sampler"])
    set_rng_state(saved["rng"])
    state.elapsed_s, state.tokens_total = saved["elapsed_s"], saved["tokens_total"]
    return int(saved["step"])


# --- rollout ---

def sample_rollout(config: RolloutConfig, state: State, group_size: int,
                   should_stop: Callable[[], bool]) -> tuple[list[dict[str, Any]], Rollout]:
    """The step's ``prompts_per_step`` dataset rows and ``group_size`` completions sampled
    for each; the rollout is ``stopped`` when ``should_stop`` interrupted generation."""
    picked = [state.rows[i] for i in state.sampler.next(config.prompts_per_step)]
    rendered = [render_prompt(state.tokenizer, r["prompt"], config.use_chat_template)
                for r in picked]
    rollout = generate(state.policy, state.tokenizer, rendered, group_size=group_size,
                       max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                       top_p=config.top_p, max_prompt_tokens=MAX_PROMPT_TOKENS,
                       should_stop=should_stop, min_new_tokens=config.min_new_tokens)
    return picked, rollout


# --- forward passes without gradient ---

def micro_batch_rows(config: RolloutConfig, state: State, rollout: Rollout, total_rows: int,
                     *, group_size: int, trunks: int = 1) -> int:
    """Rows per forward/backward pass: ``micro_batch_size``, or when it is 0 the largest
    split of ``total_rows`` whose activations (and accumulated gradients, when split) fit
    ``activation_memory_mb``."""
    if config.micro_batch_size:
        return config.micro_batch_size
    trainable = (p for group in state.optimizer.param_groups for p in group["params"])
    return auto_micro_batch(
        total_rows, config.activation_memory_mb,
        grad_bytes=sum(p.numel() * p.element_size() for p in trainable),
        model_config=state.policy.config,
        prompt_tokens=rollout.prompt_len, completion_tokens=rollout.action_mask.shape[1],
        group_size=group_size, param_bytes=next(state.policy.parameters()).element_size(),
        checkpointing=config.gradient_checkpointing, trunks=trunks)


def micro_batches(size: int, micro: int) -> list[slice]:
    """Slices of ``micro`` rows covering ``size`` rows; one slice when ``micro`` is 0."""
    micro = micro or size
    return [slice(i, i + micro) for i in range(0, size, micro)]


def frozen_parts(config: RolloutConfig, state: State, rollout: Rollout) -> list[slice]:
    """Row slices for the forward passes without gradient: as many rows at once as the
    activation budget allows by :func:`training.memory.inference_bytes` (such a pass keeps
    no activations, so this is usually the whole step, where training needs several
    micro-batches)."""
    total = len(rollout.input_ids)
    rows = largest_split(total, config.activation_memory_mb, lambda r: inference_bytes(
        state.policy.config, rows=r, prompt_tokens=rollout.prompt_len,
        completion_tokens=rollout.action_mask.shape[1],
        param_bytes=next(state.policy.parameters()).element_size(),
        head_chunk_bytes=CHUNK_ELEMENTS * 4))
    return micro_batches(total, rows)


def frozen_logprobs(config: RolloutConfig, state: State, rollout: Rollout,
                    temperature: float, *, reference: bool) -> torch.Tensor:
    """Log-probs (B, T) without gradient, over :func:`frozen_parts`: of the reference model,
    or of the policy as it is now."""
    model: Any = state.reference if reference and state.reference is not None else state.policy
    lora_reference = reference and state.reference is None  # the base without its adapters
    out = []
    with torch.inference_mode(), onednn_linears(model), \
            (model.disable_adapter() if lora_reference else contextlib.nullcontext()):
        for mb in frozen_parts(config, state, rollout):
            out.append(completion_logprobs(model, rollout.input_ids[mb],
                                           rollout.attention_mask[mb], rollout.prompt_len,
                                           temperature)[0])
    return torch.cat(out).clone()  # a plain tensor, usable in the loss's autograd graph


# --- log ---

def step_metrics(state: State, rollout: Rollout, rewards: torch.Tensor,
                 per_source: dict[str, torch.Tensor], step_s: float, clock: Stopwatch
                 ) -> dict[str, float]:
    """``reward/*``, ``completion/*`` and ``perf/*`` of a step (``clock``'s phases among them:
    ``perf/generate_s``, ...); adds to the run's totals."""
    lengths = rollout.completion_lengths.float()
    chars = torch.tensor([len(c) for c in rollout.completions], dtype=torch.float32)
    tokens = int(lengths.sum())
    state.elapsed_s += step_s
    state.tokens_total += tokens
    metrics = {
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "completion/length_mean": lengths.mean().item(),
        "completion/length_min": lengths.min().item(),
        "completion/length_max": lengths.max().item(),
        "completion/chars_mean": chars.mean().item(),
        "completion/truncated_frac": rollout.truncated.float().mean().item(),
        "perf/step_s": step_s,
        **clock.metrics(),
        "perf/tokens_per_s": tokens / step_s if step_s > 0 else 0.0,
        "perf/peak_mem_mb": peak_memory_mb(state.device),
        "perf/elapsed_s": state.elapsed_s,
        "perf/tokens_total": float(state.tokens_total),
    }
    for name, values in per_source.items():
        metrics[f"reward/{name}/mean"] = values.mean().item()
        metrics[f"reward/{name}/std"] = values.std().item() if len(values) > 1 else 0.0
    return metrics


def sample_records(prompts: list[str], rollout: Rollout, rewards: torch.Tensor,
                   per_source: dict[str, torch.Tensor], advantages: torch.Tensor, keep: int
                   ) -> list[SampleRecord]:
    """The first ``keep`` completions of the step, for the samples table."""
    return [SampleRecord(index=i, prompt=prompts[i], completion=rollout.completions[i],
                         rewards={k: float(v[i]) for k, v in per_source.items()},
                         reward=float(rewards[i]), advantage=float(advantages[i]))
            for i in range(min(keep, len(prompts)))]


# --- checkpoints ---

def save_checkpoint(config: RolloutConfig, state: State, step: int, sink: MetricsSink, *,
                    algorithm: str, extra_state: dict[str, Any] | None = None,
                    before_report: Callable[[Path], None] | None = None,
                    keep_unset_reward_fields: bool = False) -> str:
    """``<output_dir>/step-<step>``: the policy as a plain model directory with its manifest,
    and the training state to resume from (plus ``extra_state``). ``before_report`` writes
    more into the directory before the sink hears of it (the sink may archive it).
    ``keep_unset_reward_fields`` lists a reward source's None fields in the manifest too."""
    dest = Path(config.output_dir) / f"step-{step}"
    rewards = [{k: v for k, v in r.__dict__.items() if keep_unset_reward_fields or v is not None}
               for r in config.rewards]
    manifest = {"algorithm": algorithm, "step": step, "base_model_path": config.model_path,
                "hyperparameters": config.hyperparameters(), "rewards": rewards}
    save_checkpoint_dir(dest, model=state.policy, tokenizer=state.tokenizer, manifest=manifest,
                        optimizer=state.optimizer, lora=bool(config.lora_rank), rng=rng_state(),
                        state={"step": step, "sampler": state.sampler.state(),
                               "elapsed_s": state.elapsed_s,
                               "tokens_total": state.tokens_total, **(extra_state or {})})
    if before_report is not None:
        before_report(dest)
    sink.log_checkpoint(step, str(dest))
    return str(dest)
