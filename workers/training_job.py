"""Run one training attempt: claim the run, build its config, train, record the outcome."""
from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from training.checkpoints import make_archive
from training.config import GRPOConfig, build_config
from training.metrics import SampleRecord
from webapp.runs import services
from webapp.runs.models import Run, RunStatus
from webapp.runs.registry import model_resolve

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0


class RunSink:
    """Sends the engine's reports to the database and the run's live stream, tagged with the
    attempt; a refused write (stale attempt) raises and so stops the engine."""

    def __init__(self, run_id: int, attempt: int):
        self.run_id, self.attempt = run_id, attempt

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        services.run_record_step(run_id=self.run_id, attempt=self.attempt, step=step,
                                 metrics=metrics)

    def log_samples(self, step: int, samples: Sequence[SampleRecord]) -> None:
        services.run_record_samples(run_id=self.run_id, attempt=self.attempt, step=step,
                                    samples=[asdict(s) for s in samples])

    def log_checkpoint(self, step: int, path: str) -> None:
        root = Path(settings.CHECKPOINTS_DIR)
        directory = Path(path)
        archive = directory.with_suffix(".zip")
        size, digest = make_archive(directory, archive)
        services.run_record_checkpoint(
            run_id=self.run_id, attempt=self.attempt, step=step,
            path=str(directory.relative_to(root)), archive=str(archive.relative_to(root)),
            size_bytes=size, sha256=digest)


class Heartbeat(threading.Thread):
    """Marks the attempt alive every few seconds, even inside a long step."""

    def __init__(self, run_id: int, attempt: int):
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.run_id, self.attempt = run_id, attempt
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(HEARTBEAT_S):
                try:
                    services.run_heartbeat(run_id=self.run_id, attempt=self.attempt)
                except services.StaleAttempt:
                    return
                except Exception:  # a transient database error must not kill the run
                    log.exception("heartbeat of run %s failed", self.run_id)
        finally:
            connection.close()


def build_run_config(run: Run) -> GRPOConfig:
    entry = model_resolve(user=run.owner, model_id=run.base_model)
    config = build_config(
        run.algorithm, run.hyperparameters, rewards=run.rewards,
        model_path=str(entry.path), dataset_path=str(run.dataset.file_path),
        output_dir=str(Path(settings.CHECKPOINTS_DIR) / f"run-{run.pk}"))
    assert isinstance(config, GRPOConfig)
    return config


def run_training(run_id: int) -> None:
    close_old_connections()
    attempt = services.run_claim(run_id=run_id, worker=socket.gethostname())
    if attempt is None:
        log.info("run %s is not queued (cancelled or claimed elsewhere); skipping", run_id)
        return
    heartbeat = Heartbeat(run_id, attempt)
    heartbeat.start()
    try:
        status, error, reason = _train(run_id, attempt)
    finally:
        heartbeat.done.set()
    services.run_finish(run_id=run_id, attempt=attempt, status=status, error=error,
                        stop_reason=reason)


def _train(run_id: int, attempt: int) -> tuple[str, str, str]:
    from training.grpo import train  # torch is imported here, in the child, not at start-up

    try:
        run = Run.objects.select_related("dataset", "owner").get(pk=run_id)
        config = build_run_config(run)
        result, _ = train(config, sink=RunSink(run_id, attempt),
                          should_stop=lambda: services.run_should_stop(run_id=run_id,
                                                                       attempt=attempt))
    except services.StaleAttempt as exc:
        log.warning("%s", exc)
        return str(RunStatus.FAILED), "", "stale attempt"
    except Exception as exc:
        log.exception("run %s failed", run_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return str(RunStatus.FAILED), f"{detail}\n\n{traceback.format_exc(limit=8)}", "error"
    if result.stop_reason == "cancelled":
        return str(RunStatus.CANCELLED), "", "cancelled"
    return str(RunStatus.SUCCEEDED), "", result.stop_reason
