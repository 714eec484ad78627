"""Helpers shared by the training-engine tests: the prepared tiny model, small JSONL datasets
and GRPO configs small enough to train in about a second on a CPU."""
from __future__ import annotations

import contextlib
import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TINY_LLAMA = ROOT / "var" / "models" / "tiny-llama"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}

PROMPTS = [
    "Summarize: the cat sat on the mat all afternoon and refused to move.",
    "Summarize: rain fell over the city, and the streets turned into small rivers.",
    "Summarize: a committee met for four hours and agreed to meet again next week.",
    "Summarize: the old bridge was repaired with steel taken from a shipyard.",
    "Summarize: two robots argued about whether tea or coffee is better.",
    "Summarize: the library stayed open all night during the exam season.",
]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the tiny model gains nothing from more, and on a shared
    2-core machine a second thread spins against other processes and runs 3x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def grpo_config(tmp_path: Path, *, rows: list[dict[str, Any]] | None = None,
                rewards: list[dict[str, Any]] | None = None, output: str = "out",
                algorithm: str = "grpo", model: Path = TINY_LLAMA, **hyperparameters: Any) -> Any:
    """A tiny-llama (or ``model``) config of a critic-free algorithm (GRPO unless
    ``algorithm`` says): 2 prompts x 2 completions of at most 8 tokens per step."""
    from training.algorithms import build_config

    dataset = tmp_path / "rows.jsonl"
    if rows is not None or not dataset.exists():
        write_jsonl(dataset, rows if rows is not None else [{"prompt": p} for p in PROMPTS])
    values = {"max_steps": 3, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 8,
              "learning_rate": 1e-3, "samples_per_step": 8}
    values.update(hyperparameters)
    return build_config(algorithm, values, model_path=str(model), dataset_path=str(dataset),
                        output_dir=str(tmp_path / output), device="cpu",
                        rewards=rewards or [{"type": "length", "target": 20, "weight": 1.0}])


@functools.cache
def tiny_tokenizer() -> Any:
    from training.modelhub import load_tokenizer

    return load_tokenizer(TINY_LLAMA)


def encoded_prompts() -> tuple[Any, Any]:
    """Two prompts of different lengths as the tiny model's token ids and attention mask."""
    enc = tiny_tokenizer()(["Summarize: the committee met for four hours and then agreed "
                            "to meet again.", "Hi"], return_tensors="pt", padding=True,
                           add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


@functools.cache
def tiny_model() -> Any:
    """The tiny Llama in fp32 on the CPU, in eval mode. Shared: tests must not change it."""
    import torch

    from training.modelhub import load_causal_lm

    model = load_causal_lm(TINY_LLAMA, dtype=torch.float32, device=torch.device("cpu"))
    return model.eval().requires_grad_(False)


def files_with_pickle_suffix(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES]


WORDS = ("apple river stone cloud paper garden window silver engine forest candle market "
         "planet yellow quiet rapid gentle bright copper winter summer island bridge castle "
         "dragon pencil rocket violin mirror shadow thunder meadow harbor lantern marble "
         "orchard pepper saddle tunnel valley walnut zebra anchor basket cactus dolphin falcon "
         "glacier hammer igloo jacket kettle ladder magnet").split()


def short_vs_long_pairs(n: int, seed: int, *, prefer_short: bool = True
                        ) -> list[dict[str, Any]]:
    """The synthetic preference: a 1-3 word answer over a 12-25 word one (or the reverse),
    words drawn at random from one vocabulary."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"Tell me about the {rng.choice(WORDS)} and the {rng.choice(WORDS)}."
        short = " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
        long = " ".join(rng.choices(WORDS, k=rng.randint(12, 25)))
        chosen, rejected = (short, long) if prefer_short else (long, short)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": None})
    return rows


def rm_config(tmp_path: Path, *, rows: list[dict[str, Any]] | None = None, output: str = "out",
              model: Path = TINY_LLAMA, **hyperparameters: Any) -> Any:
    dataset = tmp_path / "pairs.jsonl"
    if rows is not None or not dataset.exists():
        write_jsonl(dataset, rows if rows is not None else short_vs_long_pairs(24, seed=7))
    values = {"max_steps": 3, "batch_size": 4, "learning_rate": 2e-3, "max_length": 128,
              "eval_fraction": 0.25, "eval_every": 2}
    values.update(hyperparameters)
    from training.algorithms import build_config

    return build_config("reward_model", values, model_path=str(model),
                        dataset_path=str(dataset), output_dir=str(tmp_path / output),
                        device="cpu")


def ppo_config(tmp_path: Path, *, rewards: list[dict[str, Any]] | None = None,
               output: str = "out", model: Path = TINY_LLAMA, **hyperparameters: Any) -> Any:
    """A tiny-llama (or ``model``) PPO config: 4 prompts of at most 8 tokens, 2 epochs of 2
    minibatches."""
    from training.algorithms import build_config

    dataset = tmp_path / "rows.jsonl"
    if not dataset.exists():
        write_jsonl(dataset, [{"prompt": p} for p in PROMPTS])
    values = {"max_steps": 3, "prompts_per_step": 4, "minibatches": 2, "ppo_epochs": 2,
              "max_new_tokens": 8, "learning_rate": 1e-3, "samples_per_step": 8}
    values.update(hyperparameters)
    return build_config("ppo", values, model_path=str(model), dataset_path=str(dataset),
                        output_dir=str(tmp_path / output), device="cpu",
                        rewards=rewards or [{"type": "length", "target": 20, "weight": 1.0}])
