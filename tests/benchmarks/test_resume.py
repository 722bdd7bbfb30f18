"""Kill a run with SIGKILL mid-way, resume it: every task once, no episode run twice. A corrupt
summary.json is reported, left out by ``show`` and re-run on resume."""

from __future__ import annotations

import json
import signal
import time

from .helpers import cli, cli_process, log_starts, outcome, summaries

TASKS = [f"test-{i:04d}" for i in range(12)]


def test_kill_resume_then_corrupt_summary(tmp_path):
    out = tmp_path / "run"
    args = (
        "run",
        "--agent",
        "random",
        "--mode",
        "text",
        "--workers",
        "1",
        "--seed",
        "3",
        "--task-ids",
        ",".join(TASKS),
        "--out",
        out,
    )
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = cli_process(*args, stdout=log, stderr=log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("episodes/*/summary.json"))) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    first = summaries(out)
    assert 3 <= len(first) < len(TASKS), "the kill must land mid-run"
    starts_before = log_starts(out)

    result = cli(*args)  # the same command resumes
    assert result.exit_code == 0, result.output
    assert f"{len(first)} already complete" in result.output
    after = summaries(out)
    assert sorted(after) == TASKS
    for task, summary in first.items():  # complete episodes were kept, not re-run
        assert after[task]["finished"] == summary["finished"]
    starts = log_starts(out)
    for task in TASKS:
        resumed = starts[task] - starts_before.get(task, 0)
        assert resumed == (0 if task in first else 1), task
    assert all(s["error"] is None for s in after.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_episodes"] == 12 and summary["complete"]
    assert (out / "results.parquet").is_file() and (out / "results.csv").is_file()

    # A half-written summary.json: show reports it and does not crash ...
    victim = TASKS[5]
    before = outcome(out)[victim]
    path = out / "episodes" / victim / "summary.json"
    path.write_text(path.read_text()[:40])
    shown = cli("show", out, "--plots", tmp_path / "plots")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"episode {victim}: corrupt summary.json" in text and "11/12" in text
    for name in ("reward_hist.png", "success_by_category.png", "steps_hist.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    # ... and resuming re-runs exactly that episode, to the same result.
    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"episode {victim} has a corrupt summary.json" in text and "1 to run" in text
    assert outcome(out)[victim] == before
    assert log_starts(out)[victim] == starts[victim] + 1
    assert sum(log_starts(out).values()) == sum(starts.values()) + 1
