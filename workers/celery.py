"""The workers' Celery application (``celery -A workers worker``), configured from Django
settings (``CELERY_*``), its tasks, and the worker child's preload of the training engine.
The web process never imports this: it sends tasks by name (:mod:`webapp.queueing`)."""
from __future__ import annotations

import importlib
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, worker_process_init, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("rlhf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])

# What a training or generation task imports first. Each worker child runs one task
# (--max-tasks-per-child 1) and is forked when the previous one exits, so importing these as
# the child starts, rather than inside the task, takes them off the time to a run's first
# step. Importing torch does not initialise CUDA; nothing here touches a device, and the
# parent process (which forks the children) never imports torch at all. The imports take a
# few seconds on a busy machine, longer than the pool waits by default for a new child to
# report itself up (4 s, then it kills the child and forks another, forever); hence the
# longer wait. (Not on a thread: transformers' lazy imports race with a task's own.)
app.conf.worker_proc_alive_timeout = 120
BASE_MODULES = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
)


def engine_modules() -> list[str]:
    """What a child imports as it starts: torch, transformers, and every declared
    algorithm's engine module."""
    from training.algorithms import algorithms

    return [*BASE_MODULES, *(spec.engine for spec in algorithms())]


@worker_process_init.connect
def preload_engine(**_: object) -> None:
    from training.process import prefer_huge_pages

    prefer_huge_pages()  # before torch's first allocation
    if os.environ.get("RLHF_WORKER_PRELOAD", "1") == "0":  # bench/first_step.py compares
        return
    for name in engine_modules():
        importlib.import_module(name)


@celeryd_after_setup.connect
def start_presence(sender: str, instance: Any, **_: Any) -> None:
    """The worker's name, queues and devices, written every interval until it stops."""
    from workers import presence

    presence.start(sender, sorted(instance.app.amqp.queues.consume_from
                                  or instance.app.amqp.queues))


@worker_shutdown.connect
def stop_presence(**_: Any) -> None:
    from workers import presence

    presence.stop()
