"""Helpers for the benchmark tests: the CLI as its own process, what a run did (the CLI in
this process and the run readers are tests/helpers.py's, shared with the other folders)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, actions, cli, summaries

__all__ = ["REPO", "actions", "cli", "cli_process", "log_starts", "outcome", "summaries"]


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
