"""Data sets by hub id (``POST /api/datasets`` with JSON, and the upload page): read through
the ``datasets`` library from this server's cache first (``HF_DATASETS_CACHE``), else, when
the hub can be reached, streamed from it (only the rows asked for are fetched); columns
mapped to the kind's; validated and stored as an upload is, with its origin."""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import datasets
from datasets import DownloadConfig
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from huggingface_hub import constants as hub_constants

from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.services import dataset_create_from_rows
from webapp.datasets.validation import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from webapp.errors import Invalid
from webapp.hubids import clean_hub_id

NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a config or a split
LIMIT_DEFAULT = 2000
# what the library raises for a data set it cannot find (offline, missing, no such file)
NOT_FOUND = (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError)


def _part(value: Any, field: str, default: str | None) -> str | None:
    if value in (None, ""):
        return default
    if not isinstance(value, str) or not NAME_PART.match(value):
        raise Invalid(f"{field} must be a name of letters, digits, -, _ and . (e.g. train).",
                      fields={field: "malformed"})
    return value


def _columns(mapping: Any, kind: str) -> dict[str, str]:
    """The kind's column -> the data set's column; the required ones must be there."""
    known = (*REQUIRED_COLUMNS[kind], *OPTIONAL_COLUMNS[kind])
    mapping = mapping if mapping is not None else {c: c for c in REQUIRED_COLUMNS[kind]}
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(v) <= 200
            for k, v in mapping.items()):
        raise Invalid("columns maps this kind's columns to the data set's, e.g. "
                      '{"prompt": "question", "answer": "answer"}.',
                      fields={"columns": "malformed"})
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise Invalid(f"A {kind} dataset has no column {unknown[0]!r}; map "
                      f"{', '.join(known)}.", fields={f"columns.{unknown[0]}": "unknown"})
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in mapping]
    if missing:
        raise Invalid(f"Map the column(s) a {kind} dataset needs: {', '.join(missing)}.",
                      fields={f"columns.{c}": "required" for c in missing})
    return dict(mapping)


def _read(hub_id: str, config: str | None, split: str, revision: str, limit: int
          ) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``limit`` rows and the column names; Invalid naming the field at fault."""
    common: dict[str, Any] = dict(path=hub_id, name=config, revision=revision,
                                  cache_dir=str(settings.HF_DATASETS_CACHE))
    try:
        try:
            table = datasets.load_dataset(
                **common, split=split, download_config=DownloadConfig(local_files_only=True))
            rows: Iterable[dict[str, Any]] = table.select(range(min(limit, len(table))))
            names = list(table.column_names)
        except NOT_FOUND:
            if hub_constants.HF_HUB_OFFLINE:
                raise
            stream = datasets.load_dataset(**common, split=split, streaming=True)
            rows = list(itertools.islice(stream, limit))
            names = list(stream.column_names or (rows[0].keys() if rows else []))
        return [dict(r) for r in rows], names
    except NOT_FOUND as exc:
        raise Invalid(f"{hub_id} is not in this server's dataset cache and the hub cannot be "
                      f"reached ({type(exc).__name__}). Load it once on a machine that can "
                      f"reach the hub into {settings.HF_DATASETS_CACHE}, or upload the file.",
                      fields={"hub_id": "not cached"}) from None
    except ValueError as exc:  # the library's words name the configs or splits there are
        text = str(exc)
        field = ("config" if "BuilderConfig" in text or "config" in text.lower()
                 else "split" if "split" in text.lower() else "hub_id")
        raise Invalid(f"{hub_id}: {text}", fields={field: "not found"}) from None


def dataset_from_hub(*, owner: AbstractBaseUser, hub_id: Any, config: Any = None,
                     split: Any = None, revision: Any = None, kind: Any = None,
                     columns: Any = None, limit: Any = None, name: Any = None) -> Dataset:
    hub_id, revision = clean_hub_id(hub_id, revision, example="openai/gsm8k")
    config = _part(config, "config", None)
    split = _part(split, "split", "train") or "train"
    if kind not in DatasetKind.values:
        raise Invalid(f"kind must be one of {', '.join(DatasetKind.values)}.",
                      fields={"kind": "unsupported"})
    mapping = _columns(columns, str(kind))
    ceiling = settings.UPLOAD_MAX_ROWS
    limit = LIMIT_DEFAULT if limit is None else limit
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= ceiling:
        raise Invalid(f"limit must be a whole number from 1 to {ceiling}.",
                      fields={"limit": "out of range"})
    rows, names = _read(hub_id, config, split, revision, limit)
    absent = {target: source for target, source in mapping.items() if source not in names}
    if absent:
        source = next(iter(absent.values()))
        raise Invalid(f"{hub_id} ({config or 'default'}, {split}) has no column {source!r}; "
                      f"its columns are {', '.join(names)}.",
                      fields={f"columns.{t}": "no such column" for t in absent})
    mapped = [{target: row.get(source) for target, source in mapping.items()} for row in rows]
    dataset = dataset_create_from_rows(owner=owner, name=name or hub_id.split("/")[1],
                                       kind=str(kind), rows=mapped)
    dataset.origin = {"hub_id": hub_id, "config": config, "split": split,
                      "revision": revision, "columns": mapping}
    dataset.save(update_fields=["origin"])
    return dataset
