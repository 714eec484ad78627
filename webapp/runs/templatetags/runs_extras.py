"""Template helpers of the runs pages: durations, sortable column headings, model names."""
from __future__ import annotations

from django import template
from django.http import QueryDict
from django.utils.html import format_html

from webapp.runs.naming import ModelRef, model_refs

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


def _ref(context: template.Context, model_id: str, owner_id: int | None = None) -> ModelRef:
    user = context.get("user") or getattr(context.get("request"), "user", None)
    owner = owner_id if owner_id is not None else getattr(user, "pk", None)
    cache = context.render_context.setdefault("model_refs", {})
    if (owner, model_id) not in cache:
        cache[owner, model_id] = model_refs([model_id], owner_id=owner)[model_id]
    return cache[owner, model_id]


@register.simple_tag(takes_context=True)
def model_text(context: template.Context, model_id: str, owner_id: int | None = None) -> str:
    """A model id as plain text (for options of a select): "run smoke-1, step 4"."""
    return _ref(context, model_id, owner_id).text if model_id else "–"


@register.simple_tag(takes_context=True)
def model_name(context: template.Context, model_id: str, owner_id: int | None = None) -> str:
    """A model id as its name: a checkpoint as "run <name>, step n" linked to the run (each id
    looked up once per page), anything else as its id. ``owner_id``: whose checkpoints the id
    names when not the viewer's (a shared batch's owner); no link to another's run then."""
    if not model_id:
        return "–"
    ref = _ref(context, model_id, owner_id)
    user = context.get("user")
    if ref.url is None or (owner_id is not None and owner_id != getattr(user, "pk", None)):
        return format_html('<span class="model-ref" title="{}">{}</span>', model_id, ref.text)
    return format_html('<a class="model-ref" href="{}" title="{}">run <em>{}</em>, step {}</a>',
                       ref.url, model_id, ref.run_name, ref.step)


@register.filter
def ordinal(n: int) -> str:
    """1 -> 1st, 2 -> 2nd, 11 -> 11th, 23 -> 23rd."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@register.filter
def get_item(mapping: object, key: str) -> object:
    """``mapping[key]`` in a template (None when absent or not a mapping)."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def parameters(count: int | None) -> str:
    """A parameter count as people say it: 3.2M, 135M, 1.5B."""
    if count is None:
        return "–"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(count)
