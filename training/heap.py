"""glibc's allocator, tuned for training on the CPU: freed tensors handed back to the system,
and heap reuse where a loop allocates the same blocks again. Only :mod:`training.backend`'s
CPU backend calls these; elsewhere (musl, macOS) each does nothing."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Iterator
from typing import Any

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


def release_freed_memory() -> None:
    """What the heap keeps (:func:`reuse_freed_memory` with ``keep``) back to the system,
    and glibc's trimming as usual again."""
    libc = _glibc()
    if _threshold_fixed:
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        libc.malloc_trim(0)
