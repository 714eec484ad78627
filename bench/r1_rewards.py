"""R1's rewards teaching a small model, on the CPU: GRPO on SmolLM2-135M-Instruct with the
`math` reward (answer correctness by symbolic equivalence) and the R1 `format` reward
(<think>...</think><answer>...</answer>, partial credit), on arithmetic word problems built
here (seeded, answers known). Prints the share of completions in R1's format and the share
answered correctly at the first step and every 5 steps, then one JSON line.

    .venv/bin/python bench/r1_rewards.py --steps 20     # about 10-15 minutes, alone
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.process import prefer_huge_pages  # noqa: E402

prefer_huge_pages()  # before torch is imported, as a worker's child does
from training.algorithms import build_config  # noqa: E402
from training.grpo import train  # noqa: E402
from training.metrics import ListSink  # noqa: E402
from training.reward_types import format_score  # noqa: E402

INSTRUCTION = ("Think step by step inside <think> </think>, then give only the final number "
               "inside <answer> </answer>.")
TEMPLATES = [
    ("{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
     lambda a, b: a + b),
    ("{name} had {a} stickers and gave away {b}. How many stickers are left?",
     lambda a, b: a - b),
    ("A box holds {a} pencils. How many pencils are in {b} boxes?", lambda a, b: a * b),
]
NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia"]


def problems(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text, answer = rng.choice(TEMPLATES)
        a, b = rng.randint(2, 30), rng.randint(2, 12)
        a = max(a, b + 1)  # no negative remainders
        question = text.format(name=rng.choice(NAMES), a=a, b=b)
        rows.append({"prompt": f"{question} {INSTRUCTION}", "answer": str(answer(a, b))})
    return rows


class Progress(ListSink):
    def log_metrics(self, step: int, metrics) -> None:  # type: ignore[no-untyped-def]
        super().log_metrics(step, metrics)
        print(f"step {step}: reward {metrics['reward/mean']:.2f}, "
              f"{metrics['perf/step_s']:.0f}s", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(ROOT / "var" / "models" /
                                               "smollm2-135m-instruct"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "problems.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in problems(300, args.seed)))
        config = build_config("grpo", {
            "max_steps": args.steps, "prompts_per_step": 4, "group_size": 8,
            "max_new_tokens": 96, "learning_rate": 2e-5, "beta": 0.0, "temperature": 1.0,
            "samples_per_step": 32, "seed": args.seed, "checkpoint_every": 0},
            model_path=args.model, dataset_path=str(data), output_dir=str(Path(tmp) / "out"),
            device="cpu", rewards=[{"type": "math", "column": "answer", "weight": 1.0},
                                   {"type": "format", "preset": "think_answer",
                                    "partial": "yes", "weight": 1.0}])
        sink = Progress()
        train(config, sink=sink)
    rows = []
    for step, samples in sink.samples:
        if step != 1 and step % args.every:
            continue
        completions = [s.completion for s in samples]
        formatted = format_score([], completions, [{}] * len(completions),
                                 {"preset": "think_answer"})
        correct = [s.rewards.get("math", 0.0) for s in samples]
        rows.append({"step": step, "format_share": sum(formatted) / len(formatted),
                     "accuracy": sum(correct) / len(correct)})
        print(f"step {step:3d}: R1 format {rows[-1]['format_share']:.0%}, "
              f"correct {rows[-1]['accuracy']:.0%}", flush=True)
    first, last = rows[0], rows[-1]
    print(json.dumps({"bench": "r1_rewards", "model": Path(args.model).name,
                      "steps": args.steps, "work": "4 prompts x 8 completions x 96 tokens, "
                      "lr 2e-5, no KL, math + R1 format (partial)", "rows": rows,
                      "format_share_first": first["format_share"],
                      "format_share_last": last["format_share"],
                      "accuracy_first": first["accuracy"], "accuracy_last": last["accuracy"],
                      "wall_s": round(time.monotonic() - started)}))


if __name__ == "__main__":
    main()
