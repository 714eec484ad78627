"""Shared bases of the API's input schemas."""
from __future__ import annotations

from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict


class StrictIn(Schema):
    """A JSON body whose unknown fields are a 422 naming them: a client that sends ``owner``,
    ``status`` or ``id`` learns that they are not its to set, instead of having them ignored."""

    model_config = ConfigDict(extra="forbid")


# Bounds of ?limit= and ?offset= on every list: past them a request is a 422, not an integer
# the database cannot hold (``OFFSET 9223372036854775808`` fails inside the query).
OFFSET_MAX = 1_000_000_000
LIMIT_ACCEPTED_MAX = 1_000_000


# What the document promises of a name people type (webapp.text.clean_name accepts every
# text this matches: letters, digits, spaces and common punctuation, not only spaces).
NAME_PATTERN = r"^ *[\w.,:;!?'()@#%&*+=/-][\w .,:;!?'()@#%&*+=/-]*$"
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN}


def documented(**json_schema: Any) -> Any:
    """A field the service checks itself (so its errors read the same from the API and the
    pages), documented as what it accepts: a field with that JSON schema, whose value is
    its documented ``default`` when left out (else None)."""
    return Field(json_schema.get("default"), json_schema_extra=json_schema)


def requires(*names: str, **extra: Any) -> ConfigDict:
    """The config of a strict input schema whose document lists ``names`` as required (the
    service, not the parser, refuses a body without them, with its own words)."""
    return ConfigDict(extra="forbid", json_schema_extra={"required": list(names), **extra})
DATASET_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**18,
                     "description": "the id of one of your data sets"}
