"""The ``verify``, ``submit``, ``leaderboard`` and ``view`` commands of ``webgym-bench``.

``webgym_bench.py`` (the top-level command) calls ``register(app)``; the commands import their
work lazily so that ``webgym-bench --help`` stays fast.

Whatever a run or a user wrote (agent names, task ids, refusal reasons quoting files, paths)
reaches the terminal through ``webgym.terminal``: consoles that strip control sequences from
everything they render (``SafeConsole``), and ``markup_safe`` wherever such text is put into
rich markup.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from webgym.terminal import SafeConsole as Console
from webgym.terminal import markup_safe, progress_bar, terminal_safe

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Leaderboard database (default: $WEBGYM_LEADERBOARD, else "
        "<user data dir>/webgym/leaderboard.sqlite).",
        dir_okay=False,
    ),
]
CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Catalog whose splits are the known versions (default: $WEBGYM_CATALOG, else the "
        "embedded synthetic catalog, or its ood companion for the ood split).",
        dir_okay=False,
    ),
]


def _check_output_file(path: Path, option: str, err: Console) -> None:
    """Exit 2 with one line when ``path``'s folder cannot be made (a file stands there or
    above it), before anything is read or written."""
    from webgym.runs import folder_problem

    why = folder_problem(path.parent)
    if why:
        message = f"{option} {path}: {why}; choose another {option}"
        err.print(
            f"[bold red]error:[/] {markup_safe(message)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)


def _catalog(path: Path | None, split: str | None = None) -> Any:
    """The catalog at ``path``, else the default one that holds ``split``."""
    from webgym.shop.catalog import open_catalog

    return open_catalog(path, split=split)


def _run_split(manifest: dict[str, Any] | None) -> str | None:
    """The split a run's manifest names (None when there is none: validation says why)."""
    split = (manifest or {}).get("split")
    return split if isinstance(split, str) else None


def _goals(catalog_path: Path | None, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Task id -> goal, when the catalog has the run's split version (for instructions)."""
    try:
        manifest = manifest or {}
        split = _catalog(catalog_path, manifest.get("split")).splits().get(manifest.get("split"))
        if split is not None and split.hash == manifest.get("split_hash"):
            return {g["task_id"]: g for g in split.goals}
    except Exception:  # the viewer works without instructions
        pass
    return {}


@contextlib.contextmanager
def replay_progress(err: Console) -> Iterator[Callable[[int, int], None]]:
    """What ``verify`` and ``submit`` show while they replay a run, on stderr: a rich progress
    bar (episodes, elapsed, time left) when stderr is a terminal, else one line per tenth of the
    episodes and one at the end (``replayed 50/500 episodes (12.3 s)``). Yields the
    ``on_episode(done, total)`` that drives it."""
    started = time.perf_counter()
    if not err.is_terminal:

        def line(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                elapsed = time.perf_counter() - started
                err.print(
                    f"replayed {done}/{total} episodes ({elapsed:.1f} s)",
                    markup=False,
                    highlight=False,
                )

        yield line
        return
    from rich.progress import TextColumn

    with progress_bar(err, TextColumn("episodes")) as progress:
        task = progress.add_task("replaying", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def submit(
    run: Annotated[Path, typer.Argument(help="Run directory (written by `webgym-bench run`).")],
    db: DbOption = None,
    catalog: CatalogOption = None,
    if_new: Annotated[
        bool,
        typer.Option(
            "--if-new",
            help="A run whose records are already on the board is not an error: say so, exit 0 "
            "(re-running a script that submits).",
        ),
    ] = False,
) -> None:
    """Validate a run and add it to the leaderboard (see SUBMIT_HELP)."""
    from webgym.runs import read_run
    from webgym_leaderboards.store import DuplicateSubmission, LeaderboardStore, SchemaMismatch
    from webgym_leaderboards.submit import submit_run
    from webgym_leaderboards.validate import SubmissionRefused

    console, err = Console(), Console(stderr=True)
    try:
        records = read_run(run)  # read once: the catalog's split, validation, the replay
        known = _catalog(catalog, _run_split(records.manifest)).splits()
        with LeaderboardStore(db) as store, replay_progress(err) as on_episode:
            entry = submit_run(records, store, known, catalog=catalog, on_episode=on_episode)
            n = len(store.comparable(entry))
    except SubmissionRefused as exc:
        if if_new and isinstance(exc.__cause__, DuplicateSubmission):
            console.print(
                f"already on the leaderboard: {terminal_safe(exc.reason, newlines=True)}",
                highlight=False,
                markup=False,
            )
            return
        err.print(
            f"[bold red]refused:[/] {markup_safe(exc.reason, newlines=True)}", highlight=False
        )
        raise typer.Exit(1) from None
    except SchemaMismatch as exc:
        err.print(f"[bold red]error:[/] {markup_safe(exc, newlines=True)}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"entry #{entry.id}: {terminal_safe(entry.agent)} on {terminal_safe(entry.task_set_title)} "
        f"({terminal_safe(entry.split_hash)}): Score {entry.score:.1f} ± {entry.score_se:.1f}, "
        f"success {100 * entry.success_rate:.1f}% over {entry.n_episodes} episodes",
        highlight=False,
        markup=False,
    )
    console.print(
        f"rank {entry.rank} of {n} on {terminal_safe(entry.task_set_title)}",
        highlight=False,
        markup=False,
    )


def verify(
    run: Annotated[Path, typer.Argument(help="Run directory (written by `webgym-bench run`).")],
    catalog: CatalogOption = None,
) -> None:
    """Validate a run and replay every episode of it (see VERIFY_HELP)."""
    from webgym.runs import read_run
    from webgym_leaderboards.validate import SubmissionRefused
    from webgym_leaderboards.verify import verify_run

    console, err = Console(), Console(stderr=True)
    t0 = time.perf_counter()
    try:
        records = read_run(run)  # read once: the catalog's split, validation, the replay
        known = _catalog(catalog, _run_split(records.manifest)).splits()
        with replay_progress(err) as on_episode:
            verified = verify_run(records, known, catalog=catalog, on_episode=on_episode)
    except SubmissionRefused as exc:
        err.print(
            f"[bold red]not verified:[/] {markup_safe(exc.reason, newlines=True)}", highlight=False
        )
        raise typer.Exit(1) from None
    v = verified.run
    console.print(
        f"verified: {terminal_safe(v.manifest['agent'])} on {terminal_safe(v.task_set)} "
        f"({terminal_safe(v.manifest.get('mode'))} mode), {len(v.episodes)} episodes, step "
        f"limit {v.max_steps}, {verified.n_steps} steps replayed in text mode "
        f"({verified.replay_s:.1f} s replay, {time.perf_counter() - t0:.1f} s in all): "
        f"Score {v.metrics['score']:.1f}, success {100 * v.metrics['success_rate']:.1f}%",
        highlight=False,
        markup=False,
    )


def leaderboard(
    split: Annotated[str, typer.Option(help="Split to rank.")] = "test",
    db: DbOption = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write a self-contained static HTML page here.", dir_okay=False
        ),
    ] = None,
    catalog: CatalogOption = None,
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions",
            help="Include entries made on other versions of the split (not comparable).",
        ),
    ] = False,
) -> None:
    """Show the leaderboard of a split (see LEADERBOARD_HELP)."""
    from webgym_leaderboards.render import leaderboard_html, leaderboard_table
    from webgym_leaderboards.store import LeaderboardStore, SchemaMismatch, task_set_groups

    console, err = Console(), Console(stderr=True)
    if html is not None:
        _check_output_file(html, "--html", err)
    split_hash = None
    if not all_versions:
        try:
            known = _catalog(catalog, split).splits().get(split)
            split_hash = known.hash if known is not None else None
        except Exception as exc:  # no catalog: rank whatever the board holds for the name
            err.print(
                f"note: no catalog ({terminal_safe(exc)}); showing every version of {split!r}",
                markup=False,
            )
    try:
        with LeaderboardStore(db) as store:
            entries = store.ranked(split, split_hash)
            groups = task_set_groups(entries)
            others = len(store.entries(split)) - len(entries)
            path = store.path
    except SchemaMismatch as exc:
        err.print(f"[bold red]error:[/] {markup_safe(exc, newlines=True)}", highlight=False)
        raise typer.Exit(1) from None
    version = f" version {split_hash}" if split_hash else ""
    note = (
        f"{others} entries made on other versions of {split!r} are hidden (--all-versions)."
        if others
        else None
    )
    for group in groups:  # one ranking per task set: only runs over the same tasks compare
        first = group[0]
        title = markup_safe(f"WebGym leaderboard: {first.task_set}{version}, {first.conditions}")
        console.print(leaderboard_table(group, title=title))
    if not groups:
        console.print(f"no entries for split {split!r}{version} in {path}", markup=False)
    if note:
        console.print(note, style="dim", markup=False)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(
            leaderboard_html(entries, split=split, split_hash=split_hash, note=note),
            encoding="utf-8",
        )
        console.print(f"wrote {terminal_safe(html)}", markup=False)


def view(
    run: Annotated[Path, typer.Argument(help="Run directory.", exists=True, file_okay=False)],
    episode: Annotated[
        str | None, typer.Option(help="Task id of the episode to show (default: all).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="HTML file to write (default: RUN/trace.html or RUN/trace-ID.html).",
            dir_okay=False,
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the viewer on 127.0.0.1 instead of a file.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (0: any free port).")] = 0,
    catalog: CatalogOption = None,
) -> None:
    """Write or serve the trace viewer of a run (see VIEW_HELP)."""
    from webgym.runs import read_run
    from webgym_leaderboards.validate import SubmissionRefused
    from webgym_leaderboards.viewer import load_run, make_server, write_trace

    console, err = Console(), Console(stderr=True)
    if out is not None and not serve:
        _check_output_file(out, "--out", err)
    records = read_run(run)
    goals = _goals(catalog, records.manifest)
    try:
        trace = load_run(records, goals)
        if episode is not None:
            trace.episode(episode)
    except (SubmissionRefused, KeyError) as exc:
        err.print(f"[bold red]error:[/] {markup_safe(exc.args[0], newlines=True)}", highlight=False)
        raise typer.Exit(1) from None
    if serve:
        server = make_server(run, port=port, goals=goals)
        host, bound = server.server_address[:2]
        url = f"http://{host}:{bound}/" + (f"episode/{episode}" if episode else "")
        console.print(
            f"serving the trace viewer at {terminal_safe(url)} (Ctrl-C to stop)", markup=False
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    target = out or run / (f"trace-{episode}.html" if episode else "trace.html")
    t0 = time.perf_counter()
    path = write_trace(trace, target, episode)
    size = path.stat().st_size / 1e6
    console.print(
        f"wrote {terminal_safe(path)} ({size:.1f} MB, {time.perf_counter() - t0:.1f} s); open it "
        "in a browser",
        highlight=False,
        markup=False,
    )


VERIFY_HELP = (
    "Check a run as submit does, without touching the board: validate its files (complete, a "
    "known split version, the whole split or its first N tasks, seeds, summaries that agree "
    "with the steps) and replay every episode's recorded actions in the browserless text twin "
    "of the env, from its task and seed (browser-mode runs too: both modes serve the same "
    "HTML). The replay must reproduce every step's observation digest, reward, flags, action "
    "error, URL and effect, each episode's purchase and reward, and the page texts it recorded. "
    "Exit code 1 names the episode and the first step that differs. Progress goes to stderr: a "
    "bar on a terminal, else a line every tenth of the episodes."
)
SUBMIT_HELP = (
    "Verify a run (see verify: validation and replay) and add it to the leaderboard. Refused "
    "(exit code 1, with the reason) unless it verifies, carries its provenance (git hash, "
    "package versions, machine; checked for form) and the same episodes (actions, pages, "
    "rewards, purchase) over the same task set are not on the board already, whatever the "
    "manifest, timings or agent name say. Prints the new entry's rank among the entries over "
    "the same task set."
)
LEADERBOARD_HELP = (
    "Show the leaderboard of a split: one ranking per task set (the whole split, 'test (500)', "
    "or its first N tasks, 'test[:20]', under one step limit, in one mode, on one catalog), by "
    "Score (mean reward x 100) with its standard error, success rate, episodes, step limit, "
    "date, git hash and checkpoint. --html also writes a self-contained static page, with a bar "
    "chart of each task set's Score and success rate."
)
VIEW_HELP = (
    "Write (or --serve on 127.0.0.1) an HTML page to step through a run's episodes: per step "
    "the action and why the agent took it (its reason, its likeliest candidates with their "
    "probabilities, or the text it generated, where the agent says), the page text it led to "
    "(and the screenshot, when the run kept them; a run that recorded neither shows the URL and "
    "observation digest), the effect label and distances, the reward and errors."
)


def register(app: typer.Typer) -> None:
    """Add ``verify``, ``submit``, ``leaderboard`` and ``view`` to a Typer app
    (``webgym-bench``)."""
    app.command("verify", help=VERIFY_HELP)(verify)
    app.command("submit", help=SUBMIT_HELP)(submit)
    app.command("leaderboard", help=LEADERBOARD_HELP)(leaderboard)
    app.command("view", help=VIEW_HELP)(view)


app = typer.Typer(help="WebGym leaderboard.", no_args_is_help=True, add_completion=False)
register(app)
