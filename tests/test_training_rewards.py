"""Rule-based rewards and their weighted combination."""
from __future__ import annotations

import pytest
import torch

from training.config import RewardSpec
from training.reward_types import exact_match_score, extract_answer, length_score, regex_score
from training.scoring import score

PROMPTS = ["p"] * 4


def test_length_reward_is_minus_the_distance_to_the_target_in_characters():
    completions = ["", "abcde", "a" * 10, "a" * 13]

    rewards = length_score(PROMPTS, completions, [{}] * 4, {"target": 10})

    assert rewards == [-10.0, -5.0, 0.0, -3.0]
    assert all(isinstance(r, float) for r in rewards)


def test_regex_reward_needs_the_whole_stripped_completion_to_match():
    pattern = r"<think>.*?</think><answer>.*?</answer>"
    completions = [
        "<think>a</think><answer>4</answer>",
        "  <think>a</think><answer>4</answer>\n",  # surrounding space is stripped
        "<think>a</think><answer>4</answer> and more",  # not a full match
        "<think>line one\nline two</think><answer>4</answer>",  # . spans lines (DOTALL)
    ]

    assert regex_score(PROMPTS, completions, [{}] * 4, {"pattern": pattern}) == [1.0, 1.0, 0.0, 1.0]


def test_extract_answer_takes_the_last_answer_tag_or_the_whole_text():
    assert extract_answer("<answer> 4 </answer>") == "4"
    assert extract_answer("<answer>3</answer> no, <answer>5</answer>") == "5"
    assert extract_answer("<answer>multi\nline</answer>") == "multi\nline"
    assert extract_answer("  just 7 \n") == "just 7"


def test_exact_match_reward_compares_the_extracted_answer_with_the_reference():
    completions = ["<think>2+2</think><answer> 4</answer>", "4", "<answer>5</answer>", "4"]
    answers = ["4", " 4 ", "4", None]  # the last row has no reference

    rewards = exact_match_score(PROMPTS, completions, [{"answer": a} for a in answers],
                                {"column": "answer"})

    assert rewards == [1.0, 1.0, 0.0, 0.0]


def test_exact_match_reward_compares_a_numeric_reference_as_text():
    assert exact_match_score(["p"], ["<answer>42</answer>"], [{"answer": 42}], {}) == [1.0]


def test_score_sums_the_weighted_sources_and_reports_each_one():
    specs = [RewardSpec(type="length", weight=0.5, args={"target": 4}),
             RewardSpec(type="regex", weight=2.0, args={"pattern": r"<answer>\d+</answer>"}),
             RewardSpec(type="exact_match", weight=3.0, args={"column": "solution"})]
    completions = ["<answer>7</answer>", "abcd", "<answer>8</answer>"]
    rows = [{"solution": "7"}, {"solution": "abcd"}, {"other": "8"}]

    total, per_source = score(specs, ["length", "regex", "exact_match"], ["p"] * 3, completions,
                              rows)

    # length: -|4 - 18| = -14, -|4 - 4| = 0, -14; regex: 1, 0, 1; exact: 1, 1, 0 (no column)
    assert per_source["length"].tolist() == [-14.0, 0.0, -14.0]
    assert per_source["regex"].tolist() == [1.0, 0.0, 1.0]
    assert per_source["exact_match"].tolist() == [1.0, 1.0, 0.0]
    # 0.5 x -14 + 2 x 1 + 3 x 1 = -2;  0 + 0 + 3 = 3;  -7 + 2 + 0 = -5
    assert total.tolist() == [-2.0, 3.0, -5.0]
    assert total.dtype == torch.float32


def test_score_keeps_two_sources_of_one_type_apart_by_name():
    specs = [RewardSpec(type="length", args={"target": 2}),
             RewardSpec(type="length", weight=-1.0, args={"target": 5})]

    total, per_source = score(specs, ["length_1", "length_2"], ["p"], ["abc"], [{}])

    assert per_source["length_1"].tolist() == [-1.0]
    assert per_source["length_2"].tolist() == [-2.0]
    assert total.tolist() == [1.0]  # -1 + (-1 x -2)


def test_exact_match_reads_the_answer_column_by_default():
    total, _ = score([RewardSpec(type="exact_match")], ["exact_match"], ["p", "p"],
                     ["yes", "no"], [{"answer": "yes"}, {"answer": "yes"}])

    assert total.tolist() == [1.0, 0.0]


def test_score_refuses_a_reward_model_source_without_a_loaded_scorer():
    with pytest.raises(ValueError, match="no scorer loaded"):
        score([RewardSpec(type="reward_model", args={"model": "rm-1"})], ["reward_model"],
              ["p"], ["c"],
              [{}])


def test_score_weights_a_reward_model_scorer_with_the_rules():
    def by_length(prompts, completions):
        return [float(len(c)) for c in completions]

    specs = [RewardSpec(type="reward_model", weight=0.5, args={"model": "rm-1"}),
             RewardSpec(type="length", args={"target": 3})]
    total, per_source = score(specs, ["reward_model", "length"], ["p", "p"], ["ab", "abcd"],
                              [{}, {}], scorers={"reward_model": by_length})
    # 0.5 * [2, 4] + [-1, -1] = [0, 1]
    assert total.tolist() == [0.0, 1.0]
    assert per_source["reward_model"].tolist() == [2.0, 4.0]


@pytest.mark.parametrize("pattern", [r"(.*)*ZZZ", r"(a+)+$"])
def test_a_catastrophic_pattern_scores_long_completions_in_linear_time(pattern):
    # With a backtracking engine (Python's re) each of these takes exponential time in the
    # length of a text that fails at the end: 30 characters already take minutes.
    import time

    completions = ["a" * 200_000 + "b", "x" * 200_000, "a" * 50, "aaaZZZ"]
    start = time.perf_counter()
    rewards = regex_score(["p"] * 4, completions, [{}] * 4, {"pattern": pattern})
    elapsed = time.perf_counter() - start

    expected = [0.0, 0.0, 1.0, 0.0] if pattern == r"(a+)+$" else [0.0, 0.0, 0.0, 1.0]
    assert rewards == expected
    assert elapsed < 2.0, f"{pattern} took {elapsed:.2f}s over 400,000 characters"
