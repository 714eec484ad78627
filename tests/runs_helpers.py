"""Runs with recorded steps, made through the same services a worker calls (claim, record
steps and samples, finish), for tests of listing, summaries and comparison."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from webapp.datasets.models import Dataset
from webapp.runs import attempts, events
from webapp.runs.models import Run, RunStatus

GRPO_HP = {"max_steps": 100, "learning_rate": 1e-5, "group_size": 4, "beta": 0.04,
           "seed": 0}


def make_dataset(owner, name: str = "prompts", kind: str = "prompts") -> Dataset:
    return Dataset.objects.create(owner=owner, name=name, kind=kind, rows=4,
                                  columns=["prompt"], file=f"{name}.jsonl", size_bytes=1)


def grpo_metrics(step: int, *, scale: float = 1.0) -> dict[str, float]:
    """A plausible GRPO step: reward rising, KL growing, 256 tokens a step at 10 s a step."""
    return {"reward/mean": scale * (1 - math.exp(-step / 10)) + 0.01 * math.sin(step),
            "reward/std": 0.2, "kl/mean": 0.001 * step, "loss/policy": -0.01 * step,
            "perf/peak_mem_mb": 1000 + 10 * step, "perf/tokens_per_s": 25.6,
            "perf/elapsed_s": 10.0 * step, "perf/tokens_total": 256.0 * step,
            "optim/lr": 1e-5}


def make_run(owner, dataset: Dataset, *, name: str = "run", algorithm: str = "grpo",
             steps: int = 10, hyperparameters: dict | None = None,
             rewards: list | None = None, metrics: Callable[[int], dict[str, float]] = grpo_metrics,
             samples: Callable[[int], list[dict]] | None = None,
             finish: str | None = RunStatus.SUCCEEDED) -> Run:
    hp = hyperparameters if hyperparameters is not None else dict(GRPO_HP)
    run = Run.objects.create(
        owner=owner, name=name, algorithm=algorithm, dataset=dataset, base_model="tiny-llama",
        rewards=rewards if rewards is not None else [
            {"type": "length", "target": 200, "weight": 1.0}],
        hyperparameters=hp, max_steps=hp.get("max_steps", steps))
    events.reset(run.pk)  # as run_create does: an earlier test's run had this id too
    attempt = attempts.run_claim(run_id=run.pk, worker="test-worker")
    assert attempt is not None
    for step in range(1, steps + 1):
        attempts.run_record_step(run_id=run.pk, attempt=attempt, step=step,
                                 metrics=metrics(step))
        if samples is not None:
            attempts.run_record_samples(run_id=run.pk, attempt=attempt, step=step,
                                        samples=samples(step))
    if finish:
        attempts.run_finish(run_id=run.pk, attempt=attempt, status=finish)
    run.refresh_from_db()
    return run


def sample_rows(prompts: list[str], per_prompt: int, tag: str) -> Callable[[int], list[dict]]:
    """Samples of a step: ``per_prompt`` completions of each prompt."""
    def rows(step: int) -> list[dict]:
        out = []
        for p, prompt in enumerate(prompts):
            for g in range(per_prompt):
                i = p * per_prompt + g
                out.append({"index": i, "prompt": prompt,
                            "completion": f"{tag} answer {g} to {p} at step {step}" + "!" * g,
                            "rewards": {"length": -float(g)}, "reward": -float(g),
                            "advantage": 0.5 - g})
        return out
    return rows


def read_events(api, run_id, **headers):
    """Consume the run's server-sent events as they arrive: [(arrival time, event, data, id)]."""
    response = api.get(f"/api/runs/{run_id}/events", **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events, buffer = [], ""
    for chunk in response.streaming_content:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines()
                          if ": " in line and not line.startswith(":"))
            if "event" in fields:
                events.append((time.monotonic(), fields["event"], json.loads(fields["data"]),
                               fields["id"]))
    return events
