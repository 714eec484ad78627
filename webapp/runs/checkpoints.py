"""Reads about checkpoints beyond their rows: the bytes they take on disk, where they came
from (lineage), and what depends on them (runs started from them, runs that use them as a
reward, batches generating with them). The deletes that these guard are in
:mod:`webapp.runs.deletion`."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from training.reward_types import model_references
from webapp.runs.models import Checkpoint, Run

# training.checkpoints.STATE_DIR: the folder of what resuming needs (importing the engine's
# module would import torch into the web process).
STATE_DIR = "training_state"
LINEAGE_MAX = 100  # hops followed back; a longer chain is cut (it cannot loop: see below)


@dataclass(frozen=True)
class DiskUsage:
    """Bytes a checkpoint takes on disk: the model directory that loads with
    ``from_pretrained``, the training state beside it (optimizer, RNG, sampler: what
    resuming needs), and the zip people download."""

    weights: int
    training_state: int
    archive: int

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.archive


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def checkpoint_disk_usage(checkpoint: Checkpoint) -> DiskUsage:
    directory = checkpoint.directory
    state = _size(directory / STATE_DIR)
    return DiskUsage(weights=_size(directory) - state, training_state=state,
                     archive=_size(checkpoint.archive_path))


@dataclass(frozen=True)
class Ancestor:
    """One step back in a model's history: a checkpoint (``run`` and ``step`` set) or the
    model the chain started from (only ``model_id``)."""

    model_id: str
    run: Run | None = None
    step: int | None = None


def checkpoint_lineage(checkpoint: Checkpoint,
                       known: Mapping[int, Checkpoint] | None = None) -> list[Ancestor]:
    """Where the checkpoint's run started from, then where that one started from, ..., back
    to a bundled or local model: nearest first. ``known`` (checkpoints by id, their runs
    loaded) saves a query per step. A run starts from a checkpoint that existed before it,
    so the chain always ends."""
    chain: list[Ancestor] = []
    run = checkpoint.run
    while len(chain) < LINEAGE_MAX:
        parent_id = run.parent_checkpoint_id
        parent = None
        if parent_id is not None:
            parent = (known or {}).get(parent_id) or Checkpoint.objects.select_related(
                "run").filter(pk=parent_id).first()
        if parent is None:
            chain.append(Ancestor(model_id=run.base_model))
            return chain
        chain.append(Ancestor(model_id=parent.model_id, run=parent.run, step=parent.step))
        run = parent.run
    return chain


@dataclass(frozen=True)
class Dependant:
    kind: str  # run | reward | batch
    id: int
    name: str

    def describe(self) -> str:
        what = {"run": "run", "reward": "run", "batch": "labeling batch"}[self.kind]
        how = {"run": "started from it", "reward": "uses it as a reward",
               "batch": "is generating with it"}[self.kind]
        return f"{what} {self.id} '{self.name}' {how}"


def dependants_by_checkpoint(checkpoints: Iterable[Checkpoint], *,
                             except_run: int | None = None) -> dict[int, list[Dependant]]:
    """For each checkpoint: the runs started from it, the runs that use it as a reward and
    the labeling batches still generating with it (``except_run`` does not count). Three
    queries for any number of checkpoints of one owner."""
    from webapp.labeling.models import Batch, BatchStatus

    checkpoints = list(checkpoints)
    by_model = {c.model_id: c.pk for c in checkpoints}
    found: dict[int, list[Dependant]] = {pk: [] for pk in by_model.values()}
    if not by_model:
        return found
    owner = checkpoints[0].run.owner_id
    runs = Run.objects.filter(owner_id=owner).exclude(pk=except_run).order_by("pk")
    for pk, name, parent in runs.filter(parent_checkpoint__in=list(found)).values_list(
            "pk", "name", "parent_checkpoint_id"):
        found[parent].append(Dependant("run", pk, name))
    for pk, name, rewards in runs.values_list("pk", "name", "rewards"):
        sources = [r for r in rewards or [] if isinstance(r, dict)]
        for model in {model_id for _, model_id, _ in model_references(sources)}:
            if model in by_model:
                found[by_model[model]].append(Dependant("reward", pk, name))
    generating = (BatchStatus.QUEUED, BatchStatus.GENERATING, BatchStatus.CRASHED)
    for pk, name, model in Batch.objects.filter(
            model__in=list(by_model), status__in=generating).values_list("pk", "name", "model"):
        found[by_model[model]].append(Dependant("batch", pk, name))
    return found


def checkpoint_dependants(checkpoints: Iterable[Checkpoint], *,
                          except_run: int | None = None) -> list[Dependant]:
    """Everything that depends on any of ``checkpoints`` (see
    :func:`dependants_by_checkpoint`), each once."""
    seen: dict[tuple[str, int], Dependant] = {}
    for dependants in dependants_by_checkpoint(list(checkpoints),
                                               except_run=except_run).values():
        for d in dependants:
            seen.setdefault((d.kind, d.id), d)
    return list(seen.values())
