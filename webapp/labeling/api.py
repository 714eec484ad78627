"""``/api/labeling``: ranking batches, the next item, rankings, skips, undo, export and
datasets.

Who may do what: a batch's owner does everything; when the batch is shared, every signed-in
user may see it, rank, skip and undo their own rankings; exporting and making datasets stay
the owner's. Anything a user may not reach is a 404.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import StrictBool, StrictInt, WithJsonSchema

from webapp.datasets.api import DatasetOut
from webapp.errors import Invalid, WrongState
from webapp.labeling import selectors, services
from webapp.labeling.from_samples import batch_create_from_samples
from webapp.labeling.models import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    K_MAX,
    K_MIN,
    MAX_NEW_TOKENS_CAP,
    MAX_PROMPTS_CAP,
    Batch,
)
from webapp.labeling.services import DEFAULT_K
from webapp.schemas import (
    DATASET_ID_SCHEMA,
    LIMIT_ACCEPTED_MAX,
    NAME_SCHEMA,
    OFFSET_MAX,
    StrictIn,
    documented,
    requires,
)

router = Router(tags=["labeling"])

LIST_LIMIT_MAX = 500
EXPORT_FORMATS = ("pairs", "rankings")


class BatchIn(StrictIn):
    model_config = requires("name", "dataset", "model")

    name: Any = documented(**NAME_SCHEMA)
    # not true, nor 1.0: both would read as dataset 1
    dataset: Annotated[StrictInt | str | None, WithJsonSchema(DATASET_ID_SCHEMA)] = None
    model: Any = documented(type="string", minLength=1, maxLength=200,
                            description="a policy's model id (GET /api/models)")
    # Numbers arrive as sent and are checked by the service, so errors read the same
    # from the API and the page.
    responses_per_prompt: Any = documented(type="integer", minimum=K_MIN, maximum=K_MAX,
                                           default=DEFAULT_K)
    temperature: Any = documented(type="number", exclusiveMinimum=0, maximum=2,
                                  default=DEFAULT_TEMPERATURE)
    top_p: Any = documented(type="number", exclusiveMinimum=0, maximum=1, default=DEFAULT_TOP_P)
    max_new_tokens: Any = documented(type="integer", minimum=1,
                                     maximum=min(MAX_NEW_TOKENS_CAP, settings.MAX_NEW_TOKENS),
                                     default=DEFAULT_MAX_NEW_TOKENS)
    max_prompts: Any = documented(type=["integer", "null"], minimum=1, maximum=MAX_PROMPTS_CAP)
    seed: Any = documented(type="integer", minimum=0, maximum=2**31 - 1, default=0)
    shared: StrictBool = False


class SampleRefIn(Schema):
    run: int
    step: int
    index: int


class FromSamplesIn(StrictIn):
    model_config = requires("name", "samples")

    name: Any = documented(**NAME_SCHEMA)
    shared: Any = documented(type="boolean", default=False)
    # Checked by the service, so a bad entry is a 422 naming it (samples[3]).
    samples: Any = documented(type="array", minItems=2, items=SampleRefIn.json_schema(),
                              description="completions of your runs' samples, at least two "
                                          "of each prompt")


class AnnotatorOut(Schema):
    annotator: str
    rankings: int


class AgreementOut(Schema):
    annotators: int
    comparisons: int
    pairwise_agreement: float | None
    kendall_tau_b: float | None
    tau_undefined: int


class ItemAgreementOut(AgreementOut):
    item: int
    index: int
    number: int
    prompt_text: str


class BatchOut(Schema):
    id: int
    name: str
    status: str
    shared: bool
    items_total: int
    items_ranked_by_you: int
    rankings_total: int
    items_expected: int
    origin: str
    dataset: int | None
    model: str
    responses_per_prompt: int
    temperature: float
    top_p: float
    max_new_tokens: int
    max_prompts: int | None
    seed: int
    owner: str
    yours: bool
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BatchDetailOut(BatchOut):
    items_skipped_by_you: int
    annotators: list[AnnotatorOut]
    agreement: AgreementOut


class BatchAgreementOut(Schema):
    overall: AgreementOut
    items: list[ItemAgreementOut]


class ResponseOut(Schema):
    id: int
    index: int
    text: str


class ItemOut(Schema):
    item: int
    batch: int
    index: int
    number: int = Field(description="what the pages call the item: its prompt's row, from 1")
    prompt: Any
    prompt_text: str
    responses: list[ResponseOut]


class UndoneOut(ItemOut):
    ranking: list[list[int]]
    ranks: list[int]


class RankingIn(StrictIn):
    model_config = requires("ranking")

    ranking: Any = documented(type="array", minItems=1, items={
        "type": "array", "minItems": 1, "items": {"type": "integer"}},
        description="the item's response ids, best first; ids in one inner list tie")


class RankingOut(Schema):
    id: int
    item: int
    annotator: str
    ranking: list[list[int]]
    ranks: list[int]
    created_at: datetime


class DatasetFromBatchIn(StrictIn):
    name: Any = documented(**NAME_SCHEMA, description="default: the batch's name")


class DatasetFromBatchOut(DatasetOut):
    source_batch: int | None


class Paging(Schema):
    limit: int = Field(50, ge=1, le=LIMIT_ACCEPTED_MAX,
                       description=f"At most {LIST_LIMIT_MAX}; larger is capped.")
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


_BATCH_FIELDS = ("id", "name", "status", "shared", "items_expected", "origin", "model",
                 "responses_per_prompt", "temperature", "top_p", "max_new_tokens",
                 "max_prompts", "seed", "error", "created_at", "started_at", "finished_at")


def _batch_base(batch: Batch, user: Any) -> dict[str, Any]:
    return {f: getattr(batch, f) for f in _BATCH_FIELDS} | {
        "dataset": batch.dataset_id, "owner": batch.owner.get_username(),
        "yours": batch.owner_id == user.pk}


def batch_detail_out(batch: Batch, user: Any) -> dict[str, Any]:
    progress = selectors.batch_progress(batch=batch, user=user)
    return _batch_base(batch, user) | {
        "items_total": progress.items_total,
        "items_ranked_by_you": progress.items_ranked_by_you,
        "items_skipped_by_you": progress.items_skipped_by_you,
        "rankings_total": progress.rankings_total, "annotators": progress.annotators,
        "agreement": selectors.batch_agreement(batch=batch)["overall"]}


@router.post("/batches", response={201: BatchDetailOut}, summary="Create a ranking batch")
def create_batch(request: HttpRequest, payload: BatchIn):
    """A worker then generates ``responses_per_prompt`` responses for each prompt."""
    batch = services.batch_create(
        owner=request.user, name=payload.name, dataset_id=payload.dataset,
        model=payload.model, responses_per_prompt=payload.responses_per_prompt,
        temperature=payload.temperature, top_p=payload.top_p,
        max_new_tokens=payload.max_new_tokens, max_prompts=payload.max_prompts,
        seed=payload.seed, shared=payload.shared)
    return 201, batch_detail_out(batch, request.user)


@router.post("/batches/from-samples", response={201: BatchDetailOut},
             summary="A batch of completions from runs' samples, ready to rank")
def create_batch_from_samples(request: HttpRequest, payload: FromSamplesIn):
    """``samples``: ``[{"run", "step", "index"}, ...]`` naming completions of your runs
    (``GET /api/runs/{id}/samples`` lists them). Those answering the same prompt become one
    item (2 to 8 each); nothing is generated."""
    batch = batch_create_from_samples(owner=request.user, name=payload.name,
                                      shared=payload.shared, samples=payload.samples)
    return 201, batch_detail_out(batch, request.user)


@router.get("/batches", response=list[BatchOut],
            summary="Your batches and the ones others share, newest first")
def list_batches(request: HttpRequest, paging: Query[Paging]):
    batches = selectors.batch_list(user=request.user, limit=min(paging.limit, LIST_LIMIT_MAX),
                                   offset=paging.offset)
    return [_batch_base(b, request.user) | {
        "items_total": b.items_total, "rankings_total": b.rankings_total,
        "items_ranked_by_you": b.items_ranked_by_you} for b in batches]


@router.get("/batches/{batch_id}", response=BatchDetailOut)
def get_batch(request: HttpRequest, batch_id: int):
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    return batch_detail_out(batch, request.user)


@router.delete("/batches/{batch_id}", response={204: None},
               summary="Delete a batch with its items and rankings")
def delete_batch(request: HttpRequest, batch_id: int):
    """Your own batches only; 409 while it is still generating. Datasets made from its
    rankings stay."""
    batch = selectors.batch_get_for_owner(user=request.user, batch_id=batch_id)
    services.batch_delete(batch=batch)
    return 204, None


@router.get("/batches/{batch_id}/agreement", response=BatchAgreementOut,
            summary="Agreement between annotators, overall and per item")
def get_agreement(request: HttpRequest, batch_id: int):
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    return selectors.batch_agreement(batch=batch)


@router.get("/batches/{batch_id}/next", response={200: ItemOut, 204: None},
            summary="The next item you have not ranked (204 when none is left)")
def next_item(request: HttpRequest, batch_id: int):
    """Items you skipped come back only after every other item is ranked."""
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    item = selectors.next_item_for_user(batch=batch, user=request.user)
    if item is None:
        return 204, None
    return 200, selectors.item_out(item)


@router.post("/items/{item_id}/ranking", response={201: RankingOut},
             summary="Rank an item's responses: groups of ids, best first")
def rank_item(request: HttpRequest, item_id: int, payload: RankingIn):
    item = selectors.item_get_for_user(user=request.user, item_id=item_id)
    ranking = services.ranking_record(item=item, annotator=request.user,
                                      ranking=payload.ranking)
    ids = list(item.responses.order_by("index").values_list("pk", flat=True))
    return 201, {"id": ranking.pk, "item": item.pk, "annotator": request.user.get_username(),
                 "ranks": ranking.ranks, "created_at": ranking.created_at,
                 "ranking": services.groups_from_ranks(ranking.ranks, ids)}


@router.post("/items/{item_id}/skip", response={204: None}, summary="Put an item aside")
def skip_item(request: HttpRequest, item_id: int):
    item = selectors.item_get_for_user(user=request.user, item_id=item_id)
    services.item_skip(item=item, annotator=request.user)
    return 204, None


@router.post("/batches/{batch_id}/undo", response={200: UndoneOut},
             summary="Remove your most recent ranking in the batch")
def undo_ranking(request: HttpRequest, batch_id: int):
    """Returns the item that comes back to you, with the ranking that was removed."""
    batch = selectors.batch_get_for_user(user=request.user, batch_id=batch_id)
    return 200, services.ranking_undo(batch=batch, annotator=request.user)


def _export_lines(batch: Batch, fmt: str) -> Iterator[str]:
    for ranked in selectors.batch_rankings(batch=batch):
        if fmt == "rankings":
            rows = [{"prompt": ranked.prompt, "responses": ranked.responses,
                     "ranking": ranked.ranks}]
        else:
            rows = [{"prompt": ranked.prompt, "chosen": chosen, "rejected": rejected}
                    for chosen, rejected in selectors.ranked_pairs(ranked)]
        for row in rows:
            row |= {"annotator": ranked.annotator, "item": ranked.item,
                    "item_number": ranked.number}
            yield json.dumps(row, ensure_ascii=False) + "\n"


@router.get("/batches/{batch_id}/export", summary="Rankings as JSONL: pairs or ranked lists")
def export_batch(request: HttpRequest, batch_id: int, format: str = "pairs"):
    """``pairs``: one line per (chosen, rejected) pair of each person's ranking; tied
    responses, identical texts and blank responses give no pair (the lines are exactly the
    rows of the batch's preferences dataset). ``rankings``: one line per person's ranking,
    ``ranking`` holding one rank per response (1 best). Every line names its ``annotator``,
    its ``item`` (the id the API takes) and ``item_number`` (the number the pages show).
    409 while no one has ranked anything."""
    batch = selectors.batch_get_for_owner(user=request.user, batch_id=batch_id)
    if format not in EXPORT_FORMATS:
        raise Invalid(f"format must be one of {', '.join(EXPORT_FORMATS)}.",
                      fields={"format": f"unknown format {format!r}"})
    if not selectors.batch_has_rankings(batch=batch):
        raise WrongState("No one has ranked an item of this batch yet; there is nothing to "
                         "export.")
    response = StreamingHttpResponse(_export_lines(batch, format),
                                     content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="batch-{batch.pk}-{format}.jsonl"')
    return response


def _optional_name(request: HttpRequest) -> str:
    """``name`` from an optional JSON (or form) body; no body is fine."""
    if request.content_type != "application/json":
        return str(request.POST.get("name", ""))
    if not request.body.strip():
        return ""
    try:
        data = json.loads(request.body)
    except ValueError:
        raise HttpError(400, 'Send a JSON body such as {"name": "my pairs"}, or none.') from None
    if not isinstance(data, dict):
        raise Invalid('Send a JSON object such as {"name": "my pairs"}.',
                      fields={"body": "must be an object"})
    unknown = sorted(set(data) - {"name"})
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(unknown)}; this endpoint takes only 'name'.",
                      fields=dict.fromkeys(unknown, "unknown field"))
    name = data.get("name", "")
    if not isinstance(name, str):
        raise Invalid("'name' must be text.", fields={"name": "must be text"})
    return name


@router.post("/batches/{batch_id}/dataset", response={201: DatasetFromBatchOut},
             summary="A preferences dataset from the rankings so far",
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/json": {"schema": DatasetFromBatchIn.json_schema()}}}})
def make_dataset(request: HttpRequest, batch_id: int):
    """Optional JSON body ``{"name"}`` (default: the batch's name). 201 with the dataset (as
    ``GET /api/datasets/{id}``) and its ``source_batch``; 409 while there are no rankings.
    It is what a ``reward_model`` run takes as its dataset."""
    batch = selectors.batch_get_for_owner(user=request.user, batch_id=batch_id)
    dataset, _ = services.batch_dataset_create(batch=batch, name=_optional_name(request))
    return 201, {"id": dataset.pk, "name": dataset.name, "kind": dataset.kind,
                 "rows": dataset.rows, "columns": dataset.columns, "preview": dataset.preview,
                 "created_at": dataset.created_at, "size_bytes": dataset.size_bytes,
                 "original_filename": dataset.original_filename,
                 "source_batch": dataset.source_batch_id}
