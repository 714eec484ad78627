"""The ``language`` reward (R1's language consistency): the share of a completion's letters in
sentences written in the target language, fixed or from the row's column; English, Chinese and
mixed text, and the codes it accepts."""
from __future__ import annotations

import pytest

from training.languages import share_in
from training.reward_types import language_score, validate_source

ENGLISH = "The weather is lovely today. We walked to the park and fed the ducks."
CHINESE = "今天天气很好。我们去公园散步，还喂了鸭子。"
MIXED = "The weather is lovely today. 我们去公园散步，还喂了鸭子，非常开心。"


@pytest.mark.parametrize("text, language, share", [
    (ENGLISH, "en", 1.0), (ENGLISH, "zh", 0.0), (CHINESE, "zh", 1.0), (CHINESE, "en", 0.0),
    ("12345 + 678 = 13023", "en", 0.0),  # nothing to judge
])
def test_one_language_text_is_all_or_nothing(text, language, share):
    assert share_in(text, language) == share


def test_mixed_text_is_shared_by_letters():
    english = len("Theweatherislovelytoday")
    chinese = len("我们去公园散步还喂了鸭子非常开心")

    assert share_in(MIXED, "en") == pytest.approx(english / (english + chinese))
    assert share_in(MIXED, "zh") == pytest.approx(chinese / (english + chinese))


def test_the_target_can_come_from_the_rows_column():
    rows = [{"lang": "en"}, {"lang": "zh"}, {"lang": ""}]

    scores = language_score([""] * 3, [ENGLISH, ENGLISH, ENGLISH], rows, {"language": "@lang"})

    assert scores == [1.0, 0.0, 0.0]


def test_the_language_is_checked_when_the_run_is_made():
    assert validate_source({"type": "language", "language": "zh"})["language"] == "zh"
    assert validate_source({"type": "language", "language": "@lang"},
                           columns=["prompt", "lang"])["language"] == "@lang"
    with pytest.raises(ValueError, match="a language code .*en.* or @column"):
        validate_source({"type": "language", "language": "klingon"})
    with pytest.raises(ValueError, match="not a column"):
        validate_source({"type": "language", "language": "@missing"}, columns=["prompt"])
