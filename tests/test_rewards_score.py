"""Testing rewards before launching: ``POST /api/rewards/score`` scores pasted samples with
every rule-based type, weighs the total as a run would, refuses what it cannot score here
(a reward model) or what is out of bounds naming the field; and the launch form's "Test
rewards" panel does the same in Chromium."""
from __future__ import annotations

import json

import pytest

from tests.browser import chromium_page, sign_in

R1 = "<think>2 and 2 make 4</think>\n<answer>4</answer>"
CODE = "Here:\n```python\nprint('hi')\n```"
SAMPLES = [
    {"prompt": "What is 2+2?", "completion": R1, "answer": "4"},
    {"prompt": "What is 2+2?", "completion": "I think \\boxed{5}.", "answer": "4"},
    {"prompt": "Write code", "completion": CODE, "answer": "x"},
]


def _score(api, rewards, samples=SAMPLES):
    return api.post("/api/rewards/score", json.dumps({"rewards": rewards, "samples": samples}),
                    content_type="application/json")


def test_each_rule_based_type_scores_the_samples_and_the_total_is_weighted(api):
    response = _score(api, [
        {"type": "math", "weight": 2.0},
        {"type": "format", "preset": "think_answer"},
        {"type": "code_compiles", "weight": 0.5},
        {"type": "exact_match", "column": "answer"},
        {"type": "regex", "pattern": ".*think.*"},
        {"type": "length", "target": 10, "weight": 0.001},
        {"type": "language", "language": "en"},
    ])

    assert response.status_code == 200, response.content
    found = response.json()
    assert found["sources"] == ["math", "format", "code_compiles", "exact_match", "regex",
                                "length", "language"]
    first, second, third = (s["scores"] for s in found["samples"])
    assert (first["math"], first["format"], first["exact_match"], first["regex"]) == (
        1.0, 1.0, 1.0, 1.0)
    assert (second["math"], second["format"]) == (0.0, 0.0)
    assert third["code_compiles"] == 1.0 and first["code_compiles"] == 0.0
    assert first["length"] == -abs(10 - len(R1))
    assert found["samples"][0]["total"] == pytest.approx(
        2.0 + 1.0 + 0 + 1.0 + 1.0 + 0.001 * first["length"] + first["language"])
    assert found["metrics"]["math/no_answer_frac"] == pytest.approx(1 / 3)  # the code one


@pytest.mark.parametrize("rewards, samples, field", [
    ([{"type": "reward_model", "model": "tiny-llama"}], SAMPLES, "rewards[0]"),
    ([{"type": "format", "preset": "xml"}], SAMPLES, "rewards[0]"),
    ([{"type": "exact_match", "column": "solution"}], SAMPLES, "rewards[0]"),
    ([{"type": "length", "target": 5}], [{"prompt": "p"}], "samples[0].completion"),
    ([{"type": "length", "target": 5}], [{"completion": "c"}] * 65, "samples"),
    ([{"type": "length", "target": 5}], [{"completion": "c" * 20_001}], "samples[0].completion"),
])
def test_what_cannot_be_scored_here_is_a_422_naming_it(api, rewards, samples, field):
    response = _score(api, rewards, samples)

    assert response.status_code == 422, response.content
    assert field in response.json()["fields"], response.json()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_launch_forms_panel_scores_a_pasted_completion(live_server, user, transactional_db):
    with chromium_page(timeout_ms=20_000) as tab:
        sign_in(tab, live_server.url)
        tab.goto(live_server.url + "/runs/new/")
        tab.select_option("select[name='reward-0-type']", "format")
        tab.click("#test-rewards summary")
        tab.fill("#test-completion", R1)
        tab.fill("#test-answer", "4")
        tab.click("#test-rewards-button")
        tab.wait_for_selector("#test-rewards-scores")

        text = tab.inner_text("#test-rewards-scores")

    assert "format" in text and "1.000" in text and "weighted total" in text
