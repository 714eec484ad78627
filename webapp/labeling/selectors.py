"""Reads of ranking batches. Every read that takes an id goes through one of the ``*_get_for_*``
helpers: a batch is visible to its owner, and to every signed-in user when it is shared;
exporting and making datasets is its owner's alone. Anything else is a 404."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from training.preferences import ranking_pairs
from webapp.ids import parse_id
from webapp.labeling import agreement
from webapp.labeling.models import Batch, BatchOrigin, Item, Ranking, Skip

User: TypeAlias = AbstractBaseUser | AnonymousUser


def _visible(user: User) -> Q:
    if not user.is_authenticated:
        return Q(pk__in=[])
    return Q(owner_id=user.pk) | Q(shared=True)


def _int(value: Any) -> int:
    return parse_id(value)  # Http404 unless a canonical id


def batch_list(*, user: User, limit: int = 50, offset: int = 0) -> QuerySet[Batch]:
    """The user's batches and the batches others share, newest first, with counts (not the
    playground's one-prompt batches)."""
    qs = (Batch.objects.filter(_visible(user)).exclude(origin=BatchOrigin.PLAYGROUND)
          .select_related("owner", "dataset")
          .annotate(items_total=Count("items", distinct=True),
                    rankings_total=Count("items__rankings", distinct=True),
                    items_ranked_by_you=Count("items__rankings", distinct=True,
                                              filter=Q(items__rankings__annotator_id=user.pk))))
    return qs[offset:offset + limit]


def batch_get_for_user(*, user: User, batch_id: int | str) -> Batch:
    """A batch the user may see and rank in: their own, or a shared one."""
    try:
        return Batch.objects.select_related("owner", "dataset").get(_visible(user),
                                                                    pk=_int(batch_id))
    except (Batch.DoesNotExist, ValueError, TypeError):
        raise Http404("No such batch.") from None


def batch_get_for_owner(*, user: User, batch_id: int | str) -> Batch:
    """A batch the user owns: exports and datasets are the owner's alone."""
    try:
        return Batch.objects.select_related("owner", "dataset").get(pk=_int(batch_id),
                                                                    owner_id=user.pk)
    except (Batch.DoesNotExist, ValueError, TypeError):
        raise Http404("No such batch.") from None


def item_get_for_user(*, user: User, item_id: int | str) -> Item:
    try:
        return Item.objects.select_related("batch").get(
            pk=_int(item_id), batch__in=Batch.objects.filter(_visible(user)))
    except (Item.DoesNotExist, ValueError, TypeError):
        raise Http404("No such item.") from None


def next_item_for_user(*, batch: Batch, user: User) -> Item | None:
    """The first item (in prompt order) the user has neither ranked nor skipped. Once only
    skipped ones are left, they come back, the longest-skipped first; an item the user ranked
    never comes back."""
    unranked = (Item.objects.filter(batch=batch)
                .exclude(rankings__annotator_id=user.pk)
                .prefetch_related("responses"))
    skipped = Skip.objects.filter(item=OuterRef("pk"), annotator_id=user.pk)
    item = unranked.filter(~Exists(skipped)).order_by("index").first()
    if item is not None:
        return item
    skip = (Skip.objects.filter(item__batch=batch, annotator_id=user.pk)
            .exclude(item__rankings__annotator_id=user.pk)
            .order_by("created_at", "id").values_list("item_id", flat=True).first())
    return None if skip is None else unranked.get(pk=skip)


def unranked_item_for_user(*, batch: Batch, user: User, item_id: int | str) -> Item | None:
    """One given item of the batch, if the user has not ranked it (the rank page's
    ``?item=``, used after an undo)."""
    try:
        pk = _int(item_id)
    except Http404:  # not an id: no such item
        return None
    return (Item.objects.filter(batch=batch, pk=pk).exclude(rankings__annotator_id=user.pk)
            .prefetch_related("responses").first())


def item_out(item: Item) -> dict[str, Any]:
    """The API's item: ``{"item", "index", "prompt", "prompt_text", "responses"}``."""
    return {"item": item.pk, "batch": item.batch_id, "index": item.index,
            "number": item_number(item.index), "prompt": item.prompt,
            "prompt_text": item.prompt_text,
            "responses": [{"id": r.pk, "index": r.index, "text": r.text}
                          for r in item.responses.all()]}


@dataclass
class Progress:
    items_total: int
    items_ranked_by_you: int
    items_skipped_by_you: int
    rankings_total: int
    annotators: list[dict[str, Any]]  # [{"annotator": username, "rankings": n}], most first


def batch_progress(*, batch: Batch, user: User) -> Progress:
    rankings = Ranking.objects.filter(item__batch=batch)
    per_annotator = (rankings.values("annotator__username").annotate(n=Count("id"))
                     .order_by("-n", "annotator__username"))
    ranked_by_you = rankings.filter(annotator_id=user.pk)
    return Progress(
        items_total=Item.objects.filter(batch=batch).count(),
        items_ranked_by_you=ranked_by_you.count(),
        items_skipped_by_you=(Skip.objects.filter(item__batch=batch, annotator_id=user.pk)
                              .exclude(item__rankings__annotator_id=user.pk).count()),
        rankings_total=rankings.count(),
        annotators=[{"annotator": row["annotator__username"], "rankings": row["n"]}
                    for row in per_annotator])


def generation_eta_s(*, batch: Batch, items_total: int,
                     now: datetime | None = None) -> float | None:
    """Seconds left while generating, from the pace so far; None before the first items."""
    if not batch.is_generating or not batch.started_at or items_total <= 0:
        return None
    elapsed = ((now or timezone.now()) - batch.started_at).total_seconds()
    left = max(0, batch.items_expected - items_total)
    return elapsed / items_total * left


def batch_agreement(*, batch: Batch) -> dict[str, Any]:
    """``{"overall": {...}, "items": [{"item", "index", "prompt_text", ...}]}``: agreement and
    Kendall's tau-b between annotators (see :mod:`webapp.labeling.agreement`)."""
    by_item: dict[int, dict[str, list[int]]] = {}
    rows = (Ranking.objects.filter(item__batch=batch)
            .values_list("item_id", "annotator__username", "ranks"))
    for item_id, username, ranks in rows:
        by_item.setdefault(item_id, {})[username] = ranks
    overall, per_item = agreement.batch_agreement(by_item)
    items = Item.objects.filter(pk__in=list(per_item)).order_by("index").values_list(
        "pk", "index", "prompt_text")
    return {"overall": _summary(overall),
            "items": [{"item": pk, "index": index, "number": item_number(index),
                       "prompt_text": text, **_summary(per_item[pk])}
                      for pk, index, text in items]}


def _summary(summary: agreement.Summary) -> dict[str, Any]:
    return {"annotators": summary.annotators, "comparisons": summary.comparisons,
            "pairwise_agreement": summary.agreement, "kendall_tau_b": summary.tau,
            "tau_undefined": summary.tau_undefined}


def item_number(index: int) -> int:
    """What the ranking page, the batch page and the export call an item: its prompt's row
    in the dataset counted from 1 (as the dataset preview counts rows)."""
    return index + 1


@dataclass
class RankedItem:
    """One person's ranking of one item, ready for export."""

    item: int
    number: int  # the item's number as the pages show it: its prompt's row, from 1
    prompt: Any
    responses: list[str]
    ranks: list[int]
    annotator: str


def batch_rankings(*, batch: Batch) -> Iterator[RankedItem]:
    """Every ranking of the batch, by item then annotator, with its item's texts."""
    rankings = (Ranking.objects.filter(item__batch=batch)
                .select_related("item", "annotator")
                .order_by("item__index", "annotator__username"))
    texts: dict[int, list[str]] = {}
    for ranking in rankings.iterator(chunk_size=500):
        item = ranking.item
        if item.pk not in texts:
            texts = {item.pk: list(item.responses.order_by("index")
                                   .values_list("text", flat=True))}
        yield RankedItem(item=item.pk, number=item_number(item.index), prompt=item.prompt,
                         responses=texts[item.pk],
                         ranks=list(ranking.ranks), annotator=ranking.annotator.get_username())


def ranked_pairs(ranked: RankedItem) -> list[tuple[str, str]]:
    """The (chosen, rejected) texts of one ranking: tied responses and identical texts give no
    pair (:func:`training.preferences.ranking_pairs`), and neither does a blank response (a
    preferences dataset needs text on both sides), so the export and the dataset agree."""
    return [(chosen, rejected)
            for chosen, rejected in ranking_pairs(ranked.responses, ranked.ranks)
            if chosen.strip() and rejected.strip()]


def batch_has_rankings(*, batch: Batch) -> bool:
    return Ranking.objects.filter(item__batch=batch).exists()
