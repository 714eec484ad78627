"""Log-probabilities and entropy of completion tokens, computed without waste.

Two savings over ``model(input_ids).logits``, neither changing a number beyond float rounding:
- Rows whose prompt tokens are identical (the G completions of a GRPO group) share one forward
  pass of the prompt: its keys and values are computed once and copied to each row, then the
  completion tokens attend to them. The copy is differentiable, so the gradient through the
  prompt is the sum over the group's rows, exactly as with G separate passes. A GRPO step of
  56 prompt + 64 completion tokens per row runs 53% fewer tokens through the trunk this way.
- The LM head runs over a few rows at a time on the completion positions only, so the
  float32 ``(B, T, V)`` logits never exist at once beyond what autograd must keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from training.decode import cache_kwarg, decoder_and_head
from training.kernels import add_product_to_grad, onednn_mm
from training.layers import is_plain_linear

CHUNK_ELEMENTS = 2**22  # logits per LM-head chunk: 16 MB in float32


@dataclass(frozen=True)
class PassPlan:
    """How a pass computes log-probabilities, as the backend that opened it says
    (:mod:`training.backend`): where the LM head's weight gradient goes (straight into
    ``.grad`` when its layer adds in place, else to autograd) and whether its products go
    through oneDNN, whether the head's log-probabilities take the fused way, and whether rows
    with one prompt share its pass. The default: plain torch."""

    head_in_place: bool = False
    head_onednn: bool = False
    fused_head: bool = True
    share_prompts: bool = True


PLAIN = PassPlan()


def completion_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        prompt_len: int, temperature: float, *, with_entropy: bool = False,
                        entropy_grad: bool = False, plan: PassPlan = PLAIN
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (B, T) of the completion tokens under ``model``, at the sampling
    temperature (as TRL: the policy that sampled them is the tempered one), and optionally
    the per-token entropy of that distribution (B, T), without gradient; with
    ``entropy_grad`` the entropy keeps its gradient (for an entropy bonus).

    Positions follow the attention mask, so left padding gives the same numbers as
    generation did. With ``plan.share_prompts``, rows with identical prompt tokens share the
    prompt's forward pass (not under gradient checkpointing, which cannot keep a cache).
    """
    parts = decoder_and_head(model)
    targets = input_ids[:, prompt_len:]  # (B, T)
    if parts is None:
        return _through_the_model(model, input_ids, attention_mask, prompt_len, temperature,
                                  with_entropy, entropy_grad)
    decoder, head = parts
    share = plan.share_prompts and not getattr(model, "is_activation_checkpointing", False)
    hidden = (_shared_prompt_hidden(decoder, input_ids, attention_mask, prompt_len) if share
              else _hidden(decoder, input_ids, attention_mask, prompt_len))  # (B, T, H)
    return head_logprobs(head, hidden, targets, temperature, with_entropy=with_entropy,
                         entropy_grad=entropy_grad, plan=plan)


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, L)


def _hidden(decoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            prompt_len: int) -> torch.Tensor:
    """The trunk's last hidden states at the positions that predict each completion token:
    position P - 1 + t predicts token t. (B, T, H)"""
    out = decoder(input_ids=input_ids, attention_mask=attention_mask,
                  position_ids=_positions(attention_mask), use_cache=False)
    return out.last_hidden_state[:, prompt_len - 1:-1]


def _shared_prompt_hidden(decoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          prompt_len: int) -> torch.Tensor:
    """As :func:`_hidden`, with one prompt pass per distinct prompt. (B, T, H)"""
    prompts = torch.cat([input_ids[:, :prompt_len], attention_mask[:, :prompt_len]], dim=1)
    distinct, row_prompt = torch.unique(prompts, dim=0, return_inverse=True)  # (N, 2P), (B,)
    if len(distinct) == len(input_ids):  # nothing to share
        return _hidden(decoder, input_ids, attention_mask, prompt_len)
    positions = _positions(attention_mask)  # (B, P + T)
    # a concatenating cache: autograd needs the prompt's keys as they were (no in-place writes)
    cache = Cache(layers=[DynamicLayer() for _ in range(decoder.config.num_hidden_layers)])
    kwarg = cache_kwarg(decoder)
    prompt_ids, prompt_mask = distinct[:, :prompt_len], distinct[:, prompt_len:]
    last = decoder(input_ids=prompt_ids, attention_mask=prompt_mask,
                   position_ids=_positions(prompt_mask), use_cache=True,
                   **{kwarg: cache}).last_hidden_state[:, -1:]  # (N, 1, H)
    cache.reorder_cache(row_prompt)  # each row gets its prompt's keys and values
    first = last.index_select(0, row_prompt)  # (B, 1, H): predicts completion token 0
    if input_ids.shape[1] - prompt_len == 1:
        return first
    rest = decoder(input_ids=input_ids[:, prompt_len:-1], attention_mask=attention_mask[:, :-1],
                   position_ids=positions[:, prompt_len:-1], use_cache=True,
                   **{kwarg: cache}).last_hidden_state  # (B, T - 1, H)
    return torch.cat([first, rest], dim=1)


def head_logprobs(head: Any, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                  *, with_entropy: bool = False, entropy_grad: bool = False,
                  plan: PassPlan = PLAIN) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log softmax(head(hidden) / temperature)`` read at ``targets`` (B, T), a few positions
    at a time; and the entropy of each position's distribution when asked."""
    if (entropy_grad and with_entropy) or not plan.fused_head or not is_plain_linear(head):
        # the entropy bonus, or a head wrapped (adapters) beyond ``hidden @ weight.T + bias``
        return head_logprobs_autograd(head, hidden, targets, temperature,
                                      with_entropy=with_entropy, entropy_grad=entropy_grad)
    batch, length = targets.shape
    logprobs, entropies = _TargetLogprobs.apply(
        hidden.reshape(batch * length, -1), head.weight, head.bias, targets.reshape(-1),
        temperature, with_entropy, head, plan)
    return logprobs.view(batch, length), (entropies.view(batch, length) if with_entropy
                                          else None)


def _log_softmax_in_place(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` overwritten by their log-softmax along the last axis. The CPU kernel reads a
    row's maximum and sum before it writes the row, so it may write over its input."""
    if logits.device.type == "cpu":
        return torch.ops.aten._log_softmax.out(logits, -1, False, out=logits)
    return torch.log_softmax(logits, dim=-1)


class _TargetLogprobs(torch.autograd.Function):
    """The tokens' log-probabilities (N,) from hidden states (N, H) through the LM head, a
    chunk of positions at a time, and their entropies (N,) without gradient. Autograd's way
    makes five or six vocabulary-sized float32 tensors a chunk in the forward (the logits,
    their tempered copy, logsumexp's exponentials, the entropy's) and as many in the backward
    (logsumexp's softmax, gather's zeros, their sum, the division's gradient): 16 MB each for
    85 positions of SmolLM2, all fresh pages the kernel zeroes first, the largest share of a
    training pass's page faults. Here each chunk's logits are turned into log-probabilities in
    place and kept for the backward, which turns them into the logits' gradient in place
    (``(onehot - softmax) * g / T``), one product per chunk for each of the hidden states' and
    the weight's gradients. The weight's gradient goes where the plan says the head's own
    products put it: straight into ``.grad`` (``plan.head_in_place``), else to autograd."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, targets: torch.Tensor, temperature: float,
                with_entropy: bool, head: Any, plan: PassPlan
                ) -> tuple[torch.Tensor, torch.Tensor]:
        positions, vocab = hidden.shape[0], weight.shape[0]
        step = max(1, CHUNK_ELEMENTS // vocab)
        keep = any(ctx.needs_input_grad[:3])
        logprobs = hidden.new_empty(positions, dtype=torch.float32)
        entropies = hidden.new_empty(positions if with_entropy else 0, dtype=torch.float32)
        scratch: torch.Tensor | None = None
        saved: list[torch.Tensor] = []
        for start in range(0, positions, step):
            end = min(start + step, positions)
            logits = head(hidden[start:end]).float()  # (c, V), fresh
            logits.div_(temperature)
            logp = _log_softmax_in_place(logits)
            logprobs[start:end] = logp.gather(1, targets[start:end, None]).squeeze(1)
            if with_entropy:
                if scratch is None:
                    scratch = torch.empty_like(logp)
                probs = torch.exp(logp, out=scratch[:end - start])
                entropies[start:end] = -probs.mul_(logp).sum(dim=1)
            if keep:
                saved.append(logp)
        if keep:
            ctx.save_for_backward(hidden, targets)
            ctx.chunks, ctx.step, ctx.temperature, ctx.head = saved, step, temperature, head
            ctx.plan = plan
        ctx.mark_non_differentiable(entropies)
        return logprobs, entropies

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, ...]:
        hidden, targets = ctx.saved_tensors
        weight, bias = ctx.head.weight, ctx.head.bias
        in_place, onednn = ctx.plan.head_in_place, ctx.plan.head_onednn
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = grad_bias = None
        scaled = grad.float() / ctx.temperature  # (N,)
        for index, start in enumerate(range(0, hidden.shape[0], ctx.step)):
            logp, ctx.chunks[index] = ctx.chunks[index], None  # freed as soon as it is used
            end = start + logp.shape[0]
            g = scaled[start:end, None]  # (c, 1)
            # d logp[target] / d logits = onehot(target) - softmax, times g / T
            grad_logits = logp.exp_().mul_(-g).scatter_add_(1, targets[start:end, None], g)
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None and onednn:
                grad_hidden[start:end] = onednn_mm(grad_logits, weight.t())
            elif grad_hidden is not None:
                torch.mm(grad_logits, weight, out=grad_hidden[start:end])
            if want_weight:
                if in_place:
                    add_product_to_grad(weight, grad_logits.t(), hidden[start:end], onednn)
                elif grad_weight is None:
                    grad_weight = grad_logits.t() @ hidden[start:end]
                else:
                    grad_weight.addmm_(grad_logits.t(), hidden[start:end])
            if want_bias and bias is not None:
                part = grad_logits.sum(dim=0)
                grad_bias = part if grad_bias is None else grad_bias.add_(part)
        ctx.chunks = []
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None


def head_logprobs_autograd(head: Any, hidden: torch.Tensor, targets: torch.Tensor,
                           temperature: float, *, with_entropy: bool = False,
                           entropy_grad: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """As :func:`head_logprobs`, through plain autograd a few rows at a time: the way for the
    entropy's gradient, and the way when a plan says the fused head is off."""
    batch, length = targets.shape
    vocab = head.weight.shape[0]
    rows = max(1, CHUNK_ELEMENTS // max(1, length * vocab))
    logprobs, entropies = [], []
    for start in range(0, batch, rows):
        logits = head(hidden[start:start + rows]).float() / temperature  # (c, T, V)
        picked = logits.gather(-1, targets[start:start + rows].unsqueeze(-1)).squeeze(-1)
        logprobs.append(picked - logits.logsumexp(dim=-1))  # (c, T)
        if with_entropy and entropy_grad:
            entropies.append(entropy(logits))
        elif with_entropy:
            with torch.no_grad():
                entropies.append(entropy(logits.detach()))
    return torch.cat(logprobs), torch.cat(entropies) if with_entropy else None


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) along the last axis."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def _through_the_model(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       prompt_len: int, temperature: float, with_entropy: bool,
                       entropy_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """For architectures whose logits are more than ``head(hidden)``: the model's own forward,
    only the last T + 1 positions through its head (``logits_to_keep``)."""
    completion_len = input_ids.shape[1] - prompt_len
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=_positions(attention_mask), logits_to_keep=completion_len + 1,
                use_cache=False)
    logits = out.logits[:, :-1, :].float() / temperature  # (B, T, V)
    targets = input_ids[:, prompt_len:]  # (B, T)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    ent = None
    if with_entropy and entropy_grad:
        ent = entropy(logits)  # (B, T)
    elif with_entropy:
        with torch.no_grad():
            ent = torch.stack([entropy(row) for row in logits.detach()])  # (B, T)
    return logprobs, ent
