"""Helpers for the benchmark tests: run the real CLI, read a run's records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from webgym.runs import RunDir
from webgym_bench import app

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str):
    """``webgym-bench ARGS`` in this process (typer's CliRunner); returns the result."""
    return CliRunner().invoke(app, [str(a) for a in args])


def cli_process(*args: str, **popen) -> subprocess.Popen:
    """``webgym-bench ARGS`` as its own process (for killing or interrupting it, and for Ray):
    SIGINT raises KeyboardInterrupt in it even where this process was started ignoring it."""
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from webgym_bench import app; sys.argv[0] = 'webgym-bench'; app()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "120"},
        **popen,
    )


def summaries(run: Path) -> dict[str, dict]:
    """task -> the summary.json of every episode folder that has one (read as it is)."""
    records = RunDir(run)
    return {
        task: records.read_episode_summary(task, strict=False)
        for task in records.episode_folders()
        if records.episode_summary_path(task).is_file()
    }


def actions(run: Path, task_id: str) -> list[str]:
    steps, problem = RunDir(run).read_steps(task_id)
    assert problem is None, problem
    return [step["action"] for step in steps]


def outcome(run: Path) -> dict[str, tuple]:
    """task -> (reward, n_steps, seed, actions): what must not depend on workers."""
    return {
        t: (s["reward"], s["n_steps"], s["seed"], tuple(actions(run, t)))
        for t, s in summaries(run).items()
    }


def log_starts(run: Path) -> dict[str, int]:
    """How many times each episode was started, from run.log."""
    counts: dict[str, int] = {}
    for line in (run / "run.log").read_text().splitlines():
        if " episode start " in line:
            task = line.split(" episode start ")[1].split()[0]
            counts[task] = counts.get(task, 0) + 1
    return counts
