"""``/api/datasets``: upload (multipart), list, detail."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import File, Form, Query, Router, Schema
from ninja.files import UploadedFile
from pydantic import Field, WithJsonSchema

from training.preferences import rows_as_pairs
from webapp import strictjson
from webapp.datasets import hub, selectors, services
from webapp.datasets.models import Dataset, DatasetKind
from webapp.errors import Invalid
from webapp.schemas import (
    LIMIT_ACCEPTED_MAX,
    NAME_SCHEMA,
    OFFSET_MAX,
    StrictIn,
    documented,
    requires,
)

router = Router(tags=["datasets"])

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500


KIND_SCHEMA = {"type": "string", "enum": list(DatasetKind.values)}


class DatasetSummaryOut(Schema):
    id: int
    name: str
    kind: str
    rows: int
    columns: list[str]
    created_at: datetime
    size_bytes: int
    original_filename: str


class DatasetOut(DatasetSummaryOut):
    preview: list[dict[str, Any]]
    origin: dict[str, Any] | None = Field(None, description="for a data set read from the hub: "
                                          "hub_id, config, split, revision, columns")


class HubDatasetIn(StrictIn):
    """A data set read from the Hugging Face hub (this server's cache first)."""

    model_config = requires("hub_id", "kind")

    hub_id: Any = documented(type="string", minLength=3, maxLength=200,
                             description="owner/name, e.g. openai/gsm8k")
    config: Any = documented(type="string", maxLength=100, description="e.g. main")
    split: Any = documented(type="string", maxLength=100, description="default train")
    revision: Any = documented(type="string", maxLength=100, description="default main")
    kind: Any = documented(**KIND_SCHEMA)
    columns: Any = documented(type="object", maxProperties=10,
                              additionalProperties={"type": "string", "maxLength": 200},
                              description="this kind's column -> the data set's, e.g. "
                              '{"prompt": "question", "answer": "answer"}')
    limit: Any = documented(type="integer", minimum=1, description="rows to read (default "
                            "2000)")
    name: Any = documented(**NAME_SCHEMA)


class Paging(Schema):
    limit: int = Field(LIST_LIMIT_DEFAULT, ge=1, le=LIMIT_ACCEPTED_MAX,
                       description=f"At most {LIST_LIMIT_MAX}; larger values are capped.")
    offset: int = Field(0, ge=0, le=OFFSET_MAX)




# Each collection route answers with and without the trailing slash; the slashed twin stays
# out of the OpenAPI document.
@router.post("", response={201: DatasetOut}, summary="Upload a dataset")
@router.post("/", response={201: DatasetOut}, include_in_schema=False)
def create_dataset(request: HttpRequest, file: UploadedFile | None = File(None),
                   name: Annotated[str | None, WithJsonSchema(NAME_SCHEMA)] = Form(None),
                   kind: Annotated[str | None, WithJsonSchema(KIND_SCHEMA)] = Form(None)
                   ) -> tuple[int, Dataset]:
    """Multipart ``file`` (JSONL, CSV or Parquet, optionally gzipped), ``name`` and ``kind``
    (``prompts | preferences | rankings``); errors name the offending rows. Or a JSON body
    (see HubDatasetIn): ``{"hub_id", "config", "split", "kind", "columns", "limit",
    "name"}`` reads a hub data set, from this server's cache first (offline and not cached:
    422)."""
    if request.content_type == "application/json":
        body = HubDatasetIn.model_validate(_json_body(request))
        return 201, hub.dataset_from_hub(owner=request.user, **body.model_dump())
    dataset = services.dataset_create(owner=request.user, name=name or "", kind=kind or "",
                                      upload=file)
    return 201, dataset


def _json_body(request: HttpRequest) -> Any:
    if hasattr(request, "json_body"):
        return request.json_body
    return strictjson.loads(request.body, max_depth=settings.JSON_MAX_DEPTH)


@router.get("", response=list[DatasetSummaryOut], summary="List your datasets, newest first")
@router.get("/", response=list[DatasetSummaryOut], include_in_schema=False)
def list_datasets(request: HttpRequest, paging: Query[Paging]) -> list[Dataset]:
    limit = min(paging.limit, LIST_LIMIT_MAX)
    return list(selectors.dataset_list(user=request.user, limit=limit, offset=paging.offset))


@router.get("/{dataset_id}", response=DatasetOut, summary="One dataset with a preview")
def get_dataset(request: HttpRequest, dataset_id: str) -> Dataset:
    return selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)


EXPORT_FORMATS = {"rows": None, "pairs": ("preferences", "rankings"), "rankings": ("rankings",)}


@router.delete("/{dataset_id}", response={204: None}, summary="Delete a dataset and its file")
def delete_dataset(request: HttpRequest, dataset_id: str):
    """409 naming the runs and labeling batches that use it."""
    services.dataset_delete(dataset=selectors.dataset_get_for_user(user=request.user,
                                                                   dataset_id=dataset_id))
    return 204, None


@router.get("/{dataset_id}/export", summary="Download the rows, or the preference pairs")
def export_dataset(request: HttpRequest, dataset_id: str, format: str = "rows"
                   ) -> StreamingHttpResponse:
    """JSONL. ``rows``: the stored rows; ``pairs``: chosen/rejected pairs of a preferences or
    ranked-list dataset (each ranking of K responses gives K(K-1)/2 pairs, ties none);
    ``rankings``: the ranked lists."""
    dataset = selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    if format not in EXPORT_FORMATS:
        raise Invalid("format must be one of " + ", ".join(EXPORT_FORMATS) + ".",
                      fields={"format": "unknown format"})
    kinds = EXPORT_FORMATS[format]
    if kinds is not None and dataset.kind not in kinds:
        raise Invalid(f"A {dataset.kind} dataset has no {format} to export.",
                      fields={"format": f"not available for {dataset.kind}"})
    rows = selectors.dataset_rows(dataset)
    if format == "pairs":
        rows = rows_as_pairs(rows)
    response = StreamingHttpResponse((json.dumps(r) + "\n" for r in rows),
                                     content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="dataset-{dataset.pk}-{format}.jsonl"'
    return response
