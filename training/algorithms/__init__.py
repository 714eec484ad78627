"""The algorithms the product trains, each declared once as an :class:`AlgorithmSpec` in a
module of this package beside its config class (imports no torch).

Everything that differs between algorithms reads the declaration: the launch form (tabs,
hyperparameters, presets), API validation and ``GET /api/hyperparameters/{algorithm}``, the
deployment's caps, the datasets and base models a run may use, the runs list and its
summary, the charts, and the worker (which engine module trains it, what it preloads).
Adding an algorithm is a module here (config and spec) and its engine module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from training.charts import COMMON_CHARTS, Catalog, Chart
from training.config import BaseConfig, ConfigError, RewardSpec, coerce


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm, as every part of the product sees it."""

    id: str
    title: str
    summary: str
    """One sentence for the launch form: what it trains and how."""
    config: type[BaseConfig]
    engine: str
    """The module whose ``train(config, *, sink, should_stop, resume_from)`` runs it."""
    dataset_kinds: tuple[str, ...] = ("prompts",)
    base_kinds: tuple[str, ...] = ("policy",)
    """Registry kinds of the models a run may start from (policy, encoder, reward)."""
    produces: str = "policy"
    """The kind of model its checkpoints are: ``policy`` or ``reward``."""
    uses_rewards: bool = True
    reward_key: str = "reward/mean"
    """The metric that stands for "reward" in the run's summary."""
    reward_label: str = "Reward"
    order: int = 100
    """Place among the form's tabs and filters."""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Starting points a person applies in one click: hyperparameters, or ``base_model``."""
    charts: tuple[Chart, ...] = ()
    """Charts of the metrics only this algorithm writes (the shared ones are in
    :data:`training.charts.COMMON_CHARTS`)."""


_REGISTRY: dict[str, AlgorithmSpec] = {}
_DISCOVERED = False


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm; its id must be new."""
    if spec.id in _REGISTRY and _REGISTRY[spec.id] is not spec:
        raise ValueError(f"algorithm {spec.id!r} is declared twice")
    _REGISTRY[spec.id] = spec
    return spec


def unregister_algorithm(algorithm_id: str) -> None:
    """Remove an algorithm (tests register throwaway ones)."""
    _REGISTRY.pop(algorithm_id, None)


def _discover() -> None:
    """Import every module of this package once: each registers its spec."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}")


def algorithms() -> list[AlgorithmSpec]:
    """Every algorithm, in the form's order."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.id))


def algorithm_ids() -> list[str]:
    return [s.id for s in algorithms()]


def get_algorithm(algorithm_id: str) -> AlgorithmSpec | None:
    _discover()
    return _REGISTRY.get(algorithm_id)


def algorithm_choices() -> list[tuple[str, str]]:
    """(id, title) of every algorithm: the Run model's choices, the form's tabs."""
    return [(s.id, s.title) for s in algorithms()]


def chart_catalog() -> Catalog:
    """The shared charts, then each algorithm's own (a chart id once)."""
    charts: dict[str, Chart] = {c.id: c for c in COMMON_CHARTS}
    for spec in algorithms():
        for chart in spec.charts:
            charts.setdefault(chart.id, chart)
    return Catalog(tuple(charts.values()))


def validate_hyperparameters(algorithm: str, values: Any) -> dict[str, Any]:
    """Complete ``values`` with defaults and check each; ConfigError names every bad field."""
    spec = get_algorithm(algorithm)
    if spec is None:
        raise ConfigError({"algorithm": "must be one of " + ", ".join(algorithm_ids())})
    if not isinstance(values, dict):
        raise ConfigError({"hyperparameters": "must be an object of name: value"})
    known = {f.name: f for f in spec.config.hyperparameter_fields()}
    errors = {k: "unknown hyperparameter for " + algorithm for k in values if k not in known}
    clean: dict[str, Any] = {}
    for name, f in known.items():
        try:
            clean[name] = coerce(f, values[name]) if name in values else f.default
        except ValueError as exc:
            errors[name] = str(exc)
    if not errors:
        errors = spec.config(**clean).problems()
    if errors:
        raise ConfigError(errors)
    return clean


def build_config(algorithm: str, hyperparameters: dict[str, Any], **internal_fields: Any
                 ) -> BaseConfig:
    """The frozen config a worker passes to ``train``; hyperparameters are validated again.
    ``rewards`` come as their stored dicts (``path`` filled in for model-backed ones)."""
    values = validate_hyperparameters(algorithm, hyperparameters)
    if "rewards" in internal_fields:
        internal_fields["rewards"] = tuple(RewardSpec.from_dict(r)
                                           for r in internal_fields["rewards"])
    spec = get_algorithm(algorithm)
    assert spec is not None  # validated above
    return spec.config(**values, **internal_fields)
