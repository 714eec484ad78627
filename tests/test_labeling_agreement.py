"""Agreement between annotators on small hand-made rankings, with the arithmetic written out.

Rank vectors hold one rank per response (1 best, equal = tied). For K = 3 the response pairs
are (0,1), (0,2), (1,2): n0 = 3.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from webapp.labeling.agreement import (
    batch_agreement,
    item_agreement,
    kendall_tau_b,
    pairwise_agreement,
)


def test_identical_strict_rankings_agree_fully():
    # every pair ordered the same way: agreement 3/3; nc = 3, nd = 0 -> tau = 3 / sqrt(3 * 3)
    assert pairwise_agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == 1.0


def test_reversed_rankings_disagree_fully():
    # every pair reversed: agreement 0/3; nc = 0, nd = 3 -> tau = -3 / 3 = -1
    assert pairwise_agreement([1, 2, 3], [3, 2, 1]) == 0.0
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0


def test_one_swapped_pair():
    # a = [1,2,3], b = [2,1,3]: (0,1) a says 0 better, b says 1 better -> discordant;
    # (0,2) and (1,2) concordant. agreement 2/3; tau = (2 - 1) / sqrt(3 * 3) = 1/3
    assert pairwise_agreement([1, 2, 3], [2, 1, 3]) == pytest.approx(2 / 3)
    assert kendall_tau_b([1, 2, 3], [2, 1, 3]) == pytest.approx(1 / 3)


def test_a_pair_tied_by_one_and_ordered_by_the_other_is_a_disagreement():
    # a = [1,1,2] ties (0,1); b = [1,2,3] orders it -> that pair disagrees, the other two agree:
    # agreement 2/3. tau-b: nc = 2, nd = 0, ties in a t1 = 1, in b t2 = 0
    # -> 2 / sqrt((3 - 1) * (3 - 0)) = 2 / sqrt(6) ~ 0.8165
    assert pairwise_agreement([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_a_pair_both_tie_is_an_agreement():
    # both tie (0,1) and order the rest alike: agreement 3/3;
    # tau-b: nc = 2, t1 = t2 = 1 -> 2 / sqrt(2 * 2) = 1
    assert pairwise_agreement([1, 1, 2], [1, 1, 2]) == 1.0
    assert kendall_tau_b([1, 1, 2], [1, 1, 2]) == 1.0


def test_tau_is_undefined_when_someone_ties_everything():
    # a ties all 3 pairs: t1 = 3 = n0, so the denominator sqrt(0 * 3) is 0 -> None.
    # agreement: b orders every pair, a ties every pair -> 0/3
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None
    assert pairwise_agreement([1, 1, 1], [1, 2, 3]) == 0.0
    # both tie everything: they agree on all 3 pairs, tau still undefined
    assert pairwise_agreement([1, 1, 1], [1, 1, 1]) == 1.0
    assert kendall_tau_b([1, 1, 1], [1, 1, 1]) is None


def test_ranks_need_not_be_dense():
    # [1, 1, 3] (competition ranks) says the same as [1, 1, 2]
    assert pairwise_agreement([1, 1, 3], [1, 1, 2]) == 1.0
    assert kendall_tau_b([1, 1, 3], [1, 1, 2]) == 1.0


def test_four_responses():
    # K = 4: 6 pairs. a = [1,2,3,4], b = [1,3,2,4]: only (1,2) is reversed.
    # agreement 5/6; tau = (5 - 1) / 6 = 2/3
    assert pairwise_agreement([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(5 / 6)
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


def test_vectors_of_different_lengths_are_refused():
    with pytest.raises(ValueError):
        pairwise_agreement([1, 2], [1, 2, 3])


def test_an_item_averages_over_its_annotator_pairs():
    # three annotators -> pairs (ann, bob), (ann, cy), (bob, cy):
    # ann/bob identical: agreement 1, tau 1
    # ann/cy one swap:   agreement 2/3, tau 1/3
    # bob/cy one swap:   agreement 2/3, tau 1/3
    # mean agreement (1 + 2/3 + 2/3) / 3 = 7/9; mean tau (1 + 1/3 + 1/3) / 3 = 5/9
    summary = item_agreement({"ann": [1, 2, 3], "bob": [1, 2, 3], "cy": [2, 1, 3]})
    assert summary.comparisons == 3 and summary.annotators == 3
    assert summary.agreement == pytest.approx(7 / 9)
    assert summary.tau == pytest.approx(5 / 9)


def test_one_annotator_gives_no_item_agreement():
    assert item_agreement({"ann": [1, 2, 3]}) is None


def test_overall_is_the_mean_over_every_item_and_annotator_pair():
    items = {
        # item 1: one pair, reversed: agreement 0, tau -1
        1: {"ann": [1, 2], "bob": [2, 1]},
        # item 2: three pairs as in the test above: agreements 1, 2/3, 2/3; taus 1, 1/3, 1/3
        2: {"ann": [1, 2, 3], "bob": [1, 2, 3], "cy": [2, 1, 3]},
        # item 3: one annotator, left out
        3: {"ann": [1, 2]},
        # item 4: bob tied everything: agreement 0 (one pair, ordered vs tied), tau undefined
        4: {"ann": [1, 2], "bob": [1, 1]},
    }
    overall, per_item = batch_agreement(items)
    assert set(per_item) == {1, 2, 4}
    # 5 comparisons: agreements 0, 1, 2/3, 2/3, 0 -> (7/3) / 5 = 7/15
    assert overall.comparisons == 5
    assert overall.agreement == pytest.approx(7 / 15)
    # defined taus: -1, 1, 1/3, 1/3 -> (2/3) / 4 = 1/6; one undefined
    assert overall.tau == pytest.approx(1 / 6)
    assert overall.tau_undefined == 1
    assert per_item[4].tau is None and per_item[4].agreement == 0.0
    assert overall.annotators == 3


def test_no_comparisons_give_empty_means():
    overall, per_item = batch_agreement({1: {"ann": [1, 2]}})
    assert per_item == {} and overall.comparisons == 0
    assert overall.agreement is None and overall.tau is None


def test_the_module_is_pure_python():
    # loaded from its file, not through the webapp package (whose __init__ loads Celery)
    probe = ("import importlib.util, sys; "
             "spec = importlib.util.spec_from_file_location('agreement', "
             "'webapp/labeling/agreement.py'); "
             "module = importlib.util.module_from_spec(spec); sys.modules['agreement'] = module; "
             "spec.loader.exec_module(module); "
             "assert module.kendall_tau_b([1, 2], [1, 2]) == 1.0; "
             "bad = [m for m in ('django', 'torch', 'numpy') if m in sys.modules]; "
             "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
