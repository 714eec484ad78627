"""Task definitions. Torch and the engine are imported inside the task body, in the worker's
child process, so neither the web process nor the worker's parent ever initialises CUDA."""
from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_shutting_down

log = logging.getLogger(__name__)


@shared_task(name="workers.tasks.train_run_task", ignore_result=True, bind=True)
def train_run_task(self: Any, run_id: int) -> None:
    from workers.training_job import run_training

    run_training(run_id, worker=self.request.hostname or "", task_id=self.request.id or "")


@shared_task(name="workers.tasks.generate_batch_task", ignore_result=True, bind=True)
def generate_batch_task(self: Any, batch_id: int) -> None:
    from workers.labeling_job import run_generation

    run_generation(batch_id, worker=self.request.hostname or "", task_id=self.request.id or "")


@worker_shutting_down.connect
def _interrupt_runs(sender: str | None = None, **_: Any) -> None:
    """A worker asked to stop (SIGTERM from a deploy, ``docker compose stop``) asks its runs
    to stop at the next step and checkpoint; they go back to the queue, and Celery's warm
    shutdown waits for that instead of for the whole run."""
    from webapp.runs.attempts import runs_interrupt_worker

    try:
        n = runs_interrupt_worker(worker=sender or "")
        log.warning("worker %s is shutting down: %d run(s) will checkpoint and requeue",
                    sender, n)
    except Exception:  # the database is gone too: the reaper resumes the runs later
        log.exception("could not interrupt the runs of %s", sender)


@shared_task(name="workers.tasks.download_model_task", ignore_result=True, bind=True)
def download_model_task(self: Any, download_id: int) -> None:
    from workers.download_job import run_download

    run_download(download_id, worker=self.request.hostname or "", task_id=self.request.id or "")
