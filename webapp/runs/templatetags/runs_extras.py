"""Template helpers of the runs pages: durations and sortable column headings."""
from __future__ import annotations

from django import template
from django.http import QueryDict
from django.utils.html import format_html

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """``3725.2`` -> ``1h 2m``; ``75`` -> ``1m 15s``; ``None`` -> ``–``."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


@register.simple_tag
def sort_heading(name: str, label: str, ordering: str, query: str) -> str:
    """A column heading that sorts by ``name``: ascending first, descending when it already
    sorts ascending; the arrow shows the current direction."""
    params = QueryDict(query, mutable=True)
    current = ordering.removeprefix("-")
    descending = ordering.startswith("-")
    params["ordering"] = f"-{name}" if current == name and not descending else name
    arrow = (" ↓" if descending else " ↑") if current == name else ""
    sort = ("descending" if descending else "ascending") if current == name else "none"
    return format_html('<a href="?{}" aria-sort="{}" data-sort="{}">{}{}</a>',
                       params.urlencode(), sort, name, label, arrow)
