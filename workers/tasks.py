"""Task definitions. Torch and the engine are imported inside the task body, in the worker's
child process, so neither the web process nor the worker's parent ever initialises CUDA."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="workers.tasks.train_run_task", ignore_result=True)
def train_run_task(run_id: int) -> None:
    from workers.training_job import run_training

    run_training(run_id)


@shared_task(name="workers.tasks.generate_batch_task", ignore_result=True)
def generate_batch_task(batch_id: int) -> None:
    from workers.labeling_job import run_generation

    run_generation(batch_id)
