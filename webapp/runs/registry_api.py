"""JSON API of the model registry: every model a run can start from, with its card."""
from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Router, Schema

from webapp.errors import Invalid
from webapp.runs.downloads import download_cancel, download_for, download_json, download_start
from webapp.runs.models import Checkpoint, DownloadStatus
from webapp.runs.registration import PATH_MAX_CHARS, model_register
from webapp.runs.registry import ModelEntry, card_json, model_list
from webapp.schemas import NAME_SCHEMA, StrictIn, documented, requires

router = Router(tags=["models"])


class CardOut(Schema):
    architecture: str
    model_type: str
    kind: str
    parameters: int
    dtype: str
    context_length: int | None
    vocab_size: int | None
    chat_template: bool
    disk_bytes: int
    hidden_size: int | None = None
    layers: int | None = None
    algorithms: list[str] = Field(description="the algorithms that may start from it")


class ModelOut(Schema):
    id: str
    name: str
    kind: str
    source: str = Field(description="bundled | checkpoint | local | hf_cache")
    ready: bool
    revision: str | None = Field(None, description="for hf_cache: the snapshot's commit")
    problem: str | None = Field(None, description="why it cannot be trained (then not ready)")
    card: CardOut | None = None
    checkpoint: int | None = Field(None, description="for a checkpoint: its id")
    run: int | None = Field(None, description="for a checkpoint: the run that wrote it")
    step: int | None = None
    parent: str | None = Field(None, description="for a checkpoint: the model id its run "
                               "started from (follow parents for the whole lineage)")


def model_json(entry: ModelEntry, checkpoint: Checkpoint | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": entry.id, "name": entry.name, "kind": entry.kind,
                           "source": entry.source, "ready": entry.ready,
                           "revision": entry.revision, "problem": entry.problem,
                           "card": card_json(entry) if entry.ready else None}
    if checkpoint is not None:
        row |= {"checkpoint": checkpoint.pk, "run": checkpoint.run_id, "step": checkpoint.step,
                "parent": checkpoint.run.base_model}
    return row


@router.get("/models", response=list[ModelOut])
def list_models(request: HttpRequest):
    """Bundled, local, Hugging Face cache and checkpoint models, each with its card; a
    checkpoint names its run, step and parent. Models the engine may not load (pickle weights,
    remote code) are listed with ``ready: false`` and the ``problem``."""
    entries = [e for e in model_list(user=request.user, include_unready=True)
               if e.ready or e.problem]
    checkpoints = {c.pk: c for c in Checkpoint.objects.filter(
        pk__in=[e.checkpoint_id for e in entries if e.checkpoint_id]).select_related("run")}
    return [model_json(e, checkpoints.get(e.checkpoint_id or 0)) for e in entries]


class ModelIn(StrictIn):
    model_config = requires()

    hub_id: Any = documented(type="string", minLength=3, maxLength=200,
                             description="a hub repository to download, owner/name")
    revision: Any = documented(type="string", minLength=1, maxLength=100,
                               description="branch, tag or commit (default main)")
    path: Any = documented(type="string", minLength=1, maxLength=PATH_MAX_CHARS,
                           description="staff: a directory on the server to register (the "
                           "workers read it at the same path)")
    name: Any = documented(**NAME_SCHEMA)
    id: Any = documented(type="string", minLength=1, maxLength=100,
                         description="with path: the model id (default: the name's slug)")


class ModelStateOut(ModelOut):
    status: str = Field(description="queued | downloading | ready | failed | cancelled")
    progress: float = Field(description="0..1, of the bytes to download")
    error: str | None = None


def _state(request: HttpRequest, model_id: str) -> dict[str, Any]:
    """A model's registry entry, or the state of its download (which is newer)."""
    entry = next((e for e in model_list(user=request.user, include_unready=True)
                  if e.id == model_id and (e.ready or e.problem)), None)
    download = download_for(model_id)
    if download is not None and (entry is None or download.status != DownloadStatus.READY):
        return {"name": download.repo_id, "kind": "policy", "source": "hub",
                "ready": False, "card": None} | download_json(download)
    if entry is None:
        raise Http404(f"No model '{model_id}'; GET /api/models lists them.")
    checkpoint = (Checkpoint.objects.select_related("run").filter(pk=entry.checkpoint_id).first()
                  if entry.checkpoint_id else None)
    return model_json(entry, checkpoint) | {"status": "ready" if entry.ready else "refused",
                                            "progress": 1.0, "error": entry.problem}


@router.post("/models", response={201: ModelOut, 202: ModelStateOut},
             openapi_extra={"x-staff-only": True})
def add_model(request: HttpRequest, payload: ModelIn):
    """Either ``{"hub_id", "revision"}``: a worker downloads the model into the Hugging Face
    cache (202; follow it at ``GET /api/models/hf:<hub_id>``), or, staff only, ``{"path",
    "name"}``: register a local directory for every user (201). Refusals are 422 naming the
    reason: malformed id, not a model, pickle weights, remote code, no tokenizer."""
    if payload.hub_id is not None and payload.path is not None:
        raise Invalid("Give hub_id (to download) or path (to register), not both.",
                      fields={"path": "with hub_id"})
    if payload.hub_id is not None or payload.path is None:
        download, _ = download_start(user=request.user, hub_id=payload.hub_id,
                                     revision=payload.revision)
        return 202, _state(request, download.model_id)
    registered = model_register(user=request.user, path=payload.path, name=payload.name,
                                model_id=payload.id)
    entry = next(e for e in model_list(user=request.user, include_unready=True)
                 if e.id == registered.model_id)
    return 201, model_json(entry, None)


@router.post("/models/{path:model_id}/cancel", response=ModelStateOut)
def cancel_download(request: HttpRequest, model_id: str):
    """Stop a download you asked for (staff: anyone's); 409 once it has ended."""
    download = download_for(model_id.removesuffix("/cancel"))
    if download is None or not (request.user.is_staff
                                or download.requested_by_id == request.user.pk):
        raise Http404("No download of yours by that id.")
    download_cancel(download=download)
    return _state(request, download.model_id)


# after the cancel route: this one's path would match ".../cancel" too
@router.get("/models/{path:model_id}", response=ModelStateOut)
def get_model(request: HttpRequest, model_id: str):
    """One model with its card, or the state of its download (status, progress, error)."""
    return _state(request, model_id)
