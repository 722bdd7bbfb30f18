"""Helpers the test folders share: run the real ``webgym-bench`` CLI, read a run's records."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from webgym.runs import RunDir
from webgym_bench import app

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str):
    """``webgym-bench ARGS`` in this process (typer's CliRunner); returns the result."""
    return CliRunner().invoke(app, [str(a) for a in args])


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
