"""What each of the engine's speed and memory changes buys, on vs_trl.py's work: our side
alone, once as it is and once with each change undone, alternating fresh processes, one JSON
line with tokens/s, CPU seconds per token, peak RSS and the step's split for each variant.

    .venv/bin/python bench/ablations.py --precision fp32 --rounds 1 --steps 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vs_trl import ABLATIONS, BASELINE, ROOT, SPLIT, one_run, steady  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--variants", default=",".join(("", *ABLATIONS)),
                   help="comma-separated; the empty name is the engine as it is")
    p.add_argument("--model", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    p.add_argument("--threads", dest="threads_", type=int, default=0)
    a = p.parse_args()
    a.device, a.baseline, a.trl_python = "cpu", BASELINE, ""
    a.threads = a.threads_
    load_before = os.getloadavg()
    variants = a.variants.split(",")
    runs: dict[str, list] = {v: [] for v in variants}
    for _ in range(a.rounds):
        for variant in variants:
            a.ablate = variant
            runs[variant].append(one_run("ours", a))
    out = {}
    for variant, rs in runs.items():
        out[variant or "engine"] = {
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rs), 2),
            "cpu_s_per_token": round(statistics.median(r["cpu_s_per_token"] for r in rs), 5),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "split_s": {k: round(statistics.median(statistics.median(steady(r["split_s"][k]))
                                                   for r in rs), 2) for k in SPLIT},
        }
    print(json.dumps({"bench": "ablations", "precision": a.precision, "rounds": a.rounds,
                      "threads": a.threads or os.cpu_count(),
                      "steps": a.steps, "load_avg_before": [round(x, 2) for x in load_before],
                      "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                      "variants": out}))


if __name__ == "__main__":
    main()
