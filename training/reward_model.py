"""Reward model: a sequence classifier with one scalar output, fitted on preference pairs with
the Bradley-Terry loss (Stiennon et al. 2020, Ouyang et al. 2022), plain PyTorch.

Where this departs from the papers, and why:
- The loss subtracts an optional per-pair ``margin`` inside the sigmoid (Llama 2): a pair
  preferred strongly must be separated by more. Rows without one use 0.
- A step is one batch of ``batch_size`` pairs; chosen and rejected go through one forward pass
  (2 x batch_size sequences). InstructGPT puts all K(K-1)/2 pairs of a prompt in one batch;
  here pairs are drawn independently, without replacement within an epoch.
- The base may be a causal LM (its new ``score`` head reads the last token that is not padding)
  or an encoder such as MiniLM (its ``classifier`` reads the pooled first token); both come from
  ``AutoModelForSequenceClassification`` with ``num_labels=1``. Sequences are padded on the
  right (absolute-position encoders need that) and cut from the left, so the response survives.
- The held-out pairs are a seeded split *by prompt* (:func:`training.reward_data.split_pairs`:
  no prompt on both sides, at least 20 pairs, at most half), measured every ``eval_every``
  steps (default ten times a run) and at the last one: pairwise accuracy, mean margin, loss.
- The length is given in epochs over the training pairs (``max_steps`` caps it), and the run
  stops early when held-out accuracy has not improved for ``early_stop_patience``
  evaluations in a row (the last weights are kept, not the best ones).
- The learning rate is constant after an optional linear warm-up; no reward normalisation or
  centring is applied to the head's output.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from training.algorithms.reward_model import RewardModelConfig
from training.backend import Backend
from training.checkpoints import restore_optimizer, save_checkpoint_dir
from training.data import PromptSampler
from training.loop import TrainResult, prepare, run_steps, warmup_scheduler
from training.metrics import MetricsSink, NullSink, SampleRecord
from training.reward_data import PreferencePair, format_pair, read_pairs, split_pairs
from training.reward_scorer import (
    load_reward_model,
    load_reward_tokenizer,
    rewards_of,
    score_pairs,
)
from training.rollout import prompt_text
from training.runtime import peak_memory_mb, rng_state, set_rng_state, use_gradient_checkpointing

__all__ = ["TrainResult", "bradley_terry_loss", "train"]

EVAL_SAMPLES = 8  # held-out pairs shown in the samples table at each evaluation


# --- loss ---

def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor,
                       margin: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """``mean(-log sigmoid(r_chosen - r_rejected - margin))`` over the batch, all (B,).

    Metrics: ``loss``, ``accuracy`` (share with r_chosen > r_rejected, ties count as wrong),
    ``margin`` (mean r_chosen - r_rejected), ``chosen_mean``, ``rejected_mean``."""
    diff = chosen.float() - rejected.float()  # (B,)
    target = diff if margin is None else diff - margin.to(diff)
    loss = -F.logsigmoid(target).mean()
    metrics = {"loss": loss.item(), "accuracy": (diff > 0).float().mean().item(),
               "margin": diff.mean().item(), "chosen_mean": chosen.float().mean().item(),
               "rejected_mean": rejected.float().mean().item()}
    return loss, metrics


# --- training ---

@dataclass
class _State:
    """What a step needs besides the config; saved with checkpoints for resume."""

    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: PromptSampler
    train_pairs: list[PreferencePair]
    eval_pairs: list[PreferencePair]
    backend: Backend
    prompts: int = 0
    eval_prompts: int = 0
    elapsed_s: float = 0.0
    pairs_total: int = 0
    best_accuracy: float | None = None
    evals_since_best: int = 0

    @property
    def device(self) -> torch.device:
        return self.backend.device


def train(config: RewardModelConfig, *, sink: MetricsSink | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          resume_from: str | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Fit a reward model on ``config.dataset_path``; returns the result and the last step's
    metrics (with the held-out ``eval/*`` ones when the last step was measured)."""
    sink = sink or NullSink()
    state, start = _setup(config, resume_from)
    config = dataclasses.replace(config, max_steps=config.steps_for(len(state.train_pairs)))
    sink.log_total_steps(config.max_steps)
    return run_steps(config, state, _step_with_eval, backend=state.backend, start=start,
                     sink=sink,
                     should_stop=should_stop, save=_checkpoint, stop_check=_early_stop)


def _step_with_eval(config: RewardModelConfig, state: _State, should_stop: Callable[[], bool]
                    ) -> tuple[dict[str, float], list[SampleRecord]]:
    """One update, and on evaluation steps the held-out figures and a few held-out pairs."""
    metrics = reward_model_step(config, state)
    step = state.scheduler.last_epoch  # updates so far, i.e. this step's number
    interval = config.eval_interval(config.max_steps)
    if not state.eval_pairs or (step % interval and step != config.max_steps):
        return metrics, []
    started = time.perf_counter()
    eval_metrics, samples = evaluate(config, state)
    state.elapsed_s += time.perf_counter() - started
    accuracy = eval_metrics["eval/accuracy"]
    if state.best_accuracy is None or accuracy > state.best_accuracy:
        state.best_accuracy, state.evals_since_best = accuracy, 0
    else:
        state.evals_since_best += 1
    split = {"eval/pairs": float(len(state.eval_pairs)),
             "eval/prompts": float(state.eval_prompts),
             "data/train_pairs": float(len(state.train_pairs)),
             "data/prompts": float(state.prompts)}
    return metrics | eval_metrics | split | {"perf/elapsed_s": state.elapsed_s}, samples


def _early_stop(config: RewardModelConfig, state: _State, metrics: dict[str, float]
                ) -> str | None:
    """A reason to stop once held-out accuracy has not improved for the configured number of
    evaluations in a row (checked after evaluation steps only)."""
    patience = config.early_stop_patience
    if "eval/accuracy" not in metrics or not patience or state.evals_since_best < patience:
        return None
    if state.scheduler.last_epoch >= config.max_steps:
        return None  # the last step: the run ends as planned
    return (f"early stop: held-out accuracy has not improved for {patience} evaluations "
            f"(best {state.best_accuracy:.3f})")


def _setup(config: RewardModelConfig, resume_from: str | None) -> tuple[_State, int]:
    backend, dtype, saved = prepare(config, resume_from)
    split = split_pairs(read_pairs(config.dataset_path), config.eval_fraction, config.seed)
    train_pairs, eval_pairs = split.train, split.eval
    tokenizer = load_reward_tokenizer(config.model_path)
    model = backend.load(_load_trainable(config, tokenizer, backend.device, dtype, resume_from,
                                         saved))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = backend.optimizer(params, lr=config.learning_rate)
    scheduler = warmup_scheduler(optimizer, config.warmup_steps)
    sampler = PromptSampler(len(train_pairs), config.seed)
    state = _State(model, tokenizer, optimizer, scheduler, sampler, train_pairs, eval_pairs,
                   backend, prompts=split.prompts, eval_prompts=split.eval_prompts)
    if saved is None:
        return state, 0
    restore_optimizer(optimizer, saved)
    scheduler.last_epoch = saved["step"]
    sampler.load_state(saved["sampler"])
    set_rng_state(saved["rng"])
    state.elapsed_s, state.pairs_total = saved["elapsed_s"], saved["pairs_total"]
    state.best_accuracy = saved.get("best_accuracy")
    state.evals_since_best = int(saved.get("evals_since_best", 0))
    return state, int(saved["step"])


def _load_trainable(config: RewardModelConfig, tokenizer: Any, device: torch.device,
                    dtype: torch.dtype, resume_from: str | None,
                    saved: dict[str, Any] | None) -> Any:
    """The model to fit: every weight, or LoRA adapters plus the whole (new) head."""
    if not config.lora_rank:
        full = load_reward_model(resume_from or config.model_path, tokenizer, dtype=dtype,
                                 device=device)
        return use_gradient_checkpointing(full, config.gradient_checkpointing)
    from peft import LoraConfig, TaskType, get_peft_model, set_peft_model_state_dict

    base = load_reward_model(config.model_path, tokenizer, dtype=dtype, device=device)
    head = [name for name in ("score", "classifier") if hasattr(base, name)]
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_rank,
                      lora_alpha=2 * config.lora_rank, target_modules="all-linear",
                      lora_dropout=0.0, modules_to_save=head)
    model = get_peft_model(base, lora)
    if saved is not None and saved["adapter"] is not None:
        set_peft_model_state_dict(model, saved["adapter"])
    return use_gradient_checkpointing(model, config.gradient_checkpointing)


def reward_model_step(config: RewardModelConfig, state: _State) -> dict[str, float]:
    """One optimiser update on a batch of ``batch_size`` training pairs."""
    started = time.perf_counter()
    # --- batch ---
    batch = [state.train_pairs[i] for i in state.sampler.next(config.batch_size)]
    chosen = [format_pair(state.tokenizer, p.prompt, p.chosen) for p in batch]
    rejected = [format_pair(state.tokenizer, p.prompt, p.rejected) for p in batch]
    margin = torch.tensor([p.margin for p in batch], device=state.device)  # (B,)
    # --- update ---
    with state.backend.training_pass(state.model):
        rewards = rewards_of(state.model, state.tokenizer, chosen + rejected,
                             config.max_length)  # (2B,) chosen first
        loss, m = bradley_terry_loss(rewards[:len(batch)], rewards[len(batch):], margin)
        loss.backward()
    params = [p for p in state.model.parameters() if p.requires_grad]
    lr = state.optimizer.param_groups[0]["lr"]
    # max_grad_norm 0 means no clipping; the norm is still measured and logged
    grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    # --- log ---
    step_s = time.perf_counter() - started
    state.elapsed_s += step_s
    state.pairs_total += len(batch)
    return {
        "loss/train": m["loss"],
        "reward/chosen_mean": m["chosen_mean"],
        "reward/rejected_mean": m["rejected_mean"],
        "reward/margin_mean": m["margin"],
        "train/accuracy": m["accuracy"],
        "optim/lr": lr,
        "optim/grad_norm": float(grad_norm),
        "perf/step_s": step_s,
        "perf/pairs_per_s": len(batch) / step_s if step_s > 0 else 0.0,
        "perf/peak_mem_mb": peak_memory_mb(state.device),
        "perf/elapsed_s": state.elapsed_s,
        "perf/pairs_total": float(state.pairs_total),
    }


def evaluate(config: RewardModelConfig, state: _State
             ) -> tuple[dict[str, float], list[SampleRecord]]:
    """Accuracy, mean margin and loss on the held-out pairs, and the first few of them."""
    pairs = state.eval_pairs
    state.model.eval()
    try:
        with state.backend.frozen_pass(state.model):
            batch = max(1, 2 * config.batch_size)
            prompts = [p.prompt for p in pairs]
            chosen = score_pairs(state.model, state.tokenizer, prompts,
                                 [p.chosen for p in pairs], config.max_length, batch)
            rejected = score_pairs(state.model, state.tokenizer, prompts,
                                   [p.rejected for p in pairs], config.max_length, batch)
    finally:
        state.model.train()
    margin = torch.tensor([p.margin for p in pairs])
    _, m = bradley_terry_loss(chosen, rejected, margin)
    metrics = {"eval/accuracy": m["accuracy"], "eval/margin": m["margin"],
               "eval/loss": m["loss"]}
    samples = [SampleRecord(index=i, prompt=prompt_text(p.prompt), completion=p.chosen,
                            rewards={"chosen": float(chosen[i]), "rejected": float(rejected[i])},
                            reward=float(chosen[i] - rejected[i]), advantage=0.0,
                            rejected=p.rejected)
               for i, p in enumerate(pairs[:EVAL_SAMPLES])]
    return metrics, samples


def _checkpoint(config: RewardModelConfig, state: _State, step: int, sink: MetricsSink) -> str:
    dest = Path(config.output_dir) / f"step-{step}"
    manifest = {"algorithm": "reward_model", "step": step,
                "base_model": config.model_id,
                "hyperparameters": config.hyperparameters(),
                "pairs": {"train": len(state.train_pairs), "eval": len(state.eval_pairs)}}
    save_checkpoint_dir(dest, model=state.model, tokenizer=state.tokenizer, manifest=manifest,
                        optimizer=state.optimizer, lora=bool(config.lora_rank), rng=rng_state(),
                        state={"step": step, "sampler": state.sampler.state(),
                               "elapsed_s": state.elapsed_s,
                               "pairs_total": state.pairs_total,
                               "best_accuracy": state.best_accuracy,
                               "evals_since_best": state.evals_since_best})
    sink.log_checkpoint(step, str(dest))
    return str(dest)
