"""Reward functions operators install: a Python package exposing an entry point in the group
``rlhf_workbench.rewards`` whose object is a function with TRL's signature,
``fn(prompts, completions, **columns) -> list[float]`` (each of the rows' columns as a list,
beside the source's own arguments as single values). Optional attributes declare it as a
built-in type is declared: ``title``, ``reward_args`` (a tuple of
:class:`training.reward_types.RewardArg`) and the docstring as help. Each becomes a reward type
of its own, named by its entry point. Users pick them in the form and the API; nobody uploads
code. A function that raises or returns the wrong number of scores fails the run that uses it,
with its message, and nothing else."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from training.reward_types import (
    RewardType,
    get_reward_type,
    register_reward_type,
    unregister_reward_type,
)

GROUP = "rlhf_workbench.rewards"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
log = logging.getLogger(__name__)
_LOADED: set[str] = set()


class PluginError(RuntimeError):
    """A plugin reward failed; the message names it."""


def _scorer(name: str, fn: Callable[..., Any]) -> Callable[..., list[float]]:
    def score(prompts: Sequence[str], completions: Sequence[str],
              rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
        columns = {key: [row.get(key) for row in rows] for row in rows for key in row}
        try:
            values = fn(list(prompts), list(completions), **(columns | dict(args)))
            out = [float(v) for v in values]
        except Exception as exc:
            raise PluginError(f"reward plugin {name!r} failed: {type(exc).__name__}: {exc}"
                              ) from exc
        if len(out) != len(completions):
            raise PluginError(f"reward plugin {name!r} returned {len(out)} scores for "
                              f"{len(completions)} completions")
        return out

    return score


def discover() -> list[str]:
    """Register every installed plugin (again: a rescan drops the ones uninstalled); the
    names registered. A plugin that cannot be loaded or clashes with a type is skipped, and
    the log says why."""
    for name in list(_LOADED):
        unregister_reward_type(name)
    _LOADED.clear()
    for point in entry_points(group=GROUP):
        name = point.name
        if not _NAME.match(name) or get_reward_type(name) is not None:
            log.warning("reward plugin %r skipped: its name is taken or not a plain name", name)
            continue
        try:
            fn = point.load()
        except Exception:
            log.exception("reward plugin %r could not be loaded", name)
            continue
        if not callable(fn):
            log.warning("reward plugin %r skipped: %r is not a function", name, point.value)
            continue
        register_reward_type(RewardType(
            id=name, title=str(getattr(fn, "title", name)), order=200,
            help=" ".join((fn.__doc__ or f"reward plugin {name}").split()),
            args=tuple(getattr(fn, "reward_args", ())), score=_scorer(name, fn)))
        _LOADED.add(name)
    return sorted(_LOADED)
