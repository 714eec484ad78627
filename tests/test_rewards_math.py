"""The ``math`` reward: the completion's final answer against the row's by symbolic equivalence
(math-verify), GSM8K's ``#### 42`` read, "no answer" counted, and a hostile expression cut off
by the checking process's time limit without holding up the pairs after it."""
from __future__ import annotations

import time

import pytest

from tests.training_helpers import grpo_config, one_torch_thread
from training.grpo import train
from training.math_answers import Checker, final_answer, reference_answer
from training.metrics import ListSink
from training.reward_types import math_metrics, math_score

# (reference, completion, reward)
TABLE = [
    ("1/2", "The answer is \\boxed{0.5}.", 1.0),
    ("0.5", "So we get \\boxed{\\frac{1}{2}}", 1.0),
    ("1/2", "Therefore \\boxed{\\dfrac12}.", 1.0),
    ("\\frac{1}{2}", "<answer>1/2</answer>", 1.0),
    ("3", "We need \\boxed{\\sqrt{9}} apples.", 1.0),
    ("(x+1)^2", "\\boxed{x^2+2x+1}", 1.0),
    ("1000", "She paid 1,000 dollars in total, so 1,000", 1.0),
    ("She sold 48/2 = 24 in May.\n#### 72", "48 + 24 = 72", 1.0),  # GSM8K, last number
    ("72", "\\boxed{72\\text{ clips}}", 1.0),  # units in text
    ("42", "\\boxed{43}", 0.0),
    ("1/2", "\\boxed{1/3}", 0.0),
    ("72", "Seventy-two, I think.", 0.0),  # no answer found
    ("72", "\\boxed{72", 1.0),  # an unclosed box is no box: the last number, 72
]


@pytest.mark.parametrize("reference, completion, reward", TABLE)
def test_equivalent_answers_score_1_and_others_0(reference, completion, reward):
    assert math_score([""], [completion], [{"answer": reference}], {"column": "answer"}) == [
        reward]


def test_the_final_answer_is_the_last_box_else_the_tag_else_the_last_number():
    assert final_answer("\\boxed{1} then \\boxed{\\frac{2}{3}} done") == "\\frac{2}{3}"
    assert final_answer("<answer> 7 </answer> and 8") == "7"
    assert final_answer("it is 12, then 1,234.") == "1,234"
    assert final_answer("no digits here") is None
    assert reference_answer("work...\n#### 1,200") == "1,200"
    assert reference_answer(None) is None


def test_completions_without_an_answer_are_counted():
    completions = ["\\boxed{4}", "four", "it is 4", "hmm"]

    assert math_metrics([], completions, [{}] * 4, {}) == {"no_answer_frac": 0.5}


def test_a_hostile_expression_is_cut_off_and_the_next_pair_is_checked():
    checker = Checker(time_limit_s=1.0)
    try:
        assert checker.equivalent("2", "1+1")  # warm: the process is up
        started = time.monotonic()

        hung = checker.equivalent("1", "9^{9^{9^{9^{9}}}}")

        assert hung is False and checker.timeouts == 1
        assert time.monotonic() - started < 5
        assert checker.equivalent("1/2", "0.5")  # a fresh process answers the next pair
    finally:
        checker.close()


def test_the_api_offers_it_and_a_grpo_step_logs_its_misses(api, tmp_path):
    types = {t["type"]: t for t in api.get("/api/rewards").json()}
    assert types["math"]["args"][0] | {"lo": None} == {
        "name": "column", "kind": "column", "help": "the column with the reference answer",
        "default": "answer", "required": False, "lo": None, "hi": None}
    sink = ListSink()
    rows = [{"prompt": "What is 2+2?", "answer": "4"}, {"prompt": "What is 3*3?", "answer": "9"}]

    with one_torch_thread():
        train(grpo_config(tmp_path, rows=rows, max_steps=1,
                          rewards=[{"type": "math", "column": "answer", "weight": 1.0}]),
              sink=sink)

    (_, metrics), = sink.metrics
    assert 0.0 <= metrics["reward/math/mean"] <= 1.0
    assert 0.0 <= metrics["reward/math/no_answer_frac"] <= 1.0


def test_a_scoped_checker_has_a_budget_and_leaves_the_process_wide_one_alone():
    from training.math_answers import checker, scoped_checker

    shared = checker()
    with scoped_checker(time_limit_s=0.5, budget_s=0.1) as own:
        assert checker() is own
        own.equivalent("1", "9^{9^{9^{9^{9}}}}")  # spends the budget (startup included)
        started = time.monotonic()

        assert own.equivalent("1/2", "0.5") is False  # over budget: not checked at all
        assert time.monotonic() - started < 0.1

    assert checker() is shared and own._process is None  # closed with its scope
