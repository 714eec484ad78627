"""Settings of the process a run trains in, made by whoever starts it (the worker's child as
it starts, a benchmark) before torch is imported: importing ``training`` changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def prefer_huge_pages() -> bool:
    """Ask torch to back CPU tensors of 2 MB or more with transparent huge pages.

    The engine hands freed tensors back to the system (``heap.return_freed_memory_to_the_os``,
    which keeps a step's peak low), so each step maps large activations and gradients afresh,
    and the kernel faults them in 4 kB at a time; with huge pages they fault 2 MB at a time
    (fewer faults, shorter steps, the same peak: docs/performance.md). torch reads the switch
    once, at its first CPU allocation, so this must run before torch is imported. Where the
    kernel has no transparent huge pages, or the variable is already set, nothing changes.
    Returns whether it is on."""
    try:
        available = "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False
    if available:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
