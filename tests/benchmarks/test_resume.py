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


def test_resume_reruns_kept_episodes_whose_records_do_not_hold(tmp_path):
    """Valid JSON is not enough: a step line swapped for another episode's, a steps.jsonl that
    is a symlink, a FIFO in an episode's folder and a reward the last step does not have are
    each reported and re-run (to the same outcome); the intact episodes are kept, not re-run."""
    import os
    import shutil

    from webgym.runs import RunDir

    tasks = TASKS[:6]
    out = tmp_path / "run"
    args = ("run", "--agent", "random", "--mode", "text", "--workers", "1", "--seed", "5")
    args += ("--task-ids", ",".join(tasks), "--out", out)
    first = cli(*args)
    assert first.exit_code == 0, first.output
    before, starts = outcome(out), log_starts(out)
    ep = {t: out / "episodes" / t for t in tasks}

    swapped, linked, fifo, reward = tasks[0], tasks[2], tasks[3], tasks[5]
    lines = (ep[swapped] / "steps.jsonl").read_text().splitlines(keepends=True)
    other = (ep[tasks[1]] / "steps.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) > 2 and len(other) > 2 and lines[1] != other[1]
    lines[1] = other[1]  # the same step number, valid JSON: the line count still holds
    (ep[swapped] / "steps.jsonl").write_text("".join(lines))
    shutil.move(ep[linked] / "steps.jsonl", tmp_path / "kept-elsewhere.jsonl")
    (ep[linked] / "steps.jsonl").symlink_to(tmp_path / "kept-elsewhere.jsonl")
    os.mkfifo(ep[fifo] / "notes")
    s = json.loads((ep[reward] / "summary.json").read_text())
    s["reward"] = 1.0 if s["reward"] != 1.0 else 0.5
    s["success"] = s["reward"] == 1.0
    (ep[reward] / "summary.json").write_text(json.dumps(s))

    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 already complete, 4 to run" in text
    for task in (swapped, fifo, reward):
        assert f"episode {task} does not hold against its summary" in text, task
    assert "digest chain" in text and "is a FIFO" in text and "reward" in text
    assert f"episode {linked} has a torn steps.jsonl" in text and "is a symlink" in text
    after = log_starts(out)
    for task in tasks:  # each tampered episode re-run once, the intact ones never
        rerun = task in (swapped, linked, fifo, reward)
        assert after[task] == starts[task] + (1 if rerun else 0), task
    assert outcome(out) == before  # the same seeds: the same episodes, nothing lost
    assert not (ep[linked] / "steps.jsonl").is_symlink()
    scan = RunDir(out).scan(tasks, check_steps=True)
    assert sorted(scan.complete) == tasks
    assert cli(*args).output.count("6 already complete") == 1


def test_an_interrupted_invocation_logs_the_episodes_it_ran(tmp_path):
    """Ctrl-C mid-run: exit code 130, and invocations.jsonl counts the episodes that invocation
    recorded (not 0); the resume counts its own."""
    out = tmp_path / "run"
    tasks = [f"test-{i:04d}" for i in range(40)]
    args = ("run", "--agent", "random", "--seed", "1", "--task-ids", ",".join(tasks))
    args += ("--out", out)
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = cli_process(*args, stdout=log, stderr=log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("episodes/*/summary.json"))) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    log.close()
    first = summaries(out)
    assert 3 <= len(first) < len(tasks), "the interrupt must land mid-run"
    (line,) = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert line["status"] == "interrupted" and line["episodes_run"] == len(first)

    result = cli(*args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["interrupted", "complete"]
    assert lines[1]["episodes_run"] == len(tasks) - len(first)
