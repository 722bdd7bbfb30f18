"""One writer per run directory (``run.lock``), and resuming damaged run directories: real
``webgym-bench run`` processes, real lock holders, real records."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

from webgym.runs import RunDir

from .helpers import REPO, cli, cli_process, log_starts, outcome

RUN_ARGS = ("run", "--agent", "random", "--mode", "text", "--seed", "5")


def wait_for(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def lock_holder(path) -> dict | None:
    try:
        return json.loads((path / "run.lock").read_text())
    except (OSError, ValueError):
        return None


def test_second_run_on_the_same_out_is_refused_while_the_first_lives(tmp_path):
    out = tmp_path / "run"
    args = (*RUN_ARGS, "--episodes", "400", "--out", out)
    first = cli_process(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (lock_holder(out) or {}).get("pid") == first.pid or first.poll())
        assert first.poll() is None, "the first run ended before the test could race it"
        holder = lock_holder(out)
        assert holder["host"] == socket.gethostname() and "run" in holder["command"]
        second = cli_process(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
        assert second.returncode == 2, err
        text = " ".join(err.split())
        assert f"is being written by pid {first.pid} on {socket.gethostname()}" in text
        assert "Traceback" not in err
    finally:
        first.kill()
        first.wait()


HOLDER = """
import sys, time
from webgym.runs import RunDir
lock = RunDir(sys.argv[1]).lock(["holder"])
print("locked", flush=True)
time.sleep(120)
"""


def test_stale_lock_of_a_dead_holder_is_taken_over_with_a_note(tmp_path):
    out = tmp_path / "run"
    args = (*RUN_ARGS, "--episodes", "2", "--out", out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = cli(*args)
        assert refused.exit_code == 2, refused.output
        assert f"pid {holder.pid}" in " ".join(refused.output.split())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(out)["pid"] == holder.pid  # SIGKILL leaves the file behind: stale

    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "took over a stale lock" in text and f"pid {holder.pid}" in text
    assert "that process is gone" in text
    assert len(outcome(out)) == 2
    assert not (out / "run.lock").exists()  # released at the end
    assert "took over a stale lock" in (out / "run.log").read_text()


def test_resume_reruns_a_torn_steps_file_and_replaces_a_file_where_a_folder_was(tmp_path):
    out = tmp_path / "run"
    args = (*RUN_ARGS, "--episodes", "4", "--out", out)
    assert cli(*args).exit_code == 0
    before, starts = outcome(out), log_starts(out)
    torn, replaced = "test-0001", "test-0002"
    steps = out / "episodes" / torn / "steps.jsonl"
    steps.write_bytes(steps.read_bytes()[:-40])  # the last line cut mid-way; summary intact
    run = RunDir(out)
    assert run.read_episode_summary(torn)  # still a valid summary: a plain scan keeps it
    folder = out / "episodes" / replaced
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    folder.write_text("not a folder")

    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"episode {torn} has a torn steps.jsonl" in text
    assert f"episode {replaced} is damaged" in text and "not a folder" in text
    assert "Traceback" not in result.output and "2 to run" in text
    after = log_starts(out)
    assert {t: after[t] - starts[t] for t in after} == {
        "test-0000": 0,
        torn: 1,
        replaced: 1,
        "test-0003": 0,
    }
    assert outcome(out) == before  # the same seeds replay to the same episodes

    # a truncation at a line boundary: fewer lines than the summary counts
    lines = steps.read_text().splitlines(keepends=True)
    steps.write_text("".join(lines[:-1]))
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "summary.json counts" in " ".join(result.output.split())
    assert outcome(out) == before
