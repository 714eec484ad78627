"""JSON read the strict way, for API bodies and uploaded JSON Lines.

Python's ``json`` accepts what JSON does not (``NaN``, ``Infinity``, duplicate keys) and
recurses once per nesting level, so a deep enough value raises RecursionError (or crashes a
native parser). Here the nesting is measured first, without parsing, and then every value is
checked: no NaN or infinities (nor ``1e400``, which Python reads as infinity), integers that
fit in 64 bits (what the database stores), text that is valid Unicode (``"\\ud800"`` is not),
each key once. Problems come back as :class:`JsonProblem` naming where they are.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

INT64_MAX = 2**63 - 1
# A JSON string: a quote, then anything but a quote, backslash or newline, or an escape.
# The two alternatives start differently, so the pattern never backtracks.
_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')
# Maps '[' and '{' to +1 and ']' and '}' to -1 (as int8), everything else to 0.
_DEPTH_STEP = bytes(1 if c in b"[{" else 255 if c in b"]}" else 0 for c in range(256))


class JsonProblem(ValueError):
    """Why a JSON text is refused: ``status`` 400 (not JSON) or 422 (JSON we do not take);
    ``fields`` maps a dotted path (``hyperparameters.learning_rate``) to the problem."""

    def __init__(self, detail: str, *, status: int = 422, fields: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail, self.status, self.fields = detail, status, fields or {}


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in ``raw``, found without parsing it: brackets
    inside strings are dropped first, then the running count of the rest peaks at the depth.
    Linear in the length; a malformed text gives some number and fails later, in the parser."""
    outside_strings = _STRING.sub(b"", raw)
    opening = outside_strings.count(b"[") + outside_strings.count(b"{")
    if opening <= 1:
        return opening
    steps = np.frombuffer(outside_strings.translate(_DEPTH_STEP), dtype=np.int8)
    return int(np.cumsum(steps, dtype=np.int64).max())


class _NonFinite:
    def __init__(self, text: str):
        self.text = text


class _TooBig:
    def __init__(self, text: str):
        self.text = text


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _int(text: str) -> int | _TooBig:
    value = int(text)
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else _TooBig(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonProblem(f"The key {key!r} appears twice in one object; give each key "
                              "once.", fields={key: "repeated key"})
        obj[key] = value
    return obj


def loads(raw: bytes | str, *, max_depth: int) -> Any:
    """Parse ``raw`` (UTF-8) or raise :class:`JsonProblem`."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"The body is not UTF-8 text (byte {exc.start}).", status=400) from None
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JsonProblem(f"The JSON nests {depth} levels deep; at most {max_depth} are "
                          "accepted (RLHF_JSON_MAX_DEPTH).")
    try:
        value = json.loads(text, parse_float=_float, parse_int=_int,
                           parse_constant=_NonFinite, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"The body is not valid JSON: {exc.msg} at line {exc.lineno}, column "
                          f"{exc.colno}.", status=400) from None
    except ValueError as exc:  # JsonProblem from _pairs, or a number of over 4300 digits
        if isinstance(exc, JsonProblem):
            raise
        raise JsonProblem(f"The JSON holds a number that is too long: {exc}.") from None
    fields: dict[str, str] = {}
    _check(value, "", fields)
    if fields:
        raise JsonProblem("Check these values: " + "; ".join(
            f"{path or 'the body'}: {problem}" for path, problem in fields.items()) + ".",
            fields=fields)
    return value


def _check(value: Any, path: str, fields: dict[str, str]) -> None:
    """Collect the problems of ``value`` by path. Recursion is bounded by the depth check."""
    if len(fields) >= 20:
        return
    if isinstance(value, _NonFinite):
        fields[path or "body"] = f"must be a finite number, not {value.text}"
    elif isinstance(value, _TooBig):
        shown = value.text if len(value.text) <= 30 else value.text[:30] + "..."
        fields[path or "body"] = f"{shown} is out of range (at most {INT64_MAX})"
    elif isinstance(value, str):
        if not _is_unicode(value):
            fields[path or "body"] = "holds an unpaired surrogate (\\ud800-\\udfff): not text"
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _is_unicode(key):
                fields[path or "body"] = "a key holds an unpaired surrogate: not text"
                continue
            _check(item, where, fields)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", fields)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
