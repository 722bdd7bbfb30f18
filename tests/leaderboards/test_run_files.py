"""Files inside a run are regular files inside the run: `view`, `verify` and `submit` read no
symlink (of a file or a folder), no FIFO, no device and no line beyond the bound, and a
browser run's screenshots are PNGs; each refusal names the path. Real runs, real commands."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading

import pytest
from typer.testing import CliRunner

from tests.fakerun import make_run, read_json, refresh_run_summary, write_json
from webgym.runs import RunDir, screenshot_path
from webgym_bench import app
from webgym_leaderboards import SubmissionRefused, validate_run
from webgym_leaderboards.verify import verify_run

MAX_LINE_BYTES = 1 << 20  # the documented bound on a line (webgym.runs.MAX_LINE_BYTES)
SECRET = b"root:x:0:0:root:/root:/bin/bash\nsecret-token-4f9a\n"


def refused(check, *args) -> str:
    """``check(*args)``'s refusal, in a thread that must end (a FIFO must never block)."""
    out: dict = {}

    def target() -> None:
        try:
            check(*args)
        except SubmissionRefused as e:
            out["reason"] = e.reason
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the reader blocked"
    assert "error" not in out, out.get("error")
    assert "reason" in out, "not refused"
    return out["reason"]


def test_view_embeds_no_file_that_a_symlinked_screenshot_points_to(tmp_path, test_split):
    run = make_run(tmp_path, test_split, rewards=[1.0, 0.5], screenshots=True)
    task = test_split.task_ids[0]
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    shot = screenshot_path(run / "episodes" / task, 1)
    shot.unlink()
    shot.symlink_to(secret)
    out = tmp_path / "trace.html"
    result = CliRunner().invoke(app, ["view", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert base64.b64encode(SECRET).decode() not in html and "secret-token" not in html
    assert f"{shot} is a symlink" in html  # the episode's problem, naming the file
    other = screenshot_path(run / "episodes" / task, 2)
    assert base64.b64encode(other.read_bytes()).decode() in html  # the regular ones still show


def _move_out(path, outside):
    shutil.move(path, outside)
    path.symlink_to(outside)


@pytest.mark.parametrize(
    "attack", ["steps-symlink", "episode-symlink", "episodes-symlink", "fifo", "long-line"]
)
def test_validate_refuses_what_is_not_a_regular_file_inside_the_run(
    tmp_path, test_split, known_splits, attack
):
    run = make_run(tmp_path / "runs", test_split, rewards=[1.0, 0.5, 0.8])
    task = test_split.task_ids[1]
    ep = run / "episodes" / task
    assert validate_run(run, known_splits)
    if attack == "steps-symlink":  # valid lines, through a symlink
        _move_out(ep / "steps.jsonl", tmp_path / "steps.jsonl")
        culprit, what = ep / "steps.jsonl", "is a symlink"
    elif attack == "episode-symlink":
        _move_out(ep, tmp_path / "episode")
        culprit, what = ep, "is a symlink"
    elif attack == "episodes-symlink":  # the run's episodes resolve outside the run
        _move_out(run / "episodes", tmp_path / "episodes")
        culprit, what = run / "episodes", "is a symlink"
    elif attack == "fifo":
        (ep / "steps.jsonl").unlink()
        os.mkfifo(ep / "steps.jsonl")
        culprit, what = ep / "steps.jsonl", "is a FIFO"
    else:  # one step line beyond the bound (a valid JSON object)
        steps = [json.loads(x) for x in (ep / "steps.jsonl").read_text().splitlines()]
        steps[0]["action"] = "type[" + "x" * MAX_LINE_BYTES + "]"
        (ep / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        culprit, what = ep / "steps.jsonl", f"line 1 is longer than {MAX_LINE_BYTES} bytes"
    reason = refused(validate_run, run, known_splits)
    assert str(culprit) in reason and what in reason, reason
    assert "\n" not in reason


def test_submit_refuses_a_symlinked_steps_file(rule_run, tmp_path, db_path):
    """The real run, its steps.jsonl moved out and linked back: byte for byte the same
    records, still refused by `webgym-bench submit`, naming the path."""
    steps = rule_run / "episodes" / "test-0002" / "steps.jsonl"
    _move_out(steps, tmp_path / "elsewhere.jsonl")
    result = CliRunner().invoke(app, ["submit", str(rule_run), "--db", str(db_path)])
    assert result.exit_code != 0
    assert "is a symlink" in result.output and "steps.jsonl" in result.output


def test_verify_refuses_a_browser_run_with_a_screenshot_that_is_not_a_png(rule_run, known_splits):
    """The real run relabelled as a browser run with screenshots (pixels invented, which a
    replay cannot see: test_verify.py): it verifies while its screenshots are PNGs, and is
    refused, naming the file, once one is not."""
    import numpy as np

    from webgym.runs import EpisodeWriter

    path = rule_run / "manifest.json"
    write_json(path, {**read_json(path), "mode": "browser", "screenshots": True})
    run = RunDir(rule_run)
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    for task in read_json(path)["task_ids"]:
        steps_path = run.steps_path(task)
        steps = [json.loads(x) for x in steps_path.read_text().splitlines()]
        for st in steps:
            st["pixel_distance"] = 500.0 if st["effect_label"] == 1 else 0.0
        steps_path.write_text("".join(json.dumps(s) + "\n" for s in steps))
        writer = EpisodeWriter.__new__(EpisodeWriter)  # the writer's screenshot, no clearing
        writer.path = run.episode_path(task)
        for t in range(len(steps) + 1):
            writer.screenshot(t, pixels)
    refresh_run_summary(rule_run)
    assert verify_run(rule_run, known_splits).n_steps > 0
    shot = run.screenshot_path("test-0003", 2)
    shot.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    reason = refused(verify_run, rule_run, known_splits)
    assert "episode test-0003" in reason and f"{shot} is not a PNG image" in reason
