"""The seed article's demonstration, on our engine: GRPO with a length reward.

Trains a bundled model to write summaries near a target length and prints one JSON line:
wall time, median completion tokens per second, peak memory, and mean completion length in
characters at the first and the last step.

    .venv/bin/python bench/grpo_length.py --model var/models/smollm2-135m-instruct --steps 10
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

from training.process import prefer_huge_pages  # noqa: E402

prefer_huge_pages()  # before torch is imported, as a worker's child does
from training.algorithms import build_config  # noqa: E402
from training.grpo import train  # noqa: E402
from training.metrics import ListSink  # noqa: E402

TEXTS = [
    "The cat sat on the mat all day because it was warm and sunny outside, and the dog was asleep.",
    "Yesterday the city council voted to extend the bike lanes downtown after months of debate "
    "with shop owners.",
    "My roommate keeps eating my food from the fridge and denies it every time I ask, what "
    "should I do?",
    "The new phone has a bigger battery, a faster chip and a better camera, but it costs two "
    "hundred dollars more.",
]


class Progress(ListSink):
    def log_metrics(self, step: int, metrics) -> None:  # type: ignore[no-untyped-def]
        super().log_metrics(step, metrics)
        print(f"step {step}: reward {metrics['reward/mean']:.1f}, "
              f"chars {metrics['completion/chars_mean']:.0f}, "
              f"{metrics['perf/step_s']:.1f}s", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--target", type=int, default=60, help="target length in characters")
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--micro-batch-size", type=int, default=0,
                   help="sequences per forward/backward (0: as many as the memory budget allows)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        data.write_text("\n".join(json.dumps({"prompt": "Summarize: " + t}) for t in TEXTS * 4))
        config = build_config("grpo", {
            "max_steps": a.steps, "prompts_per_step": a.prompts_per_step,
            "group_size": a.group_size, "max_new_tokens": a.max_new_tokens,
            "learning_rate": a.learning_rate, "beta": a.beta, "temperature": 0.8,
            "micro_batch_size": a.micro_batch_size,
            "gradient_checkpointing": a.gradient_checkpointing,
        }, model_path=a.model, dataset_path=str(data), output_dir=str(Path(tmp) / "out"),
            rewards=[{"type": "length", "target": a.target, "weight": 1.0}])
        sink = Progress()
        started = time.perf_counter()
        train(config, sink=sink)
        wall = time.perf_counter() - started
    chars = sink.series("completion/chars_mean")
    print(json.dumps({
        "engine": "rlhf-workbench GRPO", "model": a.model, "steps": len(chars),
        "micro_batch_size": a.micro_batch_size,
        "gradient_checkpointing": a.gradient_checkpointing,
        "median_step_s": round(statistics.median(sink.series("perf/step_s")), 1),
        "wall_s": round(wall, 1),
        "median_tokens_per_s": round(statistics.median(sink.series("perf/tokens_per_s")), 1),
        "peak_mem_mb": round(max(sink.series("perf/peak_mem_mb"))),
        "chars_mean_first": round(chars[0], 1), "chars_mean_last": round(chars[-1], 1),
        "reward_first": round(sink.series("reward/mean")[0], 1),
        "reward_last": round(sink.series("reward/mean")[-1], 1),
    }))


if __name__ == "__main__":
    main()
