"""Tags and notes a person keeps on a run: checked here, stored as rows (tags) and text."""
from __future__ import annotations

from typing import Any

from webapp.errors import Invalid
from webapp.text import clean_name

TAG_MAX_CHARS = 40
TAGS_MAX = 16
NOTES_MAX_CHARS = 20_000


def clean_tags(value: Any, *, field: str = "tags") -> list[str]:
    """A list of tags (or one comma-separated text, as the form sends), each stripped, without
    commas or hidden characters, at most TAG_MAX_CHARS long; duplicates dropped, order kept."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise Invalid("Tags are a list of texts, e.g. [\"baseline\", \"lr-sweep\"].",
                      fields={field: "must be a list of texts"})
    tags: list[str] = []
    for raw in value:
        if "," in raw:
            raise Invalid(f"The tag '{raw[:TAG_MAX_CHARS]}' holds a comma; a comma separates "
                          "tags.", fields={field: "no commas inside a tag"})
        tag = clean_name(raw, field=field, max_chars=TAG_MAX_CHARS, what="the tag")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        raise Invalid(f"Give a run at most {TAGS_MAX} tags (these are {len(tags)}).",
                      fields={field: f"at most {TAGS_MAX} tags"})
    return tags


def clean_notes(value: Any, *, field: str = "notes") -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid("Notes are text.", fields={field: "must be text"})
    if len(value) > NOTES_MAX_CHARS:
        raise Invalid(f"Keep the notes to {NOTES_MAX_CHARS} characters (they have "
                      f"{len(value)}).", fields={field: f"at most {NOTES_MAX_CHARS} characters"})
    if "\x00" in value:
        raise Invalid("The notes hold a NUL character; type them without.",
                      fields={field: "NUL character"})
    return value.strip()
