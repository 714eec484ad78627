"""How training reports: a sink the caller provides. The engine never knows whether its
metrics go to a database, a Redis stream, a list in a test, or nowhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SampleRecord:
    """One completion shown in the run page's samples table."""

    index: int
    prompt: str
    completion: str
    rewards: dict[str, float]
    reward: float
    advantage: float
    rejected: str = ""
    """A reward model's held-out pair: the rejected response (``completion`` is the chosen
    one, ``rewards`` both scores, ``reward`` the margin)."""


class MetricsSink(Protocol):
    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def log_samples(self, step: int, samples: Sequence[SampleRecord]) -> None: ...

    def log_checkpoint(self, step: int, path: str) -> None: ...

    def log_total_steps(self, total: int) -> None:
        """The run's length once the engine knows it (a reward model's epochs over the pairs
        it trains on), when it differs from ``max_steps``."""


class NullSink:
    """Discards everything (nanochat's DummyWandb): no ``if sink:`` branches in the engine."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def log_samples(self, step: int, samples: Sequence[SampleRecord]) -> None:
        pass

    def log_checkpoint(self, step: int, path: str) -> None:
        pass

    def log_total_steps(self, total: int) -> None:
        pass


@dataclass
class ListSink:
    """Keeps everything in memory; for tests and notebooks."""

    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    samples: list[tuple[int, list[SampleRecord]]] = field(default_factory=list)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    total_steps: int | None = None

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_samples(self, step: int, samples: Sequence[SampleRecord]) -> None:
        self.samples.append((step, list(samples)))

    def log_checkpoint(self, step: int, path: str) -> None:
        self.checkpoints.append((step, path))

    def log_total_steps(self, total: int) -> None:
        self.total_steps = total

    def series(self, key: str) -> list[float]:
        return [m[key] for _, m in self.metrics if key in m]
