"""The ood split through the harness and the board: `webgym-bench run --split ood` records a
run on the ood catalog, `verify` replays it there, `submit` ranks it on an ood board of its own
and `leaderboard --split ood` shows it; with no catalog file named, each opens the embedded
catalog that holds the run's split."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from webgym.shop.catalog import ood_catalog


@pytest.fixture
def ood_run(tmp_path):
    """Two rule episodes of the ood split, recorded by the real harness (no catalog named)."""
    bench = shutil.which("webgym-bench", path=os.path.dirname(sys.executable))
    if bench is None:
        pytest.skip("the webgym-bench console script is not installed")
    env = {k: v for k, v in os.environ.items() if k != "WEBGYM_CATALOG"}
    run = tmp_path / "rule-ood"
    done = subprocess.run(
        [bench, "run", "--agent", "rule", "--split", "ood", "--mode", "text", "--episodes", "2",
         "--out", str(run)],
        env={**env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return run


def test_an_ood_run_is_recorded_verified_submitted_and_ranked(ood_run, db_path, monkeypatch):
    from webgym_bench import app

    monkeypatch.delenv("WEBGYM_CATALOG")
    catalog = ood_catalog()
    manifest = json.loads((ood_run / "manifest.json").read_text())
    assert manifest["split"] == "ood" and manifest["task_ids"] == ["ood-0000", "ood-0001"]
    assert manifest["split_hash"] == catalog.split("ood").hash
    assert manifest["catalog"]["content_hash"] == catalog.content_hash
    assert manifest["catalog"]["source"] == "synthetic-ood"

    runner = CliRunner(env={"COLUMNS": "120"})
    result = runner.invoke(app, ["verify", str(ood_run)])
    assert result.exit_code == 0 and "verified: rule on ood[:2]" in result.output, result.output
    result = runner.invoke(app, ["submit", str(ood_run), "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert "rank 1 of 1 on ood[:2]" in result.output

    result = runner.invoke(app, ["leaderboard", "--split", "ood", "--db", str(db_path)])
    assert result.exit_code == 0, result.output
    assert f"leaderboard: ood[:2] version {catalog.split('ood').hash}" in result.output
    row = next(ln for ln in result.output.splitlines() if "rule" in ln)
    assert row.split()[0] == "1" and " 2 " in row
    test_board = runner.invoke(app, ["leaderboard", "--split", "test", "--db", str(db_path)])
    assert "no entries for split 'test'" in test_board.output  # boards are per split


def test_an_ood_run_checked_against_the_embedded_catalog_is_refused(ood_run, lb_catalog):
    from webgym_bench import app

    runner = CliRunner(env={"COLUMNS": "120"})  # WEBGYM_CATALOG names the embedded copy
    result = runner.invoke(app, ["verify", str(ood_run), "--catalog", str(lb_catalog.path)])
    assert result.exit_code == 1
    assert "'ood', which this catalog does not have" in result.output, result.output
