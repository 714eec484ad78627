"""Our PPO against TRL's PPOTrainer on identical work, side by side, on this machine.

TRL 1.12.0 is the last release with a PPOTrainer (``trl.experimental.ppo``; 1.13 removed it).
The work: SmolLM2-135M-Instruct as policy (and its frozen reference), 8 "Summarize: " chat
prompts per step, one completion each, every completion forced to 64 tokens, then 4 epochs x 2
minibatches of 4 (8 optimiser updates per rollout); k1 KL penalty 0.05, clip 0.2, value clip
0.2, vf_coef 0.1, gamma 1, lambda 0.95, advantages whitened, temperature 0.8, lr 1e-5, seed 0:
TRL's defaults and ours, which agree. TRL's PPOTrainer scores with a reward *model* (a sequence
classifier), so both sides get the same one: SmolLM2's trunk with a seeded random score head,
written once per comparison. TRL's value model is a copy of it; ours is the same backbone
(``critic_init=reward``). Gradient checkpointing is off on both sides (TRL's PPOConfig turns
it on by default; ours leaves it off).

As ``bench/vs_trl.py`` (whose runner this shares): ``--rounds`` fresh processes per side,
alternating, one JSON line with both sides' completion tokens/s, CPU seconds per token, peak
RSS, the ratios, and the split of our step (generate, reward, evaluate, update).

    make bench-trl-ppo-env     # TRL 1.12.0, pinned, in var/trl-ppo-venv
    .venv/bin/python bench/vs_trl_ppo.py --rounds 1 --steps 3 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vs_trl import (  # noqa: E402  (stdlib-only at import: TRL's venv loads it too)
    TEXTS,
    alternate,
    common_options,
    dispatch,
    peak_gpu_mb,
    peak_rss_mb,
    report,
)

PROMPTS_PER_STEP, TOKENS, EPOCHS, MINIBATCHES = 8, 64, 4, 2
LR, TEMPERATURE, KL_COEF, SEED = 1e-5, 0.8, 0.05, 0
SPLIT = ("generate", "reward", "evaluate", "update")
WORK = (f"{PROMPTS_PER_STEP} chat prompts x 1 completion x {TOKENS} tokens (forced), "
        f"{EPOCHS} epochs x {MINIBATCHES} minibatches, kl_coef {KL_COEF}, temperature "
        f"{TEMPERATURE}, lr {LR}, seed {SEED}, a SmolLM2 reward model (random head)")


def chat_rows() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": "Summarize: " + t}] for t in TEXTS * 16]


def write_reward_model(policy: str, folder: Path) -> None:
    """The policy's trunk with a seeded random scalar head, as a reward model directory (a
    sequence classifier with its tokenizer, safetensors), in a fresh process of our venv."""
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        "policy, out = sys.argv[1], sys.argv[2]\n"
        "torch.manual_seed(0)\n"
        "tok = AutoTokenizer.from_pretrained(policy)\n"
        "model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)\n"
        "model.config.pad_token_id = tok.pad_token_id\n"
        "model.save_pretrained(out)\n"
        "tok.save_pretrained(out)\n")
    import subprocess

    subprocess.run([sys.executable, "-c", code, policy, str(folder)], check=True)


# --- TRL's side (runs in TRL 1.12's venv) ---

def run_trl(a: argparse.Namespace) -> None:
    import torch
    import trl.experimental.ppo.ppo_trainer as ppo_trainer
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GenerationConfig,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(a.model, padding_side="left")
    forbidden = sorted({tok.eos_token_id, tok.pad_token_id})

    def forced_length(**kw: Any) -> GenerationConfig:
        # TRL's PPO already ignores EOS while sampling (stop_token None), but ends a response's
        # mask at its first pad token (SmolLM2's pad is its EOS): suppressing both keeps every
        # response 64 tokens long, as min_new_tokens does on our side
        return GenerationConfig(**kw, suppress_tokens=forbidden)

    ppo_trainer.GenerationConfig = forced_length  # type: ignore[assignment]

    class Clock(TrainerCallback):  # type: ignore[misc]
        """TRL's PPO loop calls no on_step_begin: a step runs from one step end to the next."""

        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.cpu_s: list[float] = []
            self.eos: list[float] = []

        def on_train_begin(self, *args: Any, **kw: Any) -> None:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, *args: Any, **kw: Any) -> None:
            wall, cpu = time.perf_counter(), time.process_time()
            self.step_s.append(wall - self.wall)
            self.cpu_s.append(cpu - self.cpu)
            self.wall, self.cpu = wall, cpu

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "val/num_eos_tokens" in logs:
                self.eos.append(logs["val/num_eos_tokens"])

    torch.manual_seed(SEED)
    dtype = torch.float32  # bf16: TRL's mixed precision (autocast), as its PPOConfig does
    ids = [tok.apply_chat_template(m, add_generation_prompt=True, return_dict=False)
           for m in chat_rows()]
    data = Dataset.from_dict({"input_ids": ids})
    args = PPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_ppo_"), learning_rate=LR,
        per_device_train_batch_size=PROMPTS_PER_STEP, gradient_accumulation_steps=1,
        num_mini_batches=MINIBATCHES, num_ppo_epochs=EPOCHS,
        total_episodes=a.steps * PROMPTS_PER_STEP, response_length=TOKENS,
        temperature=TEMPERATURE, kl_coef=KL_COEF, num_sample_generations=0,
        gradient_checkpointing=False, bf16=a.precision == "bf16", use_cpu=a.device == "cpu",
        logging_steps=1, save_strategy="no", report_to=[], seed=SEED)
    policy = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    reference = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    reward = AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1,
                                                                dtype=dtype)
    value = AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1,
                                                               dtype=dtype)
    clock = Clock()
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=reference,
                         reward_model=reward, value_model=value, train_dataset=data,
                         eval_dataset=data.select(range(PROMPTS_PER_STEP)), callbacks=[clock])
    trainer.train()
    if any(clock.eos):
        raise SystemExit(f"TRL sampled EOS/pad tokens ({clock.eos}): lengths were not forced")
    print(json.dumps({"side": "trl", "step_s": clock.step_s, "cpu_s": clock.cpu_s,
                      "tokens": [PROMPTS_PER_STEP * TOKENS] * len(clock.step_s),
                      "peak_rss_mb": round(peak_rss_mb()), "peak_gpu_mb": peak_gpu_mb()}))


# --- our side (runs in the project's venv) ---

def run_ours(a: argparse.Namespace) -> None:
    from bench.vs_trl import cpu_sink, ours_result
    from training.algorithms import build_config
    from training.ppo import train

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        data.write_text("".join(json.dumps({"prompt": m}) + "\n" for m in chat_rows()))
        config = build_config("ppo", {
            "max_steps": a.steps, "prompts_per_step": PROMPTS_PER_STEP,
            "max_new_tokens": TOKENS, "ppo_epochs": EPOCHS, "minibatches": MINIBATCHES,
            "learning_rate": LR, "kl_coef": KL_COEF, "temperature": TEMPERATURE, "seed": SEED,
            "critic_init": "reward", "precision": a.precision, "samples_per_step": 0,
        }, model_path=a.model, dataset_path=str(data), output_dir=str(Path(tmp) / "out"),
            device=a.device, min_new_tokens=TOKENS,
            rewards=[{"type": "reward_model", "model": "bench", "path": a.reward_model}])
        sink = cpu_sink()
        train(config, sink=sink)
    print(json.dumps(ours_result(sink, PROMPTS_PER_STEP, SPLIT)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_options(p, trl_venv="trl-ppo-venv")
    p.add_argument("--reward-model", help=argparse.SUPPRESS)  # written by the comparison
    a = p.parse_args()
    dispatch(a, {"trl": run_trl, "ours": run_ours}, compare,
             ((a.trl_python, "run `make bench-trl-ppo-env`"),))


def compare(a: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        a.reward_model = str(Path(tmp) / "reward-model")
        write_reward_model(a.model, Path(a.reward_model))
        runs = alternate(a, __file__, ("--reward-model", a.reward_model))
    print(json.dumps(report("vs_trl_ppo", WORK, a, runs, load_before, SPLIT)))


if __name__ == "__main__":
    main()
