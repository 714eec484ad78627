"""PPO against GRPO on the same model, prompts and number of completions per step.

Run once per algorithm, each in its own process (peak resident memory is per process), and
compare the JSON lines: what dropping the critic saves, measured.

    .venv/bin/python bench/ppo_vs_grpo.py --algo grpo
    .venv/bin/python bench/ppo_vs_grpo.py --algo ppo
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.grpo_length import TEXTS  # noqa: E402
from training.process import prefer_huge_pages  # noqa: E402

prefer_huge_pages()  # before torch is imported, as a worker's child does
from training.algorithms import build_config  # noqa: E402
from training.metrics import ListSink  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--algo", choices=["grpo", "ppo"], required=True)
    p.add_argument("--model", default="var/models/smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=2)
    a = p.parse_args()
    common = {"max_steps": a.steps, "max_new_tokens": a.max_new_tokens,
              "learning_rate": 1e-5, "temperature": 0.8}
    # 16 completions per step either way: GRPO 4 prompts x group 4, PPO 16 prompts x 1
    if a.algo == "grpo":
        from training.grpo import train
        hp = {**common, "prompts_per_step": 4, "group_size": 4, "beta": 0.04}
    else:
        from training.ppo import train  # type: ignore[assignment]
        hp = {**common, "prompts_per_step": 16, "ppo_epochs": a.ppo_epochs,
              "minibatches": a.minibatches}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        data.write_text("\n".join(json.dumps({"prompt": "Summarize: " + t}) for t in TEXTS * 4))
        config = build_config(a.algo, hp, model_path=a.model, dataset_path=str(data),
                              output_dir=str(Path(tmp) / "out"),
                              rewards=[{"type": "length", "target": 60, "weight": 1.0}])
        sink = ListSink()
        started = time.perf_counter()
        train(config, sink=sink)  # type: ignore[arg-type]
        wall = time.perf_counter() - started
    print(json.dumps({
        "algo": a.algo, "hyperparameters": hp, "wall_s": round(wall, 1),
        "median_step_s": round(statistics.median(sink.series("perf/step_s")), 1),
        "median_tokens_per_s": round(statistics.median(sink.series("perf/tokens_per_s")), 1),
        "peak_mem_mb": round(max(sink.series("perf/peak_mem_mb"))),
    }))


if __name__ == "__main__":
    main()
