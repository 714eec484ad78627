"""The memory estimate (training/estimate.py) against the measured peak, on the CPU.

Each configuration trains two steps in a fresh process (a worker child runs one task, so its
peak resident memory is the run's, as ``perf/peak_mem_mb`` reports it); the estimate is made
as ``POST /api/runs/estimate`` makes it, from the model's files and the data's prompt lengths.
Prints a table and, last, one JSON line whose figure is the largest relative error.

    .venv/bin/python bench/estimate_memory.py            # every configuration, ~8 min
    .venv/bin/python bench/estimate_memory.py --only tiny
    python bench/estimate_memory.py --device cuda --model-dir DIR   # GRPO and PPO of DIR on a
                                                  # GPU (bench/gpu_check.sh: Qwen2.5-0.5B shape)
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.algorithms import build_config, get_algorithm, validate_hyperparameters  # noqa: E402
from training.estimate import (  # noqa: E402
    ModelShape,
    estimate,
    prompt_tokens_of,
    response_tokens_of,
)
from training.model_files import inspect_model_dir  # noqa: E402

MODELS = ROOT / "var" / "models"
PROMPTS = [
    "Summarize: the city council voted to extend the bike lanes downtown after months of debate.",
    "Summarize: my roommate keeps eating my food from the fridge and denies it every time.",
    "Summarize: the new phone has a bigger battery, a faster chip and a better camera.",
    "Summarize: the library stayed open all night during the exam season this year.",
]
# (model, algorithm, hyperparameters): two steps each
CONFIGS = [
    ("tiny-llama", "grpo", {}),
    ("tiny-llama", "ppo", {}),
    ("tiny-llama", "reward_model", {"batch_size": 8}),
    ("smollm2-135m-instruct", "grpo", {"prompts_per_step": 2, "group_size": 8,
                                       "max_new_tokens": 32}),
    ("smollm2-135m-instruct", "grpo", {"prompts_per_step": 2, "group_size": 8,
                                       "max_new_tokens": 32, "lora_rank": 8}),
    ("smollm2-135m-instruct", "grpo", {"prompts_per_step": 2, "group_size": 8,
                                       "max_new_tokens": 32, "precision": "bf16"}),
    ("smollm2-135m-instruct", "grpo", {"prompts_per_step": 2, "group_size": 8,
                                       "max_new_tokens": 32, "gradient_checkpointing": True}),
    ("smollm2-135m-instruct", "ppo", {"prompts_per_step": 4, "max_new_tokens": 32,
                                      "ppo_epochs": 1}),
    ("smollm2-135m-instruct", "reward_model", {"batch_size": 8, "max_length": 128}),
]


CHOSEN, REJECTED = "A short answer.", ("A much longer answer that goes on and on about "
                                        "nothing in particular for a while.")


def _data(folder: Path, algorithm: str) -> Path:
    path = folder / "data.jsonl"
    if algorithm == "reward_model":
        rows = [{"prompt": p, "chosen": CHOSEN, "rejected": REJECTED} for p in PROMPTS] * 8
    else:
        rows = [{"prompt": p} for p in PROMPTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _values(algorithm: str, hyperparameters: dict) -> dict:
    return validate_hyperparameters(algorithm, {"max_steps": 2, **hyperparameters})


GPU_CONFIGS = [
    ("grpo", {"prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64}),
    ("ppo", {"prompts_per_step": 8, "max_new_tokens": 64, "ppo_epochs": 1}),
]


def _folder(model: str) -> Path:
    return Path(model) if "/" in model else MODELS / model


def measure(model: str, algorithm: str, hyperparameters: dict, device: str = "cpu") -> float:
    """Train two steps here; the peak in MB (resident memory on the CPU, torch's allocated
    memory on a GPU)."""
    from training.process import prefer_huge_pages

    prefer_huge_pages()  # as a worker's child does, before torch
    from training.metrics import ListSink

    with tempfile.TemporaryDirectory() as tmp:
        config = build_config(algorithm, _values(algorithm, hyperparameters),
                              model_path=str(_folder(model)),
                              dataset_path=str(_data(Path(tmp), algorithm)),
                              output_dir=str(Path(tmp) / "out"), device=device,
                              rewards=[] if algorithm == "reward_model" else
                              [{"type": "length", "target": 40, "weight": 1.0}])
        sink = ListSink()
        importlib.import_module(get_algorithm(algorithm).engine).train(config, sink=sink)
    return max(m["perf/peak_mem_mb"] for _, m in sink.metrics if "perf/peak_mem_mb" in m)


def estimated(model: str, algorithm: str, hyperparameters: dict, device: str = "cpu") -> float:
    folder = _folder(model)
    card = inspect_model_dir(folder)
    shape = ModelShape.from_config(json.loads((folder / "config.json").read_text()),
                                   card.parameters)
    config = get_algorithm(algorithm).config(**_values(algorithm, hyperparameters))
    tokens = prompt_tokens_of([len(p) for p in PROMPTS], chat_template=card.chat_template)
    return estimate(config, shape, device=device, bf16=True, prompt_tokens=tokens,
                    response_tokens=response_tokens_of([len(CHOSEN), len(REJECTED)])).peak_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="only models whose name contains this")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model-dir", help="measure GRPO and PPO of this model instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure one configuration
    args = parser.parse_args()
    if args.one:
        print(json.dumps({"peak_mb": measure(*json.loads(args.one), device=args.device)}))
        return
    configs = ([(args.model_dir, a, h) for a, h in GPU_CONFIGS] if args.model_dir
               else CONFIGS)
    rows = []
    print(f"{'model':24} {'algorithm':13} {'settings':58} {'estimate':>9} {'measured':>9} "
          f"{'error':>7}")
    for model, algorithm, hyperparameters in configs:
        if args.only not in model:
            continue
        done = subprocess.run([sys.executable, __file__, "--one",
                               json.dumps([model, algorithm, hyperparameters]),
                               "--device", args.device],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        measured = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
        guess = estimated(model, algorithm, hyperparameters, args.device)
        error = guess / measured - 1
        rows.append({"model": model, "algorithm": algorithm, "settings": hyperparameters,
                     "estimate_mb": round(guess), "measured_mb": round(measured),
                     "error": round(error, 3)})
        print(f"{Path(model).name:24} {algorithm:13} {json.dumps(hyperparameters):58} {guess:9.0f} "
              f"{measured:9.0f} {error:+7.1%}", flush=True)
    print(json.dumps({"bench": "estimate_memory", "device": args.device, "configs": len(rows),
                      "max_abs_error": max(abs(r["error"]) for r in rows), "rows": rows}))


if __name__ == "__main__":
    main()
