"""JSON API of the model registry: every model a run can start from, with its card."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema

from webapp.runs.models import Checkpoint
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


class RegisterIn(StrictIn):
    model_config = requires("path")

    path: Any = documented(type="string", minLength=1, maxLength=PATH_MAX_CHARS,
                           description="the directory's absolute path on the server (the "
                           "workers read it at the same path)")
    name: Any = documented(**NAME_SCHEMA)
    id: Any = documented(type="string", minLength=1, maxLength=100,
                         description="the model id (default: the name's slug)")


@router.post("/models", response={201: ModelOut}, openapi_extra={"x-staff-only": True})
def register_model(request: HttpRequest, payload: RegisterIn):
    """Staff: register a local model directory for every user (``source: local``). Refused
    with 422 naming the reason: not a model, pickle weights, remote code, no tokenizer."""
    registered = model_register(user=request.user, path=payload.path, name=payload.name,
                                model_id=payload.id)
    entry = next(e for e in model_list(user=request.user, include_unready=True)
                 if e.id == registered.model_id)
    return 201, model_json(entry, None)
