"""The step of the policy-gradient algorithms without a critic (GRPO, RLOO, REINFORCE++): sample
completions, score them, estimate advantages, and update the policy with the clipped
surrogate. Each algorithm is an :class:`Estimator`: how it turns rewards into advantages,
and whether its KL penalty to the reference goes into the loss (GRPO, RLOO: k3 per token,
weighted by ``beta``) or into the reward before the advantages (REINFORCE++).

Shared departures from the papers:
- A *step* is one rollout (``prompts_per_step`` x ``group_size`` completions) followed by
  ``num_iterations`` optimiser updates on it (GRPO's inner loop, mu). With one update and no
  KL in the reward, the old log-probs equal the current ones and come from the training
  forward (detached) instead of an extra pass.
- The reference model stays the initial policy for the whole run. With ``beta == 0`` none is
  built; with LoRA it is the same network with its adapters disabled (no second copy).
- Log-probabilities are taken at the sampling temperature (as TRL), so the ratio compares the
  distribution that sampled the tokens.
- Clip bounds are asymmetric (``epsilon_low``/``epsilon_high``, DAPO) and the token
  aggregation is a choice (``grpo``, ``bnpo``, ``dr_grpo``; :mod:`training.losses`).
- The learning rate is constant after an optional linear warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from training.config import PolicyGradientConfig
from training.data import PromptSampler, read_rows
from training.engine import (
    State,
    frozen_logprobs,
    load_policy,
    micro_batch_rows,
    micro_batches,
    restore_progress,
    sample_records,
    sample_rollout,
    save_checkpoint,
    step_metrics,
)
from training.logprobs import PassPlan
from training.loop import StepOutcome, TrainResult, prepare, run_steps, warmup_scheduler
from training.losses import grpo_loss, masked_mean, token_weights
from training.metrics import MetricsSink, NullSink
from training.modelhub import load_tokenizer
from training.reward_types import reward_source_names
from training.rollout import Rollout, completion_logprobs, prompt_text
from training.runtime import Stopwatch
from training.scoring import load_scorers, score, source_metrics

CLIP_KEYS = ("clip/low", "clip/high", "clip/region")


@dataclass(frozen=True)
class Scored:
    """What an estimator reads: the step's rewards and, where the step computed them, the
    reference's and the sampling policy's log-probs."""

    rewards: torch.Tensor  # (B,) one per completion, the G of a prompt adjacent
    action_mask: torch.Tensor  # (B, T)
    ref_logprobs: torch.Tensor | None  # (B, T)
    old_logprobs: torch.Tensor | None  # (B, T)


@dataclass(frozen=True)
class Estimator:
    """One critic-free algorithm: its name in checkpoints, its advantages ((B,) per completion
    or (B, T) per token, and metrics), and where its KL penalty goes."""

    algorithm: str
    advantages: Callable[[PolicyGradientConfig, Scored], tuple[torch.Tensor, dict[str, float]]]
    kl_in_reward: bool = False


def train(config: PolicyGradientConfig, estimator: Estimator, *,
          sink: MetricsSink | None = None, should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path``; returns the result and the last step's metrics."""
    state, start = setup_run(config, resume_from)

    def step(config: PolicyGradientConfig, state: State, should_stop: Callable[[], bool]
             ) -> StepOutcome | None:
        return policy_gradient_step(config, estimator, state, should_stop)

    def save(config: PolicyGradientConfig, state: State, step: int, sink: MetricsSink) -> str:
        return save_checkpoint(config, state, step, sink, algorithm=estimator.algorithm)

    return run_steps(config, state, step, backend=state.backend, start=start,
                     sink=sink or NullSink(),
                     should_stop=should_stop, save=save)


def setup_run(config: PolicyGradientConfig, resume_from: str | None) -> tuple[State, int]:
    """The run's state, fresh or from the checkpoint ``resume_from``; and the step reached."""
    backend, dtype, saved = prepare(config, resume_from)
    rows = read_rows(config.dataset_path)
    tokenizer = load_tokenizer(config.model_path)
    policy, reference = load_policy(config, backend, dtype, resume_from, saved,
                                    with_reference=config.beta > 0)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = backend.optimizer(params, lr=config.learning_rate)
    scheduler = warmup_scheduler(optimizer, config.warmup_steps)
    sampler = PromptSampler(len(rows), config.seed)
    names = reward_source_names([r.as_dict() for r in config.rewards])
    state = State(policy, reference, tokenizer, optimizer, scheduler, sampler, rows, names,
                  backend, load_scorers(config.rewards, names, backend.device))
    if saved is None:
        return state, 0
    return state, restore_progress(state, saved,
                                   scheduler_steps=saved["step"] * config.num_iterations)


def policy_gradient_step(config: PolicyGradientConfig, estimator: Estimator, state: State,
                         should_stop: Callable[[], bool]) -> StepOutcome | None:
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
    # --- rewards ---
    group_rows = [r for r in picked for _ in range(config.group_size)]
    prompts = [prompt_text(r["prompt"]) for r in group_rows]
    rewards, per_source = score(config.rewards, state.source_names, prompts,
                                rollout.completions, group_rows, state.scorers)
    said = source_metrics(config.rewards, state.source_names, prompts, rollout.completions,
                          group_rows, state.scorers)
    clock.lap("reward")
    # --- reference and old log-probs (no gradient) ---
    rows = len(rollout.completions)
    parts = micro_batches(rows, micro_batch_rows(config, state, rollout, rows,
                                                 group_size=config.group_size))
    ref_logprobs = (frozen_logprobs(config, state, rollout, config.temperature, reference=True)
                    if config.beta > 0 else None)
    needs_old = config.num_iterations > 1 or (estimator.kl_in_reward and config.beta > 0)
    old_logprobs = (frozen_logprobs(config, state, rollout, config.temperature, reference=False)
                    if needs_old else None)
    clock.lap("reference")
    # --- advantages ---
    advantages, metrics = estimator.advantages(config, Scored(
        rewards, rollout.action_mask, ref_logprobs, old_logprobs))
    advantages = advantages.to(state.device)
    # --- update ---
    weights = token_weights(rollout.action_mask, config.loss_type, config.max_new_tokens)
    loss_beta = 0.0 if estimator.kl_in_reward else config.beta
    with state.backend.training_pass(state.policy) as plan:
        metrics |= _update(config, state, rollout, parts, advantages, weights, ref_logprobs,
                           old_logprobs, loss_beta, clock, plan)
    # --- log ---
    step_s = time.perf_counter() - started
    metrics |= step_metrics(state, rollout, rewards, per_source, step_s, clock) | said
    per_sequence = advantages if advantages.dim() == 1 else _sequence_means(
        advantages, rollout.action_mask.to(advantages.device))
    samples = sample_records(prompts, rollout, rewards, per_source, per_sequence,
                             config.samples_per_step)
    return metrics, samples


def _sequence_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A per-token advantage as one number per completion (for the samples table)."""
    mask = mask.float()
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B,)


def _update(config: PolicyGradientConfig, state: State, rollout: Rollout,
            parts: Sequence[slice], advantages: torch.Tensor, weights: torch.Tensor,
            ref_logprobs: torch.Tensor | None, old_logprobs: torch.Tensor | None,
            beta: float, clock: Stopwatch, plan: PassPlan) -> dict[str, float]:
    """``num_iterations`` optimiser updates over the micro-batches, computed as the training
    pass's ``plan`` says; token-weighted metrics."""
    mask = rollout.action_mask
    sums: dict[str, float] = {}
    clip_sums: dict[str, float] = {}
    tokens = 0.0
    params = [p for p in state.policy.parameters() if p.requires_grad]
    for iteration in range(config.num_iterations):
        for mb in parts:
            logprobs, entropy = completion_logprobs(
                state.policy, rollout.input_ids[mb], rollout.attention_mask[mb],
                rollout.prompt_len, config.temperature, with_entropy=iteration == 0, plan=plan)
            old = old_logprobs[mb] if old_logprobs is not None else logprobs.detach()
            ref = ref_logprobs[mb] if ref_logprobs is not None else None
            loss, m = grpo_loss(logprobs, old, ref, advantages[mb], mask[mb], weights[mb],
                                eps_low=config.epsilon_low, eps_high=config.epsilon_high,
                                beta=beta)
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
