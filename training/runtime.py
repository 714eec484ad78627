"""Device, dtype, seeding and memory: everything that depends on the machine."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
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


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated by tensors on CUDA; peak resident memory of the whole
    process on the CPU (a worker child runs one task, so that is the run's)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# glibc's mallopt parameter for the size above which an allocation gets its own mapping
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024  # glibc's default, which a fixed mmap threshold freezes


@functools.cache
def return_freed_memory_to_the_os() -> bool:
    """Make glibc give every freed tensor of 128 kB or more back to the system at once.

    By default glibc raises its mmap threshold each time a large block is freed (up to
    32 MB), so after the first step most tensors are carved from the heap, and what a step
    frees (activations, gradients set to None) stays in the process: measured on SmolLM2's
    GRPO step, 350 MB more peak RSS and about 1 GB more at rest between steps. Setting the
    threshold fixes it (and turns that adjustment off). True when glibc took the setting;
    elsewhere (musl, macOS) nothing is done. Once per process."""
    global _threshold_fixed
    libc = _glibc()
    _threshold_fixed = libc is not None and bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return _threshold_fixed


_threshold_fixed = False  # whether this process handed freed memory back (and so may reuse)


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  # glibc, not musl
    except (OSError, AttributeError):
        return None
    return libc


# The largest block the heap serves while a decode loop reuses freed memory (glibc's own
# ceiling for its adjusted threshold): a decode step's logits and temporaries, far below it.
REUSE_THRESHOLD_BYTES = 32 * 2**20
# ... and while training passes do, keeping it from one step to the next (GRPO's and PPO's
# updates): blocks from 2 MB up are mapped in transparent huge pages (THP_MEM_ALLOC_ENABLE),
# but only their aligned 2 MB spans, and the rest of a 3 MB MLP activation faults in 4 kB at
# a time, so the heap serves blocks up to 8 MB.
KEPT_REUSE_BYTES = 8 * 2**20
# glibc's trim threshold while the heap keeps its free memory (an int: 1 GiB)
KEPT_TRIM_THRESHOLD_BYTES = 2**30


@contextlib.contextmanager
def reuse_freed_memory(below: int = REUSE_THRESHOLD_BYTES, *, keep: bool = False
                       ) -> Iterator[None]:
    """Inside, when :func:`return_freed_memory_to_the_os` is in force: blocks under ``below``
    bytes come from the heap again, so a loop that allocates and frees the same temporaries
    each iteration (a decode step's logits, probabilities and their sums, 1.5 MB each for 8
    rows of SmolLM2; a training pass's per-layer activations and their gradients) reuses them
    instead of mapping fresh pages, and paying a page fault per 4 kB, every time. On the way
    out the threshold goes back and the heap's free memory is returned to the system
    (``malloc_trim``); with ``keep`` it stays, for the next step's same phase to reuse (the
    steps of a run allocate the same blocks again), until :func:`release_freed_memory`.
    Elsewhere nothing changes."""
    libc, active = _glibc(), _threshold_fixed
    if active:
        libc.mallopt(M_MMAP_THRESHOLD, below)
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD_BYTES if keep else 2 * below)
    try:
        yield
    finally:
        if active:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            if not keep:
                release_freed_memory()


def keep_training_memory() -> contextlib.AbstractContextManager[None]:
    """For GRPO's and PPO's updates: the blocks under 8 MB come from the heap, which keeps
    them for the next step's update (and the rollout's, which keeps its own): every step
    allocates the same activations and gradients again, so after the first step they fault
    in no fresh pages: faster forward and backward passes for a few hundred MB more peak
    (docs/performance.md). :func:`training.loop.run_steps` hands it back at the end of the
    run."""
    return reuse_freed_memory(KEPT_REUSE_BYTES, keep=True)


def release_freed_memory() -> None:
    """What the heap keeps (:func:`reuse_freed_memory` with ``keep``) back to the system,
    and glibc's trimming as usual again."""
    libc = _glibc()
    if _threshold_fixed:
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        libc.malloc_trim(0)


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


def onednn_mm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` through oneDNN (``weight`` may be a transposed view)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _Linear(torch.autograd.Function):
    """``F.linear`` for training passes, through oneDNN (``onednn``) or torch's default BLAS,
    whose weight gradient is added straight into ``weight.grad`` (Megatron-LM's "gradient
    accumulation fusion"). Autograd's way makes a fresh tensor for every product's weight
    gradient, then adds it to ``.grad``: the LM head's weight gradient is computed once per
    few-row chunk of the logits, so a micro-batch of SmolLM2 made eight fresh 113 MB
    tensors (pages the kernel zeroes first) and eight adds over 113 MB; every micro-batch
    after the first, a fresh copy of all 540 MB of weight gradients. The weight's entry in the
    backward is then None: nothing else accumulates it. With oneDNN, the input's gradient
    (and the weight's, then added) goes through oneDNN for layers that widen (the MLP's gate
    and up projections, the LM head), where that was measured faster."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, onednn: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        # the parameter itself, not a saved copy of it: the backward writes its .grad
        ctx.weight, ctx.onednn, ctx.has_bias = weight, onednn, bias is not None
        return _linear_product(x, weight, bias, onednn)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:
        (x,), weight = ctx.saved_tensors, ctx.weight
        oned = ctx.onednn and weight.shape[0] > weight.shape[1]
        g = grad.reshape(-1, grad.shape[-1])  # (N, out)
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        grad_x = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (onednn_mm(g, weight.t()) if oned else g @ weight).view(x.shape)
        if ctx.needs_input_grad[1]:
            add_product_to_grad(weight, g.t(), flat, oned)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dim=0)
        return grad_x, None, grad_b, None


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


def _linear_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    onednn: bool) -> torch.Tensor:
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


def _linear(module: torch.nn.Linear, onednn: bool, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad):
        return _Linear.apply(x, module.weight, module.bias, onednn)
    return _linear_product(x, module.weight, module.bias, onednn)


def grad_mode_of(module: Any) -> tuple[bool, bool]:
    """For a ``Linear`` inside :func:`training_layers` or :func:`onednn_linears`: whether its
    weight gradient is added straight into ``.grad``, and whether its products go through
    oneDNN; (False, False) elsewhere. For code that computes a layer's products itself."""
    forward = module.__dict__.get("forward")
    if isinstance(forward, functools.partial) and forward.func is _linear:
        return True, bool(forward.args[1])
    return False, False


def _embedding(module: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and module.weight.requires_grad:
        return _Embedding.apply(ids, module.weight, module.padding_idx)
    return torch.nn.functional.embedding(ids, module.weight, module.padding_idx)


def _cpu_fp32_linears(models: tuple[Any, ...]) -> list[torch.nn.Linear]:
    """The models' plain fp32 ``Linear`` layers on the CPU, where oneDNN can take them."""
    if not torch.backends.mkldnn.is_available():
        return []
    return [m for model in models for m in model.modules()
            if type(m) is torch.nn.Linear and m.weight.device.type == "cpu"
            and m.weight.dtype == torch.float32]


@contextlib.contextmanager
def _forwards(patches: list[tuple[torch.nn.Module, Any]]) -> Iterator[None]:
    """Each module's forward replaced while inside, the class's forward back afterwards."""
    for module, forward in patches:
        module.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        for module, _ in patches:
            del module.forward


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


@contextlib.contextmanager
def onednn_linears(*models: Any, only_if_faster: bool = True) -> Iterator[None]:
    """While inside, the models' fp32 ``Linear`` layers on the CPU multiply through oneDNN
    rather than torch's default BLAS (MKL), with or without gradient: the same float32
    arithmetic, other kernels. Only the layers whose shape :func:`onednn_is_faster` measured
    faster on this machine are switched (``only_if_faster=False``: all, for tests). Elsewhere
    (CUDA, bf16, no oneDNN) this does nothing."""
    linears = [m for m in _cpu_fp32_linears(models)
               if not only_if_faster or onednn_is_faster(m.in_features, m.out_features)]
    with _forwards([(m, functools.partial(_linear, m, True)) for m in linears]):
        yield


@contextlib.contextmanager
def training_layers(*models: Any, only_if_faster: bool = True) -> Iterator[None]:
    """For passes that train: :func:`onednn_linears`, and every plain ``Linear`` and
    ``Embedding`` whose weight trains (any device and dtype) adds its weight gradient straight
    into ``.grad`` (:class:`_Linear`, :class:`_Embedding`), which the optimizer step then
    reads and ``zero_grad(set_to_none=True)`` drops as before: no fresh tensor per product's
    weight gradient, no copy per micro-batch (a faster backward and a lower peak:
    docs/performance.md)."""
    onednn = {id(m) for m in _cpu_fp32_linears(models)
              if not only_if_faster or onednn_is_faster(m.in_features, m.out_features)}
    patches: dict[int, tuple[torch.nn.Module, Any]] = {}
    for module in (m for model in models for m in model.modules()):
        if type(module) is torch.nn.Linear and (module.weight.requires_grad
                                                or id(module) in onednn):
            patches[id(module)] = (module, functools.partial(_linear, module,
                                                             id(module) in onednn))
        elif type(module) is torch.nn.Embedding and module.weight.requires_grad and (
                module.max_norm is None and not module.scale_grad_by_freq
                and not module.sparse):
            patches[id(module)] = (module, functools.partial(_embedding, module))
    with _forwards(list(patches.values())):  # a module shared by two models, patched once
        yield


def packed_linear(bias: torch.Tensor | None, packed: torch.Tensor,
                  x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def can_pack(weight: torch.Tensor) -> bool:
    """Whether oneDNN can lay ``weight`` out for few-row products (:func:`packed_product`)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


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


def _packed(linears: list[torch.nn.Linear], rows: int
            ) -> list[tuple[torch.nn.Module, Any]] | None:
    products = [packed_product(m.weight, m.bias, rows) for m in linears]
    if not products or any(p is None for p in products):
        return None
    return list(zip(linears, products, strict=True))


@contextlib.contextmanager
def decode_linears(*models: Any, rows: int) -> Iterator[None]:
    """For a decode loop, inference only: while inside, each fp32 ``Linear`` on the CPU
    multiplies by a copy of its weight laid out once in oneDNN's blocked format for
    ``rows``-row products (any row count still works). A plain call re-lays the weight out on
    every product; a decode step reads every weight once, so that copy was a third of the
    traffic: over SmolLM2's weights (out of cache, 8 rows, one thread) 49.5 ms instead of
    75.9 ms. The copies (the size of the weights) are freed on the way out, and the weights
    must not change inside (they are copies). Falls back to :func:`onednn_linears` where
    torch has no such layout."""
    patches = _packed(_cpu_fp32_linears(models), rows)
    if patches is None:
        with onednn_linears(*models):
            yield
        return
    with _forwards(patches):
        yield
    patches.clear()  # drops the copies now, not at the caller's next collection


def adamw(params: Any, *, lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW without weight decay, fused (one kernel over every tensor, no temporaries the
    size of the model) on the CPU and CUDA, where torch has that kernel."""
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused)
    if device.type == "cpu":
        _moments_in_flat_buffers(optimizer)
    return optimizer


def _moments_in_flat_buffers(optimizer: torch.optim.AdamW) -> None:
    """AdamW's two moments as views of two flat buffers (per parameter group and dtype), made
    before the first step. AdamW makes them on its first step, two tensors per parameter, most
    under the 2 MB where huge pages start: for SmolLM2 1 GB faulted in 4 kB at a time (about
    105,000 page faults in the first step's optimizer); two large buffers are backed by huge
    pages. Same zeros, same kernel, same update. A
    checkpoint saves each view on its own (:func:`training.checkpoints._flatten_optimizer`
    copies it out), and a restored state replaces the views."""
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
