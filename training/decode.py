"""Sampling loop of our own: the prompt computed once per group, a preallocated KV cache, and
a cheap categorical draw, instead of ``model.generate``.

Why not ``generate``: its per-step Python (logits processors, stopping criteria, cache
bookkeeping) and its KV cache, which grows by concatenation (every step copies every layer's
keys and values), cost a fifth of the decode on a CPU; and it computes a group's prompt G
times although the G rows share it. Here the prompt's keys and values are computed for each
distinct prompt and copied to its G rows, then each step writes one position into a buffer
sized for the whole completion.

Where the architecture is one :mod:`training.llama_decode` reproduces (Llama, SmolLM,
Qwen2, plain LoRA adapters or none), the prefill and each step run through its lean layers on
its own cache; otherwise through the model's forward on a :class:`PreallocatedLayer` cache.

The draw is the same distribution as ``generate``'s (temperature, then nucleus), sampled by
inverting the cumulative distribution with one uniform number per row, which is cheaper than
``torch.multinomial``'s exponential per vocabulary entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from training import llama_decode


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer of ``capacity`` positions, filled in place.
    Inference only: writing in place would corrupt tensors saved for a backward pass."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            batch, heads, _, dim = key_states.shape
            shape = (batch, heads, self.capacity, dim)
            self.keys = key_states.new_empty(shape)  # (B, H, capacity, D)
            self.values = value_states.new_empty(shape)
            self.device, self.is_initialized = key_states.device, True
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        end = self.length + key_states.shape[-2]
        keys[:, :, self.length:end] = key_states
        values[:, :, self.length:end] = value_states
        self.length = end
        return keys[:, :, :end], values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query: int | torch.Tensor, *args: Any) -> tuple[int, int]:
        # transformers 5 passes the query length; 4.x passed the query's cache positions
        query_length = query if isinstance(query, int) else int(query.shape[0])
        return self.length + query_length, 0

    def get_max_length(self) -> int:
        return self.capacity

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.keys is not None and self.values is not None:
            self.keys = self.keys.index_select(0, beam_idx.to(self.keys.device))
            self.values = self.values.index_select(0, beam_idx.to(self.values.device))


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """The transformer trunk (hidden states) and the LM head of a causal LM, PEFT-wrapped or
    not; None for architectures whose logits are more than ``head(hidden)`` (soft-capping,
    scaling), which then go through the model's own forward."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if getattr(config, "final_logit_softcapping", None) or hasattr(config, "logit_scale"):
        return None
    decoder = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings()
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def uses_lean_decoder(model: Any, *, capacity: int | None = None) -> bool:
    """Whether :func:`sample` decodes ``model`` with :mod:`training.llama_decode`'s steps
    (which lay their weights out themselves) rather than the model's own forward, for
    sequences of up to ``capacity`` positions (None: of any length)."""
    parts = decoder_and_head(model)
    return parts is not None and llama_decode.supports(model, *parts, capacity=capacity)


def cache_kwarg(decoder: Any) -> str:
    """transformers 5 names the cache argument ``cache``; earlier versions ``past_key_values``."""
    params = inspect.signature(type(decoder).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(num_layers: int, capacity: int) -> Cache:
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])


def sample_next(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row (B,) from ``softmax(logits / temperature)`` restricted to the nucleus
    ``top_p`` (the smallest set of tokens holding that much probability, as transformers'
    TopPLogitsWarper: at least one token is always kept)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the tokens more likely than it already hold top_p
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    cdf = probs.cumsum(dim=-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(1).clamp(max=cdf.shape[1] - 1)  # (B,)


def _model_steps(decoder: Any, head: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 positions: torch.Tensor, rows: torch.Tensor, max_new_tokens: int
                 ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The next token's logits after the prompts (B, V), and a function from one more token
    per row (B,) to the logits after it, through the model's own forward."""
    kwarg = cache_kwarg(decoder)
    width = prompt_ids.shape[1]
    cache = new_cache(decoder.config.num_hidden_layers, width + max_new_tokens)
    hidden = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                     use_cache=True, **{kwarg: cache}).last_hidden_state[:, -1]  # (N, H)
    cache.reorder_cache(rows)  # type: ignore[arg-type]  # the prompt's keys and values, copied to its G rows
    mask = torch.cat([prompt_mask.index_select(0, rows),
                      prompt_mask.new_ones(len(rows), max_new_tokens)], dim=1)  # (B, P + T)
    next_position = positions[:, -1:].index_select(0, rows) + 1  # (B, 1)
    step = 0

    def advance(token: torch.Tensor) -> torch.Tensor:
        nonlocal step
        step += 1
        hidden = decoder(input_ids=token.unsqueeze(1), attention_mask=mask[:, :width + step],
                         position_ids=next_position + step - 1, use_cache=True,
                         **{kwarg: cache}).last_hidden_state[:, -1]  # (B, H)
        return head(hidden)

    return head(hidden).index_select(0, rows), advance


@torch.inference_mode()
def sample(model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *,
           group_size: int, max_new_tokens: int, temperature: float, top_p: float,
           eos: list[int], pad_id: int, min_new_tokens: int = 0,
           stop: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
           lean: bool = True) -> tuple[torch.Tensor, bool]:
    """``group_size`` completions of each prompt row (N, P), left-padded; returns the
    completion ids (N * G, T) with ``pad_id`` after each row's EOS (T <= max_new_tokens: the
    loop ends when every row has ended) and whether ``stop`` interrupted it. Rows of a group
    are adjacent. With ``lean`` off the model's own forward decodes every architecture."""
    parts = decoder_and_head(model)
    assert parts is not None, "this architecture samples through generate()"
    n, width = prompt_ids.shape
    rows = torch.arange(n, device=prompt_ids.device).repeat_interleave(group_size)  # (B,)
    positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # (N, P), as the training passes
    decoder = llama_decode.lean_decoder(model, *parts, rows=len(rows),
                                        capacity=width + max_new_tokens) if lean else None
    advance: Callable[[torch.Tensor], torch.Tensor]
    if decoder is not None:
        logits = decoder.prefill(prompt_ids, prompt_mask, positions, rows)
        advance = decoder.step
    else:
        logits, advance = _model_steps(*parts, prompt_ids, prompt_mask, positions, rows,
                                       max_new_tokens)
    eos_ids = torch.tensor(eos, device=prompt_ids.device)
    done = torch.zeros(len(rows), dtype=torch.bool, device=prompt_ids.device)
    tokens: list[torch.Tensor] = []
    for t in range(max_new_tokens):
        if t < min_new_tokens:
            logits[:, eos_ids] = float("-inf")
        token = sample_next(logits, temperature, top_p).masked_fill(done, pad_id)  # (B,)
        tokens.append(token)
        done |= torch.isin(token, eos_ids)
        completion = torch.stack(tokens, dim=1)  # (B, t + 1)
        if bool(done.all()) or t + 1 == max_new_tokens:
            return completion, False
        if stop is not None and bool(stop(completion, logits).any()):
            return completion, True
        logits = advance(token)
    raise AssertionError("unreachable: the loop returns at its last step")
