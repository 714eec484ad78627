"""Rankings to preference pairs (pure Python)."""
from __future__ import annotations

import pytest

from training.preferences import ranking_pairs, rows_as_pairs


def test_a_strict_ranking_of_k_responses_gives_k_choose_2_pairs():
    pairs = ranking_pairs(["a", "b", "c", "d"], [2, 1, 4, 3])
    assert len(pairs) == 6
    assert set(pairs) == {("b", "a"), ("b", "c"), ("b", "d"), ("a", "c"), ("a", "d"),
                          ("d", "c")}


def test_tied_responses_give_no_pair_between_them():
    # a and c share rank 1: they beat b, and there is no pair between them
    assert sorted(ranking_pairs(["a", "b", "c"], [1, 2, 1])) == [("a", "b"), ("c", "b")]
    assert ranking_pairs(["a", "b"], [1, 1]) == []


def test_identical_texts_give_no_pair():
    assert ranking_pairs(["same", "same", "other"], [1, 2, 3]) == [("same", "other"),
                                                                  ("same", "other")]


def test_a_rank_is_needed_for_every_response():
    with pytest.raises(ValueError):
        ranking_pairs(["a", "b"], [1])


def test_rows_as_pairs_passes_pairs_through_and_expands_rankings():
    rows = [{"prompt": "p", "chosen": "x", "rejected": "y", "margin": 1.0},
            {"prompt": "q", "responses": ["r1", "r2", "r3"], "ranking": [3, 1, 2]}]
    out = list(rows_as_pairs(rows))
    assert out[0] == rows[0]
    assert [(r["chosen"], r["rejected"]) for r in out[1:]] == [("r2", "r1"), ("r2", "r3"),
                                                                ("r3", "r1")]
    assert all(r["prompt"] == "q" for r in out[1:])
