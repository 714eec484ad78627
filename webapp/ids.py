"""Object ids as the API and the pages take them: integers in canonical form only.

``int()`` and pydantic read ``+1``, ``1.0``, ``1_0``, `` 1`` and ``01`` as 1, so lax spellings
would reach object 1 and ids too large for the database would raise deep inside a query.
Here an id is the decimal digits of a number from 1 to 2**63 - 1 with no sign, no leading
zero and nothing around it; anything else names no object (404).
"""
from __future__ import annotations

import re
from typing import Any

from django.http import Http404

ID_MAX = 2**63 - 1  # the largest primary key a 64-bit column holds
_CANONICAL = re.compile(r"[1-9][0-9]{0,18}")
# What a person (or a fuzzer) might mean as a number: digits with signs, dots, underscores,
# commas, exponents or spaces around or among them.
_NUMBER_LIKE = re.compile(r"[\s+\-]*[0-9][0-9_.,\s]*(?:[eE][+\-]?[0-9]+)?\s*")


def is_canonical_id(text: str) -> bool:
    return bool(_CANONICAL.fullmatch(text)) and int(text) <= ID_MAX


def looks_like_a_number(text: str) -> bool:
    return bool(_NUMBER_LIKE.fullmatch(text))


def parse_id(value: Any, *, what: str = "object") -> int:
    """``value`` (an int, or text) as an id; Http404 when it is not one in canonical form."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX:
        return value
    if isinstance(value, str) and is_canonical_id(value):
        return int(value)
    raise Http404(f"No such {what}.")
