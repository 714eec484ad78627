"""The devices a worker offers, as its heartbeat reports them: each GPU's name, total and free
memory, bf16 support and compute capability, or the CPU's memory.

Read without torch (the worker's parent process never imports it, so it never initialises
CUDA): GPUs through ``nvidia-smi``, which every NVIDIA driver installs, honouring
``CUDA_VISIBLE_DEVICES`` as CUDA would; the CPU through ``/proc``. ``RLHF_WORKER_DEVICES``
says which a worker uses: ``auto`` (every visible GPU, else the CPU), ``cuda:0,1`` or
``cpu`` / ``cpu:N`` (the CPU with N threads).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NVIDIA_SMI_QUERY = "index,uuid,name,memory.total,memory.free,compute_cap"
NVIDIA_SMI_TIMEOUT_S = 10
_SPEC = re.compile(r"^(auto|cpu(:\d{1,4})?|cuda:\d{1,3}(,\d{1,3})*)$")


@dataclass(frozen=True)
class Device:
    type: str  # cuda | cpu
    index: int
    name: str
    total_mb: int
    free_mb: int
    bf16: bool
    capability: str | None = None  # "9.0" for an H100
    threads: int | None = None  # for the CPU

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def check_spec(spec: str) -> str:
    """``spec`` normalised, or ValueError saying what is accepted."""
    spec = spec.strip().lower().replace(" ", "")
    if not _SPEC.match(spec):
        raise ValueError(f"RLHF_WORKER_DEVICES={spec!r}: use auto, cuda:0,1 (GPU indices) or "
                         "cpu / cpu:N (N threads)")
    return spec


def _visible(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The GPUs CUDA_VISIBLE_DEVICES leaves visible (indices or UUIDs), in its order, as CUDA
    numbers them (0, 1, ... among the visible)."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return rows
    out = []
    for item in (x.strip() for x in raw.split(",") if x.strip()):
        match = [r for r in rows if r["index"] == item or r["uuid"].startswith(item)]
        if not match:
            break  # CUDA stops at the first invalid entry
        out.append(match[0])
    return out


def nvidia_gpus() -> list[Device]:
    """Every GPU CUDA would see, numbered as CUDA numbers them; [] without a driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run([smi, f"--query-gpu={NVIDIA_SMI_QUERY}",
                               "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    keys = NVIDIA_SMI_QUERY.split(",")
    rows = [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False))
            for line in done.stdout.splitlines() if line.count(",") == len(keys) - 1]
    devices = []
    for cuda_index, row in enumerate(_visible(rows)):
        capability = row.get("compute_cap") or None
        try:
            major = int(float(capability or 0))
            devices.append(Device("cuda", cuda_index, row["name"], int(row["memory.total"]),
                                  int(row["memory.free"]), bf16=major >= 8,
                                  capability=capability))
        except ValueError:  # "[N/A]" on a GPU the driver cannot query
            continue
    return devices


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = int(value.split()[0]) // 1024  # kB -> MB
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def cpu_device(threads: int | None = None) -> Device:
    memory = _meminfo()
    threads = threads or len(os.sched_getaffinity(0))
    return Device("cpu", 0, _cpu_name(), memory.get("MemTotal", 0),
                  memory.get("MemAvailable", memory.get("MemFree", 0)), bf16=True,
                  threads=threads)


def worker_devices(spec: str = "auto") -> list[Device]:
    """The devices ``spec`` (:func:`check_spec`) gives a worker."""
    spec = check_spec(spec)
    if spec.startswith("cpu"):
        return [cpu_device(int(spec[4:]) if ":" in spec else None)]
    gpus = nvidia_gpus()
    if spec == "auto":
        return gpus or [cpu_device()]
    wanted = [int(i) for i in spec[5:].split(",")]
    return [g for g in gpus if g.index in wanted]
