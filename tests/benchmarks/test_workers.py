"""A deterministic agent gives identical episodes with 1 or 2 worker processes, and on Ray."""

from __future__ import annotations

import pytest

from .helpers import cli, cli_process, outcome

TASKS = [f"test-{i:04d}" for i in range(8)]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("w1") / "run"
    result = cli(
        "run",
        "--agent",
        "rule",
        "--mode",
        "text",
        "--workers",
        "1",
        "--task-ids",
        ",".join(TASKS),
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    return outcome(out)


def test_two_workers_match_one(one_worker, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "run",
        "--agent",
        "rule",
        "--mode",
        "text",
        "--workers",
        "2",
        "--task-ids",
        ",".join(TASKS),
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert sorted(one_worker) == TASKS
    assert outcome(out) == one_worker
    assert any(r[0] > 0 for r in one_worker.values())  # the rule agent does buy things


def test_ray_matches_one_worker(one_worker, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "run"
    tasks = TASKS[:6]
    proc = cli_process(
        "run",
        "--agent",
        "rule",
        "--mode",
        "text",
        "--workers",
        "2",
        "--ray",
        "--task-ids",
        ",".join(tasks),
        "--out",
        out,
        stdout=-1,
        stderr=-2,
        text=True,
    )
    stdout, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, stdout
    import json

    assert json.loads((out / "manifest.json").read_text())["executor"] == "ray"
    assert outcome(out) == {t: one_worker[t] for t in tasks}
