"""The ``webgym`` command: run and build the shop.

    webgym shop serve [--port N] [--host H] [--catalog PATH]
    webgym shop build [--n-products N] [--seed S]
    webgym shop import-webshop --products items_shuffle.json --attributes items_ins_v2.json \
        [--human-goals items_human_ins.json] [--reviews items_reviews.json] --out DIR
    webgym shop tasks [--split test] [--limit N]
    webgym serve openenv [--port N] [--host H] [--mode text|browser] [--max-sessions K]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from webgym.shop.server import LOOPBACK, ShopServer

app = typer.Typer(
    help="WebGym: web shopping as a reinforcement-learning environment.",
    no_args_is_help=True,
    add_completion=False,
)
shop_app = typer.Typer(
    help="The local web shop: serve it, build or import its catalog.", no_args_is_help=True
)
app.add_typer(shop_app, name="shop")
serve_app = typer.Typer(help="Serve the environment to remote clients.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
console = Console()

CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        help="A catalog file (from `webgym shop build` or `import-webshop`); default: the embedded "
        "synthetic catalog, or $WEBGYM_CATALOG.",
        exists=True,
        dir_okay=False,
    ),
]


def _open(path: Path | None, split: str | None = None):
    """The catalog at ``path`` (or the default that holds ``split``); a file that cannot be
    used is a message."""
    from webgym.shop.catalog import open_catalog

    try:
        return open_catalog(path, split=split)
    except (OSError, ValueError) as e:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(1) from None


@shop_app.command("serve")
def shop_serve(
    port: Annotated[int, typer.Option(help="Port; 0 (the default) picks a free one.")] = 0,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Loopback unless you pass another "
            "address explicitly, e.g. 0.0.0.0 in a container."
        ),
    ] = LOOPBACK,
    catalog: CatalogOpt = None,
) -> None:
    """Serve the shop so a person (or an agent) can browse it."""
    server = ShopServer(_open(catalog), host=host, port=port)
    server.start()
    console.print(f"WebGym shop: {len(server.catalog)} products from {server.catalog.source}")
    console.print(f"Browse [bold]{server.url}/[/bold]  (Ctrl-C stops)")
    server.serve_forever()


@shop_app.command("build")
def shop_build(
    n_products: Annotated[int, typer.Option(help="Number of synthetic products.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic catalog.")] = 0,
) -> None:
    """Build (once) the embedded synthetic catalog and its ood companion (the ood split's)
    into the cache directory (again if a cached file is damaged)."""
    from webgym.shop.catalog import default_catalog, ood_catalog

    for build in (default_catalog, ood_catalog):
        t0 = time.perf_counter()
        catalog = build(n_products=n_products, seed=seed, rebuild_damaged=True)
        console.print(
            f"{catalog.path}: {len(catalog)} products, "
            f"{len(catalog.categories())} categories ({time.perf_counter() - t0:.1f} s)"
        )
        for split in catalog.splits().values():
            console.print(f"  {split.name:<10} {split.size:>5} tasks  hash {split.hash}")


@shop_app.command("import-webshop")
def shop_import_webshop(
    products: Annotated[Path, typer.Option(help="WebShop's items_shuffle.json", exists=True)],
    attributes: Annotated[Path, typer.Option(help="WebShop's items_ins_v2.json", exists=True)],
    out: Annotated[Path, typer.Option(help="Output directory for the catalog file.")],
    human_goals: Annotated[
        Path | None,
        typer.Option(
            help="WebShop's items_human_ins.json (human instructions as tasks)", exists=True
        ),
    ] = None,
    reviews: Annotated[
        Path | None, typer.Option(help="WebShop's items_reviews.json", exists=True)
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for price ceilings and splits.")] = 0,
) -> None:
    """Import WebShop's own product and goal files into a WebGym catalog."""
    from webgym.shop.catalog import Catalog
    from webgym.shop.webshop_import import import_webshop

    path = import_webshop(
        products,
        attributes,
        out,
        human_goals_json=human_goals,
        reviews_json=reviews,
        seed=seed,
        progress=lambda msg: console.print(msg),
    )
    with Catalog.open(path) as catalog:
        sizes = ", ".join(f"{s.name} {s.size}" for s in catalog.splits().values())
        console.print(f"{path}: {len(catalog)} products; tasks: {sizes}")
    console.print(f"Serve it with: webgym shop serve --catalog {path}")


@shop_app.command("tasks")
def shop_tasks(
    split: Annotated[str, typer.Option(help="train, validation, test or ood")] = "test",
    limit: Annotated[int, typer.Option(help="How many to list.")] = 10,
    catalog: CatalogOpt = None,
) -> None:
    """List the tasks of a split."""
    cat = _open(catalog, split)
    try:
        task_split = cat.split(split)
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--split") from None
    table = Table(title=f"{split}: {task_split.size} tasks, hash {task_split.hash}")
    for col in ("task id", "difficulty", "instruction"):
        table.add_column(col)
    for goal in task_split.goals[:limit]:
        table.add_row(goal["task_id"], goal.get("difficulty", ""), goal["instruction_text"])
    console.print(table)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


@serve_app.command("openenv")
def serve_openenv(
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = LOOPBACK,
    mode: Annotated[str, typer.Option(help="text (no browser) or browser (Chromium).")] = "text",
    max_sessions: Annotated[
        int,
        typer.Option(help="Concurrent sessions: WebSocket sessions and HTTP /reset, /step."),
    ] = 8,
    split: Annotated[str, typer.Option(help="The task split sessions draw from.")] = "test",
) -> None:
    """Serve WebGym through OpenEnv (``openenv-core``'s server; needs the openenv extra)."""
    if mode not in ("text", "browser"):
        raise typer.BadParameter("mode must be 'text' or 'browser'")
    try:
        from webgym.integrations.openenv import serve
    except ImportError as e:
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(e))}: pip install -e '.[openenv]'"
        )
        raise typer.Exit(1) from None
    console.print(
        f"WebGym OpenEnv server ({mode}, {max_sessions} sessions) on http://{host}:{port}"
    )
    serve(mode=mode, host=host, port=port, max_sessions=max_sessions, split=split)
