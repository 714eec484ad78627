"""Prefill and decode steps for Llama-family trunks (Llama, SmolLM, Qwen2, Qwen3, Mistral) in a
few tensor operations a layer, on a KV cache of our own.

Why not the model's own forward inside the decode loop: for the few rows of a decode step the
products are cheap, and what Hugging Face runs around them (a module call per projection and
norm, the mask built anew each step, the rotary angles recomputed in every layer, the attention
interface's dispatch, keys repeated for grouped-query attention) cost about a third of a
SmolLM2 decode step on a CPU. Here:

- on the CPU at fp32, q, k and v are one product and gate and up another, by copies of the
  weights concatenated and laid out once per rollout in oneDNN's blocked format for the
  decode's row count (as :class:`training.backend.CpuBackend`'s decoding does for single layers);
- the rotary table is computed once per rollout, by the model's own rotary module (so every
  scaling type it knows holds), and applied to q and k together;
- grouped-query attention reads the ``n_rep`` query heads that share a key head as ``n_rep``
  query rows of that head, so keys and values are never repeated;
- the mask is a boolean row per sequence, extended in place.

The numbers are the model's own up to float rounding (``tests/test_training_decode.py``
compares logits with the Hugging Face forward, left padding and LoRA adapters included:
merged into the laid-out copies on the CPU at fp32, as PEFT computes them elsewhere).
Qwen3's per-head q/k norms are applied before the rotary, as its attention does; a sliding
window (Mistral, Qwen2/3 with ``use_sliding_window``) is reproduced only where it cannot bite,
when the whole rollout fits in it. Anything else (other adapter kinds, a window shorter than
the rollout, other activations or norms: Gemma, Phi-3's fused projections, GPT-NeoX) is left
to the model's forward: :func:`lean_decoder` returns None.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from training.kernels import can_pack, packed_product
from training.layers import is_plain_embedding, is_plain_linear

SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "mistral")
# rotary types whose angles depend on the sequence length seen so far: one table cannot hold
DYNAMIC_ROPE = ("dynamic", "longrope")

Product = Callable[[torch.Tensor], torch.Tensor]


def _product(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Product:
    """``x @ weight.T + bias`` for 2-D ``x``; on the CPU at fp32 by a copy of ``weight`` laid
    out once for ``rows``-row products (:func:`training.kernels.packed_product`)."""
    return packed_product(weight, bias, rows) or functools.partial(F.linear, weight=weight,
                                                                   bias=bias)


@functools.cache
def _lora_linear() -> Any:
    """PEFT's LoRA ``Linear`` class (imported once: every layer asks), None without PEFT."""
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:
        return None
    return Linear


def _adapters(lora: Any) -> list[tuple[torch.Tensor, torch.Tensor, Any, float]] | None:
    """For PEFT's LoRA ``Linear`` computing ``base(x) + sum(scale * B(A(x)))`` over its active
    adapters (plain LoRA: no DoRA or other variant, not merged, adapters on, no fan-in/fan-out
    transposition): each adapter's (A, B, B's bias, scale); None for anything else."""
    if type(lora) is not _lora_linear() or not is_plain_linear(lora.base_layer):
        return None
    if lora.merged or lora.disable_adapters or lora.fan_in_fan_out:
        return None
    active = [a for a in lora.active_adapters if a in lora.lora_A]
    if any(a in lora.lora_variant for a in active):
        return None
    return [(lora.lora_A[a].weight, lora.lora_B[a].weight, lora.lora_B[a].bias,
             float(lora.scaling[a])) for a in active]


def _base(module: Any) -> torch.nn.Linear:
    return module if is_plain_linear(module) else module.base_layer


def _weight_and_bias(module: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's weight and bias, its LoRA adapters merged in (a fresh copy then)."""
    base, adapters = _base(module), _adapters(module) or []
    weight, bias = base.weight, base.bias
    for a, b, b_bias, scale in adapters:
        weight = weight + (b @ a).to(weight.dtype) * scale
        if b_bias is not None:
            bias = (b_bias * scale).to(weight.dtype) + (0 if bias is None else bias)
    return weight, bias


def _layer_product(module: Any, rows: int) -> Product:
    """``module(x)`` for a plain or LoRA ``Linear``: where weights are laid out anyway (the CPU
    at fp32) by the adapters merged into that copy; elsewhere as PEFT computes it, the base
    product plus each adapter's two thin ones (a merged copy would add the layer's size)."""
    adapters = _adapters(module)
    if not adapters or can_pack(_base(module).weight):
        return _product(*_weight_and_bias(module), rows)
    base = _product(_base(module).weight, _base(module).bias, rows)

    def product(x: torch.Tensor) -> torch.Tensor:
        result = base(x)
        for a, b, b_bias, scale in adapters:
            result = result + F.linear(F.linear(x.to(a.dtype), a), b, b_bias) * scale
        return result.to(x.dtype)

    return product


def _fused(linears: list[Any], rows: int) -> Product:
    """One product for several layers reading the same input, their outputs side by side.
    Where the weights are laid out anyway (the CPU at fp32), into one copy; elsewhere each
    weight stays where it is (a concatenated copy would add their size, gigabytes on a large
    model's GPU) and only the few-row outputs are joined."""
    if not can_pack(_base(linears[0]).weight):
        products = [_layer_product(m, rows) for m in linears]
        return lambda x: torch.cat([product(x) for product in products], dim=-1)
    parts = [_weight_and_bias(m) for m in linears]
    weight = torch.cat([w for w, _ in parts])
    bias = None if parts[0][1] is None else torch.cat([b for _, b in parts])  # type: ignore[misc]
    return _product(weight, bias, rows)


def _reproducible_linear(module: Any) -> bool:
    return is_plain_linear(module) or _adapters(module) is not None


def sliding_window(config: Any) -> int | None:
    """The attention window some layer of the model keeps, or None when every layer sees the
    whole sequence (Mistral's ``sliding_window`` applies to all layers; Qwen2/3 and later
    declare it per layer in ``layer_types``)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not window or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


def _rms_norm_like(norm: Any) -> bool:
    return type(norm).__name__.endswith("RMSNorm") and hasattr(norm, "variance_epsilon")


def _supported(base: Any, decoder: Any, head: Any, capacity: int | None) -> bool:
    config = base.config
    if getattr(config, "model_type", None) not in SUPPORTED_TYPES:
        return False
    if getattr(config, "hidden_act", None) != "silu":
        return False
    window = sliding_window(config)
    if window is not None and (capacity is None or capacity > window):
        return False  # the window would hide keys that the steps here would attend to
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) in DYNAMIC_ROPE:
        return False
    if not (is_plain_linear(head) and is_plain_embedding(decoder.embed_tokens)
            and hasattr(decoder, "rotary_emb") and _rms_norm_like(decoder.norm)):
        return False
    for layer in decoder.layers:
        attn, mlp = layer.self_attn, layer.mlp
        parts = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")] + \
            [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if not all(_reproducible_linear(p) for p in parts):
            return False
        qk_norms = [getattr(attn, n, None) for n in ("q_norm", "k_norm")]
        if any(n is not None for n in qk_norms) and not all(_rms_norm_like(n) for n in qk_norms):
            return False
        if not all(_rms_norm_like(n) for n in (layer.input_layernorm,
                                              layer.post_attention_layernorm)):
            return False
    return True


def _rms_norm(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """Hugging Face's LlamaRMSNorm: normalised in float32, cast back, then scaled."""
    normed = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
    return norm.weight * normed.to(x.dtype)


class _Layer:
    def __init__(self, layer: Any, rows: int):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _fused([attn.q_proj, attn.k_proj, attn.v_proj], rows)
        self.o = _layer_product(attn.o_proj, rows)
        self.gate_up = _fused([mlp.gate_proj, mlp.up_proj], rows)
        self.down = _layer_product(mlp.down_proj, rows)
        self.norm_in, self.norm_post = layer.input_layernorm, layer.post_attention_layernorm
        self.q_norm, self.k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        self.scaling = float(attn.scaling)


class LeanDecoder:
    """The model's prefill and decode steps over a KV cache of ``capacity`` positions. Build
    it with :func:`lean_decoder`; use it inside ``torch.inference_mode`` and drop it after the
    rollout (it holds copies of the weights)."""

    def __init__(self, decoder: Any, head: torch.nn.Linear, rows: int, capacity: int):
        config = decoder.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.capacity = capacity
        self.embedding = decoder.embed_tokens.weight
        self.layers = [_Layer(layer, rows) for layer in decoder.layers]
        self.norm = decoder.norm
        self.head = _product(head.weight, head.bias, rows)
        weight = self.embedding
        positions = torch.arange(capacity, device=weight.device)[None]  # (1, capacity)
        cos, sin = decoder.rotary_emb(weight[:1], positions)  # (1, capacity, D), model dtype
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * sin with the first half's sign flipped
        sign = torch.ones(self.head_dim, device=weight.device, dtype=sin.dtype)
        sign[:half] = -1
        self.cos, self.sin = cos[0], sin[0] * sign  # (capacity, D)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask = torch.empty(0)
        self.positions = torch.empty(0)
        self.length = 0

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                positions: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Runs the distinct prompts (N, P), left-padded, at their ``positions`` (N, P) once;
        fills each sequence's cache with its prompt (sequence b takes prompt ``rows[b]``) and
        returns the logits of the next token (B, V)."""
        n, width = prompt_ids.shape
        keep = prompt_mask.bool()
        causal = torch.ones(width, width, dtype=torch.bool, device=keep.device).tril()
        # a padding position may attend to itself: a row with nothing to attend to would be NaN
        allowed = (causal & keep[:, None, :]) | torch.eye(width, dtype=torch.bool,
                                                          device=keep.device)
        shape = (n, self.kv_heads, self.capacity, self.head_dim)
        self.keys = [self.embedding.new_empty(shape) for _ in self.layers]
        self.values = [self.embedding.new_empty(shape) for _ in self.layers]
        hidden = self._trunk(prompt_ids.reshape(-1), positions.reshape(-1), n, width, 0,
                             allowed[:, None])
        last = hidden.view(n, width, -1)[:, -1]  # (N, H)
        self.keys = [k.index_select(0, rows) for k in self.keys]  # (B, kv, capacity, D)
        self.values = [v.index_select(0, rows) for v in self.values]
        batch = len(rows)
        self.mask = keep.new_zeros(batch, self.capacity)
        self.mask[:, :width] = keep.index_select(0, rows)
        self.positions = positions[:, -1].index_select(0, rows) + 1  # (B,) the next positions
        self.length = width
        return self.head(_rms_norm(last, self.norm)).index_select(0, rows)  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Appends one token per sequence (B,) and returns the next token's logits (B, V)."""
        batch = len(tokens)
        self.mask[:, self.length] = True
        hidden = self._trunk(tokens, self.positions, batch, 1, self.length,
                             self.mask[:, None, None, :self.length + 1])
        self.positions = self.positions + 1
        self.length += 1
        return self.head(_rms_norm(hidden, self.norm))

    def _trunk(self, ids: torch.Tensor, positions: torch.Tensor, batch: int, seq: int,
               start: int, allowed: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch * seq, H) after the last layer; writes the cache's positions
        ``start .. start + seq``. ``allowed`` (batch, 1, seq, start + seq) says which keys
        each query may attend to."""
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        rep, end = h // kv, start + seq
        cos = self.cos.index_select(0, positions)[:, None]  # (batch * seq, 1, D)
        sin = self.sin.index_select(0, positions)[:, None]
        if rep > 1 and seq > 1:  # the n_rep query heads of a key head become query rows
            allowed = allowed.repeat(1, 1, rep, 1)
        x = F.embedding(ids, self.embedding)  # (batch * seq, H)
        for layer, keys, values in zip(self.layers, self.keys, self.values, strict=True):
            qkv = layer.qkv(_rms_norm(x, layer.norm_in)).view(-1, h + 2 * kv, d)
            qk = qkv[:, :h + kv]
            if layer.q_norm is not None:  # Qwen3: each head's q and k normed before the rotary
                qk = torch.cat([_rms_norm(qk[:, :h], layer.q_norm),
                                _rms_norm(qk[:, h:], layer.k_norm)], dim=1)
            qk = qk * cos + qk.roll(d // 2, dims=-1) * sin  # rotary, q and k at once
            q = qk[:, :h].view(batch, seq, h, d).transpose(1, 2)  # (batch, h, seq, D)
            keys[:, :, start:end] = qk[:, h:].view(batch, seq, kv, d).transpose(1, 2)
            values[:, :, start:end] = qkv[:, h + kv:].view(batch, seq, kv, d).transpose(1, 2)
            out = F.scaled_dot_product_attention(
                q.reshape(batch, kv, rep * seq, d), keys[:, :, :end], values[:, :, :end],
                attn_mask=allowed, scale=layer.scaling)  # (batch, kv, rep * seq, D)
            out = out.view(batch, h, seq, d).transpose(1, 2).reshape(batch * seq, h * d)
            x = x + layer.o(out)
            gate, up = layer.gate_up(_rms_norm(x, layer.norm_post)).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        return x


def supports(model: Any, decoder: Any, head: Any, *, capacity: int | None = None) -> bool:
    """Whether ``model`` (PEFT-wrapped or not), whose trunk and LM head are ``decoder`` and
    ``head`` (:func:`training.decode.decoder_and_head`), is one this module reproduces for
    sequences of up to ``capacity`` positions (None: of any length)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _supported(base, decoder, head, capacity)


def lean_decoder(model: Any, decoder: Any, head: Any, *, rows: int, capacity: int
                 ) -> LeanDecoder | None:
    """A :class:`LeanDecoder` for ``model`` where :func:`supports` says so, else None."""
    if not supports(model, decoder, head, capacity=capacity):
        return None
    with torch.no_grad():
        return LeanDecoder(decoder, head, rows, capacity)
