"""A real harness run (`webgym-bench run`), submitted and listed through `webgym-bench`."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("webgym_benchmarks.runner") is None,
    reason="the harness is not there yet",
)


def test_run_submit_leaderboard(tmp_path, db_path, lb_catalog):
    from webgym_bench import app

    run = tmp_path / "rule-run"
    env = {**os.environ, "WEBGYM_CATALOG": str(lb_catalog.path), "COLUMNS": "120"}
    bench = shutil.which("webgym-bench", path=os.path.dirname(sys.executable))
    if bench is None:
        pytest.skip("the webgym-bench console script is not installed")
    done = subprocess.run(
        [bench, "run", "--agent", "rule", "--mode", "text", "--episodes", "3", "--out", str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "summary.json").is_file()

    runner = CliRunner(env={"COLUMNS": "120"})
    result = runner.invoke(app, ["submit", str(run), "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "rank 1 of 1 on test" in result.output

    result = runner.invoke(app, ["leaderboard", "--split", "test", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    row = next(ln for ln in result.output.splitlines() if "rule" in ln)
    assert row.split()[0] == "1" and " 3 " in row

    again = runner.invoke(app, ["submit", str(run), "--db", str(db_path)])
    assert again.exit_code == 1 and "duplicate" in again.output

    out = tmp_path / "trace.html"
    result = runner.invoke(app, ["view", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count('class="step"') >= 3
