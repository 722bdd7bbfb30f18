"""Shopping tasks (WebShop goals) and the fixed train / validation / test splits.

Imports only ``webgym.shop.schema``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from webgym.shop.schema import Goal

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class TaskSplit:
    """A named, fixed list of goals. ``hash`` identifies its exact content (results record it)."""

    name: str
    goals: tuple[Goal, ...]
    _by_id: dict[str, Goal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {g["task_id"]: g for g in self.goals})

    @property
    def size(self) -> int:
        return len(self.goals)

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the goals, in order."""
        blob = json.dumps(list(self.goals), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def task_ids(self) -> list[str]:
        return [g["task_id"] for g in self.goals]

    def task(self, task_id: str) -> Goal:
        try:
            return self._by_id[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} in split {self.name!r}") from None

    def __len__(self) -> int:
        return len(self.goals)

    def __iter__(self) -> Iterator[Goal]:
        return iter(self.goals)
