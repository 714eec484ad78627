"""Agreement between annotators who ranked the same items. Pure Python: no Django, no numpy.

A rank vector holds one rank per response (1 best, equal ranks tied), aligned with the item's
responses. Two annotators are compared over every unordered pair of responses ``(i, j)``; each
annotator either prefers ``i``, prefers ``j``, or ties them.

Pairwise agreement
    The share of response pairs on which both annotators say the same thing: both prefer the
    same response, or both tie the pair. A pair tied by one annotator and ordered by the other
    is a disagreement. Defined whenever the item has at least two responses.

Kendall's tau-b
    ``(nc - nd) / sqrt((n0 - t1) * (n0 - t2))`` with ``n0`` the number of pairs, ``nc``/``nd``
    the pairs both annotators order the same/opposite way, and ``t1``/``t2`` the pairs each
    annotator ties. It runs from -1 (reversed) to 1 (same order) and discounts ties instead of
    counting them as disagreements. Undefined (``None``) when either annotator ties every
    pair, because the denominator is then 0.

Per item, each statistic is the mean over the pairs of annotators who ranked it; overall, the
mean over every (item, annotator pair), so an item ranked by more people weighs more. Undefined
tau values are left out of the means (and counted apart).
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

Ranks = Sequence[int]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _relations(a: Ranks, b: Ranks) -> list[tuple[int, int]]:
    """Per response pair ``(i < j)``: each annotator's relation, -1 (i better), 0 (tied) or
    1 (j better)."""
    if len(a) != len(b):
        raise ValueError("both rank vectors must rank the same responses")
    return [(_sign(a[i] - a[j]), _sign(b[i] - b[j]))
            for i, j in combinations(range(len(a)), 2)]


def pairwise_agreement(a: Ranks, b: Ranks) -> float | None:
    """Share of response pairs both annotators order the same way or both tie (see module)."""
    relations = _relations(a, b)
    if not relations:
        return None
    return sum(ra == rb for ra, rb in relations) / len(relations)


def kendall_tau_b(a: Ranks, b: Ranks) -> float | None:
    """Kendall's tau-b of two rank vectors with ties; ``None`` where it is undefined."""
    relations = _relations(a, b)
    n0 = len(relations)
    tied_a = sum(ra == 0 for ra, _ in relations)
    tied_b = sum(rb == 0 for _, rb in relations)
    concordant = sum(ra == rb != 0 for ra, rb in relations)
    discordant = sum(ra == -rb != 0 for ra, rb in relations)
    denominator = math.sqrt((n0 - tied_a) * (n0 - tied_b))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


@dataclass(frozen=True)
class Comparison:
    """Two annotators on one item."""

    item: Hashable
    first: Hashable
    second: Hashable
    agreement: float | None
    tau: float | None


@dataclass(frozen=True)
class Summary:
    """Means over a set of comparisons (an item's, or a whole batch's)."""

    annotators: int  # distinct annotators involved
    comparisons: int  # annotator pairs compared
    agreement: float | None  # mean pairwise agreement
    tau: float | None  # mean Kendall tau-b over the comparisons where it is defined
    tau_undefined: int  # comparisons whose tau is undefined


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def compare_item(item: Hashable, rankings: Mapping[Any, Ranks]) -> list[Comparison]:
    """Every pair of annotators who ranked ``item`` (annotators in sorted order of their key's
    text, so the result does not depend on dict order)."""
    names = sorted(rankings, key=str)
    return [Comparison(item, x, y, pairwise_agreement(rankings[x], rankings[y]),
                       kendall_tau_b(rankings[x], rankings[y]))
            for x, y in combinations(names, 2)]


def summarise(comparisons: Sequence[Comparison]) -> Summary:
    annotators = {c.first for c in comparisons} | {c.second for c in comparisons}
    return Summary(annotators=len(annotators), comparisons=len(comparisons),
                   agreement=_mean([c.agreement for c in comparisons]),
                   tau=_mean([c.tau for c in comparisons]),
                   tau_undefined=sum(c.tau is None for c in comparisons))


def item_agreement(rankings: Mapping[Any, Ranks]) -> Summary | None:
    """Mean agreement and tau over the annotator pairs of one item; None with fewer than two
    annotators."""
    if len(rankings) < 2:
        return None
    return summarise(compare_item(None, rankings))


def batch_agreement(items: Mapping[Any, Mapping[Any, Ranks]]
                    ) -> tuple[Summary, dict[Any, Summary]]:
    """The overall summary (mean over every item-annotator-pair) and one summary per item that
    has at least two annotators."""
    per_item: dict[Any, Summary] = {}
    everything: list[Comparison] = []
    for item, rankings in items.items():
        comparisons = compare_item(item, rankings)
        if comparisons:
            per_item[item] = summarise(comparisons)
            everything.extend(comparisons)
    return summarise(everything), per_item
