"""The device backend a run is prepared with: how its passes, its sampling and its optimizer
run on the machine. The trainers call only this interface:

- ``load(model)``: once per model, as it is loaded,
- ``training_pass(*models)``: around forward and backward passes that train; yields the
  :class:`~training.logprobs.PassPlan` to compute log-probabilities with,
- ``frozen_pass(*models)``: around passes without gradient (inference mode); yields a plan,
- ``decoding(model, rows=, lean=)``: around a decode loop,
- ``optimizer(params, lr=)``, and ``release()`` when the run's steps are done.

:class:`Backend` is plain torch on any device, with the device-independent measures (weight
gradients added in place, fused AdamW). :class:`CpuBackend` adds what pays on a CPU: oneDNN
products where a probe found them faster, weights laid out once for decoding, glibc's heap
kept between steps, the AdamW moments in flat (huge-page) buffers and the weights in the
process's own memory. Each measure has a switch (:class:`~training.config.EngineSwitches`)
so a benchmark can measure what it buys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from training.config import EngineSwitches
from training.heap import (
    KEPT_REUSE_BYTES,
    MMAP_THRESHOLD_BYTES,
    REUSE_THRESHOLD_BYTES,
    release_freed_memory,
    return_freed_memory_to_the_os,
    reuse_freed_memory,
)
from training.kernels import can_pack, cpu_fp32, onednn_is_faster, packed_product
from training.layers import (
    EngineEmbedding,
    EngineLinear,
    LinearMode,
    adopt,
    engine_layers,
    layer_modes,
)
from training.logprobs import PassPlan
from training.runtime import flat_moments, weights_in_own_memory

Modes = dict[EngineLinear, LinearMode]


class Backend:
    """Plain torch on any device (CUDA, or a CPU without the CPU measures)."""

    def __init__(self, device: torch.device, switches: EngineSwitches = EngineSwitches()):
        self.device, self.switches = device, switches

    def start(self) -> None:
        """Process-wide settings, once the run knows its device."""

    def load(self, model: Any) -> Any:
        """``model`` ready for this backend's passes (its layers adopted)."""
        adopt(model)
        return model

    @contextlib.contextmanager
    def training_pass(self, *models: Any) -> Iterator[PassPlan]:
        """Forward and backward passes that train ``models`` (the first: the policy whose
        log-probabilities are computed)."""
        adopt(*models)
        modes = self._modes(models, training=True)
        in_place = [e for e in engine_layers(EngineEmbedding, *models)
                    if self.switches.in_place_gradients and e.weight.requires_grad]
        with layer_modes(modes, in_place), self._training_heap():
            yield self._plan(models, modes)

    @contextlib.contextmanager
    def frozen_pass(self, *models: Any) -> Iterator[PassPlan]:
        """Passes without gradient, in inference mode."""
        adopt(*models)
        modes = self._modes(models, training=False)
        with torch.inference_mode(), layer_modes(modes):
            yield self._plan(models, modes)

    @contextlib.contextmanager
    def decoding(self, model: Any, *, rows: int, lean: bool) -> Iterator[None]:
        """A decode loop of ``rows`` rows; ``lean``: through :mod:`training.llama_decode`,
        which lays its weights out itself."""
        yield

    def optimizer(self, params: Iterable[Any], *, lr: float) -> torch.optim.Optimizer:
        """AdamW without weight decay, fused (one kernel over every tensor, no temporaries
        the size of the model) where torch has that kernel."""
        fused = self.switches.fused_adamw and self.device.type in ("cpu", "cuda")
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused or None)

    def release(self) -> None:
        """What the run's steps kept for the next step, back to the system."""

    # --- what a device specialises ---

    def _onednn(self, layer: EngineLinear, *, training: bool) -> bool:
        return False

    def _training_heap(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def _modes(self, models: tuple[Any, ...], *, training: bool) -> Modes:
        modes: Modes = {}
        for layer in engine_layers(EngineLinear, *models):
            in_place = (training and self.switches.in_place_gradients
                        and layer.weight.requires_grad)
            onednn = self._onednn(layer, training=training)
            if in_place or onednn:
                modes[layer] = LinearMode(in_place=in_place, onednn=onednn)
        return modes

    def _plan(self, models: tuple[Any, ...], modes: Modes) -> PassPlan:
        head = modes.get(_head(models[0])) if models else None
        return PassPlan(head_in_place=bool(head and head.in_place),
                        head_onednn=bool(head and head.onednn),
                        fused_head=self.switches.fused_head,
                        share_prompts=self.switches.share_prompts)


class CpuBackend(Backend):
    """The CPU: oneDNN where faster, laid-out decode weights, a kept heap, flat AdamW
    moments, weights in the process's own memory (docs/performance.md has what each buys)."""

    def start(self) -> None:
        if self.switches.return_freed_memory:
            return_freed_memory_to_the_os()

    def load(self, model: Any) -> Any:
        return super().load(weights_in_own_memory(model))

    @contextlib.contextmanager
    def decoding(self, model: Any, *, rows: int, lean: bool) -> Iterator[None]:
        """Each fp32 layer multiplies by a copy of its weight laid out once for ``rows``-row
        products (any row count still works): a plain call re-lays the weight out on every
        product, and a decode step reads every weight once. The copies (the size of the
        weights) are freed on the way out; the weights must not change inside. Where torch
        has no such layout, oneDNN as in a frozen pass."""
        adopt(model)
        modes: Modes = {}
        if not lean:
            modes = self._packed(model, rows) or self._modes((model,), training=False)
        with layer_modes(modes), reuse_freed_memory(
                REUSE_THRESHOLD_BYTES, keep=self.switches.keep_heap_between_steps):
            yield
        modes.clear()  # drops the copies now, not at the caller's next collection

    def optimizer(self, params: Iterable[Any], *, lr: float) -> torch.optim.Optimizer:
        optimizer = super().optimizer(params, lr=lr)
        if self.switches.fused_adamw:
            flat_moments(optimizer)
        return optimizer

    def release(self) -> None:
        release_freed_memory()

    def _onednn(self, layer: EngineLinear, *, training: bool) -> bool:
        choice = self.switches.onednn
        if choice == "never" or (training and not self.switches.onednn_training) \
                or not cpu_fp32(layer.weight):
            return False
        return choice == "always" or onednn_is_faster(layer.in_features, layer.out_features)

    def _training_heap(self) -> contextlib.AbstractContextManager[None]:
        """The updates' blocks under 8 MB come from the heap, kept for the next step's update
        (every step allocates the same activations and gradients again)."""
        below = KEPT_REUSE_BYTES if self.switches.keep_training_heap else MMAP_THRESHOLD_BYTES
        return reuse_freed_memory(below, keep=self.switches.keep_heap_between_steps)

    def _packed(self, model: Any, rows: int) -> Modes:
        if self.switches.onednn == "never" or not self.switches.packed_decode:
            return {}
        layers = [m for m in engine_layers(EngineLinear, model) if cpu_fp32(m.weight)]
        if not layers or not all(can_pack(m.weight) for m in layers):
            return {}
        products = [packed_product(m.weight, m.bias, rows) for m in layers]
        if any(p is None for p in products):
            return {}
        return {m: LinearMode(packed=p) for m, p in zip(layers, products, strict=True)}


def _head(model: Any) -> Any:
    """The LM head of a causal LM (PEFT-wrapped or not); a bare linear layer is its own."""
    if isinstance(model, EngineLinear):
        return model
    get = getattr(model, "get_output_embeddings", None)
    return get() if callable(get) else None


def backend_for(device: torch.device, switches: EngineSwitches = EngineSwitches()) -> Backend:
    """The backend for ``device``: the CPU's own, or plain torch (CUDA and the rest)."""
    return CpuBackend(device, switches) if device.type == "cpu" else Backend(device, switches)
