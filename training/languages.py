"""Which language a text is written in, for the ``language`` reward (R1's language-consistency
reward): the share of a completion's letters in a target language. ``langdetect`` (Google's
language-detection profiles, shipped in its wheel: nothing is downloaded) judges each sentence;
the share is counted in characters. Seeded, so a text always gets the same answer."""

from __future__ import annotations

import functools
import re
from typing import Any

# sentences and lines: a mixed completion is judged piece by piece
_PIECES = re.compile(r"[^.!?。！？\n]+[.!?。！？]?")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
# langdetect's codes for Chinese carry the script; a target says "zh"
_ALIASES = {"zh-cn": "zh", "zh-tw": "zh"}


@functools.cache
def _detector() -> Any:
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # deterministic: the same text, the same language
    return detect_langs


@functools.cache
def supported() -> tuple[str, ...]:
    """The language codes the detector knows (ISO 639-1, and ``zh`` for Chinese)."""
    from langdetect import detector_factory

    detector_factory.init_factory()
    codes = detector_factory._factory.get_lang_list()  # noqa: SLF001 (its only list)
    return tuple(sorted({_ALIASES.get(c, c) for c in codes}))


def language_of(text: str) -> str | None:
    """The most likely language of ``text``, or None when it has no letters to judge."""
    if not _LETTER.search(text):
        return None
    from langdetect.lang_detect_exception import LangDetectException

    try:
        found = _detector()(text)
    except LangDetectException:
        return None
    return _ALIASES.get(found[0].lang, found[0].lang) if found else None


def share_in(text: str, language: str) -> float:
    """The share of ``text``'s letters in sentences written in ``language`` (0 when it has
    none)."""
    counted = matching = 0
    for piece in _PIECES.findall(text[:20_000]):
        letters = len(_LETTER.findall(piece))
        found = language_of(piece) if letters else None
        if found is None:
            continue
        counted += letters
        matching += letters if found == language else 0
    return matching / counted if counted else 0.0
