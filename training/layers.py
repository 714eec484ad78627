"""The engine's layers: ``nn.Linear`` and ``nn.Embedding`` subclasses that a backend
(:mod:`training.backend`) steers by a mode attribute, instead of replacing any module's
``forward``.

:func:`adopt` turns a model's plain layers into these once (the parameters, their names and
the state dict stay as they were; FSDP and ``torch.compile`` see ordinary modules with a
class-defined forward). With no mode set a layer computes exactly as its plain class. Inside a
backend's pass, :func:`layer_modes` gives chosen layers a mode for the pass's duration:
- in place: the weight's gradient is added straight into ``weight.grad`` (:class:`_Linear`,
  :class:`_Embedding`; Megatron-LM's "gradient accumulation fusion"),
- oneDNN: the products go through oneDNN rather than torch's default BLAS,
- packed: an inference product by a copy of the weight laid out once for few-row products.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import torch

from training.kernels import add_product_to_grad, linear_product, onednn_mm

Product = Callable[[torch.Tensor], torch.Tensor]
L = TypeVar("L", bound=torch.nn.Module)


class LinearMode(NamedTuple):
    """How an :class:`EngineLinear` computes inside a pass."""

    in_place: bool = False  # the weight gradient added straight into .grad
    onednn: bool = False  # products through oneDNN
    packed: Product | None = None  # inference only: the product by a laid-out weight copy


class _Linear(torch.autograd.Function):
    """``F.linear`` for passes that train, through oneDNN (``mode.onednn``) or torch's default
    BLAS. With ``mode.in_place`` the weight gradient is added straight into ``weight.grad``:
    autograd's way makes a fresh tensor for every product's weight gradient, then adds it to
    ``.grad``; the LM head's weight gradient is computed once per few-row chunk of the logits,
    so a micro-batch of SmolLM2 made eight fresh 113 MB tensors (pages the kernel zeroes
    first) and eight adds over 113 MB, and every micro-batch after the first a fresh copy of
    all the weight gradients. The weight's entry in the backward is then None: nothing else
    accumulates it. With oneDNN, the input's gradient (and the weight's) goes through oneDNN
    for layers that widen (the MLP's gate and up projections, the LM head), where that was
    measured faster."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, mode: LinearMode) -> torch.Tensor:
        ctx.save_for_backward(x)
        # the parameter itself, not a saved copy of it: the backward writes its .grad
        ctx.weight, ctx.mode, ctx.has_bias = weight, mode, bias is not None
        return linear_product(x, weight, bias, mode.onednn)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        (x,), weight, mode = ctx.saved_tensors, ctx.weight, ctx.mode
        oned = mode.onednn and weight.shape[0] > weight.shape[1]
        g = grad.reshape(-1, grad.shape[-1])  # (N, out)
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (onednn_mm(g, weight.t()) if oned else g @ weight).view(x.shape)
        if ctx.needs_input_grad[1] and mode.in_place:
            add_product_to_grad(weight, g.t(), flat, oned)
        elif ctx.needs_input_grad[1]:
            grad_w = onednn_mm(g.t(), flat.t()) if oned else g.t() @ flat
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dim=0)
        return grad_x, grad_w, grad_b, None


class _Embedding(torch.autograd.Function):
    """An embedding lookup whose weight gradient is added straight into ``weight.grad`` at the
    looked-up rows. Autograd's backward zeroes a whole (vocab, hidden) tensor (113 MB for
    SmolLM2) to scatter a micro-batch's few hundred rows into, then adds it to ``.grad``;
    where the weight is tied to the LM head, ``.grad`` already exists by then. Rows of
    ``padding_idx`` get no gradient, as ``nn.Embedding``'s."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                padding_idx: int | None) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.weight, ctx.padding_idx = weight, padding_idx  # the parameter: see _Linear
        return torch.nn.functional.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:  # type: ignore[override]
        (ids,), weight = ctx.saved_tensors, ctx.weight
        ids, rows = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
        if ctx.padding_idx is not None:
            keep = ids != ctx.padding_idx
            ids, rows = ids[keep], rows[keep]
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        weight.grad.index_add_(0, ids, rows.to(weight.grad.dtype))
        return None, None, None


class EngineLinear(torch.nn.Linear):
    """``nn.Linear`` that computes by its :class:`LinearMode` while a pass sets one."""

    engine_mode: LinearMode | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.engine_mode
        if mode is None:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        if mode.packed is not None:
            return mode.packed(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _Linear.apply(x, self.weight, self.bias, mode)
        return linear_product(x, self.weight, self.bias, mode.onednn)


class EngineEmbedding(torch.nn.Embedding):
    """``nn.Embedding`` that adds its weight gradient in place while a pass says so."""

    engine_in_place: bool = False

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.engine_in_place and torch.is_grad_enabled() and self.weight.requires_grad:
            return _Embedding.apply(ids, self.weight, self.padding_idx)
        return super().forward(ids)


def adopt(*models: Any) -> None:
    """Every plain ``nn.Linear`` and ``nn.Embedding`` of the models (not their subclasses,
    whose forward may differ) becomes an :class:`EngineLinear` / :class:`EngineEmbedding`.
    Idempotent; the layers compute as before until a pass sets a mode."""
    for model in models:
        for module in model.modules():
            if type(module) is torch.nn.Linear:
                module.__class__ = EngineLinear
            elif type(module) is torch.nn.Embedding and module.max_norm is None \
                    and not module.scale_grad_by_freq and not module.sparse:
                module.__class__ = EngineEmbedding


def is_plain_linear(module: Any) -> bool:
    """A layer computing exactly ``x @ weight.T + bias``: ``nn.Linear`` or ours."""
    return type(module) in (torch.nn.Linear, EngineLinear)


def is_plain_embedding(module: Any) -> bool:
    return type(module) in (torch.nn.Embedding, EngineEmbedding)


def engine_layers(kind: type[L], *models: Any) -> list[L]:
    """The models' layers of ``kind`` (:class:`EngineLinear` or :class:`EngineEmbedding`),
    each once (a layer two models share too)."""
    found: dict[int, L] = {}
    for model in models:
        for module in model.modules():
            if type(module) is kind:
                found.setdefault(id(module), module)
    return list(found.values())


_UNSET = object()


@contextlib.contextmanager
def layer_modes(linears: Mapping[EngineLinear, LinearMode],
                in_place_embeddings: Iterable[EngineEmbedding] = ()) -> Iterator[None]:
    """Each linear layer computes by its mode, and each embedding adds its gradient in place,
    while inside; afterwards every layer is back to what it was."""
    embeddings = list(in_place_embeddings)
    before: list[tuple[torch.nn.Module, Any]] = [
        (m, m.__dict__.get("engine_mode", _UNSET)) for m in linears]
    before += [(e, e.__dict__.get("engine_in_place", _UNSET)) for e in embeddings]
    for linear, mode in linears.items():
        linear.engine_mode = mode
    for embedding in embeddings:
        embedding.engine_in_place = True
    try:
        yield
    finally:
        for layer, value in before:
            name = "engine_mode" if isinstance(layer, EngineLinear) else "engine_in_place"
            if value is _UNSET:
                layer.__dict__.pop(name, None)
            else:
                setattr(layer, name, value)
