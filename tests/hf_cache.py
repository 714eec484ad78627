"""A Hugging Face hub cache built in a test, in the hub's own layout (``models--org--name`` with
``blobs/``, ``snapshots/<commit>/`` of symlinks into the blobs, and ``refs/main``), as
``huggingface_hub`` writes it when it downloads."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def cache_model(cache: Path, repo_id: str, source: Path, *, commit: str | None = None) -> Path:
    """Copy the files of the model directory ``source`` into ``cache`` as ``repo_id`` at
    ``commit`` (by default one derived from the repo id); returns the snapshot directory."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = repo_folder(cache, repo_id)
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.iterdir() if p.is_file()):
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        link = snapshot / file.name
        link.unlink(missing_ok=True)  # a cache left by an interrupted test: replaced
        link.symlink_to(Path("../../blobs") / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def empty(cache: Path) -> Path:
    """``cache`` made and emptied (a test before may have been interrupted)."""
    cache.mkdir(parents=True, exist_ok=True)
    for child in cache.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:  # huggingface_hub's CACHEDIR.TAG, say
            child.unlink()
    return cache
