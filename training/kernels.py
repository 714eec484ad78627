"""oneDNN's kernels for fp32 products on the CPU: a plain product, a timed probe of where
oneDNN beats torch's default BLAS, and weights laid out once for few-row products. Only the
CPU backend (:mod:`training.backend`), its layers (:mod:`training.layers`) and the lean decoder
use them."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import torch


def onednn_mm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` through oneDNN (``weight`` may be a transposed view)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")



def linear_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   onednn: bool) -> torch.Tensor:
    """``x @ weight.T + bias``, through oneDNN with ``onednn``, else ``F.linear``."""
    if onednn:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.nn.functional.linear(x, weight, bias)


def add_product_to_grad(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                        onednn: bool) -> None:
    """``weight.grad += a @ b`` in place (the product becomes ``.grad`` the first time, through
    oneDNN with ``onednn``). Adding always goes through BLAS's accumulating product: oneDNN
    has none, and its fresh product plus the add measured slower for every shape of
    SmolLM2's update."""
    if weight.grad is not None:
        weight.grad.addmm_(a, b)
    elif onednn:
        weight.grad = onednn_mm(a, b.t())
    else:
        weight.grad = a @ b


def cpu_fp32(weight: torch.Tensor) -> bool:
    """Whether oneDNN can take products by ``weight``: fp32 on the CPU, oneDNN built in."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available())


PROBE_FLOPS = 2**29  # per probe product: ~20 ms on one core; rows are cut to stay under
PROBE_MARGIN = 0.9  # oneDNN is taken where it needs at most this share of BLAS's time


@functools.cache
def onednn_is_faster(in_features: int, out_features: int) -> bool:
    """Whether oneDNN multiplies an fp32 batch by an (out, in) weight clearly faster than
    torch's default BLAS on this machine: timed once per shape and process, best of five
    each, interleaved, on up to 512 rows (a micro-batch's few sequences; fewer for layers so
    wide that 512 would take long). Which is faster depends on the CPU and the shape (on one
    AVX-512 CPU oneDNN won every layer; on an AVX2 one MKL won the MLP's), hence a probe
    rather than a rule."""
    rows = max(16, min(512, PROBE_FLOPS // (2 * in_features * out_features)))
    local = torch.Generator().manual_seed(0)  # the run's own random stream stays untouched
    x = torch.randn(rows, in_features, generator=local)
    weight = torch.randn(out_features, in_features, generator=local)
    kernels = {"blas": lambda: torch.nn.functional.linear(x, weight),
               "onednn": lambda: onednn_mm(x, weight)}
    best = dict.fromkeys(kernels, float("inf"))
    with torch.no_grad():
        for round_ in range(6):  # the first round warms both up and is not counted
            for name, kernel in kernels.items():
                started = time.perf_counter()
                kernel()
                if round_:
                    best[name] = min(best[name], time.perf_counter() - started)
    return best["onednn"] <= PROBE_MARGIN * best["blas"]


def packed_linear(bias: torch.Tensor | None, packed: torch.Tensor,
                  x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def can_pack(weight: torch.Tensor) -> bool:
    """Whether oneDNN can lay ``weight`` out for few-row products (:func:`packed_product`)."""
    return cpu_fp32(weight) and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def packed_product(weight: torch.Tensor, bias: torch.Tensor | None, rows: int
                   ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``x @ weight.T + bias`` by a copy of ``weight`` laid out once in oneDNN's blocked
    format for ``rows``-row products (any row count still works); None where it cannot be
    (:func:`can_pack`, or a oneDNN build without that layout for this CPU)."""
    if not can_pack(weight):
        return None
    try:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
    except RuntimeError:
        return None
    return functools.partial(packed_linear, bias, packed)
