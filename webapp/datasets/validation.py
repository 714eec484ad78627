"""Checking an uploaded dataset's rows, with no Django models, no settings and no file
reading (that is :mod:`webapp.datasets.loading`): per kind, every row is validated and
normalised (see :func:`normalise_rows`); the problems found name their 1-based row numbers.
"""
from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from webapp.errors import Invalid
from webapp.strictjson import nesting_depth

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "prompts": ("prompt",),
    "preferences": ("prompt", "chosen", "rejected"),
    "rankings": ("prompt", "responses", "ranking"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "prompts": ("answer",), "preferences": ("margin",), "rankings": (),
}
ROLES = ("system", "user", "assistant")
MAX_ROWS_LISTED = 20
_ROWS_DESCRIBED = 5
# Bounds on what one row may hold; a parsed value can exceed what one line held (a CSV cell
# spans lines, Parquet has no lines at all).
MAX_TEXT_CHARS = 1_000_000
MAX_MESSAGES = 256
MAX_RESPONSES = 64
MAX_COLUMNS = 100
MAX_COLUMN_NAME_CHARS = 200
MAX_CELL_DEPTH = 32  # JSON inside a text cell (what RLHF_JSON_MAX_DEPTH is for whole lines)


class _Bad(ValueError):
    """One value's problem, phrased to follow the column name: "'chosen' must be text"."""


def check_columns(columns: Sequence[str], kind: str) -> None:
    if len(columns) > MAX_COLUMNS:
        raise Invalid(f"The file has {len(columns)} columns; a dataset may have at most "
                      f"{MAX_COLUMNS}.", fields={"file": "too many columns"})
    bad = [c for c in columns if not _plain_name(c)]
    if bad:
        shown = repr(bad[0][:60])
        raise Invalid(f"The column name {shown} is not a plain name: column names are at most "
                      f"{MAX_COLUMN_NAME_CHARS} characters of text, without markup (< >) or "
                      "control characters.", fields={"file": "bad column name"})
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in columns]
    if missing:
        found = ", ".join(f"'{c}'" for c in columns) or "none"
        needed = ", ".join(f"'{c}'" for c in missing)
        raise Invalid(f"A {kind} dataset needs the column(s) {needed}; the columns found are: "
                      f"{found}.", fields=dict.fromkeys(missing, "missing"))


def normalise_rows(rows: Iterable[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    """Yield each row normalised for ``kind``; after the last row, raise :class:`Invalid` naming
    the rows (1-based) that broke the schema. Once one row is bad nothing more is yielded, so a
    caller writing the rows out discards a partial file when the error arrives."""
    normalise = _NORMALISERS[kind]
    checked = {*REQUIRED_COLUMNS[kind], *OPTIONAL_COLUMNS[kind]}  # already plain JSON
    report = _Report()
    for number, row in enumerate(rows, start=1):
        out, problems = normalise(dict(row))
        if problems:
            report.add(number, problems)
        elif not report.total:
            yield {key: value if key in checked else _jsonable(value)
                   for key, value in out.items()}
    report.raise_if_any()


def _plain_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= MAX_COLUMN_NAME_CHARS
            and name.isprintable() and "<" not in name and ">" not in name)


class _Report:
    def __init__(self) -> None:
        self.total = 0
        self.rows: list[int] = []
        self.described: list[str] = []

    def add(self, number: int, problems: list[str]) -> None:
        self.total += 1
        if len(self.rows) < MAX_ROWS_LISTED:
            self.rows.append(number)
        if len(self.described) < _ROWS_DESCRIBED:
            self.described.append(f"row {number}: {', '.join(problems)}")

    def raise_if_any(self) -> None:
        if not self.total:
            return
        detail = "; ".join(self.described)
        detail = detail[0].upper() + detail[1:] + "."
        if self.total > len(self.described):
            detail += f" {self.total} rows have problems in all."
        raise Invalid(detail, rows=self.rows)


class _Checker:
    """Runs one normaliser per column, storing the result or collecting the problem."""

    def __init__(self, row: dict[str, Any]):
        self.row = row
        self.problems: list[str] = []

    def check(self, column: str, normalise: Callable[..., Any], *args: Any) -> bool:
        try:
            self.row[column] = normalise(self.row.get(column), *args)
        except _Bad as exc:
            self.problems.append(f"'{column}' {exc}")
            return False
        return True


def _prompts_row(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    checker = _Checker(row)
    checker.check("prompt", _prompt)
    if "answer" in row:
        checker.check("answer", _answer)
    return row, checker.problems


def _preferences_row(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    checker = _Checker(row)
    checker.check("prompt", _prompt)
    pair_ok = checker.check("chosen", _text) & checker.check("rejected", _text)
    if pair_ok and row["chosen"] == row["rejected"]:
        checker.problems.append("'chosen' and 'rejected' are the same text")
    if "margin" in row:
        checker.check("margin", _margin)
    return row, checker.problems


def _rankings_row(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    checker = _Checker(row)
    checker.check("prompt", _prompt)
    if checker.check("responses", _responses):
        checker.check("ranking", _ranking, len(row["responses"]))
    return row, checker.problems


_NORMALISERS = {"prompts": _prompts_row, "preferences": _preferences_row,
                "rankings": _rankings_row}


def _text(value: Any) -> str:
    if value is None:
        raise _Bad("is missing")
    if not isinstance(value, str):
        raise _Bad("must be text")
    if not value.strip():
        raise _Bad("is empty")
    return _bounded(value)


def _bounded(text: str, what: str = "") -> str:
    """``text`` when it is at most MAX_TEXT_CHARS long and valid Unicode (JSON can spell an
    unpaired surrogate, ``"\\ud800"``, which no file or database can store)."""
    if len(text) > MAX_TEXT_CHARS:
        raise _Bad(f"{what}is {len(text)} characters long; at most {MAX_TEXT_CHARS} are accepted")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{what}holds an unpaired surrogate (\\ud800-\\udfff), which is not text"
                   ) from None
    return text


def _prompt(value: Any) -> str | list[dict[str, str]]:
    """Plain text, or chat messages (a JSON list in a text cell counts, which is how CSV
    carries them)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        decoded = _decode_json(value)
        if isinstance(decoded, list) and decoded and all(isinstance(m, dict) for m in decoded):
            value = decoded
    if isinstance(value, list | tuple):
        return _messages(list(value))
    if value is not None and not isinstance(value, str):
        raise _Bad("must be text or a list of chat messages")
    return _text(value)


def _messages(messages: list[Any]) -> list[dict[str, str]]:
    if not messages:
        raise _Bad("is an empty list of messages")
    if len(messages) > MAX_MESSAGES:
        raise _Bad(f"has {len(messages)} messages; at most {MAX_MESSAGES} are accepted")
    out = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise _Bad(f"message {number} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise _Bad(f"message {number} has role {role!r}; use system, user or assistant")
        if not isinstance(content, str):
            raise _Bad(f"message {number} needs 'content' text")
        out.append({"role": role, "content": _bounded(content, f"message {number} ")})
    if sum(len(m["content"]) for m in out) > MAX_TEXT_CHARS:
        raise _Bad(f"has more than {MAX_TEXT_CHARS} characters of messages in all")
    if out[-1]["role"] == "assistant":
        raise _Bad("ends with an assistant message; the last message must be for the model to "
                   "answer")
    return out


def _answer(value: Any) -> str | None:
    """Text; a number becomes text; an empty cell (CSV cannot write null) becomes None."""
    if value is None or isinstance(value, str):
        return _bounded(value) if value and value.strip() else None
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Bad("must be text or a number")


def _margin(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Bad("must be a number")
    try:
        number = float(value)
    except ValueError:
        raise _Bad("must be a number") from None
    if not math.isfinite(number):
        raise _Bad("must be a finite number")
    return number


def _responses(value: Any) -> list[str]:
    value = _decode_json(value) if isinstance(value, str) else value
    if not isinstance(value, list | tuple):
        raise _Bad("must be a list of response texts")
    if len(value) < 2:
        raise _Bad(f"needs at least 2 responses, has {len(value)}")
    if len(value) > MAX_RESPONSES:
        raise _Bad(f"has {len(value)} responses; at most {MAX_RESPONSES} are accepted")
    for number, response in enumerate(value, start=1):
        if not isinstance(response, str):
            raise _Bad(f"response {number} must be text")
        if not response.strip():
            raise _Bad(f"response {number} is empty")
        _bounded(response, f"response {number} ")
    return list(value)


def _ranking(value: Any, count: int) -> list[int]:
    """Per-response ranks (1 = best, equal = tied), or the grouped form of the labeling API
    (lists of 0-based indexes, best group first), which becomes per-response ranks: every
    response in group ``g`` gets rank ``g + 1``."""
    value = _decode_json(value) if isinstance(value, str) else value
    if not isinstance(value, list | tuple) or not value:
        raise _Bad("must be a list of ranks, one per response")
    if all(isinstance(group, list | tuple) for group in value):
        return _ranks_from_groups(value, count)
    ranks = [_whole_number(rank) for rank in value]
    if len(ranks) != count:
        raise _Bad(f"has {len(ranks)} ranks for {count} responses")
    if any(rank is None or not 1 <= rank <= count for rank in ranks):
        raise _Bad(f"ranks must be whole numbers from 1 (best) to {count}")
    return ranks  # type: ignore[return-value]


def _ranks_from_groups(groups: Sequence[Sequence[Any]], count: int) -> list[int]:
    if any(not group for group in groups):
        raise _Bad("has an empty group")
    indexes = [_whole_number(i) for group in groups for i in group]
    if sorted(i for i in indexes if i is not None) != list(range(count)) or None in indexes:
        raise _Bad(f"groups must hold each response index 0 to {count - 1} exactly once")
    ranks = [0] * count
    for position, group in enumerate(groups, start=1):
        for index in group:
            ranks[int(index)] = position
    return ranks


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _decode_json(text: str) -> Any:
    """JSON text in a cell (how CSV carries lists), or the text itself when it is none.
    Nesting is measured first: a deep enough value makes ``json.loads`` recurse to death, and
    nothing this server reads from a cell nests deeper than MAX_CELL_DEPTH, so such a cell is
    text (a prompt may well start with "[[[")."""
    if nesting_depth(text.encode("utf-8", errors="replace")) > MAX_CELL_DEPTH:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _jsonable(value: Any) -> Any:
    """What JSON can hold: dates become ISO text, NaN and infinities become null."""
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int):  # subclasses, such as enums
        return value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Decimal):
        return _jsonable(float(value))
    return str(value)


def truncate(value: Any, max_chars: int = 500) -> Any:
    """A copy with long strings cut, for previews."""
    if isinstance(value, str) and len(value) > max_chars:
        return value[:max_chars] + "…"
    if isinstance(value, dict):
        return {k: truncate(v, max_chars) for k, v in value.items()}
    if isinstance(value, list):
        return [truncate(v, max_chars) for v in value]
    return value
