"""Device, dtype, seeding, timing and memory of a run: the helpers every backend and trainer
shares (the backends themselves are in :mod:`training.backend`)."""

from __future__ import annotations

import random
import resource
import sys
import time
from typing import Any

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda.{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def use_gradient_checkpointing(model: Any, enabled: bool) -> Any:
    """Turn on activation recomputation for a model about to be trained. transformers only
    recomputes in training mode, so the model is put in it (Llama has no dropout to wake)."""
    if enabled:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
    return model


def weights_in_own_memory(model: Any) -> Any:
    """``model`` with its trainable CPU weights copied out of the checkpoint file's mapping.
    transformers maps a safetensors file copy-on-write, so the first optimizer step writes
    every weight page for the first time: a page fault and a 4 kB copy each (131,000 for
    SmolLM2). One copy now, in memory of the process's own (huge pages from 2 MB up), costs a
    fraction of that (docs/performance.md). Tied weights stay tied (one parameter, copied
    once)."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.device.type == "cpu":
                param.data = param.data.clone()
    return model


def resident_peak_mb() -> float:
    """The process's peak resident memory: Linux's VmHWM, the high-water mark of this process
    image's own memory. Not ``ru_maxrss``, which a process started by another keeps from its
    parent (fork copies the parent's resident count, and exec folds it into the maximum), so
    a run started from a 1 GB process would never read below 1 GB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated by tensors on CUDA; peak resident memory of the whole
    process on the CPU (a worker child runs one task, so that is the run's)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resident_peak_mb()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall seconds of each phase of a step, summed over its micro-batches. ``lap(name)``
    charges the time since the previous lap to ``name``; it waits for the device first, so
    GPU work queued in a phase is counted in that phase."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now

    def metrics(self) -> dict[str, float]:
        return {f"perf/{name}_s": value for name, value in self.seconds.items()}


def flat_moments(optimizer: torch.optim.Optimizer) -> None:
    """AdamW's two moments as views of two flat buffers (per parameter group and dtype), made
    before the first step. AdamW makes them on its first step, two tensors per parameter, most
    under the 2 MB where huge pages start: for SmolLM2 1 GB faulted in 4 kB at a time (about
    105,000 page faults in the first step's optimizer); two large buffers are backed by huge
    pages. Same zeros, same kernel, same update. A checkpoint saves each view on its own
    (:func:`training.checkpoints._flatten_optimizer` copies it out), and a restored state
    replaces the views."""
    from torch.optim.optimizer import _get_scalar_dtype

    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        for dtype in {p.dtype for p in params}:
            same = [p for p in params if p.dtype == dtype]
            total = sum(p.numel() for p in same)
            flats = [torch.zeros(total, dtype=dtype, device=same[0].device) for _ in range(2)]
            offset = 0
            for p in same:
                views = [flat[offset:offset + p.numel()].view_as(p) for flat in flats]
                step = (torch.zeros((), dtype=_get_scalar_dtype(is_fused=True), device=p.device)
                        if group["fused"] else torch.tensor(0.0, dtype=_get_scalar_dtype()))
                optimizer.state[p] = {"step": step, "exp_avg": views[0], "exp_avg_sq": views[1]}
                offset += p.numel()
