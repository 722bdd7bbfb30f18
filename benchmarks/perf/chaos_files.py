"""Chaos scenarios on the files of a run: what a reader of a run directory must refuse.

Each scenario takes a copy of a real run (the rule agent on the first test tasks, text mode,
played by the harness: ``webgym_benchmarks.runner``), damages it as an adversary would and checks
that the readers of runs (``webgym.runs``, the one reader that ``submit``, ``verify``, ``view`` and
a resume go through) refuse it with a message naming the path, never following it, never
blocking, never reading an unbounded line into memory:

- **symlinked screenshot**: ``screenshots/step-001.png`` is a symlink to a file outside the run;
  ``webgym-bench view`` must not embed that file's bytes, and says why.
- **symlinked steps.jsonl**: the file moved out of the run and linked back (the same, valid
  lines); ``webgym-bench verify`` refuses it.
- **FIFO**: ``steps.jsonl`` is a FIFO nobody writes to; ``verify`` refuses it at once.
- **oversized line**: a sparse 1 GiB ``steps.jsonl`` without a newline; the reader refuses it
  after one bound's worth (``MAX_LINE_BYTES``), in bounded memory.
- **non-PNG screenshot**: a browser run with screenshots, one of them an SVG; ``verify``
  refuses it.
- **tampered kept episode**: a step line of a complete episode swapped for another episode's
  (valid JSON, the same step number); the resume re-runs that episode, to the same outcome,
  and no other.

:func:`scenarios` returns them all (each takes seconds); the commands run as subprocesses of
``webgym-bench`` in this checkout. Imports ``webgym`` and ``webgym_benchmarks`` only.
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from webgym_benchmarks.perf.chaos_row import Row

__all__ = [
    "scenario_fifo",
    "scenario_non_png_screenshot",
    "scenario_oversized_line",
    "scenario_symlinked_screenshot",
    "scenario_symlinked_steps",
    "scenario_tampered_resume",
    "scenarios",
]

REPO = Path(__file__).resolve().parents[2]
N_TASKS = 3
SECRET = b"root:x:0:0:root:/root:/bin/bash\nchaos-secret-7c1e\n"


@functools.cache
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="webgym-chaos-files-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def _recorded() -> Path:
    """The real run every scenario copies (played once per process)."""
    from webgym_benchmarks.runner import execute_plan, finalise_run, plan_run

    out = _scratch() / "recorded"
    plan = plan_run(agent="rule", split="test", episodes=N_TASKS, out=out)
    outcome = execute_plan(plan)
    if outcome.status != "complete":
        raise RuntimeError(f"recording the run failed: {outcome.message}")
    finalise_run(out)
    return out


def _copy(name: str) -> Path:
    dst = _scratch() / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(_recorded(), dst, symlinks=True)
    return dst


def _task(run: Path, k: int = 1) -> str:
    return json.loads((run / "manifest.json").read_text())["task_ids"][k]


def _bench(*args: str, timeout: float = 120) -> tuple[int, str, float]:
    """``webgym-bench ARGS`` in a subprocess of this checkout: (exit code, output, seconds)."""
    code = "import sys; from webgym_bench import app; sys.argv[0] = 'webgym-bench'; app()"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split()), time.perf_counter() - t0


def _one_line(text: str, marker: str) -> str:
    """The part of ``text`` around ``marker`` (for the figures)."""
    i = text.find(marker)
    return text[max(0, i - 60) : i + len(marker)] if i >= 0 else text[-120:]


def scenario_symlinked_screenshot() -> Row:
    run = _copy("symlinked-screenshot")
    secret = _scratch() / "passwd"
    secret.write_bytes(SECRET)
    shots = run / "episodes" / _task(run) / "screenshots"
    shots.mkdir(exist_ok=True)
    (shots / "step-001.png").symlink_to(secret)
    out = _scratch() / "symlinked-screenshot.html"
    code, text, seconds = _bench("view", str(run), "--out", str(out))
    html = out.read_text() if out.is_file() else ""
    leaked = base64.b64encode(SECRET).decode() in html or "chaos-secret" in html
    said = "step-001.png is a symlink" in html
    return Row(
        "run files: symlinked screenshot (view)",
        f"view exit {code}; the linked file {'EMBEDDED' if leaked else 'not embedded'}; "
        f"the page says {'why' if said else 'nothing'} ({seconds:.1f} s)",
        code == 0 and bool(html) and not leaked and said,
    )


def scenario_symlinked_steps() -> Row:
    run = _copy("symlinked-steps")
    steps = run / "episodes" / _task(run) / "steps.jsonl"
    outside = _scratch() / "steps-outside.jsonl"
    shutil.move(steps, outside)
    steps.symlink_to(outside)
    code, text, seconds = _bench("verify", str(run))
    ok = code == 1 and "steps.jsonl is a symlink" in text
    return Row(
        "run files: symlinked steps.jsonl (verify)",
        f"exit {code}: ...{_one_line(text, 'is a symlink')} ({seconds:.1f} s)",
        ok,
    )


def scenario_fifo() -> Row:
    run = _copy("fifo")
    steps = run / "episodes" / _task(run) / "steps.jsonl"
    steps.unlink()
    os.mkfifo(steps)  # nobody writes to it: opening it for reading would block
    try:
        code, text, seconds = _bench("verify", str(run), timeout=60)
    except subprocess.TimeoutExpired:
        return Row("run files: FIFO steps.jsonl (verify)", "verify BLOCKED (60 s)", False)
    ok = code == 1 and "steps.jsonl is a FIFO" in text
    return Row(
        "run files: FIFO steps.jsonl (verify)",
        f"exit {code} in {seconds:.1f} s: ...{_one_line(text, 'is a FIFO')}",
        ok,
    )


def scenario_oversized_line() -> Row:
    from webgym.runs import MAX_LINE_BYTES, RunDir

    run = _copy("oversized-line")
    task = _task(run)
    steps = run / "episodes" / task / "steps.jsonl"
    with open(steps, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of zeros, no newline, sparse on disk
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        _, problem = RunDir(run).read_steps(task)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - t0
    scan = RunDir(run).scan([task], check_steps=True)
    ok = (
        problem == f"steps.jsonl line 1 is longer than {MAX_LINE_BYTES} bytes"
        and peak < 4 * MAX_LINE_BYTES
        and task in scan.torn
    )
    return Row(
        "run files: 1 GiB sparse steps.jsonl line",
        f"refused ({problem}); peak {peak / 2**20:.1f} MiB, {1000 * seconds:.0f} ms; "
        f"resume re-runs it: {task in scan.torn}",
        ok,
    )


def scenario_non_png_screenshot() -> Row:
    """A browser run with screenshots (relabelled from the text run, pixel distances invented
    to agree with the labels: what a replay cannot see), one screenshot an SVG."""
    import numpy as np
    from PIL import Image

    run = _copy("non-png")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(mode="browser", screenshots=True)
    (run / "manifest.json").write_text(json.dumps(manifest))
    for task in manifest["task_ids"]:
        ep = run / "episodes" / task
        steps = [json.loads(x) for x in (ep / "steps.jsonl").read_text().splitlines()]
        for st in steps:
            st["pixel_distance"] = 500.0 if st["effect_label"] == 1 else 0.0
        (ep / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        (ep / "screenshots").mkdir(exist_ok=True)
        for t in range(len(steps) + 1):
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(
                ep / "screenshots" / f"step-{t:03d}.png", format="PNG"
            )
    first = manifest["task_ids"][0]
    bad = run / "episodes" / first / "screenshots" / "step-001.png"
    bad.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    code, text, seconds = _bench("verify", str(run))
    ok = code == 1 and "step-001.png is not a PNG image" in text
    return Row(
        "run files: non-PNG screenshot in a browser run (verify)",
        f"exit {code}: ...{_one_line(text, 'is not a PNG image')} ({seconds:.1f} s)",
        ok,
    )


def _starts(run: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (run / "run.log").read_text().splitlines():
        if " episode start " in line:
            task = line.split(" episode start ")[1].split()[0]
            counts[task] = counts.get(task, 0) + 1
    return counts


def scenario_tampered_resume() -> Row:
    from webgym.runs import RunDir
    from webgym_benchmarks.runner import execute_plan, plan_run

    run = _copy("tampered-resume")
    ids = json.loads((run / "manifest.json").read_text())["task_ids"]
    victim, donor = ids[0], ids[1]
    path = run / "episodes" / victim / "steps.jsonl"
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    other = (run / "episodes" / donor / "steps.jsonl").read_text().splitlines(keepends=True)
    k = next(i for i in range(min(len(lines), len(other))) if lines[i] != other[i])
    lines[k] = other[k]  # valid JSON, the same step number, the same line count
    path.write_text("".join(lines))
    before = _starts(run)
    plan = plan_run(agent="rule", split="test", episodes=N_TASKS, out=run)
    why = plan.scan.unsound.get(victim, "")
    outcome = execute_plan(plan)
    after = _starts(run)
    rerun = {t: after.get(t, 0) - before.get(t, 0) for t in ids}
    steps, _ = RunDir(run).read_steps(victim)
    same = [json.loads(x)["action"] for x in original.splitlines()] == [s["action"] for s in steps]
    ok = (
        "digest chain" in why
        and plan.todo == [victim]
        and outcome.status == "complete"
        and rerun == {t: int(t == victim) for t in ids}
        and same
    )
    return Row(
        "run files: a kept episode's step line swapped (resume)",
        f"resume: {why[:70] or 'KEPT'}; re-run {sum(rerun.values())} of {len(ids)} "
        f"episodes (the tampered one: {rerun[victim]}), same actions after: {same}",
        ok,
    )


def scenarios() -> list[Callable[[], Row]]:
    """The scenarios above, all fast (seconds each; the run they share is played once)."""
    return [
        scenario_symlinked_screenshot,
        scenario_symlinked_steps,
        scenario_fifo,
        scenario_oversized_line,
        scenario_non_png_screenshot,
        scenario_tampered_resume,
    ]


if __name__ == "__main__":
    rows = []
    for scenario in scenarios():
        row = scenario()
        rows.append(row)
        print(f"{row.scenario}: {'pass' if row.ok else 'FAIL'}: {row.figures}")
    sys.exit(0 if all(r.ok for r in rows) else 1)
