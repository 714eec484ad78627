"""JSON API for models, runs, metrics, samples and checkpoints (API.md)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import FileResponse, Http404, HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import StrictInt

from training.config import CONFIG_CLASSES
from webapp.runs import selectors, services
from webapp.runs.models import Run
from webapp.runs.registry import model_list
from webapp.schemas import OFFSET_MAX, StrictIn

STEP_MAX = 10**9  # ?after= and ?step= beyond any run, within what the database compares

router = Router(tags=["runs"])


class ModelOut(Schema):
    id: str
    name: str
    kind: str
    source: str


class RunIn(StrictIn):
    name: str = ""
    algorithm: str = "grpo"
    dataset: StrictInt | str | None = None  # not true, nor 1.0: both would read as dataset 1
    base_model: str = ""
    rewards: Any = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class RunOut(Schema):
    id: int
    name: str
    algorithm: str
    status: str
    step: int
    max_steps: int
    dataset: int
    base_model: str
    parent_checkpoint: int | None
    rewards: list[dict[str, Any]]
    hyperparameters: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    stop_reason: str
    cancel_requested: bool
    attempt: int


class CheckpointOut(Schema):
    id: int
    step: int
    size_bytes: int
    sha256: str
    model_id: str
    created_at: datetime


class Paging(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


def run_out(run: Run) -> dict[str, Any]:
    return {f: getattr(run, f) for f in RunOut.model_fields if f not in (
        "dataset", "parent_checkpoint")} | {"dataset": run.dataset_id,
                                            "parent_checkpoint": run.parent_checkpoint_id}


@router.get("/models", response=list[ModelOut])
def list_models(request: HttpRequest):
    return [{"id": e.id, "name": e.name, "kind": e.kind, "source": e.source}
            for e in model_list(user=request.user)]


@router.get("/hyperparameters/{algorithm}")
def hyperparameter_schema(request: HttpRequest, algorithm: str):
    """Every hyperparameter of an algorithm with its default, help text and bounds."""
    cls = CONFIG_CLASSES.get(algorithm)
    if cls is None:
        raise Http404(f"Unknown algorithm '{algorithm}'.")
    return [{"name": f.name, "default": f.default, **{k: v for k, v in f.metadata.items()}}
            for f in cls.hyperparameter_fields()]


@router.post("/runs", response={201: RunOut})
def create_run(request: HttpRequest, payload: RunIn):
    run = services.run_create(owner=request.user, name=payload.name,
                              algorithm=payload.algorithm, dataset_id=payload.dataset,
                              base_model=payload.base_model, rewards=payload.rewards,
                              hyperparameters=payload.hyperparameters)
    return 201, run_out(run)


@router.get("/runs", response=list[RunOut])
def list_runs(request: HttpRequest, paging: Query[Paging]):
    return [run_out(r) for r in selectors.run_list(user=request.user, limit=paging.limit,
                                                   offset=paging.offset)]


@router.get("/runs/{run_id}", response=RunOut)
def get_run(request: HttpRequest, run_id: int):
    return run_out(selectors.run_get_for_user(user=request.user, run_id=run_id))


@router.post("/runs/{run_id}/cancel", response={202: RunOut})
def cancel_run(request: HttpRequest, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return 202, run_out(services.run_cancel(run=run))


@router.get("/runs/{run_id}/metrics")
def run_metrics(request: HttpRequest, run_id: int, after: int = Query(0, ge=0, le=STEP_MAX)):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return selectors.run_metrics_since(run=run, after=after)


@router.get("/runs/{run_id}/samples")
def run_samples(request: HttpRequest, run_id: int,
                step: int | None = Query(None, ge=0, le=STEP_MAX)):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    shown, samples = selectors.run_samples(run=run, step=step)
    return [{"step": s.step, "index": s.index, "prompt": s.prompt, "completion": s.completion,
             "rewards": s.rewards, "reward": s.reward, "advantage": s.advantage}
            for s in samples]


@router.get("/runs/{run_id}/checkpoints", response=list[CheckpointOut])
def run_checkpoints(request: HttpRequest, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return list(selectors.checkpoint_list(run=run))


@router.get("/checkpoints/{checkpoint_id}/download")
def download_checkpoint(request: HttpRequest, checkpoint_id: int):
    checkpoint = selectors.checkpoint_get_for_user(user=request.user,
                                                   checkpoint_id=checkpoint_id)
    path = checkpoint.archive_path
    if not path.exists():
        raise Http404("The checkpoint's archive is gone from the server's disk.")
    filename = f"run-{checkpoint.run_id}-step-{checkpoint.step}.zip"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=filename,
                        content_type="application/zip")
