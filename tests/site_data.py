"""A small, realistic site for page tests: datasets, GRPO/PPO/reward-model runs with samples
and checkpoints whose files are on disk, a labeling batch with rankings. Rows are made with
the services a worker and the API use, so the pages read them as they would real ones."""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from tests.conftest import PROMPTS, upload_prompts
from tests.labeling_helpers import make_batch, rank_in_order
from tests.runs_helpers import make_run, sample_rows
from webapp.datasets.models import Dataset
from webapp.runs.models import Checkpoint, Run


@dataclass
class Site:
    prompts: int
    preferences: int
    grpo: Run
    ppo: Run
    reward_model: Run
    checkpoint: Checkpoint
    batch: int


def write_checkpoint(run: Run, step: int, *, weights: int = 2048, optimizer: int = 4096
                     ) -> Checkpoint:
    """A checkpoint directory (weights, a manifest, training state) and its zip on disk,
    recorded as a worker records one; sizes in bytes."""
    root = Path(settings.CHECKPOINTS_DIR)
    directory = root / f"run-{run.pk}" / f"attempt-{max(run.attempt, 1)}" / f"step-{step}"
    (directory / "training_state").mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(b"w" * weights)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (directory / "manifest.json").write_text(json.dumps({"step": step}))
    (directory / "training_state" / "optimizer.safetensors").write_bytes(b"o" * optimizer)
    archive = directory.with_suffix(".zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in ("model.safetensors", "config.json", "manifest.json"):
            zf.write(directory / name, f"run-{run.pk}-step-{step}/{name}")
    archive.write_bytes(buffer.getvalue())
    return Checkpoint.objects.create(
        run=run, step=step, path=str(directory.relative_to(root)),
        archive=str(archive.relative_to(root)), size_bytes=archive.stat().st_size,
        sha256="0" * 64)


def _ppo_metrics(step: int) -> dict[str, float]:
    return {"reward/mean": 0.1 * step, "reward/std": 0.3, "kl/mean": 0.01 * step,
            "loss/policy": -0.02, "loss/value": 0.5 / step, "value/explained_var": 0.1,
            "perf/peak_mem_mb": 1300.0, "perf/tokens_per_s": 5.0, "perf/elapsed_s": 30.0 * step,
            "perf/tokens_total": 64.0 * step, "optim/lr": 1e-5}


def _rm_metrics(step: int) -> dict[str, float]:
    return {"loss/train": math.exp(-step / 5), "eval/accuracy": min(1.0, 0.5 + 0.05 * step),
            "eval/margin": 0.1 * step, "perf/elapsed_s": 2.0 * step}


def make_site(api, user, other_api) -> Site:
    prompts = upload_prompts(api, PROMPTS, name="cats and dogs")
    pairs = api.post("/api/datasets", {"name": "pairs", "kind": "preferences", "file": _file(
        "pairs.jsonl", [{"prompt": f"Question {i}?", "chosen": "A good, clear answer.",
                         "rejected": "meh"} for i in range(6)])}).json()
    dataset = Dataset.objects.get(pk=prompts["id"])
    long_prompt = "Summarize: " + "a very long story about a cat and a dog " * 8
    grpo = make_run(user, dataset, name="length control", steps=12,
                    samples=sample_rows([long_prompt, "Say hi."], 2, "grpo"))
    checkpoint = write_checkpoint(grpo, 12)
    ppo = make_run(user, dataset, name="ppo baseline", algorithm="ppo", steps=6,
                   metrics=_ppo_metrics, hyperparameters={"max_steps": 6, "ppo_epochs": 4},
                   samples=sample_rows(["Say hi."], 2, "ppo"))
    rm_dataset = Dataset.objects.get(pk=pairs["id"])
    reward_model = make_run(user, rm_dataset, name="rm on pairs", algorithm="reward_model",
                            steps=8, metrics=_rm_metrics, rewards=[],
                            hyperparameters={"max_steps": 8, "batch_size": 4})
    write_checkpoint(reward_model, 8)
    batch = make_batch(user, items=3, shared=True, name="cats batch")
    rank_in_order(api, batch.items.order_by("index").first().pk)
    rank_in_order(other_api, batch.items.order_by("index").first().pk)
    return Site(prompts=prompts["id"], preferences=pairs["id"], grpo=grpo, ppo=ppo,
                reward_model=reward_model, checkpoint=checkpoint, batch=batch.pk)


def _file(name: str, rows: list[dict]) -> io.BytesIO:
    f = io.BytesIO("\n".join(json.dumps(r) for r in rows).encode())
    f.name = name
    return f

