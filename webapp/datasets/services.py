"""Writes for datasets. A dataset is stored once, validated and normalised, as a JSONL file in
``settings.DATASETS_DIR`` plus a :class:`Dataset` row; a failed upload leaves neither behind."""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from webapp.datasets import loading, screening, validation
from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.selectors import dataset_dependants, dataset_rows
from webapp.errors import Invalid, TooLarge, WrongState
from webapp.text import clean_name, safe_filename

__all__ = ["dataset_create", "dataset_create_from_rows", "dataset_delete", "dataset_rows",
           "name_from_filename"]

PREVIEW_ROWS = 10
PREVIEW_CHARS = 500
NAME_MAX_CHARS = 200


def dataset_create(*, owner: AbstractBaseUser, name: str, kind: str,
                   upload: UploadedFile | None) -> Dataset:
    """Validate an uploaded file of ``kind`` and store it for ``owner``.

    Raises :class:`Invalid` (422), :class:`TooLarge` (413) or :class:`Unsupported` (415).
    """
    name = _clean_fields(name=name, kind=kind, upload=upload)
    assert upload is not None  # _clean_fields refuses a missing file
    size = upload.size or 0
    if size > settings.UPLOAD_MAX_BYTES:
        raise TooLarge(f"The file is {size} bytes; this server accepts files up to "
                       f"{settings.UPLOAD_MAX_BYTES} bytes (RLHF_UPLOAD_MAX_BYTES).")
    filename = safe_filename(upload.name)  # the client's name: shown, never used as a path
    directory = _datasets_dir()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".upload-") as work:
        table = loading.load_upload(upload.chunks(), filename=filename, work_dir=Path(work),
                                    limits=_limits())
        validation.check_columns(table.column_names, kind)
        rows = validation.normalise_rows(loading.iter_rows(table), kind)
        stored = _write_rows(rows, work_dir=Path(work), directory=directory)
    return _save(owner=owner, name=name, kind=kind, columns=list(table.column_names),
                 stored=stored, original_filename=filename, size_bytes=size)


def dataset_create_from_rows(*, owner: AbstractBaseUser, name: str, kind: str,
                             rows: Sequence[dict[str, Any]], source_batch: Any = None,
                             hidden: bool = False) -> Dataset:
    """Store rows made on the server (a labeling batch's pairs, say) the way an upload is
    stored: same validation, same file format. ``size_bytes`` is the stored file's size;
    ``source_batch`` records the labeling batch the rows came from; ``hidden`` keeps it out
    of the lists (the playground's one-prompt datasets)."""
    name = _clean_fields(name=name, kind=kind, upload=None, needs_file=False)
    if not rows:
        raise Invalid("There are no rows to store.", fields={"rows": "empty"})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    validation.check_columns(columns, kind)
    directory = _datasets_dir()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".rows-") as work:
        full_rows = ({column: row.get(column) for column in columns} for row in rows)
        stored = _write_rows(validation.normalise_rows(full_rows, kind), work_dir=Path(work),
                             directory=directory)
    size = (directory / stored.file).stat().st_size
    return _save(owner=owner, name=name, kind=kind, columns=columns, stored=stored,
                 original_filename="", size_bytes=size, source_batch=source_batch,
                 hidden=hidden)


def name_from_filename(filename: str) -> str:
    """``prefs.jsonl.gz`` -> ``prefs``: the page's default name when none is typed."""
    path = Path(safe_filename(filename))
    while path.suffix.lower() in (".gz", *screening.EXTENSIONS):
        path = path.with_suffix("")
    return path.name.strip()[:NAME_MAX_CHARS]


def _clean_fields(*, name: str | None, kind: str | None, upload: UploadedFile | None,
                  needs_file: bool = True) -> str:
    """The clean name, or one :class:`Invalid` that names every bad field."""
    fields: dict[str, str] = {}
    try:
        name = clean_name(name or "", max_chars=NAME_MAX_CHARS)
    except Invalid as exc:
        name, fields["name"] = "", exc.detail
    if kind not in DatasetKind.values:
        fields["kind"] = f"Choose one of: {', '.join(DatasetKind.values)}."
    if needs_file and upload is None:
        fields["file"] = f"Choose a file to upload: {screening.ACCEPTED}."
    if fields:
        raise Invalid(" ".join(fields.values()), fields=fields)
    return name


def _limits() -> screening.UploadLimits:
    return screening.UploadLimits(
        max_bytes=settings.UPLOAD_MAX_BYTES,
        max_decompressed_bytes=settings.UPLOAD_MAX_DECOMPRESSED_BYTES,
        max_rows=settings.UPLOAD_MAX_ROWS, max_line_bytes=settings.UPLOAD_MAX_LINE_BYTES,
        max_depth=settings.JSON_MAX_DEPTH)


def _datasets_dir() -> Path:
    directory = Path(settings.DATASETS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class _Stored:
    file: str  # relative to DATASETS_DIR
    rows: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)


def _write_rows(rows: Iterable[dict[str, Any]], *, work_dir: Path, directory: Path) -> _Stored:
    """Write the rows as JSONL inside ``work_dir``, then move the finished file into
    ``directory``. If ``rows`` raises (a bad row) the partial file stays in ``work_dir``, which
    the caller removes."""
    stored = _Stored(file=f"{uuid.uuid4().hex}.jsonl")
    part = work_dir / stored.file
    with part.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            stored.rows += 1
            if len(stored.preview) < PREVIEW_ROWS:
                stored.preview.append(validation.truncate(row, PREVIEW_CHARS))
    os.replace(part, directory / stored.file)
    return stored


def _save(*, owner: AbstractBaseUser, name: str, kind: str, columns: list[str], stored: _Stored,
          original_filename: str, size_bytes: int, source_batch: Any = None,
          hidden: bool = False) -> Dataset:
    """Create the row for a file already in place; without the row the file is removed."""
    path = Path(settings.DATASETS_DIR) / stored.file
    try:
        return Dataset.objects.create(
            owner=owner, name=name, kind=kind, rows=stored.rows, columns=columns,
            preview=stored.preview, file=stored.file,
            original_filename=original_filename[:300], size_bytes=size_bytes,
            source_batch=source_batch, hidden=hidden)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete the dataset and its stored file; 409 naming the runs and labeling batches
    made on it (they need its rows to resume, to be run again or to be read)."""
    dependants = [d.describe() for d in dataset_dependants(dataset=dataset)]
    if dependants:
        shown = "; ".join(dependants[:10]) + (
            f"; and {len(dependants) - 10} more" if len(dependants) > 10 else "")
        raise WrongState(f"Dataset {dataset.pk} '{dataset.name}' cannot be deleted: it is "
                         f"used by {shown}. Delete those first.")
    path = dataset.file_path
    with transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))
