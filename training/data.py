"""Reading a run's rows and drawing prompts from them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The normalised JSONL the datasets app stores: one object per line."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class PromptSampler:
    """Draws rows without replacement in a seeded order, reshuffling each epoch.

    Its whole state is (epoch, position), so a resumed run continues the same sequence.
    """

    def __init__(self, num_rows: int, seed: int):
        if num_rows < 1:
            raise ValueError("the dataset has no rows")
        self.num_rows, self.seed = num_rows, seed
        self.epoch, self.position = 0, 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(self.num_rows))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order

    def next(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            if self.position == self.num_rows:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._shuffled(self.epoch)
            out.append(self._order[self.position])
            self.position += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._shuffled(self.epoch)
