"""Names people type, and file names that clients send, made safe to store and show.

A name is refused when it holds what no person types on purpose and what misleads a reader:
control characters (NUL, escape sequences), invisible format characters (the right-to-left
override that makes ``exe.jsonl`` read as ``lnosj.exe``, zero-width spaces), line
separators, and unpaired surrogates (valid JSON, but not text: no file or database can
store them). A client's file name is only ever shown, so it is cleaned instead of refused.
"""
from __future__ import annotations

import unicodedata
from typing import Any

from webapp.errors import Invalid

NAME_MAX_CHARS = 200
FILENAME_MAX_CHARS = 200
# Control, format, surrogate, line and paragraph separator characters.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN


def clean_name(value: Any, *, field: str = "name", max_chars: int = NAME_MAX_CHARS,
               what: str = "the dataset") -> str:
    """``value`` stripped and in NFC form, or :class:`Invalid` naming ``field``."""
    if not isinstance(value, str):
        raise Invalid(f"'{field}' must be text.", fields={field: "must be text"})
    name = unicodedata.normalize("NFC", value.strip())
    if not name:
        raise Invalid(f"Give {what} a name.", fields={field: "required"})
    if len(name) > max_chars:
        raise Invalid(f"Keep the name to {max_chars} characters or fewer (it has {len(name)}).",
                      fields={field: f"at most {max_chars} characters"})
    hidden = next((c for c in name if _hidden(c)), None)
    if hidden is not None:
        raise Invalid(f"The name holds the invisible or control character U+{ord(hidden):04X}; "
                      "type it without.", fields={field: "control or invisible character"})
    return name


def safe_filename(name: Any) -> str:
    """The last part of a client's file name (no directories), without hidden characters,
    at most FILENAME_MAX_CHARS long with its extensions kept; never empty."""
    text = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if not _hidden(c)).strip()
    text = unicodedata.normalize("NFC", text).lstrip(".") or "upload"
    if len(text) > FILENAME_MAX_CHARS:
        stem, dot, extensions = text.partition(".")
        keep = extensions[-20:] if dot else ""
        text = stem[:FILENAME_MAX_CHARS - len(keep) - 1] + (f".{keep}" if keep else "")
    return text
