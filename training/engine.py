"""What the trainers that sample from a policy share (GRPO, PPO, RLOO, REINFORCE++): the
run's state, loading the policy and its reward sources, the rollout, frozen log-probs, the
step's rollout metrics and samples, and checkpoints. The step loop itself is in
:mod:`training.loop`.

Nothing here is specific to one algorithm; each trainer's module says where it departs from
its paper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.backend import Backend
from training.checkpoints import restore_optimizer, save_checkpoint_dir
from training.config import RolloutConfig
from training.data import PromptSampler
from training.estimate import MAX_PROMPT_TOKENS
from training.logprobs import CHUNK_ELEMENTS
from training.memory import auto_micro_batch, inference_bytes, largest_split
from training.metrics import MetricsSink, SampleRecord
from training.modelhub import load_causal_lm
from training.rollout import Rollout, completion_logprobs, generate, render_prompt
from training.runtime import (
    Stopwatch,
    peak_memory_mb,
    rng_state,
    set_rng_state,
    use_gradient_checkpointing,
)
from training.scoring import RewardScorer


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
    backend: Backend
    scorers: dict[str, RewardScorer] = field(default_factory=dict)
    elapsed_s: float = 0.0
    tokens_total: int = 0

    @property
    def device(self) -> torch.device:
        return self.backend.device


# --- setup ---

def load_policy(config: RolloutConfig, backend: Backend, dtype: torch.dtype,
                resume_from: str | None, saved: dict[str, Any] | None, *,
                with_reference: bool) -> tuple[Any, Any]:
    """The policy and, when ``with_reference``, a frozen reference (the initial policy).
    With LoRA no reference is built: it is the policy with its adapters disabled."""
    device = backend.device
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        base = load_causal_lm(config.model_path, dtype=dtype, device=device)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                          target_modules="all-linear", lora_dropout=0.0)
        policy = get_peft_model(base, lora)
        if saved is not None and saved["adapter"] is not None:
            set_peft_model_state_dict(policy, saved["adapter"])
        return use_gradient_checkpointing(backend.load(policy), config.gradient_checkpointing), \
            None
    full: Any = backend.load(
        load_causal_lm(resume_from or config.model_path, dtype=dtype, device=device))
    use_gradient_checkpointing(full, config.gradient_checkpointing)
    reference = None
    if with_reference:
        reference = load_causal_lm(config.model_path, dtype=dtype, device=device)
        reference = backend.load(reference.eval().requires_grad_(False))
    return full, reference


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
                       should_stop=should_stop, min_new_tokens=config.min_new_tokens,
                       backend=state.backend)
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
    micro-batches; with that switch off, the training's micro-batches)."""
    total = len(rollout.input_ids)
    if not state.backend.switches.frozen_passes_whole:
        return micro_batches(total, micro_batch_rows(
            config, state, rollout, total, group_size=getattr(config, "group_size", 1)))
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
    with state.backend.frozen_pass(model) as plan, \
            (model.disable_adapter() if lora_reference else contextlib.nullcontext()):
        for mb in frozen_parts(config, state, rollout):
            out.append(completion_logprobs(model, rollout.input_ids[mb],
                                           rollout.attention_mask[mb], rollout.prompt_len,
                                           temperature, plan=plan)[0])
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
                    before_report: Callable[[Path], None] | None = None) -> str:
    """``<output_dir>/step-<step>``: the policy as a plain model directory with its manifest,
    and the training state to resume from (plus ``extra_state``). ``before_report`` writes
    more into the directory before the sink hears of it (the sink may archive it). The
    manifest names models by registry id, never by the server's paths."""
    dest = Path(config.output_dir) / f"step-{step}"
    manifest = {"algorithm": algorithm, "step": step, "base_model": config.model_id,
                "hyperparameters": config.hyperparameters(),
                "rewards": [r.as_dict() for r in config.rewards]}
    save_checkpoint_dir(dest, model=state.policy, tokenizer=state.tokenizer, manifest=manifest,
                        optimizer=state.optimizer, lora=bool(config.lora_rank), rng=rng_state(),
                        state={"step": step, "sampler": state.sampler.state(),
                               "elapsed_s": state.elapsed_s,
                               "tokens_total": state.tokens_total, **(extra_state or {})})
    if before_report is not None:
        before_report(dest)
    sink.log_checkpoint(step, str(dest))
    return str(dest)
