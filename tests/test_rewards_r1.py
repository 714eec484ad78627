"""The rule-based rewards DeepSeek-R1 trains with: the format presets (with and without partial
credit) and whether a completion's Python block compiles (never running it, whatever it says),
declared once and so offered by the API, the form and the engine."""
from __future__ import annotations

import pytest

from tests.training_helpers import grpo_config, one_torch_thread
from training.grpo import train
from training.metrics import ListSink
from training.reward_types import code_compiles_score, format_score, validate_source

R1 = "<think>\n2 and 2 make 4\n</think>\n<answer>4</answer>"


@pytest.mark.parametrize("preset, completion, whole, partial", [
    ("think_answer", R1, 1.0, 1.0),
    ("think_answer", "<think>only thinking</think>", 0.0, 0.5),
    ("think_answer", "<answer>4</answer>", 0.0, 0.5),
    ("think_answer", "<think>a</think><think>b</think><answer>4</answer>", 0.0, 0.5),
    ("think_answer", "4", 0.0, 0.0),
    ("boxed", "So the answer is \\boxed{\\frac{1}{2}}.", 1.0, 1.0),
    ("boxed", "So the answer is 1/2.", 0.0, 0.0),
    ("code_block", "Here:\n```python\nprint(1)\n```\nDone.", 1.0, 1.0),
    ("code_block", "```python\na = 1\n```\nand\n```\nb = 2\n```", 0.0, 0.5),
    ("code_block", "print(1)", 0.0, 0.0),
])
def test_each_format_preset_scores_whole_forms_and_optionally_parts(preset, completion, whole,
                                                                   partial):
    assert format_score([], [completion], [{}], {"preset": preset}) == [whole]
    assert format_score([], [completion], [{}], {"preset": preset, "partial": "yes"}) == [partial]


def test_a_long_completion_does_not_slow_the_format_check():
    hostile = "<think>" + "<" * 200_000 + "</think><answer>" + "a" * 200_000  # never closed

    assert format_score([], [hostile], [{}], {"preset": "think_answer"}) == [0.0]


def test_code_compiles_and_nothing_in_it_runs(tmp_path):
    marker = tmp_path / "ran"
    completions = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b:\n    return a + b\n```",  # a syntax error
        f"```\nimport os\nos.system('touch {marker}')\nopen('{marker}', 'w')\n```",
        "```python\nx = 9 ** 9 ** 9 ** 9\ny = 'a' * 10 ** 12\n```",  # folded? no: refused
        "```python\n" + "(" * 5000 + ")" * 5000 + "\n```",  # nested too deep
        "```python\n\n```",  # empty
        "```javascript\nlet x = 1;\n```",  # not Python
        "no code at all",
    ]

    scores = code_compiles_score([], completions, [{}] * len(completions), {})

    assert scores == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert not marker.exists()


@pytest.mark.parametrize("source, words", [
    ({"type": "format", "preset": "xml"}, "one of think_answer, boxed, code_block"),
    ({"type": "format", "partial": "maybe"}, "one of no, yes"),
    ({"type": "code_compiles", "language": "python"}, "unknown field language"),
])
def test_bad_arguments_name_what_is_accepted(source, words):
    with pytest.raises(ValueError, match=words):
        validate_source(source)


def test_the_api_and_the_form_offer_them(api, client, user):
    types = {t["type"]: t for t in api.get("/api/rewards").json()}
    client.force_login(user)
    form = client.get("/runs/new/").content.decode()

    assert types["format"]["args"][0]["choices"] == ["think_answer", "boxed", "code_block"]
    assert types["code_compiles"]["args"] == []
    assert '<select name="reward-0-format-preset">' in form
    assert '<option value="think_answer" selected>' in form


def test_a_grpo_step_is_rewarded_by_both(tmp_path):
    sink = ListSink()
    with one_torch_thread():
        train(grpo_config(tmp_path, max_steps=1, rewards=[
            {"type": "format", "preset": "think_answer", "partial": "yes", "weight": 1.0},
            {"type": "code_compiles", "weight": 0.5}]), sink=sink)

    (_, metrics), = sink.metrics
    assert 0.0 <= metrics["reward/format/mean"] <= 1.0
    assert metrics["reward/code_compiles/mean"] == 0.0  # a random tiny model writes no code
