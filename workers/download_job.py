"""A hub model fetched into the shared Hugging Face cache (``huggingface_hub``'s
``snapshot_download``): only safetensors weights, configs and tokenizer files, resumable (a
file fetched before is not fetched again), with the bytes on disk written as progress every
few seconds, and every refusal said in words a person can act on."""
from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from training.model_files import Refused, inspect_model_dir
from webapp.runs.models import DownloadStatus, ModelDownload

log = logging.getLogger(__name__)
ALLOWED = ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
           "tokenizer*", "special_tokens_map.json", "vocab.*", "merges.txt", "*.model",
           "added_tokens.json", "chat_template.*", "preprocessor_config.json"]
PROGRESS_INTERVAL_S = 2.0


class Refusal(Exception):
    """The download cannot go on; the message says why and what to do."""


def _allowed(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(Path(name).name, pattern) for pattern in ALLOWED)


def _blob_bytes(folder: Path) -> int:
    total = 0
    for path in (folder / "blobs").glob("*") if (folder / "blobs").is_dir() else []:
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def _unreachable(repo_id: str) -> str:
    return (f"The hub cannot be reached from this worker (offline: HF_HUB_OFFLINE is set, or "
            f"no network). Copy {repo_id} into the Hugging Face cache at "
            f"{settings.HF_HUB_CACHE} on a machine that can reach the hub "
            "(huggingface-cli download), or register a directory that holds it.")


def _plan(download: ModelDownload) -> tuple[str, int]:
    """The commit to fetch and the bytes of the files it needs; Refusal where none."""
    if constants.HF_HUB_OFFLINE:
        raise Refusal(_unreachable(download.repo_id))
    api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    info = api.model_info(download.repo_id, revision=download.revision, files_metadata=True)
    files = [s for s in info.siblings or [] if _allowed(s.rfilename)]
    if not any(s.rfilename.endswith(".safetensors") for s in files):
        raise Refusal(f"{download.repo_id} has no safetensors weights (only pickle files this "
                      "server does not load); pick a repository that has them.")
    total = sum(s.size or 0 for s in files)
    if total > settings.MAX_DOWNLOAD_BYTES:
        raise Refusal(f"{download.repo_id} is {total / 2**30:.1f} GB, over this server's "
                      f"{settings.MAX_DOWNLOAD_BYTES / 2**30:.0f} GB limit "
                      "(RLHF_MAX_DOWNLOAD_GB).")
    return str(info.sha), total


def _progress(download_id: int, folder: Path, start: int, done: threading.Event) -> None:
    try:
        while not done.wait(PROGRESS_INTERVAL_S):
            ModelDownload.objects.filter(pk=download_id, status=DownloadStatus.DOWNLOADING
                                         ).update(bytes_done=max(0, _blob_bytes(folder) - start),
                                                  heartbeat_at=timezone.now())
    finally:
        connection.close()


def _fetch(download: ModelDownload) -> Path:
    commit, total = _plan(download)
    ModelDownload.objects.filter(pk=download.pk).update(commit=commit, bytes_total=total,
                                                        heartbeat_at=timezone.now())
    folder = Path(settings.HF_HUB_CACHE) / ("models--" + download.repo_id.replace("/", "--"))
    done = threading.Event()
    watcher = threading.Thread(target=_progress, daemon=True,
                               args=(download.pk, folder, _blob_bytes(folder), done))
    watcher.start()
    try:
        path = Path(snapshot_download(download.repo_id, revision=commit,
                                      cache_dir=settings.HF_HUB_CACHE, allow_patterns=ALLOWED,
                                      token=os.environ.get("HF_TOKEN") or None))
    finally:
        done.set()
        watcher.join()
    try:
        inspect_model_dir(path)
    except Refused as exc:
        shutil.rmtree(path, ignore_errors=True)  # not listed half-usable
        raise Refusal(f"Downloaded, but it cannot be trained here: {exc}.") from None
    return path


def _reason(download: ModelDownload, exc: Exception) -> str:
    if isinstance(exc, Refusal):
        return str(exc)
    if isinstance(exc, GatedRepoError):
        return (f"{download.repo_id} is gated: accept its terms on the hub with your account, "
                "and set HF_TOKEN (a read token) in the workers' environment.")
    if isinstance(exc, RepositoryNotFoundError):
        return (f"No model {download.repo_id} on the hub (or it is private: set HF_TOKEN in the "
                "workers' environment).")
    if isinstance(exc, RevisionNotFoundError):
        return f"{download.repo_id} has no revision '{download.revision}'."
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError, OSError)):
        return _unreachable(download.repo_id)
    if isinstance(exc, HfHubHTTPError):
        return f"The hub refused the download: {exc}"
    return f"The download failed: {type(exc).__name__}: {exc}"


def run_download(download_id: int, *, worker: str, task_id: str) -> None:
    """Claim the download (once), fetch it, and record how it ended."""
    claimed = ModelDownload.objects.filter(pk=download_id, status=DownloadStatus.QUEUED).update(
        status=DownloadStatus.DOWNLOADING, worker=worker[:200], task_id=task_id,
        heartbeat_at=timezone.now())
    if not claimed:
        return  # cancelled while it waited, or another worker has it
    download = ModelDownload.objects.get(pk=download_id)
    try:
        _fetch(download)
    except Exception as exc:
        log.warning("download %s of %s failed: %s", download_id, download.repo_id, exc)
        ModelDownload.objects.filter(pk=download_id, status=DownloadStatus.DOWNLOADING).update(
            status=DownloadStatus.FAILED, error=_reason(download, exc),
            finished_at=timezone.now())
        return
    ModelDownload.objects.filter(pk=download_id, status=DownloadStatus.DOWNLOADING).update(
        status=DownloadStatus.READY, finished_at=timezone.now(),
        bytes_done=Coalesce(F("bytes_total"), F("bytes_done")))
