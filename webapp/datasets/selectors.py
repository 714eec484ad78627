"""Reads for datasets: the user's list, one dataset (others' are 404), the stored rows."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from webapp.datasets.models import Dataset
from webapp.ids import parse_id


def dataset_list(*, user: AbstractBaseUser | AnonymousUser, limit: int = 50,
                 offset: int = 0) -> QuerySet[Dataset]:
    """The datasets the user uploaded or made from rankings (not the playground's)."""
    return Dataset.objects.filter(owner_id=user.pk, hidden=False)[offset:offset + limit]


def dataset_get_for_user(*, user: AbstractBaseUser | AnonymousUser,
                         dataset_id: int | str) -> Dataset:
    try:
        return Dataset.objects.get(pk=parse_id(dataset_id, what="dataset"), owner_id=user.pk)
    except Dataset.DoesNotExist:
        raise Http404("No such dataset.") from None


def dataset_rows(dataset: Dataset) -> Iterator[dict[str, Any]]:
    """The stored, normalised rows, one dict per JSONL line, read lazily."""
    with dataset.file_path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@dataclass(frozen=True)
class DatasetUse:
    kind: str  # run | batch
    id: int
    name: str

    def describe(self) -> str:
        return f"{'run' if self.kind == 'run' else 'labeling batch'} {self.id} '{self.name}'"


def dataset_dependants(*, dataset: Dataset) -> list[DatasetUse]:
    """The runs and labeling batches made on the dataset: it cannot go while they exist."""
    from webapp.labeling.models import Batch
    from webapp.runs.models import Run

    runs = Run.objects.filter(dataset=dataset).order_by("pk").values_list("pk", "name")
    batches = Batch.objects.filter(dataset=dataset).order_by("pk").values_list("pk", "name")
    return [DatasetUse("run", pk, name) for pk, name in runs] + [
        DatasetUse("batch", pk, name) for pk, name in batches]
