"""Rendering the board: a rich table for the terminal and a static HTML page (Jinja2)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from leaderboards.store import Entry, task_set_groups
from webgym.terminal import markup_safe

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


def leaderboard_html(
    entries: list[Entry], *, split: str, split_hash: str | None = None, note: str | None = None
) -> str:
    """A self-contained static page (inline CSS, no scripts, no external resources): one
    ranked table per task set."""
    groups = [
        {
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
