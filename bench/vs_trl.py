"""Our GRPO against TRL's GRPOTrainer on identical work, side by side, on this machine.

The work is the reference script's (``../shared/bench/trl_grpo_baseline.py``): SmolLM2-135M-
Instruct, one "Summarize: " chat prompt x 8 completions, every completion forced to 64 tokens,
beta 0.04, temperature 0.8, lr 1e-5, seed 0. Each side runs ``--rounds`` times, alternating
(TRL, ours, TRL, ours, ...), each in a fresh process, so neither inherits the other's caches
or memory. Prints one JSON line: completion tokens/s (median over each run's steps after the
first, then over runs), CPU seconds per completion token (process CPU time, all threads: on a
shared machine it moves less than wall time), peak RSS, the ratios, and the split of our step.

    make bench-trl-env      # TRL, pinned, in var/trl-venv
    .venv/bin/python bench/vs_trl.py --precision fp32 --rounds 2 --steps 3

The same file is also each side's entry point (``--side trl`` runs inside TRL's venv and needs
only TRL; ``--side ours`` runs inside the project's venv).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT.parent / "shared" / "bench" / "trl_grpo_baseline.py"
TEXTS = [  # the reference script's prompts, in its order
    "The cat sat on the mat all day because it was warm and sunny outside, and the dog was asleep.",
    "Yesterday the city council voted to extend the bike lanes downtown after months of debate "
    "with shop owners.",
    "My roommate keeps eating my food from the fridge and denies it every time I ask, what "
    "should I do?",
    "The new phone has a bigger battery, a faster chip and a better camera, but it costs two "
    "hundred dollars more.",
]
SPLIT = ("generate", "reward", "reference", "forward", "backward", "optimizer")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    """What torch's CUDA allocator held at most (None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20)


def steady(values: list[float]) -> list[float]:
    """The steps after the first (which pays for warm-up), or the only one there is."""
    return values[1:] or values


# --- TRL's side (runs in TRL's venv) ---

def run_trl(a: argparse.Namespace) -> None:
    """The reference script's main(), with its step clock also reading process CPU time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("trl_grpo_baseline", a.baseline)
    assert spec and spec.loader, f"cannot load {a.baseline}"
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    clocks: list[Any] = []

    class CpuStepClock(baseline.StepClock):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.cpu: list[float] = []
            clocks.append(self)

        def on_step_begin(self, *args: Any, **kw: Any) -> None:
            self.cpu_started = time.process_time()
            super().on_step_begin(*args, **kw)

        def on_step_end(self, *args: Any, **kw: Any) -> None:
            super().on_step_end(*args, **kw)
            self.cpu.append(time.process_time() - self.cpu_started)

    baseline.StepClock = CpuStepClock
    sys.argv = ["trl_grpo_baseline.py", "--model", a.model, "--steps", str(a.steps)]
    sys.argv += ["--cpu"] if a.device == "cpu" else []
    sys.argv += ["--bf16"] if a.precision == "bf16" else []
    baseline.main()  # prints the reference script's own JSON line
    clock = clocks[0]
    print(json.dumps({"side": "trl", "step_s": clock.seconds, "cpu_s": clock.cpu,
                      "tokens": clock.tokens, "peak_rss_mb": round(peak_rss_mb()),
                      "peak_gpu_mb": peak_gpu_mb()}))


# --- our side (runs in the project's venv) ---

# Each of the engine's speed and memory measures, undone (training.config.EngineSwitches)
ABLATIONS: dict[str, dict[str, Any]] = {
    "hf_generate": {"own_sampler": False},  # HF generate instead of our decode loop
    "model_forward_decode": {"lean_decoder": False},  # no training.llama_decode
    "unpacked_decode": {"lean_decoder": False, "packed_decode": False},  # ... plain layouts
    "mkl_linears": {"onednn": "never"},  # torch's default BLAS (MKL) for every product
    "mkl_grad_linears": {"onednn_training": False},  # ... for the passes that train
    "autograd_accumulation": {"in_place_gradients": False},  # fresh weight gradients
    "autograd_logprobs": {"fused_head": False},  # the LM head's log-probs through autograd
    "onednn_everywhere": {"onednn": "always"},  # not only where measured faster
    "fresh_training_memory": {"keep_training_heap": False},  # the updates map blocks afresh
    "trimmed_heap": {"keep_heap_between_steps": False},  # heap handed back after each phase
    "frozen_in_micro_batches": {"frozen_passes_whole": False},  # no-grad passes split too
    "unshared_prompts": {"share_prompts": False},  # every row runs its prompt
    "unfused_adamw": {"fused_adamw": False},
    "glibc_malloc": {"return_freed_memory": False},  # glibc's own mmap threshold
    "small_pages": {},  # 4 kB pages only: set in the environment by one_run
    "whole_batch": {},  # one pass for the whole step: an activation budget, below
}


def ablate(name: str) -> dict[str, Any]:
    """Config fields that undo one of the engine's speed or memory measures, to measure what
    it buys: its switch off (``engine``), or another activation budget."""
    from training.config import EngineSwitches

    if name == "whole_batch":
        return {"activation_memory_mb": 1_048_576}
    if name.startswith("budget_mb="):  # another activation budget
        return {"activation_memory_mb": int(name.split("=", 1)[1])}
    if name and name not in ABLATIONS:
        raise SystemExit(f"unknown ablation {name!r}: one of {', '.join(ABLATIONS)}")
    return {"engine": EngineSwitches(**ABLATIONS[name])} if name else {}


def cpu_sink() -> Any:
    """A metrics sink that also keeps the process CPU time between consecutive steps'
    reports: each step's CPU seconds after the first."""
    from training.metrics import ListSink

    class CpuSink(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.cpu: list[float] = []
            self.last = 0.0

        def log_metrics(self, step: int, metrics: Any) -> None:
            now = time.process_time()
            if step > 1:
                self.cpu.append(now - self.last)
            self.last = now
            super().log_metrics(step, metrics)

    return CpuSink()


def run_ours(a: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from training.algorithms import build_config
    from training.grpo import train
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        rows = [{"prompt": [{"role": "user", "content": "Summarize: " + t}]} for t in TEXTS * 16]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        overrides = ablate(a.ablate)
        config = build_config("grpo", {
            "max_steps": a.steps, "prompts_per_step": 1, "group_size": 8,
            "max_new_tokens": 64,
            "learning_rate": 1e-5, "beta": 0.04, "temperature": 0.8, "seed": 0,
            "precision": a.precision, "samples_per_step": 0,
        }, model_path=a.model, dataset_path=str(data), output_dir=str(Path(tmp) / "out"),
            device=a.device, min_new_tokens=64, **overrides,
            # the reference's reward, -abs(200 - chars) / 100
            rewards=[{"type": "length", "target": 200, "weight": 0.01}])
        sink = cpu_sink()
        train(config, sink=sink)
    print(json.dumps(ours_result(sink, 8, SPLIT)))


def ours_result(sink: Any, rows: int, split: tuple[str, ...]) -> dict[str, Any]:
    """Our side's line, from the steps' metrics in ``sink`` (:func:`cpu_sink`): ``rows``
    completions a step, ``split`` the phases of ``perf/<phase>_s``."""
    metrics = [m for _, m in sink.metrics]
    return {
        "side": "ours", "step_s": [m["perf/step_s"] for m in metrics], "cpu_s": sink.cpu,
        "tokens": [m["completion/length_mean"] * rows for m in metrics],
        "peak_rss_mb": round(peak_rss_mb()), "peak_gpu_mb": peak_gpu_mb(),
        "split_s": {k: [m.get(f"perf/{k}_s", 0.0) for m in metrics] for k in split},
    }


# --- the comparison ---

def one_run(side: str, a: argparse.Namespace, script: str = __file__,
            extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One side's run of ``script`` in a fresh process (TRL's venv or ours), with the steady
    figures worked out from the JSON line it prints."""
    python = a.trl_python if side == "trl" else sys.executable
    cmd = [python, script, "--side", side, "--model", a.model, "--steps", str(a.steps),
           "--precision", a.precision, "--baseline", str(a.baseline), "--device", a.device,
           "--ablate", getattr(a, "ablate", "") or "", *extra]
    print(f"[{Path(script).stem}] {side}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    env = os.environ.copy()
    if getattr(a, "ablate", "") == "small_pages":  # torch reads it at its first allocation
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    elif side == "ours":  # as a worker's child prepares itself
        from training.process import prefer_huge_pages

        before = os.environ.get("THP_MEM_ALLOC_ENABLE")
        if prefer_huge_pages():
            env["THP_MEM_ALLOC_ENABLE"] = "1"
        if before is None:
            os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
    if a.threads:  # the same for both sides: torch's intra-op threads (OpenMP, MKL, oneDNN)
        env |= {"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{side} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    line = [x for x in out.stdout.splitlines() if x.startswith('{"side"')][-1]
    run = json.loads(line)
    step_s, tokens = steady(run["step_s"]), steady(run["tokens"])
    cpu = run["cpu_s"] if side == "ours" else steady(run["cpu_s"])  # ours: already steady
    run["tokens_per_s"] = statistics.median(t / s for t, s in zip(tokens, step_s, strict=True))
    run["cpu_s_per_token"] = statistics.median(
        c / t for c, t in zip(cpu, tokens[-len(cpu):], strict=True))
    print(f"[{Path(script).stem}] {side}: {run['tokens_per_s']:.1f} tok/s, "
          f"{run['cpu_s_per_token']:.4f} CPU s/token, {run['peak_rss_mb']} MB",
          file=sys.stderr, flush=True)
    return run


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in runs), 2),
        "cpu_s_per_token": round(statistics.median(r["cpu_s_per_token"] for r in runs), 5),
        "step_s": round(statistics.median(statistics.median(steady(r["step_s"])) for r in runs),
                        2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0) for r in runs) or None,
        "tokens_per_s_each_run": [round(r["tokens_per_s"], 2) for r in runs],
        # the first step (the model loaded before it): AdamW's state, the first page faults
        "first_step_s": round(statistics.median(r["step_s"][0] for r in runs), 2),
    }


def alternate(a: argparse.Namespace, script: str = __file__, extra: tuple[str, ...] = ()
              ) -> dict[str, list[dict[str, Any]]]:
    """``a.rounds`` runs of each side, alternating (TRL, ours, TRL, ours, ...); ``extra``:
    more options for both."""
    runs: dict[str, list[dict[str, Any]]] = {"trl": [], "ours": []}
    for _ in range(a.rounds):
        for side in ("trl", "ours"):
            runs[side].append(one_run(side, a, script, extra))
    return runs


def report(bench: str, work: str, a: argparse.Namespace, runs: dict[str, list[dict[str, Any]]],
           load_before: tuple[float, float, float], split_keys: tuple[str, ...]
           ) -> dict[str, Any]:
    """The one JSON line of a comparison: both sides' figures, their ratios, our step's split."""
    trl, ours = summary(runs["trl"]), summary(runs["ours"])
    split = {k: round(statistics.median(statistics.median(steady(r["split_s"][k]))
                                        for r in runs["ours"]), 3) for k in split_keys}
    step = sum(split.values()) or 1.0
    return {
        "bench": bench, "precision": a.precision, "device": a.device,
        "threads": a.threads or os.cpu_count(), "model": Path(a.model).name, "rounds": a.rounds,
        "steps": a.steps, "work": work,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "trl": trl, "ours": ours,
        "speedup_tokens_per_s": round(ours["tokens_per_s"] / trl["tokens_per_s"], 2),
        "speedup_cpu_s_per_token": round(trl["cpu_s_per_token"] / ours["cpu_s_per_token"], 2),
        "peak_rss_ratio": round(ours["peak_rss_mb"] / trl["peak_rss_mb"], 2),
        "peak_gpu_ratio": (round(ours["peak_gpu_mb"] / trl["peak_gpu_mb"], 2)
                           if ours["peak_gpu_mb"] and trl["peak_gpu_mb"] else None),
        "ours_split_s": split,
        "ours_split_share": {k: round(v / step, 3) for k, v in split.items()},
    }


def compare(a: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    runs = alternate(a)
    print(json.dumps(report("vs_trl", "1 chat prompt x 8 completions x 64 tokens (forced), "
                            "beta 0.04, temperature 0.8, lr 1e-5, seed 0",
                            a, runs, load_before, SPLIT)))


def common_options(p: argparse.ArgumentParser, *, trl_venv: str) -> None:
    """The options both comparisons (GRPO, PPO) take."""
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of both sides (0: torch's default, one per core); 1 "
                        "is steadier on a machine other processes share")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating")
    p.add_argument("--steps", type=int, default=3, help="steps per run (the first is dropped)")
    p.add_argument("--model", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    p.add_argument("--trl-python", default=str(ROOT / "var" / trl_venv / "bin" / "python"),
                   help=f"the python of TRL's venv (var/{trl_venv})")
    p.add_argument("--baseline", default=str(BASELINE), help="the reference script")
    p.add_argument("--side", choices=["trl", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--ablate", default="", help=argparse.SUPPRESS)


def dispatch(a: argparse.Namespace, sides: dict[str, Any], compare: Any,
             needs: tuple[tuple[str, str], ...]) -> None:
    """Run one side (``--side``), or check what the comparison ``needs`` (path, hint) and
    run it."""
    if a.side:
        sides[a.side](a)
        return
    for path, hint in needs:
        if not Path(path).exists():
            sys.exit(f"{path} is missing: {hint}")
    compare(a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(p, trl_venv="trl-venv")
    a = p.parse_args()
    dispatch(a, {"trl": run_trl, "ours": run_ours}, compare,
             ((a.trl_python, "run `make bench-trl-env`"),
              (a.baseline, "it is the reference side, in shared/bench/")))


if __name__ == "__main__":
    main()
