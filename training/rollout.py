"""Sampling completions from the policy and scoring their tokens' log-probabilities."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, StoppingCriteria, StoppingCriteriaList

from training.backend import Backend, backend_for
from training.decode import decoder_and_head, sample, uses_lean_decoder
from training.logprobs import completion_logprobs

__all__ = ["Rollout", "completion_logprobs", "generate", "prompt_text", "render_prompt"]

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
             min_new_tokens: int = 0, backend: Backend | None = None) -> Rollout:
    """Sample ``group_size`` completions for each rendered prompt, with the KV cache: our own
    loop (:mod:`training.decode`, each prompt computed once for its group) where the
    architecture allows, else ``model.generate``; decoding as ``backend`` (by default the
    model's device's) says."""
    device = next(model.parameters()).device
    backend = backend or backend_for(device)
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True,
                    max_length=max_prompt_tokens, add_special_tokens=False)
    unique_ids, unique_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    prompt_ids = unique_ids.repeat_interleave(group_size, dim=0)  # (B, P)
    prompt_mask = unique_mask.repeat_interleave(group_size, dim=0)
    eos = eos_token_ids(model, tokenizer)
    poll = _PollStop(should_stop)
    was_training = model.training
    model.eval()
    switches = backend.switches
    if switches.own_sampler and decoder_and_head(model) is not None:
        lean = switches.lean_decoder and uses_lean_decoder(
            model, capacity=prompt_ids.shape[1] + max_new_tokens)
        with backend.decoding(model, rows=prompt_ids.shape[0], lean=lean):
            completion_ids, _ = sample(
                model, unique_ids, unique_mask, group_size=group_size,
                max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, eos=eos,
                pad_id=tokenizer.pad_token_id, min_new_tokens=min_new_tokens, stop=poll,
                lean=lean)
    else:
        gen_config = GenerationConfig(
            do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        sequences = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                                   generation_config=gen_config,
                                   stopping_criteria=StoppingCriteriaList([poll]))
        completion_ids = sequences[:, prompt_ids.shape[1]:]  # (B, T)
    model.train(was_training)
    completion_ids = completion_ids.clone()  # a plain tensor: inference tensors cannot be
    # saved for backward, and the embedding saves its ids
    prompt_len = prompt_ids.shape[1]
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
