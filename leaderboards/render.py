"""Rendering the board: a rich table for the terminal and a static HTML page (Jinja2)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from webgym.terminal import markup_safe, terminal_safe
from webgym_leaderboards.store import Entry, task_set_groups

TEMPLATES = Path(__file__).resolve().parent / "templates"


def templates() -> Any:
    """The Jinja2 environment over ``leaderboards/templates`` (HTML autoescaped)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def fmt_score(e: Entry) -> str:
    return f"{e.score:.1f} ± {e.score_se:.1f}"


def fmt_rate(rate: float, se: float | None = None) -> str:
    return f"{100 * rate:.1f}%" + (f" ± {100 * se:.1f}" if se is not None else "")


def leaderboard_table(entries: list[Entry], *, title: str | None = None) -> Table:
    """A rich table of ranked entries of one task set (``LeaderboardStore.ranked``, one group
    of ``task_set_groups``; its title says the task set, step limit and mode, so the mode is
    not repeated per row); fits 80 columns. Every run-controlled string is made terminal- and
    markup-safe (``webgym.terminal.markup_safe``)."""
    table = Table(
        title=title,
        header_style="bold",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="Score: mean reward x 100 ± s.e.  success: reward 1  n: episodes",
        caption_justify="left",
    )
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("agent", overflow="fold", ratio=1, min_width=8)
    table.add_column("Score ± s.e.", justify="right", no_wrap=True)
    table.add_column("success", justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("git", no_wrap=True)
    table.add_column("ckpt", no_wrap=True)
    for e in entries:
        table.add_row(
            str(e.rank or ""),
            markup_safe(e.agent),
            fmt_score(e),
            fmt_rate(e.success_rate),
            str(e.n_episodes),
            str(e.max_steps),
            markup_safe(e.date),
            markup_safe(e.git_short),
            markup_safe(e.checkpoint_short),
        )
    return table


# The bar chart of a task set's entries (inline SVG, in pixels)
CHART_WIDTH = 720
CHART_LABEL = 200  # the entries' names, right-aligned up to here
CHART_BARS = 420  # 100 (Score) or 100% (success rate)
CHART_ROW = 34  # one entry: its Score bar above its success-rate bar
CHART_TOP = 28  # the legend
CHART_BOTTOM = 20  # the axis labels
CHART_NAME = 28  # characters of a name shown (the whole name is the row's tooltip)


def score_chart(entries: list[Entry]) -> dict[str, Any]:
    """The geometry of a task set's bar chart, for the template to write as inline SVG: per
    entry (in rank order) its label (rank and agent, cut to :data:`CHART_NAME` characters), a
    Score bar (of 100) and a success-rate bar (of 100%), widths in pixels; the axis ticks.
    Numbers only, and the names the template escapes."""
    rows = []
    for i, e in enumerate(entries):
        name = terminal_safe(f"{e.rank or i + 1}. {e.agent}")
        y = CHART_TOP + i * CHART_ROW
        rows.append(
            {
                "id": e.id,
                "label": name if len(name) <= CHART_NAME else name[: CHART_NAME - 1] + "…",
                "title": f"{name} (run {terminal_safe(e.run_id)}): Score {fmt_score(e)}, "
                f"success {fmt_rate(e.success_rate)}",
                "y": y,
                "score": f"{e.score:.1f}",
                "score_w": round(CHART_BARS * min(max(e.score, 0.0), 100.0) / 100, 1),
                "sr": fmt_rate(e.success_rate),
                "sr_w": round(CHART_BARS * min(max(e.success_rate, 0.0), 1.0), 1),
            }
        )
    bottom = CHART_TOP + len(entries) * CHART_ROW
    return {
        "width": CHART_WIDTH,
        "height": bottom + CHART_BOTTOM,
        "x0": CHART_LABEL,
        "bottom": bottom,
        "ticks": [{"x": CHART_LABEL + CHART_BARS * k / 4, "label": f"{25 * k}"} for k in range(5)],
        "rows": rows,
    }


def leaderboard_html(
    entries: list[Entry], *, split: str, split_hash: str | None = None, note: str | None = None
) -> str:
    """A self-contained static page (inline CSS and SVG, no scripts, no external resources):
    per task set a bar chart of its entries' Score and success rate, then its ranked table."""
    groups = [
        {
            "chart": score_chart(group),
            "task_set": group[0].task_set,
            "max_steps": group[0].max_steps,
            "mode": group[0].mode,
            "catalog_hash": group[0].catalog_hash,
            "rows": [
                {
                    "e": e,
                    "score": fmt_score(e),
                    "success": fmt_rate(e.success_rate, e.success_se),
                    "versions": ", ".join(
                        f"{k} {v}" for k, v in sorted(e.package_versions.items())
                    ),
                    "machine": ", ".join(f"{k}: {v}" for k, v in sorted(e.machine.items())),
                }
                for e in group
            ],
        }
        for group in task_set_groups(entries)
    ]
    return (
        templates()
        .get_template("leaderboard.html.j2")
        .render(
            groups=groups,
            split=split,
            split_hash=split_hash,
            note=note,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    )
