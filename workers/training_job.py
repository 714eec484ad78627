"""Run one training attempt: claim the run, build its config, train (resuming from the last
checkpoint when an earlier attempt crashed or was interrupted), record the outcome."""
from __future__ import annotations

import importlib
import json
import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from training.algorithms import AlgorithmSpec, build_config
from training.checkpoints import make_archive
from training.config import BaseConfig
from training.data import read_rows
from training.metrics import SampleRecord
from training.preferences import rows_as_pairs
from training.reward_types import model_references
from webapp.datasets.models import DatasetKind
from webapp.runs import attempts
from webapp.runs.models import Run, RunStatus
from webapp.runs.registry import model_resolve
from workers.heartbeat import Heartbeat

log = logging.getLogger(__name__)


class RunSink:
    """Sends the engine's reports to the database and the run's live stream, tagged with the
    attempt; a refused write (stale attempt) raises and so stops the engine."""

    def __init__(self, run_id: int, attempt: int):
        self.run_id, self.attempt = run_id, attempt

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        attempts.run_record_step(run_id=self.run_id, attempt=self.attempt, step=step,
                                 metrics=metrics)

    def log_samples(self, step: int, samples: Sequence[SampleRecord]) -> None:
        attempts.run_record_samples(run_id=self.run_id, attempt=self.attempt, step=step,
                                    samples=[asdict(s) for s in samples])

    def log_total_steps(self, total: int) -> None:
        attempts.run_set_total_steps(run_id=self.run_id, attempt=self.attempt, total=total)

    def log_checkpoint(self, step: int, path: str) -> None:
        root = Path(settings.CHECKPOINTS_DIR)
        directory = Path(path)
        archive = directory.with_suffix(".zip")
        size, digest = make_archive(directory, archive)
        attempts.run_record_checkpoint(
            run_id=self.run_id, attempt=self.attempt, step=step,
            path=str(directory.relative_to(root)), archive=str(archive.relative_to(root)),
            size_bytes=size, sha256=digest)


def _reward_sources(run: Run) -> list[dict[str, Any]]:
    """The run's reward sources, each model-backed one with its model's directory."""
    sources = [dict(s) for s in run.rewards]
    for i, model_id, kind in model_references(sources):
        entry = model_resolve(user=run.owner, model_id=model_id, field=f"rewards[{i}]",
                              kinds=kind.model_kinds)
        sources[i]["path"] = str(entry.path)
    return sources


def _pairs_file(run: Run, output_dir: Path) -> Path:
    """The run's data file; a ranked-list data set becomes its K(K-1)/2 pairs (what the
    algorithms that take rankings train on)."""
    if run.dataset.kind != DatasetKind.RANKINGS:
        return run.dataset.file_path
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "pairs.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows_as_pairs(read_rows(run.dataset.file_path)):
            fh.write(json.dumps(row) + "\n")
    return path


def _spec(run: Run) -> AlgorithmSpec:
    spec = run.spec
    if spec is None:
        raise ValueError(f"the algorithm {run.algorithm!r} is not offered by this worker")
    return spec


def build_run_config(run: Run) -> BaseConfig:
    """The engine's config of the run's current attempt. Each attempt writes its checkpoints
    under a directory of its own, so a zombie attempt cannot overwrite a newer one's files."""
    entry = model_resolve(user=run.owner, model_id=run.base_model)
    output_dir = Path(settings.CHECKPOINTS_DIR) / f"run-{run.pk}" / f"attempt-{run.attempt}"
    internal: dict[str, Any] = {"model_path": str(entry.path), "model_id": entry.id,
                                "output_dir": str(output_dir),
                                "dataset_path": str(_pairs_file(run, output_dir))}
    if _spec(run).uses_rewards:
        internal["rewards"] = _reward_sources(run)
    return build_config(run.algorithm, run.hyperparameters, **internal)


def run_training(run_id: int, *, worker: str, task_id: str = "") -> None:
    close_old_connections()
    attempt = attempts.run_claim(run_id=run_id, worker=worker, task_id=task_id,
                                 pid=os.getpid())
    if attempt is None:
        log.info("run %s is not waiting for a worker (cancelled, or claimed elsewhere)", run_id)
        return
    beat = lambda: _beat(run_id, attempt)  # noqa: E731
    with Heartbeat(f"run-{run_id}", beat):
        outcome = _train(run_id, attempt)
    if outcome is None:
        attempts.run_interrupted(run_id=run_id, attempt=attempt)
        return
    status, error, reason = outcome
    attempts.run_finish(run_id=run_id, attempt=attempt, status=status, error=error,
                        stop_reason=reason)


def _beat(run_id: int, attempt: int) -> bool:
    try:
        attempts.run_heartbeat(run_id=run_id, attempt=attempt)
    except attempts.StaleAttempt:
        return False
    return True


def _resume_point(run_id: int, attempt: int) -> str | None:
    """The directory a later attempt resumes from: the run's last recorded checkpoint."""
    if attempt == 1:
        return None
    checkpoint = attempts.last_checkpoint(run_id=run_id)
    return str(checkpoint.directory) if checkpoint else None


def _train(run_id: int, attempt: int) -> tuple[str, str, str] | None:
    """(status, error, stop reason) of the attempt, or None when it was interrupted by its
    worker shutting down (it wrote a checkpoint; the run goes back to the queue)."""
    try:
        run = Run.objects.select_related("dataset", "owner").get(pk=run_id)
        config = build_run_config(run)
        # torch is imported here, in the worker's child process, never at start-up
        engine = importlib.import_module(_spec(run).engine)
        result, _ = engine.train(
            config, sink=RunSink(run_id, attempt),
            should_stop=lambda: attempts.run_should_stop(run_id=run_id, attempt=attempt),
            resume_from=_resume_point(run_id, attempt))
    except attempts.StaleAttempt as exc:
        log.warning("%s", exc)
        return str(RunStatus.FAILED), "", "stale attempt"
    except Exception as exc:
        log.exception("run %s failed", run_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return str(RunStatus.FAILED), f"{detail}\n\n{traceback.format_exc(limit=8)}", "error"
    if result.stop_reason == "cancelled":
        flags = Run.objects.values_list("cancel_requested", "interrupt_requested").get(
            pk=run_id)
        if flags == (False, True):
            return None
        return str(RunStatus.CANCELLED), "", "cancelled"
    return str(RunStatus.SUCCEEDED), "", result.stop_reason
