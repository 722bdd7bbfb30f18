"""The learning curve of a training run (``learning_curve.png``, redrawn by
:meth:`webgym_agents.toolkit.training.TrainRun.plot` after each row of ``metrics.csv``).

A trainer logs a few dozen columns per iteration (timings, counters, diagnostics); the figure
draws the ones a person reads a run by, a few panels with a legend each rather than one panel
per column:

==================  ===========================================================================
Score               ``*score`` (``train_score``, ``val_score``: mean reward x 100)
Return              ``return``, ``returns``, ``reward``, ``mean_return`` and ``*_<those>``
Success rate        ``*success_rate`` (train, validation, probes)
Accuracy            ``acc``, ``accuracy``, ``*_acc`` (behaviour cloning's held-out accuracy)
Loss                ``*loss*``, ``*nll*``, ``*mse*``
Explained variance  ``explained_variance*``
KL                  ``kl``, ``kl_*``, ``*_kl`` (``approx_kl``, ``kl_ref``)
==================  ===========================================================================

Within a panel only the columns that move are drawn: at least :data:`MIN_POINTS` values and
not all equal (a ``kl_ref`` of 0 without a reference model, a validation score logged once, are
left out); a panel with none is left out. A run logging none of these draws its first
:data:`MAX_OTHER` moving columns, one panel each; a run with nothing that moves yet (its first
iterations) draws a figure that says so. :func:`curve_panels` is the selection,
:func:`draw_learning_curve` the figure (matplotlib, no pyplot state).

Imports the standard library (matplotlib inside :func:`draw_learning_curve`); nothing of WebGym.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from webgym.runs import atomic_path

__all__ = [
    "MIN_POINTS",
    "PANELS",
    "Panel",
    "curve_panels",
    "draw_learning_curve",
    "metric_columns",
    "moves",
    "read_metrics",
]

MIN_POINTS = 3  # a column with fewer values is no curve
MAX_OTHER = 4  # panels drawn for a run that logs none of PANELS' columns

# (title, pattern on the column name), in the order the panels are drawn
PANELS: tuple[tuple[str, str], ...] = (
    ("Score", r"(^|_)score$"),
    ("Return", r"(^|_)(mean_)?(return|returns|reward)$"),
    ("Success rate", r"success_rate$"),
    ("Accuracy", r"(^|_)acc(uracy)?$"),
    ("Loss", r"(loss|nll|mse)"),
    ("Explained variance", r"^explained_var"),
    ("KL", r"(^|_)kl($|_)"),
)
X_COLUMN = "iteration"
NOT_METRICS = {X_COLUMN, "time", "wall_s", "elapsed_s"}


@dataclass(frozen=True)
class Panel:
    """One panel of the figure: its title and the columns drawn in it (legend order)."""

    title: str
    columns: tuple[str, ...]


def _float(text: object) -> float | None:
    if text is None or text == "":
        return None
    try:
        x = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_metrics(path: Path | str) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (none when it does not exist)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def metric_columns(rows: Sequence[Mapping[str, object]]) -> dict[str, list[float | None]]:
    """Column name -> its values (None where a row leaves it blank or it is no number), for
    every column but the iteration and the clock columns, in the file's order."""
    if not rows:
        return {}
    return {key: [_float(r.get(key)) for r in rows] for key in rows[0] if key not in NOT_METRICS}


def moves(values: Sequence[float | None]) -> bool:
    """Whether a column is a curve: at least :data:`MIN_POINTS` values, not all equal."""
    xs = [x for x in values if x is not None]
    if len(xs) < MIN_POINTS:
        return False
    lo, hi = min(xs), max(xs)
    return hi - lo > 1e-12 * max(1.0, abs(lo), abs(hi))


def curve_panels(columns: Mapping[str, Sequence[float | None]]) -> list[Panel]:
    """The panels of the learning curve for these columns (:func:`metric_columns`): one per
    :data:`PANELS` entry with a column that :func:`moves`, each column in the first panel
    whose pattern it matches; else, for a run that logs none of them, its first
    :data:`MAX_OTHER` moving columns, a panel each."""
    moving = [name for name, values in columns.items() if moves(values)]
    chosen: dict[str, list[str]] = {title: [] for title, _ in PANELS}
    for name in moving:
        for title, pattern in PANELS:
            if re.search(pattern, name):
                chosen[title].append(name)
                break
    panels = [Panel(title, tuple(cols)) for title, cols in chosen.items() if cols]
    if panels:
        return panels
    return [Panel(name, (name,)) for name in moving[:MAX_OTHER]]


def draw_learning_curve(
    rows: Sequence[Mapping[str, object]], path: Path | str, *, title: str = ""
) -> list[Panel]:
    """Draw the learning curve of ``rows`` (a ``metrics.csv``'s) into the PNG ``path``: the
    :func:`curve_panels` against the iteration, two or three to a row (none yet: a figure
    saying so). Returns the panels drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = metric_columns(rows)
    panels = curve_panels(columns)
    x = [_float(r.get(X_COLUMN)) for r in rows]
    n = max(1, len(panels))
    ncols = 2 if n in (2, 4) else min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.set_axis_off()
        ax.text(
            0.5,
            0.5,
            f"{len(rows)} iteration(s) logged: no metric has {MIN_POINTS} values that differ yet",
            ha="center",
            va="center",
            fontsize=10,
        )
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for name in panel.columns:
            # a metric logged every k iterations (validation) is drawn through its points,
            # not broken into nothing by the blank rows between them
            pts = [
                (a, y)
                for a, y in zip(x, columns[name], strict=True)
                if a is not None and y is not None
            ]
            ax.plot(
                [a for a, _ in pts],
                [y for _, y in pts],
                marker="o" if len(pts) < 30 else None,
                markersize=3,
                label=name,
            )
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(X_COLUMN)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(panel.columns) > 1 or panel.title != panel.columns[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    with atomic_path(path) as tmp:  # the suffix kept: savefig picks the format by it
        fig.savefig(tmp, dpi=90)
    return panels
