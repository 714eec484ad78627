"""Proximal Policy Optimisation with a learned critic (Schulman et al. 2017), in the RLHF
recipe of Ziegler et al. 2019 and Ouyang et al. 2022 (InstructGPT), plain PyTorch.

Where this departs from the papers, and why:
- A *step* is one rollout of ``prompts_per_step`` completions (one per prompt), then
  ``ppo_epochs`` passes over it in ``minibatches`` shuffled minibatches (ppo_epochs x
  minibatches optimiser updates). Old log-probs, reference log-probs and old values come from
  one forward pass without gradient before the first update. Warm-up counts steps (the unit of
  ``max_steps``), not updates: all updates of a step share one learning rate.
- The sequence reward (weighted reward sources, neither normalised nor whitened) is given at
  the completion's last token (its EOS, or the last token of a truncated completion: no
  truncation penalty). Every token also gets ``-kl_coef * (logp - ref_logp)`` (k1, as
  InstructGPT and TRL).
- The *reported* KL (``kl/mean``, tested by ``kl_stop`` and followed by the adaptive
  controller) is GRPO's per-token k3 ``exp(d) - d - 1`` (d = ref_logp - logp), so both
  algorithms chart one quantity; ``kl/k1`` is the penalty's estimator. Ziegler's controller
  follows the KL of whole sequences; ``kl_target`` here is per token, on the ``kl/mean``
  scale (error clipped to +-0.2, horizon 10000, n = prompts_per_step per step, as the paper).
- The reference is the initial policy for the whole run (with LoRA: the policy with adapters
  disabled); with ``kl_coef == 0`` and no ``kl_stop`` it is not built (no KL metrics).
- The critic is a separate network (no shared trunk): a zero-initialised ``Linear(hidden, 1)``
  on a copy of the policy's base model or of a reward model's base (:mod:`training.critic`);
  with LoRA it trains adapters of its own. Dropout stays off in both networks.
- GAE bootstraps 0 after the last token. Advantages are whitened over all tokens of the rollout
  (TRL), not per minibatch (cleanrl); returns use the advantages before whitening.
- One AdamW holds policy and critic as two parameter groups (same learning rate); their
  gradient norms are clipped separately, so ``optim/grad_norm`` is the policy's, as in GRPO
  (``optim/value_grad_norm``: the critic's).
- Losses are token means over a minibatch (OpenRLHF's ``masked_mean``); micro-batches are
  weighted by their share of its tokens, so they change memory, not the update. ``loss/value``
  is unweighted; ``loss/total = loss/policy + vf_coef * loss/value + loss/entropy`` with
  ``loss/entropy = -entropy_coef * entropy``. Update metrics are token means over all updates
  of the step; ``entropy/mean`` and ``value/*`` describe the rollout before them.
- Log-probabilities are taken at the sampling temperature (as TRL). No early stop of the
  epochs on approx KL (cleanrl's ``target_kl``); the learning rate is constant after warm-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch

from training.advantages import gae, whiten
from training.algorithms.ppo import PPOConfig
from training.critic import Critic, build_critic, load_critic, save_critic
from training.data import PromptSampler, read_rows
from training.engine import (
    State,
    frozen_logprobs,
    frozen_parts,
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
from training.loop import TrainResult, prepare, run_steps, warmup_scheduler
from training.losses import explained_variance, k3_kl, masked_mean, ppo_policy_loss, value_loss
from training.metrics import MetricsSink, NullSink, SampleRecord
from training.modelhub import load_tokenizer
from training.reward_types import reward_source_names
from training.rollout import Rollout, completion_logprobs, prompt_text
from training.runtime import Stopwatch
from training.scoring import load_scorers, score, source_metrics


class AdaptiveKLController:
    """Ziegler et al. 2019: ``coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon``,
    so the KL coefficient rises while KL is above the target and falls while below."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int = 10_000):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target > 0:
            ratio = current_kl / self.target
        else:  # a target of 0: any KL is too much
            ratio = math.inf if current_kl > 0 else 1.0
        error = min(max(ratio - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


@dataclass
class _PPOState(State):
    critic: Any = None
    kl_coef: float = 0.0
    kl_controller: AdaptiveKLController | None = None


@dataclass
class _Frozen:
    """The rollout as the networks saw it before any update (no gradient), all (B, T)."""

    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor | None
    values: torch.Tensor
    entropy: torch.Tensor


def train(config: PPOConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train ``config.model_path`` with PPO; returns the result and the last step's metrics."""
    state, start = setup_run(config, resume_from)
    return run_steps(config, state, ppo_step, backend=state.backend, start=start,
                     sink=sink or NullSink(),
                     should_stop=should_stop, save=_checkpoint)


def _needs_reference(config: PPOConfig) -> bool:
    return config.kl_coef > 0 or config.kl_stop is not None


def setup_run(config: PPOConfig, resume_from: str | None) -> tuple[_PPOState, int]:
    """The run's state, fresh or from the checkpoint ``resume_from``; and the step reached."""
    backend, dtype, saved = prepare(config, resume_from)
    rows = read_rows(config.dataset_path)
    tokenizer = load_tokenizer(config.model_path)
    policy, reference = load_policy(config, backend, dtype, resume_from, saved,
                                    with_reference=_needs_reference(config))
    critic = backend.load(build_critic(config, tokenizer, dtype=dtype,
                                       device=backend.device).eval())
    groups = [{"params": [p for p in net.parameters() if p.requires_grad]}
              for net in (policy, critic)]
    optimizer = backend.optimizer(groups, lr=config.learning_rate)
    scheduler = warmup_scheduler(optimizer, config.warmup_steps)
    names = reward_source_names([r.as_dict() for r in config.rewards])
    controller = (AdaptiveKLController(config.kl_coef, config.kl_target)
                  if config.kl_target is not None else None)
    state = _PPOState(policy, reference, tokenizer, optimizer, scheduler,
                      PromptSampler(len(rows), config.seed), rows, names, backend,
                      critic=critic, kl_coef=config.kl_coef, kl_controller=controller,
                      scorers=load_scorers(config.rewards, names, backend.device))
    if saved is None or resume_from is None:
        return state, 0
    start = restore_progress(state, saved, scheduler_steps=saved["step"])
    load_critic(critic, Path(resume_from))
    state.kl_coef = float(saved["kl_coef"])
    if controller is not None:
        controller.value = state.kl_coef
    return state, start


def ppo_step(config: PPOConfig, state: _PPOState, should_stop: Callable[[], bool]
             ) -> tuple[dict[str, float], list[SampleRecord]] | None:
    """One rollout and its updates; None when generation was interrupted by ``should_stop``.
    ``perf/<phase>_s`` metrics split the step's wall time (generate, reward, evaluate: old
    log-probs, values and reference log-probs; update: every epoch's passes and steps)."""
    started = time.perf_counter()
    clock = Stopwatch(state.device)
    # --- rollout ---
    picked, rollout = sample_rollout(config, state, 1, should_stop)
    if rollout.stopped:
        return None
    clock.lap("generate")
    # --- rewards ---
    prompts = [prompt_text(r["prompt"]) for r in picked]
    rewards, per_source = score(config.rewards, state.source_names, prompts,
                                rollout.completions, picked, scorers=state.scorers)
    said = source_metrics(config.rewards, state.source_names, prompts, rollout.completions,
                          picked, state.scorers)
    clock.lap("reward")
    # --- old log-probs, reference log-probs and values (no gradient) ---
    frozen = _evaluate_rollout(config, state, rollout)
    clock.lap("evaluate")
    # --- advantages ---
    mask = rollout.action_mask.float()  # (B, T)
    token_rewards = _token_rewards(rewards.to(state.device), frozen, mask, state.kl_coef)
    advantages, returns = gae(token_rewards, frozen.values, mask, config.gamma, config.lam)
    metrics = _rollout_metrics(state, frozen, returns, mask)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    # --- update ---
    with state.backend.training_pass(state.policy, state.critic) as plan:
        metrics |= _update(config, state, rollout, frozen, advantages, returns, plan)
    clock.lap("update")
    if state.kl_controller is not None and "kl/mean" in metrics:
        state.kl_coef = state.kl_controller.update(metrics["kl/mean"], config.prompts_per_step)
    # --- log ---
    step_s = time.perf_counter() - started
    metrics |= step_metrics(state, rollout, rewards, per_source, step_s, clock) | said
    sequence_advantages = (advantages * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B,)
    samples = sample_records(prompts, rollout, rewards, per_source, sequence_advantages.cpu(),
                             config.samples_per_step)
    return metrics, samples


def _evaluate_rollout(config: PPOConfig, state: _PPOState, rollout: Rollout) -> _Frozen:
    logprobs, entropy, values = [], [], []
    with state.backend.frozen_pass(state.policy, state.critic) as plan:
        for mb in frozen_parts(config, state, rollout):
            ids, attention = rollout.input_ids[mb], rollout.attention_mask[mb]
            lp, ent = completion_logprobs(state.policy, ids, attention, rollout.prompt_len,
                                          config.temperature, with_entropy=True, plan=plan)
            assert ent is not None
            logprobs.append(lp)
            entropy.append(ent)
            values.append(state.critic(ids, attention, rollout.prompt_len))
    ref_logprobs = None
    if _needs_reference(config):
        ref_logprobs = frozen_logprobs(config, state, rollout, config.temperature,
                                       reference=True)
    # plain tensors (inference tensors cannot enter the losses' autograd graph)
    return _Frozen(torch.cat(logprobs).clone(), ref_logprobs, torch.cat(values).clone(),
                   torch.cat(entropy).clone())


def _token_rewards(rewards: torch.Tensor, frozen: _Frozen, mask: torch.Tensor,
                   kl_coef: float) -> torch.Tensor:
    """(B, T): ``-kl_coef * (logp - ref_logp)`` per token, plus the sequence reward at the
    last completion token."""
    token_rewards = torch.zeros_like(frozen.old_logprobs)  # (B, T)
    if frozen.ref_logprobs is not None:
        token_rewards = -kl_coef * (frozen.old_logprobs - frozen.ref_logprobs) * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # (B,)
    rows = torch.arange(len(last), device=mask.device)
    token_rewards[rows, last] += rewards.to(token_rewards.dtype)
    return token_rewards


def _rollout_metrics(state: _PPOState, frozen: _Frozen, returns: torch.Tensor,
                     mask: torch.Tensor) -> dict[str, float]:
    metrics = {
        "kl/coef": state.kl_coef,
        "entropy/mean": masked_mean(frozen.entropy, mask).item(),
        "value/mean": masked_mean(frozen.values, mask).item(),
        "value/explained_var": explained_variance(frozen.values, returns, mask),
    }
    if frozen.ref_logprobs is not None:
        kl = k3_kl(frozen.old_logprobs, frozen.ref_logprobs)
        metrics["kl/mean"] = masked_mean(kl, mask).item()
        metrics["kl/k1"] = masked_mean(frozen.old_logprobs - frozen.ref_logprobs, mask).item()
    return metrics


def _update(config: PPOConfig, state: _PPOState, rollout: Rollout, frozen: _Frozen,
            advantages: torch.Tensor, returns: torch.Tensor, plan: PassPlan
            ) -> dict[str, float]:
    """``ppo_epochs`` x ``minibatches`` optimiser updates, computed as the training pass's
    ``plan`` says; token means of their metrics."""
    size = config.prompts_per_step // config.minibatches
    mask = rollout.action_mask.float()
    sums: dict[str, float] = {}
    tokens = 0.0
    norms: list[tuple[float, float]] = []
    lr = state.optimizer.param_groups[0]["lr"]
    # the policy and the critic keep their activations for the same backward: two trunks
    micro_rows = micro_batch_rows(config, state, rollout, size, group_size=1, trunks=2)
    for _ in range(config.ppo_epochs):
        order = torch.randperm(config.prompts_per_step).to(mask.device)
        for start in range(0, config.prompts_per_step, size):
            minibatch = order[start:start + size]
            minibatch_tokens = float(mask[minibatch].sum())
            for micro in micro_batches(size, micro_rows):
                rows = minibatch[micro]
                metrics = _backward(config, state, rollout, frozen, advantages[rows],
                                    returns[rows], rows, minibatch_tokens, plan)
                n = float(mask[rows].sum())
                tokens += n
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value * n
            norms.append(_optimizer_step(config, state))
    state.scheduler.step()
    out = {key: value / max(tokens, 1.0) for key, value in sums.items()}
    out["optim/lr"] = lr
    out["optim/grad_norm"] = sum(n[0] for n in norms) / len(norms)
    out["optim/value_grad_norm"] = sum(n[1] for n in norms) / len(norms)
    return out


def _backward(config: PPOConfig, state: _PPOState, rollout: Rollout, frozen: _Frozen,
              advantages: torch.Tensor, returns: torch.Tensor, rows: torch.Tensor,
              minibatch_tokens: float, plan: PassPlan) -> dict[str, float]:
    """Loss of one micro-batch, back-propagated with its share of the minibatch's tokens."""
    ids, attention = rollout.input_ids[rows], rollout.attention_mask[rows]
    mask = rollout.action_mask[rows]
    logprobs, entropy = completion_logprobs(  # the entropy bonus needs its gradient
        state.policy, ids, attention, rollout.prompt_len, config.temperature,
        with_entropy=config.entropy_coef > 0, entropy_grad=True, plan=plan)
    policy_loss, metrics = ppo_policy_loss(logprobs, frozen.old_logprobs[rows], advantages,
                                           mask, config.cliprange)
    values = state.critic(ids, attention, rollout.prompt_len)  # (b, T)
    critic_loss, value_metrics = value_loss(values, frozen.values[rows], returns, mask,
                                            config.cliprange_value)
    entropy_loss = torch.zeros((), device=logprobs.device)
    if entropy is not None:
        entropy_loss = -config.entropy_coef * masked_mean(entropy, mask.float())
    loss = policy_loss + config.vf_coef * critic_loss + entropy_loss
    (loss * (float(mask.sum()) / max(minibatch_tokens, 1.0))).backward()
    return metrics | value_metrics | {"loss/entropy": entropy_loss.item(),
                                      "loss/total": loss.item()}


def _optimizer_step(config: PPOConfig, state: _PPOState) -> tuple[float, float]:
    """Clip each network's gradient norm on its own, step both; returns the two norms."""
    limit = config.max_grad_norm or float("inf")  # 0: measure and log, never clip
    policy_norm, critic_norm = (
        float(torch.nn.utils.clip_grad_norm_(group["params"], limit))
        for group in state.optimizer.param_groups)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    return policy_norm, critic_norm


def _checkpoint(config: PPOConfig, state: _PPOState, step: int, sink: MetricsSink) -> str:
    """The policy as a plain model directory; the critic only in the training state."""
    return save_checkpoint(config, state, step, sink, algorithm="ppo",
                           extra_state={"kl_coef": state.kl_coef},
                           before_report=partial(save_critic, cast(Critic, state.critic)))
