"""Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath), plain PyTorch.

Where this departs from the paper, and why:
- A *step* is one rollout (``prompts_per_step`` x ``group_size`` completions) followed by
  ``num_iterations`` optimiser updates on it (the paper's inner loop, mu). With one update the
  old log-probs equal the current ones, so they are taken from the training forward (detached)
  instead of an extra forward pass.
- The reference model stays the initial policy for the whole run; the paper refreshes it at
  each outer iteration. With ``beta == 0`` no reference model is built at all; with LoRA the
  reference is the same network with its adapters disabled (no second copy in memory).
- Log-probabilities are taken at the sampling temperature (as TRL), so the ratio compares the
  distribution that actually sampled the tokens.
- Clip bounds are asymmetric (``epsilon_low``/``epsilon_high``, DAPO) and the loss aggregation
  is a choice (``grpo`` as the paper, ``bnpo``, ``dr_grpo``), see :mod:`training.losses`.
- Group std is unbiased (as TRL) with 1e-4 added; advantage scaling can also use the batch std
  or none (Dr. GRPO).
- The learning rate is constant after an optional linear warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.advantages import group_advantages
from training.checkpoints import (
    load_training_state,
    restore_optimizer,
    save_model_dir,
    save_training_state,
)
from training.config import GRPOConfig, RolloutConfig, reward_source_names
from training.data import PromptSampler, read_rows
from training.losses import grpo_loss, masked_mean, token_weights
from training.metrics import MetricsSink, NullSink, SampleRecord
from training.modelhub import load_causal_lm, load_tokenizer
from training.rewards import RewardScorer, score
from training.rollout import Rollout, completion_logprobs, generate, prompt_text, render_prompt
from training.runtime import (
    peak_memory_mb,
    resolve_device,
    resolve_dtype,
    rng_state,
    seed_everything,
    set_rng_state,
)

MAX_PROMPT_TOKENS = 1024
CLIP_KEYS = ("clip/low", "clip/high", "clip/region")


@dataclass
class TrainResult:
    steps: int
    stop_reason: str  # max_steps | cancelled | kl_stop
    checkpoints: list[str] = field(default_factory=list)


@dataclass
class _State:
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


def train(config: GRPOConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with GRPO; returns the result and the last step's metrics."""
    sink = sink or NullSink()
    state, start = _setup(config, resume_from)
    result = TrainResult(steps=start, stop_reason="max_steps")
    metrics: dict[str, float] = {}
    saved_at = start
    for step in range(start + 1, config.max_steps + 1):
        if should_stop():
            result.stop_reason = "cancelled"
            break
        outcome = grpo_step(config, state, should_stop)
        if outcome is None:  # cancelled during generation; the step is dropped
            result.stop_reason = "cancelled"
            break
        metrics, samples = outcome
        result.steps = step
        sink.log_metrics(step, metrics)
        sink.log_samples(step, samples)
        if config.kl_stop is not None and metrics.get("kl/mean", 0.0) > config.kl_stop:
            result.stop_reason = "kl_stop"
            break
        if config.checkpoint_every and step % config.checkpoint_every == 0 and \
                step < config.max_steps:
            result.checkpoints.append(_checkpoint(config, state, step, sink))
            saved_at = step
    if result.steps > saved_at:
        result.checkpoints.append(_checkpoint(config, state, result.steps, sink))
    return result, metrics


def _setup(config: GRPOConfig, resume_from: str | None) -> tuple[_State, int]:
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    seed_everything(config.seed)
    rows = read_rows(config.dataset_path)
    tokenizer = load_tokenizer(config.model_path)
    saved = load_training_state(Path(resume_from)) if resume_from else None
    policy, reference = _load_models(config, device, dtype, resume_from, saved)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    warmup = config.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    sampler = PromptSampler(len(rows), config.seed)
    names = reward_source_names([r.__dict__ for r in config.rewards])
    state = _State(policy, reference, tokenizer, optimizer, scheduler, sampler, rows, names,
                   device, load_scorers(config, names, device))
    if saved is None:
        return state, 0
    restore_optimizer(optimizer, saved)
    scheduler.last_epoch = saved["step"] * config.num_iterations
    sampler.load_state(saved["sampler"])
    set_rng_state(saved["rng"])
    state.elapsed_s, state.tokens_total = saved["elapsed_s"], saved["tokens_total"]
    return state, int(saved["step"])


def load_scorers(config: RolloutConfig, names: Sequence[str], device: torch.device
                 ) -> dict[str, RewardScorer]:
    """The run's reward models, loaded once, by reward-source name."""
    from training.reward_model import RewardModelScorer

    return {name: RewardModelScorer(str(spec.path), device=device)
            for spec, name in zip(config.rewards, names, strict=True)
            if spec.type == "reward_model"}


def _load_models(config: GRPOConfig, device: torch.device, dtype: torch.dtype,
                 resume_from: str | None, saved: dict[str, Any] | None) -> tuple[Any, Any]:
    """The policy and, when beta > 0, a frozen reference (the initial policy)."""
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        base = load_causal_lm(config.model_path, dtype=dtype, device=device)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                          target_modules="all-linear", lora_dropout=0.0)
        policy = get_peft_model(base, lora)
        if saved is not None and saved["adapter"] is not None:
            set_peft_model_state_dict(policy, saved["adapter"])
        return policy, None  # the reference is the policy with adapters disabled
    full: Any = load_causal_lm(resume_from or config.model_path, dtype=dtype, device=device)
    reference = None
    if config.beta > 0:
        reference = load_causal_lm(config.model_path, dtype=dtype, device=device)
        reference.eval().requires_grad_(False)
    return full, reference


def _micro_batches(size: int, micro: int) -> list[slice]:
    micro = micro or size
    return [slice(i, i + micro) for i in range(0, size, micro)]


@torch.no_grad()
def _frozen_logprobs(config: GRPOConfig, state: _State, rollout: Rollout,
                     parts: Sequence[slice], *, reference: bool) -> list[torch.Tensor]:
    """Log-probs without gradient: of the reference model, or of the policy as it is now."""
    out = []
    for mb in parts:
        args = (rollout.input_ids[mb], rollout.attention_mask[mb], rollout.prompt_len,
                config.temperature)
        if reference and state.reference is None:  # LoRA: the base without its adapters
            with state.policy.disable_adapter():
                out.append(completion_logprobs(state.policy, *args)[0])
        else:
            model: Any = state.reference if reference else state.policy
            out.append(completion_logprobs(model, *args)[0])
    return out


def grpo_step(config: GRPOConfig, state: _State, should_stop: Callable[[], bool]
              ) -> tuple[dict[str, float], list[SampleRecord]] | None:
    """One rollout and its updates; None when generation was interrupted by ``should_stop``."""
    started = time.perf_counter()
    # --- rollout ---
    picked = [state.rows[i] for i in state.sampler.next(config.prompts_per_step)]
    rendered = [render_prompt(state.tokenizer, r["prompt"], config.use_chat_template)
                for r in picked]
    rollout = generate(state.policy, state.tokenizer, rendered, group_size=config.group_size,
                       max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                       top_p=config.top_p, max_prompt_tokens=MAX_PROMPT_TOKENS,
                       should_stop=should_stop)
    if rollout.stopped:
        return None
    generate_s = time.perf_counter() - started
    # --- rewards and advantages ---
    group_rows = [r for r in picked for _ in range(config.group_size)]
    prompts = [prompt_text(r["prompt"]) for r in group_rows]
    rewards, per_source = score(config.rewards, state.source_names, prompts,
                                rollout.completions, group_rows, state.scorers)
    advantages, metrics = group_advantages(rewards, config.group_size, config.scale_rewards)
    advantages = advantages.to(state.device)
    # --- reference and old log-probs (no gradient) ---
    parts = _micro_batches(len(rollout.completions), config.micro_batch_size)
    ref_logprobs = (_frozen_logprobs(config, state, rollout, parts, reference=True)
                    if config.beta > 0 else None)
    old_logprobs = (_frozen_logprobs(config, state, rollout, parts, reference=False)
                    if config.num_iterations > 1 else None)
    # --- update ---
    weights = token_weights(rollout.action_mask, config.loss_type, config.max_new_tokens)
    metrics |= _update(config, state, rollout, parts, advantages, weights, ref_logprobs,
                       old_logprobs)
    # --- log ---
    step_s = time.perf_counter() - started
    metrics |= _step_metrics(state, rollout, rewards, per_source, step_s, generate_s)
    samples = _samples(prompts, rollout, rewards, per_source, advantages,
                       config.samples_per_step)
    return metrics, samples


def _update(config: GRPOConfig, state: _State, rollout: Rollout, parts: Sequence[slice],
            advantages: torch.Tensor, weights: torch.Tensor,
            ref_logprobs: list[torch.Tensor] | None,
            old_logprobs: list[torch.Tensor] | None) -> dict[str, float]:
    """``num_iterations`` optimiser updates over the micro-batches; token-weighted metrics."""
    mask = rollout.action_mask
    sums: dict[str, float] = {}
    clip_sums: dict[str, float] = {}
    tokens = 0.0
    params = [p for p in state.policy.parameters() if p.requires_grad]
    for iteration in range(config.num_iterations):
        for i, mb in enumerate(parts):
            logprobs, entropy = completion_logprobs(
                state.policy, rollout.input_ids[mb], rollout.attention_mask[mb],
                rollout.prompt_len, config.temperature, with_entropy=iteration == 0)
            old = old_logprobs[i] if old_logprobs is not None else logprobs.detach()
            ref = ref_logprobs[i] if ref_logprobs is not None else None
            loss, m = grpo_loss(logprobs, old, ref, advantages[mb], mask[mb], weights[mb],
                                eps_low=config.epsilon_low, eps_high=config.epsilon_high,
                                beta=config.beta)
            loss.backward()
            n = float(mask[mb].sum())
            for key in CLIP_KEYS:  # over every update: the first one has ratio 1, never clips
                clip_sums[key] = clip_sums.get(key, 0.0) + m[key] * n
            if iteration == 0:  # report the state of the rollout, before any update
                tokens += n
                assert entropy is not None
                m["entropy/mean"] = masked_mean(entropy, mask[mb].float()).item()
                m["loss/total"] = loss.item()
                for key, value in m.items():
                    if key in CLIP_KEYS:
                        continue
                    summed = key.startswith("loss/")  # already weighted over the whole step
                    sums[key] = sums.get(key, 0.0) + (value if summed else value * n)
        lr = state.optimizer.param_groups[0]["lr"]
        # max_grad_norm 0 means no clipping; the norm is still measured and logged
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
        state.optimizer.step()
        state.scheduler.step()
        state.optimizer.zero_grad(set_to_none=True)
    out = {k: (v if k.startswith("loss/") else v / max(tokens, 1.0)) for k, v in sums.items()}
    out |= {k: v / max(tokens * config.num_iterations, 1.0) for k, v in clip_sums.items()}
    out["optim/lr"] = lr
    out["optim/grad_norm"] = float(grad_norm)
    return out


def _step_metrics(state: _State, rollout: Rollout, rewards: torch.Tensor,
                  per_source: dict[str, torch.Tensor], step_s: float, generate_s: float
                  ) -> dict[str, float]:
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
        "perf/generate_s": generate_s,
        "perf/tokens_per_s": tokens / step_s if step_s > 0 else 0.0,
        "perf/peak_mem_mb": peak_memory_mb(state.device),
        "perf/elapsed_s": state.elapsed_s,
        "perf/tokens_total": float(state.tokens_total),
    }
    for name, values in per_source.items():
        metrics[f"reward/{name}/mean"] = values.mean().item()
        metrics[f"reward/{name}/std"] = values.std().item() if len(values) > 1 else 0.0
    return metrics


def _samples(prompts: list[str], rollout: Rollout, rewards: torch.Tensor,
             per_source: dict[str, torch.Tensor], advantages: torch.Tensor, keep: int
             ) -> list[SampleRecord]:
    return [SampleRecord(index=i, prompt=prompts[i], completion=rollout.completions[i],
                         rewards={k: float(v[i]) for k, v in per_source.items()},
                         reward=float(rewards[i]), advantage=float(advantages[i]))
            for i in range(min(keep, len(prompts)))]


def _checkpoint(config: GRPOConfig, state: _State, step: int, sink: MetricsSink) -> str:
    dest = Path(config.output_dir) / f"step-{step}"
    manifest = {"algorithm": "grpo", "step": step, "base_model_path": config.model_path,
                "hyperparameters": config.hyperparameters(),
                "rewards": [{k: v for k, v in r.__dict__.items() if v is not None}
                            for r in config.rewards]}
    save_model_dir(state.policy, state.tokenizer, dest, manifest)
    adapter = None
    if config.lora_rank:
        from peft import get_peft_model_state_dict

        adapter = get_peft_model_state_dict(state.policy)
    save_training_state(dest, optimizer=state.optimizer, rng=rng_state(), adapter=adapter,
                        state={"step": step, "sampler": state.sampler.state(),
                               "elapsed_s": state.elapsed_s,
                               "tokens_total": state.tokens_total})
    sink.log_checkpoint(step, str(dest))
    return str(dest)
