"""Deleting runs and checkpoints, files included. What another object depends on cannot be
deleted, and the refusal (409) names the dependants. Rows go first, in a transaction; the
files follow once it has committed, so a refused or failed delete leaves every file."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from webapp.errors import WrongState
from webapp.runs import events
from webapp.runs.checkpoints import Dependant, checkpoint_dependants
from webapp.runs.models import Checkpoint, Run

log = logging.getLogger(__name__)


def _names(dependants: list[Dependant]) -> str:
    shown = "; ".join(d.describe() for d in dependants[:10])
    more = len(dependants) - 10
    return shown + (f"; and {more} more" if more > 0 else "")


def remove_paths(paths: list[Path]) -> None:
    """Remove files and directories under CHECKPOINTS_DIR (nothing outside it, whatever a
    row says); a path already gone is fine."""
    root = Path(settings.CHECKPOINTS_DIR).resolve()
    for path in paths:
        resolved = path.resolve()
        if resolved == root or root not in resolved.parents:
            log.warning("not removing %s: outside %s", path, root)
            continue
        try:
            if resolved.is_dir():
                shutil.rmtree(resolved)
            elif resolved.exists():
                resolved.unlink()
        except OSError:
            log.exception("could not remove %s", resolved)


def run_delete(*, run: Run) -> None:
    """Delete an ended run with its metrics, samples, checkpoints and their files."""
    if not run.is_terminal:
        raise WrongState(f"Run {run.pk} '{run.name}' is {run.status}; cancel it (or let it "
                         "finish) before deleting it.")
    checkpoints = list(Checkpoint.objects.filter(run=run).select_related("run"))
    dependants = checkpoint_dependants(checkpoints, except_run=run.pk)
    if dependants:
        raise WrongState(f"Run {run.pk} '{run.name}' cannot be deleted: its checkpoints are in "
                         f"use: {_names(dependants)}. Delete those first.")
    directory = Path(settings.CHECKPOINTS_DIR) / f"run-{run.pk}"
    paths = [directory] + [p for c in checkpoints for p in (c.directory, c.archive_path)]
    run_id = run.pk
    with transaction.atomic():
        Run.objects.filter(pk=run_id).delete()
        transaction.on_commit(lambda: _forget_run(run_id, paths))


def _forget_run(run_id: int, paths: list[Path]) -> None:
    remove_paths(paths)
    try:
        events.reset(run_id)  # its live stream, if Redis still holds one
    except Exception:  # Redis down: the stream expires on its own
        log.warning("could not remove the event stream of deleted run %s", run_id)


def checkpoint_delete(*, checkpoint: Checkpoint) -> None:
    """Delete one checkpoint of an ended run: its model directory, training state and zip."""
    run = checkpoint.run
    if not run.is_terminal:
        raise WrongState(f"Run {run.pk} '{run.name}' is {run.status}: it may resume from this "
                         "checkpoint. Delete checkpoints once the run has ended.")
    dependants = checkpoint_dependants([checkpoint])
    if dependants:
        raise WrongState(f"Checkpoint {checkpoint.model_id} (run {run.pk} step "
                         f"{checkpoint.step}) cannot be deleted: {_names(dependants)}. "
                         "Delete those first.")
    paths = [checkpoint.directory, checkpoint.archive_path]
    with transaction.atomic():
        Checkpoint.objects.filter(pk=checkpoint.pk).delete()
        transaction.on_commit(lambda: remove_paths(paths))
