"""Micro-batch sizes from a memory budget: the engine's default, so a default run fits.

A step's memory is the weights, gradients and optimizer state (fixed) plus the activations
that autograd keeps between the forward and the backward of one micro-batch (grows with its
rows). Splitting changes only the second: losses are weighted over the whole step
(:func:`training.losses.token_weights`), so the update is the same for every split.

The activation estimate comes from the model's shape, as what a Llama-style layer saves per
token (in the parameters' dtype):
- attention: the normed input, q, k, v (before and after rotary), the attention output and
  the output projection's input: about 10 x hidden (k and v are smaller with grouped heads;
  the rest of the 10 covers the residual stream and the norms' statistics);
- MLP: gate, up, their activation and product: 4 x intermediate;
and per completion token the float32 logits the log-softmax keeps for its backward, twice
(the kept copy plus the chunk being computed). Measured on SmolLM2-135M (30 layers, hidden
576, intermediate 1536) this predicts the peak of one micro-batch within about 15%.

A forward pass without gradient (sampling's log-probs, the reference model's) keeps nothing
between layers: it needs one layer's activations at a time, every layer's keys and values
(each row's copy of its prompt's) and one LM-head chunk, so it runs over many more rows at
once; :func:`inference_bytes` estimates that, and the frozen passes are split by it, not by
the training micro-batch (few-row products are the slow ones on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MB = 2**20


def _layer_bytes_per_token(model_config: Any, param_bytes: int) -> tuple[int, int]:
    """The model's layer count, and what one Llama-style layer keeps per token (see above)."""
    hidden = int(model_config.hidden_size)
    inter = int(getattr(model_config, "intermediate_size", 4 * hidden))
    return int(model_config.num_hidden_layers), (10 * hidden + 4 * inter) * param_bytes


def activation_bytes(model_config: Any, *, rows: int, prompt_tokens: int,
                     completion_tokens: int, group_size: int, param_bytes: int,
                     checkpointing: bool, trunks: int = 1) -> float:
    """Estimated activation memory of one forward/backward over ``rows`` rows, each of
    ``prompt_tokens`` + ``completion_tokens`` tokens, where ``group_size`` adjacent rows share
    their prompt (its forward is done once for them, unless checkpointing). ``trunks``: how
    many networks of this shape run in the same backward (PPO: the policy and the critic)."""
    layers, per_layer = _layer_bytes_per_token(model_config, param_bytes)
    hidden = int(model_config.hidden_size)
    vocab = int(model_config.vocab_size)
    if checkpointing:  # only each layer's input is kept; one layer is recomputed at a time
        per_token = layers * hidden * param_bytes
        prompts = rows
        recompute = per_layer * rows * (prompt_tokens + completion_tokens)
    else:
        per_token = layers * per_layer
        prompts = math.ceil(rows / max(1, group_size)) if group_size > 1 else rows
        recompute = 0
    tokens = prompts * prompt_tokens + rows * completion_tokens
    logits = 2 * rows * completion_tokens * vocab * 4
    return trunks * (per_token * tokens + recompute) + logits


def inference_bytes(model_config: Any, *, rows: int, prompt_tokens: int,
                    completion_tokens: int, param_bytes: int, head_chunk_bytes: int) -> float:
    """Estimated transient memory of one forward without gradient over ``rows`` rows: one
    layer's activations, the keys and values of every layer for every row, the attention
    scores of one layer (if the kernel materialises them) and two LM-head chunks."""
    layers, per_layer = _layer_bytes_per_token(model_config, param_bytes)
    hidden = int(model_config.hidden_size)
    heads = int(getattr(model_config, "num_attention_heads", 1))
    head_dim = int(getattr(model_config, "head_dim", None) or hidden // heads)
    kv_dim = int(getattr(model_config, "num_key_value_heads", None) or heads) * head_dim
    length = prompt_tokens + completion_tokens
    tokens = rows * length
    one_layer = per_layer * tokens
    keys_values = 2 * layers * kv_dim * param_bytes * tokens
    scores = rows * heads * length * length * 4
    return one_layer + keys_values + scores + 2 * head_chunk_bytes


SPLIT_MIN_SAVING = 0.1
"""Over the budget, a smaller micro-batch is taken only when it saves more than this share."""


def largest_split(total_rows: int, budget_mb: float, estimate: Callable[[int], float]) -> int:
    """The largest divisor of ``total_rows`` whose ``estimate(rows)`` in bytes fits in
    ``budget_mb``; where none fits, the largest needing at most ``SPLIT_MIN_SAVING`` more
    than the least (estimates are not that exact, and a smaller split costs time)."""
    divisors = [d for d in range(total_rows, 0, -1) if total_rows % d == 0]
    least = min(estimate(rows) for rows in divisors)
    limit = max(budget_mb * MB, least * (1 + SPLIT_MIN_SAVING))
    return next(rows for rows in divisors if estimate(rows) <= limit)


def auto_micro_batch(total_rows: int, budget_mb: float, *, grad_bytes: float = 0.0,
                     **shape: Any) -> int:
    """:func:`largest_split` of ``total_rows`` by transient memory. A split holds the
    gradients accumulated so far (``grad_bytes``, the trainable parameters') beside each
    later micro-batch's activations; one pass holds the larger of the two, since its
    gradients appear as the backward frees the activations. So where the gradients outweigh
    what a split saves (PPO: two networks' gradients against a few rows' activations) one
    pass is about the smallest and the fastest, and one-row splits would only cost time.
    ``shape`` as :func:`activation_bytes` takes it, without ``rows``."""
    def transient(rows: int) -> float:
        activations = activation_bytes(rows=rows, **shape)
        return activations + grad_bytes if rows < total_rows else max(activations, grad_bytes)

    return largest_split(total_rows, budget_mb, transient)
