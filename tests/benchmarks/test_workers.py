"""A deterministic agent gives identical episodes with 1 or 2 worker processes, and on Ray."""

from __future__ import annotations

import json

import pytest

from .helpers import cli, cli_process, outcome

TASKS = [f"test-{i:04d}" for i in range(8)]


def rule_run_args(out, workers: int, tasks: list[str], *extra: str) -> list:
    """``webgym-bench run`` arguments for the rule agent in text mode."""
    return [
        "run",
        "--agent",
        "rule",
        "--mode",
        "text",
        "--workers",
        str(workers),
        *extra,
        "--task-ids",
        ",".join(tasks),
        "--out",
        out,
    ]


def run_in_process(out, workers: int) -> dict:
    result = cli(*rule_run_args(out, workers, TASKS))
    assert result.exit_code == 0, result.output
    return outcome(out)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    return run_in_process(tmp_path_factory.mktemp("w1") / "run", 1)


def test_two_workers_match_one(one_worker, tmp_path):
    assert sorted(one_worker) == TASKS
    assert run_in_process(tmp_path / "w2", 2) == one_worker
    assert any(r[0] > 0 for r in one_worker.values())  # the rule agent does buy things


def test_ray_matches_one_worker(one_worker, tmp_path):
    tasks = TASKS[:6]
    out = tmp_path / "ray"
    proc = cli_process(*rule_run_args(out, 2, tasks, "--ray"), stdout=-1, stderr=-2, text=True)
    stdout, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, stdout
    assert json.loads((out / "manifest.json").read_text())["executor"] == "ray"
    assert outcome(out) == {t: one_worker[t] for t in tasks}
