"""Writes to ranking batches. A batch's status moves queued -> generating -> ready | failed by
conditional UPDATEs whose row count says whether the move happened; the worker's writes name
the attempt that claimed the batch and are refused once it is no longer current."""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from webapp import jobs
from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.selectors import dataset_get_for_user
from webapp.datasets.services import dataset_create_from_rows
from webapp.errors import Invalid, ServiceError, WrongState
from webapp.labeling import selectors
from webapp.labeling.models import (
    CLAIMABLE_STATUSES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    K_MAX,
    K_MIN,
    MAX_NEW_TOKENS_CAP,
    MAX_PROMPTS_CAP,
    Batch,
    BatchOrigin,
    BatchStatus,
    Item,
    Ranking,
    Response,
    Skip,
)
from webapp.limits import batch_caps_check
from webapp.queueing import GENERATE_BATCH_TASK
from webapp.runs.registry import model_resolve
from webapp.text import clean_name

DEFAULT_K = 4


StaleAttempt = jobs.StaleAttempt


# --- creating a batch ---

def _number(fields: dict[str, str], name: str, value: Any, default: float | int | None, *,
            lo: float, hi: float, whole: bool = False, lo_open: bool = False,
            nullable: bool = False) -> Any:
    """``value`` checked against its bounds; a problem goes into ``fields``."""
    if value is None or value == "":
        if nullable or default is not None:
            return default
        fields[name] = "required"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fields[name] = "must be a whole number" if whole else "must be a finite number"
        return None
    if whole and not float(value).is_integer():
        fields[name] = "must be a whole number"
        return None
    if (value <= lo if lo_open else value < lo) or value > hi:
        low = f"more than {lo:g}" if lo_open else f"at least {lo:g}"
        fields[name] = f"must be {low} and at most {hi:g}"
        return None
    return int(value) if whole else float(value)


def _prompts_dataset(owner: AbstractBaseUser, dataset_id: Any, fields: dict[str, str]
                     ) -> Dataset | None:
    if dataset_id is None or dataset_id == "":
        fields["dataset"] = "required: a prompts dataset of yours"
        return None
    try:
        dataset = dataset_get_for_user(user=owner, dataset_id=dataset_id)
    except Http404:  # not there, or not this user's
        fields["dataset"] = f"dataset {dataset_id} does not exist or is not yours"
        return None
    if dataset.kind != DatasetKind.PROMPTS:
        fields["dataset"] = (f"'{dataset.name}' holds {dataset.get_kind_display().lower()}; "
                             "a batch needs a prompts dataset")
        return None
    return dataset


def batch_create(*, owner: AbstractBaseUser, name: str, dataset_id: Any, model: str,
                 responses_per_prompt: Any = None, temperature: Any = None, top_p: Any = None,
                 max_new_tokens: Any = None, max_prompts: Any = None, seed: Any = None,
                 shared: bool = False, origin: str | None = None) -> Batch:
    """Validate everything (one 422 naming every bad field), store the batch as queued and
    enqueue its generation once the row is committed."""
    fields: dict[str, str] = {}
    try:
        name = clean_name(name or "", what="the batch")
    except Invalid as exc:
        fields["name"] = exc.detail
    dataset = _prompts_dataset(owner, dataset_id, fields)
    try:
        entry = model_resolve(user=owner, model_id=str(model or ""), field="model",
                              kinds=("policy",))
    except Invalid as exc:
        fields.update(exc.fields or {"model": exc.detail})
    k = _number(fields, "responses_per_prompt", responses_per_prompt, DEFAULT_K, lo=K_MIN,
                hi=K_MAX, whole=True)
    clean = {
        "temperature": _number(fields, "temperature", temperature, DEFAULT_TEMPERATURE,
                               lo=0, hi=2, lo_open=True),
        "top_p": _number(fields, "top_p", top_p, DEFAULT_TOP_P, lo=0, hi=1, lo_open=True),
        "max_new_tokens": _number(fields, "max_new_tokens", max_new_tokens,
                                  DEFAULT_MAX_NEW_TOKENS, lo=1, hi=MAX_NEW_TOKENS_CAP,
                                  whole=True),
        "max_prompts": _number(fields, "max_prompts", max_prompts, None, lo=1,
                               hi=MAX_PROMPTS_CAP, whole=True, nullable=True),
        "seed": _number(fields, "seed", seed, 0, lo=0, hi=2**31 - 1, whole=True),
    }
    if not isinstance(shared, bool):
        fields["shared"] = "must be true or false"
    if fields:
        detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
        raise Invalid(f"Check these fields: {detail}.", fields=fields)
    batch_caps_check(responses_per_prompt=k, max_new_tokens=clean["max_new_tokens"])
    assert dataset is not None
    expected = min(dataset.rows, clean["max_prompts"] or MAX_PROMPTS_CAP)
    with transaction.atomic():
        batch = Batch.objects.create(owner=owner, name=name, dataset=dataset, model=entry.id,
                                     responses_per_prompt=k, shared=shared,
                                     origin=origin or BatchOrigin.GENERATED,
                                     items_expected=expected, **clean)
        transaction.on_commit(lambda: _enqueue(batch.pk))
    return batch


def _enqueue(batch_id: int) -> None:
    jobs.job_enqueue(BATCH_JOB, batch_id)


# --- writes from the worker (each names its attempt) ---

BATCH_JOB = jobs.JobKind(name="batch", model=Batch, running=str(BatchStatus.GENERATING),
                         claimable=tuple(str(s) for s in CLAIMABLE_STATUSES),
                         crashed=str(BatchStatus.CRASHED), failed=str(BatchStatus.FAILED),
                         task=GENERATE_BATCH_TASK)


def batch_claim(*, batch_id: int, worker: str, task_id: str = "") -> int | None:
    """Claim a queued (or crashed) batch for a new attempt; None if it is not waiting. A
    later attempt generates only the items not stored yet."""
    return jobs.job_claim(BATCH_JOB, batch_id, worker=worker, task_id=task_id)


def _current(batch_id: int, attempt: int) -> Any:
    return jobs.job_current(BATCH_JOB, batch_id, attempt)


def batch_is_current(*, batch_id: int, attempt: int) -> bool:
    return _current(batch_id, attempt).exists()


def batch_heartbeat(*, batch_id: int, attempt: int) -> bool:
    return jobs.job_heartbeat(BATCH_JOB, batch_id, attempt)


def batches_reap(**kwargs: Any) -> list[jobs.Reaped]:
    """Batches whose generation stopped sending heartbeats: requeued, or failed."""
    def on_reaped(batch: Batch, requeued: bool) -> None:
        if requeued:
            transaction.on_commit(lambda: _enqueue(batch.pk))

    return jobs.jobs_reap(BATCH_JOB, on_reaped=on_reaped, **kwargs)


def batches_resend_lost(**kwargs: Any) -> list[int]:
    """Batches waiting for a worker whose task the broker lost: queued again."""
    return jobs.jobs_resend_lost(BATCH_JOB, resend=_enqueue, **kwargs)


def batch_record_items(*, batch_id: int, attempt: int,
                       items: Sequence[Mapping[str, Any]]) -> None:
    """Store generated items, each ``{"index", "prompt", "prompt_text", "responses": [text]}``,
    with their responses, in one transaction (so readers see whole items only)."""
    with transaction.atomic():
        if not _current(batch_id, attempt).exists():
            raise StaleAttempt(f"batch {batch_id} attempt {attempt} is no longer current")
        made = Item.objects.bulk_create([
            Item(batch_id=batch_id, index=it["index"], prompt=it["prompt"],
                 prompt_text=it["prompt_text"]) for it in items])
        Response.objects.bulk_create([
            Response(item=item, index=i, text=text)
            for item, it in zip(made, items, strict=True)
            for i, text in enumerate(it["responses"])])


def batch_finish(*, batch_id: int, attempt: int, status: str, error: str = "") -> bool:
    """End generation (ready or failed) if this attempt still owns the batch."""
    if status not in (BatchStatus.READY, BatchStatus.FAILED):
        raise ServiceError(f"not a final status: {status}")
    return bool(_current(batch_id, attempt).update(status=status, finished_at=timezone.now(),
                                                   error=error[:20_000]))


# --- rankings ---

def _as_id(value: Any) -> int | None:
    """An id in a JSON list: a whole number (2.0 is 2, as JSON Schema counts integers),
    or its digits as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _ids_list(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


def ranks_from_groups(groups: Any, response_ids: Sequence[int], *, item_id: int) -> list[int]:
    """``[[ids tied for best], [next], ...]`` -> one rank per response (in ``response_ids``
    order): the 1-based number of its group. Raises :class:`Invalid` naming the problem."""
    example = f"[[{response_ids[0]}], [{', '.join(map(str, response_ids[1:]))}]]"
    if not isinstance(groups, list) or not groups:
        raise Invalid("Send 'ranking' as a list of groups of response ids, best first (ties "
                      f"share a group), e.g. {example}.", fields={"ranking": "required"})
    rank_of: dict[int, int] = {}
    duplicates: list[int] = []
    for number, group in enumerate(groups, start=1):
        if not isinstance(group, list) or not group:
            raise Invalid(f"Group {number} of 'ranking' must be a non-empty list of response "
                          f"ids, e.g. {example}.", fields={"ranking": f"group {number} invalid"})
        for raw in group:
            rid = _as_id(raw)
            if rid is None:
                raise Invalid(f"{raw!r} in group {number} of 'ranking' is not a response id.",
                              fields={"ranking": f"{raw!r} is not an id"})
            if rid in rank_of:
                duplicates.append(rid)
            rank_of[rid] = number
    known = set(response_ids)
    unknown = [rid for rid in rank_of if rid not in known]
    missing = [rid for rid in response_ids if rid not in rank_of]
    problems = []
    if unknown:
        problems.append(f"response id(s) {_ids_list(unknown)} do not belong to item {item_id} "
                        f"(its responses are {_ids_list(response_ids)})")
    if duplicates:
        problems.append(f"response id(s) {_ids_list(duplicates)} appear more than once; each "
                        "response takes one place")
    if missing:
        problems.append(f"the ranking leaves out response id(s) {_ids_list(missing)}; rank "
                        "every response (tied ones share a group)")
    if problems:
        detail = "; ".join(problems)
        raise Invalid(detail[0].upper() + detail[1:] + ".", fields={"ranking": detail})
    return [rank_of[rid] for rid in response_ids]


def groups_from_ranks(ranks: Sequence[int], response_ids: Sequence[int]) -> list[list[int]]:
    """The inverse of :func:`ranks_from_groups`: groups of ids, best first."""
    groups: dict[int, list[int]] = {}
    for rank, rid in zip(ranks, response_ids, strict=True):
        groups.setdefault(rank, []).append(rid)
    return [groups[r] for r in sorted(groups)]


def _response_ids(item: Item) -> list[int]:
    return list(item.responses.order_by("index").values_list("pk", flat=True))


def ranking_record(*, item: Item, annotator: AbstractBaseUser, ranking: Any) -> Ranking:
    """Store one person's ranking of an item: 422 when it does not cover the item's responses
    exactly once, 409 when this person has ranked the item already."""
    response_ids = _response_ids(item)
    if not response_ids:
        raise WrongState(f"Item {item.pk} has no responses to rank.")
    ranks = ranks_from_groups(ranking, response_ids, item_id=item.pk)
    already = WrongState(f"You have already ranked item {item.pk}; undo your ranking to rank "
                         "it again.")
    if Ranking.objects.filter(item=item, annotator=annotator).exists():
        raise already
    try:
        with transaction.atomic():
            stored = Ranking.objects.create(item=item, annotator=annotator, ranks=ranks)
            Skip.objects.filter(item=item, annotator=annotator).delete()
    except IntegrityError:  # a concurrent double submit
        raise already from None
    return stored


def ranking_undo(*, batch: Batch, annotator: AbstractBaseUser) -> dict[str, Any]:
    """Delete the person's most recent ranking in the batch; the item comes back to them.
    Returns the item (as the API shows it) with the ranking that was removed."""
    with transaction.atomic():
        last = (Ranking.objects.filter(item__batch=batch, annotator=annotator)
                .select_related("item").order_by("-created_at", "-id").first())
        if last is None:
            raise WrongState("You have no ranking in this batch to undo.")
        last.delete()
    item = Item.objects.prefetch_related("responses").get(pk=last.item_id)
    out = selectors.item_out(item)
    out["ranking"] = groups_from_ranks(last.ranks, [r["id"] for r in out["responses"]])
    out["ranks"] = last.ranks
    return out


def item_skip(*, item: Item, annotator: AbstractBaseUser) -> None:
    """Put the item aside for this person; skipped again, it goes to the back of the line."""
    if Ranking.objects.filter(item=item, annotator=annotator).exists():
        raise WrongState(f"You have already ranked item {item.pk}; there is nothing to skip.")
    Skip.objects.update_or_create(item=item, annotator=annotator,
                                  defaults={"created_at": timezone.now()})


# --- turning rankings into a dataset ---

def preference_rows(*, batch: Batch) -> list[dict[str, Any]]:
    """Every person's ranking of every item as (prompt, chosen, rejected) rows: the lines of
    the pairs export (see :func:`selectors.ranked_pairs`) without their annotator."""
    return [{"prompt": ranked.prompt, "chosen": chosen, "rejected": rejected}
            for ranked in selectors.batch_rankings(batch=batch)
            for chosen, rejected in selectors.ranked_pairs(ranked)]


def rankings_digest(*, batch: Batch) -> str:
    """A digest of the batch's rankings as they stand: who ranked what, how (an undo and a
    new ranking change it)."""
    digest = hashlib.sha256()
    for row in Ranking.objects.filter(item__batch=batch).order_by("pk").values_list(
            "pk", "annotator_id", "ranks"):
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


def batch_dataset_create(*, batch: Batch, name: str = "", reuse: bool = False
                         ) -> tuple[Dataset, bool]:
    """A preferences dataset of the owner made from the rankings so far, recording the batch;
    409 while there are no rankings (or they give no pair). With ``reuse``, a dataset made
    earlier from exactly these rankings is returned instead of a copy. Returns the dataset
    and whether it is new."""
    if not selectors.batch_has_rankings(batch=batch):
        raise WrongState("No one has ranked an item of this batch yet; rank some first.")
    digest = rankings_digest(batch=batch)
    if reuse:
        made = (Dataset.objects.filter(source_batch=batch, source_rankings=digest,
                                       owner_id=batch.owner_id).order_by("-created_at").first())
        if made is not None:
            return made, False
    rows = preference_rows(batch=batch)
    if not rows:
        raise WrongState("The rankings so far give no preference pairs: each ties all of its "
                         "responses, or the responses are blank.")
    name = (name or "").strip() or f"{batch.name} (preferences)"[:200]
    dataset = dataset_create_from_rows(owner=batch.owner, name=name,
                                       kind=str(DatasetKind.PREFERENCES), rows=rows,
                                       source_batch=batch)
    Dataset.objects.filter(pk=dataset.pk).update(source_rankings=digest)
    dataset.source_rankings = digest
    return dataset, True


def batch_delete(*, batch: Batch) -> None:
    """Delete the batch with its items, responses and rankings. Datasets made from its
    rankings stay (they are copies); a playground batch takes its one-prompt dataset along
    once no other batch uses it. 409 while it is still generating."""
    if batch.is_generating:
        raise WrongState(f"Batch {batch.pk} '{batch.name}' is still generating ({batch.status});"
                         " delete it once it is ready or has failed.")
    hidden = batch.dataset if batch.dataset_id and batch.dataset.hidden else None
    with transaction.atomic():
        Batch.objects.filter(pk=batch.pk).delete()
        if hidden is not None and not Batch.objects.filter(dataset=hidden).exists():
            path = hidden.file_path
            hidden.delete()
            transaction.on_commit(lambda: path.unlink(missing_ok=True))
