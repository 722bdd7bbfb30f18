"""One row of the chaos suite's table: a scenario, its figures, pass or fail (every chaos module
returns these; kept apart so that the scenario modules and the suite need not import each other)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Row"]


@dataclass
class Row:
    scenario: str
    figures: str
    ok: bool
