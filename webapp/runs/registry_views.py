"""The models page: the registry as a person browses it (bundled, local, the checkpoints of
their runs, fitted reward models), each checkpoint with its lineage, its bytes on disk and
what depends on it; and deleting a checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from training.algorithms import algorithms
from training.model_files import ModelCard
from webapp.errors import ServiceError
from webapp.runs import deletion, selectors
from webapp.runs.checkpoints import (
    Ancestor,
    Dependant,
    DiskUsage,
    checkpoint_disk_usage,
    checkpoint_lineage,
    dependants_by_checkpoint,
)
from webapp.runs.downloads import download_cancel, download_for, download_start
from webapp.runs.models import ACTIVE_DOWNLOADS, Checkpoint, DownloadStatus, ModelDownload
from webapp.runs.registration import model_register
from webapp.runs.registry import ModelEntry, card_json, checkpoint_card, model_list

CHECKPOINTS_SHOWN = 300


@dataclass
class BaseModelRow:
    entry: ModelEntry
    card: dict[str, Any] | None

    @property
    def algorithms(self) -> list[str]:
        titles = {s.id: s.title for s in algorithms()}
        return [titles.get(a, a) for a in (self.card or {}).get("algorithms", [])]


@dataclass
class CheckpointRow:
    checkpoint: Checkpoint
    lineage: list[Ancestor]
    disk: DiskUsage
    dependants: list[Dependant]
    card: ModelCard | None

    @property
    def deletable(self) -> bool:
        return not self.dependants and self.checkpoint.run.is_terminal


def _checkpoint_rows(user: object) -> list[CheckpointRow]:
    checkpoints = list(Checkpoint.objects.filter(run__owner_id=getattr(user, "pk", None))
                       .select_related("run").order_by("-created_at", "-id")[:CHECKPOINTS_SHOWN])
    known = {c.pk: c for c in checkpoints}
    dependants = dependants_by_checkpoint(checkpoints)
    return [CheckpointRow(c, checkpoint_lineage(c, known), checkpoint_disk_usage(c),
                          dependants[c.pk], checkpoint_card(c)) for c in checkpoints]


@login_required
@require_GET
def model_list_page(request: HttpRequest) -> HttpResponse:
    entries: list[ModelEntry] = model_list(user=request.user, include_unready=True)
    rows = _checkpoint_rows(request.user)
    return render(request, "runs/models.html", {
        "base_models": [BaseModelRow(e, card_json(e) if e.ready else None) for e in entries
                        if e.source != "checkpoint"],
        "hf_cache": settings.HF_HUB_CACHE, **_downloads_context(request.user),
        "policies": [r for r in rows if not r.checkpoint.run.produces_reward_model],
        "reward_models": [r for r in rows if r.checkpoint.run.produces_reward_model],
        "shown_max": CHECKPOINTS_SHOWN, "truncated": len(rows) >= CHECKPOINTS_SHOWN,
        "disk_total": sum(r.disk.total for r in rows)})


DOWNLOADS_SHOWN = 20


def _downloads(user: Any) -> list[ModelDownload]:
    """The newest downloads: staff see everyone's, others their own."""
    qs = ModelDownload.objects.all() if user.is_staff else ModelDownload.objects.filter(
        requested_by_id=user.pk)
    for running in qs.filter(status=DownloadStatus.DOWNLOADING)[:DOWNLOADS_SHOWN]:
        download_for(running.model_id)  # one whose worker went silent is failed, saying so
    return list(qs[:DOWNLOADS_SHOWN])


def _downloads_context(user: Any) -> dict[str, Any]:
    downloads = _downloads(user)
    return {"downloads": downloads,
            "downloads_polling": any(d.status in ACTIVE_DOWNLOADS for d in downloads)}


@login_required
@require_GET
def downloads_fragment(request: HttpRequest) -> HttpResponse:
    """The downloads table, polled by the models page while one is waiting or running."""
    return render(request, "runs/_downloads.html", _downloads_context(request.user))


@login_required
@require_POST
def model_download_page(request: HttpRequest) -> HttpResponse:
    try:
        download, new = download_start(user=request.user, hub_id=request.POST.get("hub_id", ""),
                                       revision=request.POST.get("revision", ""))
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{download.repo_id}: " + (
            "a worker downloads it; it appears in the list above when complete." if new
            else f"already {download.status}."))
    return redirect("models:list")


@login_required
@require_POST
def download_cancel_page(request: HttpRequest, download_id: int) -> HttpResponse:
    download = ModelDownload.objects.filter(pk=download_id).first()
    if download is None or not (request.user.is_staff
                                or download.requested_by_id == request.user.pk):
        raise Http404("No download of yours by that id.")
    try:
        download_cancel(download=download)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    return redirect("models:list")


@login_required
@require_POST
def model_register_page(request: HttpRequest) -> HttpResponse:
    """Staff: register a model directory from the models page's form."""
    try:
        registered = model_register(user=request.user, path=request.POST.get("path", ""),
                                    name=request.POST.get("name", ""))
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Registered {registered.path} as '{registered.model_id}': "
                                  "every user can start runs from it now.")
    return redirect("models:list")


@login_required
@require_POST
def checkpoint_delete(request: HttpRequest, checkpoint_id: int) -> HttpResponse:
    checkpoint = selectors.checkpoint_get_for_user(user=request.user,
                                                   checkpoint_id=checkpoint_id)
    try:
        deletion.checkpoint_delete(checkpoint=checkpoint)
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Checkpoint {checkpoint.model_id} (run "
                                  f"{checkpoint.run_id} step {checkpoint.step}) is deleted, "
                                  "its files too.")
    # back to the page the delete came from (a run page), if it is one of this site's
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("models:list")
