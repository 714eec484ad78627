"""The hub's rules for repository ids and revisions, checked before anything reaches it."""
from __future__ import annotations

import re
from typing import Any

from webapp.errors import Invalid

# an owner and a name of letters, digits, -, _ and . (not starting with one of the last three)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$")


def clean_hub_id(hub_id: Any, revision: Any, *, example: str) -> tuple[str, str]:
    """``hub_id`` and ``revision`` (default main) as the hub accepts them, or Invalid."""
    if not isinstance(hub_id, str) or not HUB_ID.match(hub_id) or ".." in hub_id:
        raise Invalid("hub_id must be a hub repository id, owner/name (letters, digits, -, _ "
                      f"and .), e.g. {example}.", fields={"hub_id": "malformed"})
    revision = "main" if revision in (None, "") else revision
    if not isinstance(revision, str) or not REVISION.match(revision) or ".." in revision:
        raise Invalid("revision must be a branch, tag or commit of the repository (e.g. main).",
                      fields={"revision": "malformed"})
    return hub_id, revision
