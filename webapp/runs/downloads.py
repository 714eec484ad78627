"""Hub models a person asks for by id (``POST /api/models {"hub_id", "revision"}`` and the
models page): checked, stored as a :class:`ModelDownload` and sent to a worker, which fetches
the safetensors, config and tokenizer files into the shared Hugging Face cache
(:mod:`workers.download_job`); followed by ``GET /api/models/hf:<id>`` and cancelable.
The web process never reaches the hub itself."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.errors import WrongState
from webapp.hubids import clean_hub_id
from webapp.jobs import drop_task, stop_task
from webapp.queueing import DOWNLOAD_MODEL_TASK, enqueue
from webapp.runs.models import ACTIVE_DOWNLOADS, DownloadStatus, ModelDownload
from webapp.runs.registry import HF_PREFIX, model_list


def download_start(*, user: AbstractBaseUser | AnonymousUser, hub_id: Any,
                   revision: Any = None) -> tuple[ModelDownload, bool]:
    """The download of ``hub_id`` at ``revision``, and whether it is new: one already waiting
    or running for that repository is returned as it is."""
    hub_id, revision = clean_hub_id(hub_id, revision, example="Qwen/Qwen2.5-0.5B-Instruct")
    active = ModelDownload.objects.filter(repo_id=hub_id, status__in=ACTIVE_DOWNLOADS).first()
    if active is not None:
        return active, False
    if revision == "main" and any(e.id == HF_PREFIX + hub_id and e.ready
                                  for e in model_list(user=user)):
        raise WrongState(f"{hub_id} is already in the cache: pick hf:{hub_id}.",
                         fields={"hub_id": "already cached"})
    mine = ModelDownload.objects.filter(requested_by_id=user.pk, status__in=ACTIVE_DOWNLOADS)
    if mine.count() >= settings.MAX_DOWNLOADS_PER_USER:
        raise WrongState(f"You have {settings.MAX_DOWNLOADS_PER_USER} downloads waiting or "
                         "running; wait for one to end or cancel one.",
                         fields={"hub_id": "too many downloads"})
    try:
        with transaction.atomic():
            download = ModelDownload.objects.create(repo_id=hub_id, revision=revision,
                                                    requested_by_id=user.pk)
    except IntegrityError:  # the same repository asked for a moment ago
        active = ModelDownload.objects.filter(repo_id=hub_id,
                                              status__in=ACTIVE_DOWNLOADS).first()
        if active is None:
            raise
        return active, False
    transaction.on_commit(lambda: _send(download.pk))
    return download, True


def _send(download_id: int) -> None:
    def failed(reason: str) -> None:
        ModelDownload.objects.filter(pk=download_id, status=DownloadStatus.QUEUED).update(
            status=DownloadStatus.FAILED, error=reason, finished_at=timezone.now())

    task_id = enqueue(DOWNLOAD_MODEL_TASK, download_id, on_failure=failed)
    if task_id:
        ModelDownload.objects.filter(pk=download_id).update(task_id=task_id)


def download_for(model_id: str) -> ModelDownload | None:
    """The newest download of ``hf:<repo>``, its state brought up to date: one whose worker
    stopped writing its heartbeat is failed, saying so."""
    if not model_id.startswith(HF_PREFIX):
        return None
    download = ModelDownload.objects.filter(repo_id=model_id[len(HF_PREFIX):]).first()
    if download is None or download.status != DownloadStatus.DOWNLOADING:
        return download
    beat = download.heartbeat_at or download.created_at
    if (timezone.now() - beat).total_seconds() > settings.RLHF_HEARTBEAT_TIMEOUT_S:
        ModelDownload.objects.filter(pk=download.pk, status=DownloadStatus.DOWNLOADING).update(
            status=DownloadStatus.FAILED, finished_at=timezone.now(),
            error="The worker stopped while downloading; ask for the model again (the files "
                  "it fetched are kept and not fetched twice).")
        download.refresh_from_db()
    return download


def partial_snapshot(download: ModelDownload) -> Path | None:
    if not download.commit:
        return None
    return (Path(settings.HF_HUB_CACHE) / ("models--" + download.repo_id.replace("/", "--"))
            / "snapshots" / download.commit)


def download_cancel(*, download: ModelDownload) -> ModelDownload:
    """A waiting download ends at once; a running one's worker process is stopped and the
    snapshot it began is removed (the fetched files stay in the cache's blobs, so asking again
    resumes). WrongState once it has ended."""
    now = timezone.now()
    if ModelDownload.objects.filter(pk=download.pk, status=DownloadStatus.QUEUED).update(
            status=DownloadStatus.CANCELLED, finished_at=now):
        drop_task(download.task_id)
    elif ModelDownload.objects.filter(pk=download.pk, status=DownloadStatus.DOWNLOADING).update(
            status=DownloadStatus.CANCELLED, finished_at=now):
        stop_task(download.task_id)
        download.refresh_from_db()
        snapshot = partial_snapshot(download)
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)
    else:
        download.refresh_from_db()
        raise WrongState(f"The download has already ended ({download.status}).")
    download.refresh_from_db()
    return download


def download_json(download: ModelDownload) -> dict[str, Any]:
    return {"id": download.model_id, "status": download.status,
            "progress": round(download.progress, 4), "error": download.error or None,
            "revision": download.revision, "commit": download.commit or None,
            "bytes_total": download.bytes_total, "bytes_done": download.bytes_done}
