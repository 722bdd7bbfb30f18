"""A browser-mode run with --screenshots writes one PNG per observation."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from .helpers import cli, summaries

CHROMIUM = os.environ.get("WEBGYM_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_browser_run_with_screenshots(tmp_path):
    out = tmp_path / "run"
    result = cli(
        "run",
        "--agent",
        "rule",
        "--mode",
        "browser",
        "--episodes",
        "2",
        "--screenshots",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    done = summaries(out)
    assert len(done) == 2
    for task, summary in done.items():
        assert summary["error"] is None
        pngs = sorted((out / "episodes" / task / "screenshots").glob("step-*.png"))
        assert len(pngs) == summary["n_steps"] + 1  # the reset observation and every step
        assert Image.open(pngs[-1]).size == (1280, 720)
    steps = (out / "episodes" / sorted(done)[0] / "steps.jsonl").read_text()
    assert '"pixel_distance": null' not in steps.splitlines()[0]
