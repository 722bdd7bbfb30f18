"""The ``webgym-bench`` command. Today it runs the performance scripts; the harness issue adds
``run``, ``show``, ``submit`` and ``leaderboard``."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="WebGym benchmarks.", no_args_is_help=True, add_completion=False)
perf_app = typer.Typer(help="Performance measurements.", no_args_is_help=True)
app.add_typer(perf_app, name="perf")


@perf_app.command("catalog")
def perf_catalog(
    sizes: Annotated[list[int] | None, typer.Option(help="Catalog sizes to build.")] = None,
    queries: Annotated[int, typer.Option(help="Search queries timed per size.")] = 1000,
) -> None:
    """Catalog build time, size, search latency and RSS (targets printed beside the figures)."""
    from benchmarks.perf.catalog_bench import main

    args = ["--sizes", *map(str, sizes or [10_000, 100_000]), "--queries", str(queries)]
    raise typer.Exit(main(args) or 0)
