"""Shared bases of the API's input schemas."""
from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict


class StrictIn(Schema):
    """A JSON body whose unknown fields are a 422 naming them: a client that sends ``owner``,
    ``status`` or ``id`` learns that they are not its to set, instead of having them ignored."""

    model_config = ConfigDict(extra="forbid")


# Bounds of ?limit= and ?offset= on every list: past them a request is a 422, not an integer
# the database cannot hold (``OFFSET 9223372036854775808`` fails inside the query).
OFFSET_MAX = 1_000_000_000
LIMIT_ACCEPTED_MAX = 1_000_000
