"""Chaos scenarios of the leaderboard: what a submitter who wants a better board tries.

Each scenario returns a ``webgym_benchmarks.perf.chaos_row.Row`` (scenario, figures, pass/fail):

- **disguised copies**: a real run is submitted, then copied three times and dressed up as a
  new run (timings + 1e-6 and another agent name; ``digiq`` with a checkpoint hash and new
  timestamps; every action respelled, as the action parser reads it the same, and a new run
  id): every copy must be refused as a duplicate. Forged provenance (a git hash that is no
  commit, a run created in 2099, ``digiq`` without a checkpoint hash) must be refused too.
- **task sets**: ``random`` with a 60-step and with a 15-step limit over the same tasks are
  ranked on two tables, each rank 1 of 1; a copy of a whole-split run whose manifest lost its
  ``split_size`` is the same task set (refused as a duplicate), not a table of its own.
- **escape injection**: an agent name holding an OSC 52 clipboard write, a screen clear, a
  carriage return and rich markup, and an episode category holding another OSC 52, go through
  ``verify``, ``submit`` (and its duplicate refusal), ``leaderboard`` and ``show``: no control
  character reaches the output, and the markup is printed as text.

Runs are played in-process by the harness (``webgym_benchmarks.runner``, text mode) on a small
catalog built for the scenario (a test split of 3 tasks, so a whole-split run takes seconds); the
leaderboard is driven as a user drives it, through the ``webgym-bench`` command in a child
process (``python -m webgym_bench``, the top of the layers), whose raw output is what is
checked. ``scenarios()`` lists them (all fast: no Chromium; about 5 to 30 s each, most of it
the child processes' start-up and replay).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webgym.runs import atomic_write_json, read_json
from webgym_benchmarks.perf.chaos_row import Row

ROOT = Path(__file__).resolve().parents[2]
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: put "rm -rf ~" on the clipboard
HOSTILE_AGENT = f"evil{CLIPBOARD}\x1b[2J\x1b[31m\x9b1m\rrank 1 [bold red]X[/]"
CHECKPOINT_SHA = "ab" * 32


@dataclass
class Workspace:
    """A temporary folder with a small catalog (test split of 3 tasks) and a board file."""

    dir: Path
    catalog: Path

    @property
    def board(self) -> Path:
        return self.dir / "board.sqlite"

    def record(self, name: str, agent: str = "rule", *, max_steps: int = 15) -> Path:
        """Play ``agent`` on the whole test split (text mode) with the harness; the run."""
        from webgym.shop.catalog import Catalog
        from webgym_benchmarks.runner import execute_plan, finalise_run, plan_run

        out = self.dir / name
        with _env(WEBGYM_CATALOG=str(self.catalog)), Catalog.open(self.catalog) as catalog:
            plan = plan_run(agent=agent, split="test", out=out, max_steps=max_steps,
                            catalog=catalog)  # fmt: skip
            outcome = execute_plan(plan)
        if outcome.status != "complete":
            raise RuntimeError(f"recording {name} ended {outcome.status}: {outcome.message}")
        with _env(WEBGYM_CATALOG=str(self.catalog)):
            finalise_run(out)
        return out

    def bench(self, *args: str) -> tuple[int, str]:
        """``webgym-bench ARGS`` in a child process on this catalog and board: (exit code,
        stdout and stderr as the terminal would receive them). Compare words with
        :func:`_words`: the console wraps long lines."""
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        env.update(
            WEBGYM_CATALOG=str(self.catalog),
            WEBGYM_LEADERBOARD=str(self.board),
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            NO_COLOR="1",
            COLUMNS="160",
        )
        done = subprocess.run(
            [sys.executable, "-m", "webgym_bench", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=300,
        )
        text = (done.stdout + done.stderr).decode("utf-8", errors="replace")
        return done.returncode, text


def _words(text: str) -> str:
    """``text`` with its line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    from webgym.shop.catalog import build_catalog
    from webgym.shop.synthetic import generate_products
    from webgym.shop.tasks import generate_goals

    with tempfile.TemporaryDirectory(prefix="chaos-board-") as tmp:
        products = generate_products(400, seed=0)
        splits = generate_goals(products, n_goals={"test": 3, "validation": 2, "train": 5})
        path = build_catalog(products, splits, Path(tmp) / "catalog.sqlite", source="synthetic",
                             meta={"n_products": 400, "seed": 0})  # fmt: skip
        yield Workspace(Path(tmp), path)


# --------------------------------------------------------------------------------------------
# Tampering, as a copier does it


def _edit_json(path: Path, **changes: Any) -> None:
    doc = read_json(path)
    doc.update(changes)
    atomic_write_json(path, doc)


def _copy(run: Path, name: str) -> Path:
    dst = run.parent / name
    shutil.copytree(run, dst)
    return dst


def _summaries(run: Path) -> list[Path]:
    return sorted((run / "episodes").glob("*/summary.json"))


def _tweak_timings(run: Path) -> None:
    path = _summaries(run)[0]
    timings = read_json(path)["timings"]
    _edit_json(path, timings={**timings, "agent_s": timings["agent_s"] + 1e-6})


def _new_timestamps(run: Path) -> None:
    for path in _summaries(run):
        _edit_json(path, finished="2026-12-01T00:00:00Z", attempts=2)
    _edit_json(run / "manifest.json", created="2026-12-01T00:00:00Z", run_id="fresh")


def _respell_actions(run: Path) -> None:
    import json

    for steps in sorted((run / "episodes").glob("*/steps.jsonl")):
        records = [json.loads(line) for line in steps.read_text(encoding="utf-8").splitlines()]
        for r in records:
            if r["action"].startswith("click('"):
                r["action"] = r["action"].replace("'", '"')
            elif r["action"].startswith("search["):
                r["action"] = "search[ " + r["action"][7:-1] + " ]"
            r["elapsed_s"] = r.get("elapsed_s", 0) + 0.25
        steps.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Scenarios


def scenario_disguised_copies() -> Row:
    with workspace() as ws:
        run = ws.record("rule")
        code, first = ws.bench("submit", str(run))
        if code != 0:
            return Row("board: disguised copies", f"the honest run was refused: {first}", False)
        copies = []
        a = _copy(run, "copy-timings")
        _tweak_timings(a)
        _edit_json(a / "manifest.json", agent="random")
        copies.append(a)
        b = _copy(run, "copy-digiq")
        _new_timestamps(b)
        _edit_json(b / "manifest.json", agent="digiq", checkpoint="/ckpt/digiq",
                   checkpoint_sha256=CHECKPOINT_SHA)  # fmt: skip
        copies.append(b)
        c = _copy(run, "copy-respelled")
        _respell_actions(c)
        _edit_json(c / "manifest.json", run_id="respelled")
        copies.append(c)
        duplicates = 0
        for copy in copies:
            code, out = ws.bench("submit", str(copy))
            duplicates += code == 1 and "duplicate submission" in _words(out)
        forged = {
            "git_hash": ({"git_hash": "zz-not-a-commit"}, "is not a commit id"),
            "created": ({"created": "2099-01-01T00:00:00Z"}, "is in the future"),
            "checkpoint": ({"agent": "digiq"}, "names no checkpoint_sha256"),
        }
        refused = []
        for name, (changes, words) in forged.items():
            copy = _copy(run, f"forged-{name}")
            _edit_json(copy / "manifest.json", **changes)
            code, out = ws.bench("verify", str(copy))
            if code == 1 and words in _words(out):
                refused.append(name)
        code, board = ws.bench("leaderboard")
        entries = sum(1 for line in board.splitlines() if line.strip().startswith("1 "))
    ok = duplicates == len(copies) and len(refused) == len(forged) and entries == 1
    return Row(
        "board: disguised copies of a run, forged provenance",
        f"{duplicates}/{len(copies)} disguised copies refused as duplicates (timings + 1e-6 and "
        f"agent renamed; digiq with a checkpoint hash, new timestamps; actions respelled); "
        f"{len(refused)}/{len(forged)} forged provenance refused ({', '.join(refused)}); "
        f"board: {entries} entry",
        ok,
    )


def scenario_task_sets() -> Row:
    with workspace() as ws:
        long = ws.record("random-60", "random", max_steps=60)
        short = ws.record("random-15", "random", max_steps=15)
        ranks = []
        for run in (long, short):
            code, out = ws.bench("submit", str(run))
            ranks.append(code == 0 and "rank 1 of 1" in _words(out))
        code, board = ws.bench("leaderboard")
        tables = [line for line in board.splitlines() if "WebGym leaderboard:" in line]
        apart = len(tables) == 2 and any("60 steps" in t for t in tables)
        apart = apart and any("15 steps" in t for t in tables)
        lost = _copy(long, "no-split-size")
        manifest = read_json(lost / "manifest.json")
        manifest.pop("split_size", None)
        atomic_write_json(lost / "manifest.json", manifest)
        _edit_json(lost / "manifest.json", run_id="no-split-size")
        code, out = ws.bench("submit", str(lost))
        same_set = code == 1 and "duplicate submission" in _words(out)
    ok = all(ranks) and apart and same_set
    return Row(
        "board: step limit and split size in the task set",
        f"random at 60 and at 15 steps: {len(tables)} tables, "
        f"{'each rank 1 of 1' if all(ranks) else 'ranked together'}; a whole-split run whose "
        f"manifest lost split_size: {'the same task set (a duplicate)' if same_set else out}",
        ok,
    )


CONTROL = tuple(chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)))


def scenario_escape_injection() -> Row:
    with workspace() as ws:
        run = ws.record("hostile")
        _edit_json(run / "manifest.json", agent=HOSTILE_AGENT)
        first = _summaries(run)[0]
        _edit_json(first, category=f"clothing{CLIPBOARD}[blink]")
        outputs = {
            "verify": ws.bench("verify", str(run)),
            "submit": ws.bench("submit", str(run)),
            "submit again (refused)": ws.bench("submit", str(run)),
            "leaderboard": ws.bench("leaderboard"),
            "show": ws.bench("show", str(run)),
        }
    dirty = [name for name, (_, out) in outputs.items() if any(c in out for c in CONTROL)]
    codes = {name: code for name, (code, _) in outputs.items()}
    expected = {name: 1 if "refused" in name else 0 for name in outputs}
    literal = "[bold red]X[/]" in _words(outputs["submit"][1])
    ok = not dirty and codes == expected and literal
    return Row(
        "board: terminal escape injection (OSC 52, CSI, CR, markup)",
        f"{len(outputs) - len(dirty)}/{len(outputs)} command outputs free of control characters"
        + (f" (not: {', '.join(dirty)})" if dirty else "")
        + f"; markup printed as text: {'yes' if literal else 'no'}"
        + ("" if codes == expected else f"; exit codes {codes}"),
        ok,
    )


def scenarios() -> list[Callable[[], Row]]:
    """The fast scenarios (no Chromium), for ``python -m webgym_benchmarks.perf.chaos`` and CI."""
    return [scenario_disguised_copies, scenario_task_sets, scenario_escape_injection]


if __name__ == "__main__":
    rows = [s() for s in scenarios()]
    for row in rows:
        print(f"{row.scenario}: {'pass' if row.ok else 'FAIL'}: {row.figures}")
    sys.exit(0 if all(r.ok for r in rows) else 1)
