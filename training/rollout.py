"""Sampling completions from the policy and scoring their tokens' log-probabilities."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, StoppingCriteria, StoppingCriteriaList

Prompt = str | list[dict[str, str]]


@dataclass
class Rollout:
    """A step's completions. Rows are grouped: the G completions of a prompt are adjacent."""

    input_ids: torch.Tensor  # (B, P + T) left-padded prompt, then completion
    attention_mask: torch.Tensor  # (B, P + T)
    action_mask: torch.Tensor  # (B, T) 1 on completion tokens up to and including EOS
    prompt_len: int  # P, the padded prompt width
    completions: list[str]  # decoded, special tokens dropped
    truncated: torch.Tensor  # (B,) bool: no EOS within max_new_tokens
    stopped: bool = False  # generation was interrupted by should_stop

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.action_mask.sum(dim=1)  # (B,)


def prompt_text(prompt: Prompt) -> str:
    """The prompt as a person reads it: plain text, or the messages as ``role: content``."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def render_prompt(tokenizer: Any, prompt: Prompt, use_chat_template: bool) -> str:
    """The text fed to the model. Chat messages always go through the chat template; plain
    text does when ``use_chat_template`` and the tokenizer has one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if isinstance(prompt, list):
        if not has_template:
            return prompt_text(prompt) + "\nassistant: "
        messages = prompt
    elif use_chat_template and has_template:
        messages = [{"role": "user", "content": prompt}]
    else:
        return prompt
    return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True))


class _PollStop(StoppingCriteria):
    """Ends generation early when ``should_stop`` says so, asking at most once a second
    (it may be a database query)."""

    def __init__(self, should_stop: Callable[[], bool], every_s: float = 1.0):
        self.should_stop, self.every_s = should_stop, every_s
        self.last, self.stopped = time.monotonic(), False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any
                 ) -> torch.Tensor:
        now = time.monotonic()
        if not self.stopped and now - self.last >= self.every_s:
            self.last, self.stopped = now, bool(self.should_stop())
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool,
                          device=input_ids.device)


def eos_token_ids(model: PreTrainedModel, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *,
             group_size: int, max_new_tokens: int, temperature: float, top_p: float,
             max_prompt_tokens: int, should_stop: Callable[[], bool] = lambda: False,
             min_new_tokens: int = 0) -> Rollout:
    """Sample ``group_size`` completions for each rendered prompt, with the KV cache."""
    device = next(model.parameters()).device
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True,
                    max_length=max_prompt_tokens, add_special_tokens=False)
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, dim=0).to(device)  # (B, P)
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, dim=0).to(device)
    eos = eos_token_ids(model, tokenizer)
    gen_config = GenerationConfig(
        do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, use_cache=True)
    poll = _PollStop(should_stop)
    was_training = model.training
    model.eval()
    sequences = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                               generation_config=gen_config,
                               stopping_criteria=StoppingCriteriaList([poll]))
    model.train(was_training)
    prompt_len = prompt_ids.shape[1]
    completion_ids = sequences[:, prompt_len:]  # (B, T)
    action_mask, truncated = _completion_mask(completion_ids, eos)
    completion_ids = completion_ids.masked_fill(action_mask == 0, tokenizer.pad_token_id)
    completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + T)
    attention_mask = torch.cat([prompt_mask, action_mask], dim=1)
    return Rollout(input_ids, attention_mask, action_mask, prompt_len, completions,
                   truncated, stopped=poll.stopped)


def _completion_mask(completion_ids: torch.Tensor, eos: list[int]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """1 up to and including the first EOS of each row; rows without EOS are truncated."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos, device=completion_ids.device))
    has_eos = is_eos.any(dim=1)  # (B,)
    length = completion_ids.shape[1]
    first = torch.where(has_eos, is_eos.int().argmax(dim=1),
                        torch.full_like(has_eos, length, dtype=torch.long))
    positions = torch.arange(length, device=completion_ids.device).unsqueeze(0)  # (1, T)
    action_mask = (positions <= first.unsqueeze(1)).long()  # (B, T)
    return action_mask, ~has_eos


def completion_logprobs(model: PreTrainedModel, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, prompt_len: int, temperature: float,
                        *, with_entropy: bool = False, entropy_grad: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (B, T) of the completion tokens under ``model``, at the sampling
    temperature (as TRL: the policy that sampled them is the tempered one), and optionally
    the per-token entropy of that distribution (B, T), without gradient; with
    ``entropy_grad`` the entropy keeps its gradient (for an entropy bonus), computed for the
    whole batch at once.

    Only the last T + 1 positions go through the LM head (``logits_to_keep``), and positions
    follow the attention mask, so left padding gives the same numbers as generation did.
    """
    completion_len = input_ids.shape[1] - prompt_len
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, P + T)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=completion_len + 1, use_cache=False)
    logits = out.logits[:, :-1, :].float() / temperature  # (B, T, V)
    targets = input_ids[:, prompt_len:]  # (B, T)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    entropy = None
    if with_entropy and entropy_grad:
        entropy = _entropy(logits)  # (B, T)
    elif with_entropy:
        with torch.no_grad():
            entropy = torch.stack([_entropy(row) for row in logits.detach()])  # (B, T)
    return logprobs, entropy


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) along the last axis; one row at a time bounds memory."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
