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

import torch

from training.advantages import group_advantages
from training.config import GRPOConfig, reward_source_names
from training.data import PromptSampler, read_rows
from training.engine import (
    State,
    TrainResult,
    frozen_logprobs,
    load_policy,
    load_scorers,
    micro_batch_rows,
    micro_batches,
    prepare,
    restore_progress,
    run_steps,
    sample_records,
    sample_rollout,
    save_checkpoint,
    step_metrics,
    warmup_scheduler,
)
from training.losses import grpo_loss, masked_mean, token_weights
from training.metrics import MetricsSink, NullSink, SampleRecord
from training.modelhub import load_tokenizer
from training.rewards import score
from training.rollout import Rollout, completion_logprobs, prompt_text
from training.runtime import (
    Stopwatch,
    adamw,
    keep_training_memory,
    training_layers,
)

CLIP_KEYS = ("clip/low", "clip/high", "clip/region")


def train(config: GRPOConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with GRPO; returns the result and the last step's metrics."""
    state, start = setup_run(config, resume_from)
    return run_steps(config, state, grpo_step, start=start, sink=sink or NullSink(),
                     should_stop=should_stop, save=_checkpoint)


def setup_run(config: GRPOConfig, resume_from: str | None) -> tuple[State, int]:
    """The run's state, fresh or from the checkpoint ``resume_from``; and the step reached."""
    device, dtype, saved = prepare(config, resume_from)
    rows = read_rows(config.dataset_path)
    tokenizer = load_tokenizer(config.model_path)
    policy, reference = load_policy(config, device, dtype, resume_from, saved,
                                    with_reference=config.beta > 0)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=config.learning_rate, device=device)
    scheduler = warmup_scheduler(optimizer, config.warmup_steps)
    sampler = PromptSampler(len(rows), config.seed)
    names = reward_source_names([r.__dict__ for r in config.rewards])
    state = State(policy, reference, tokenizer, optimizer, scheduler, sampler, rows, names,
                  device, load_scorers(config, names, device))
    if saved is None:
        return state, 0
    return state, restore_progress(state, saved,
                                   scheduler_steps=saved["step"] * config.num_iterations)


def grpo_step(config: GRPOConfig, state: State, should_stop: Callable[[], bool]
              ) -> tuple[dict[str, float], list[SampleRecord]] | None:
    """One rollout and its updates; None when generation was interrupted by ``should_stop``.
    ``perf/<phase>_s`` metrics split the step's wall time (generate, reward, reference,
    forward, backward, optimizer)."""
    started = time.perf_counter()
    clock = Stopwatch(state.device)
    # --- rollout ---
    picked, rollout = sample_rollout(config, state, config.group_size, should_stop)
    if rollout.stopped:
        return None
    clock.lap("generate")
    # --- rewards and advantages ---
    group_rows = [r for r in picked for _ in range(config.group_size)]
    prompts = [prompt_text(r["prompt"]) for r in group_rows]
    rewards, per_source = score(config.rewards, state.source_names, prompts,
                                rollout.completions, group_rows, state.scorers)
    advantages, metrics = group_advantages(rewards, config.group_size, config.scale_rewards)
    advantages = advantages.to(state.device)
    clock.lap("reward")
    # --- reference and old log-probs (no gradient) ---
    rows = len(rollout.completions)
    parts = micro_batches(rows, micro_batch_rows(config, state, rollout, rows,
                                                 group_size=config.group_size))
    ref_logprobs = (frozen_logprobs(config, state, rollout, config.temperature, reference=True)
                    if config.beta > 0 else None)
    old_logprobs = (frozen_logprobs(config, state, rollout, config.temperature, reference=False)
                    if config.num_iterations > 1 else None)
    clock.lap("reference")
    # --- update ---
    weights = token_weights(rollout.action_mask, config.loss_type, config.max_new_tokens)
    with training_layers(state.policy), keep_training_memory():
        metrics |= _update(config, state, rollout, parts, advantages, weights, ref_logprobs,
                           old_logprobs, clock)
    # --- log ---
    step_s = time.perf_counter() - started
    metrics |= step_metrics(state, rollout, rewards, per_source, step_s, clock)
    samples = sample_records(prompts, rollout, rewards, per_source, advantages,
                             config.samples_per_step)
    return metrics, samples


def _update(config: GRPOConfig, state: State, rollout: Rollout, parts: Sequence[slice],
            advantages: torch.Tensor, weights: torch.Tensor,
            ref_logprobs: torch.Tensor | None, old_logprobs: torch.Tensor | None,
            clock: Stopwatch) -> dict[str, float]:
    """``num_iterations`` optimiser updates over the micro-batches; token-weighted metrics."""
    mask = rollout.action_mask
    sums: dict[str, float] = {}
    clip_sums: dict[str, float] = {}
    tokens = 0.0
    params = [p for p in state.policy.parameters() if p.requires_grad]
    for iteration in range(config.num_iterations):
        for mb in parts:
            logprobs, entropy = completion_logprobs(
                state.policy, rollout.input_ids[mb], rollout.attention_mask[mb],
                rollout.prompt_len, config.temperature, with_entropy=iteration == 0)
            old = old_logprobs[mb] if old_logprobs is not None else logprobs.detach()
            ref = ref_logprobs[mb] if ref_logprobs is not None else None
            loss, m = grpo_loss(logprobs, old, ref, advantages[mb], mask[mb], weights[mb],
                                eps_low=config.epsilon_low, eps_high=config.epsilon_high,
                                beta=config.beta)
            clock.lap("forward")
            loss.backward()
            clock.lap("backward")
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
        clock.lap("optimizer")
    out = {k: (v if k.startswith("loss/") else v / max(tokens, 1.0)) for k, v in sums.items()}
    out |= {k: v / max(tokens * config.num_iterations, 1.0) for k, v in clip_sums.items()}
    out["optim/lr"] = lr
    out["optim/grad_norm"] = float(grad_norm)
    return out


def _checkpoint(config: GRPOConfig, state: State, step: int, sink: MetricsSink) -> str:
    return save_checkpoint(config, state, step, sink, algorithm="grpo")
