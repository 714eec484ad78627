"""Preference data: turning rankings into the pairs a reward model trains on.

Pure Python (no torch), shared by the web app's exports and the worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def ranking_pairs(responses: Sequence[str], ranks: Sequence[int]) -> list[tuple[str, str]]:
    """Every (better, worse) pair of a ranking: K responses give K(K-1)/2 pairs, minus ties.

    ``ranks`` holds one rank per response, 1 best; equal ranks are ties and give no pair,
    and neither do two identical texts.
    """
    if len(responses) != len(ranks):
        raise ValueError("one rank per response")
    pairs = []
    for i in range(len(responses)):
        for j in range(len(responses)):
            if ranks[i] < ranks[j] and responses[i] != responses[j]:
                pairs.append((responses[i], responses[j]))
    return pairs


def rows_as_pairs(rows: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Preference-pair rows from a preferences or rankings dataset's rows."""
    for row in rows:
        if "chosen" in row:
            yield row
            continue
        for chosen, rejected in ranking_pairs(row["responses"], row["ranking"]):
            yield {"prompt": row["prompt"], "chosen": chosen, "rejected": rejected}
