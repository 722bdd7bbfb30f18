"""Where ``webgym-bench verify`` spends its time: one verify of a run, its CPU seconds by part.

    python -m webgym_leaderboards.verify_bench RUN_DIR [--json out.json]

Runs ``webgym_leaderboards.verify.verify_run`` once on ``RUN_DIR`` (the catalog that holds the
run's split) with a few functions wrapped so that the CPU time (``time.process_time``: the
process's own user + system time, so other jobs on the cores barely move it) spent inside each
is summed: the text twin's ``reset`` and ``step``, the shop's request handling as a whole
(``ASGITransport.request``), and inside it the reward's part-of-speech tagging
(``get_type_reward``, the tagger's first load included, and the load alone), the catalog search
(``Catalog.search``) and the page rendering (``ShopPages.render``); beside them the observation
of each page (``observe_page``). Prints one table, parts nested as they are called, and the wall
time (which other jobs on the machine do move). A wrapper costs about a microsecond a call.

A profile of the same command, to look further: ``python -m cProfile -o verify.prof
.venv/bin/webgym-bench verify RUN_DIR`` (cProfile slows it about 2.5x, evenly enough to rank).

It lives in the leaderboard layer, not with the benchmarks in ``benchmarks/perf/`` (whose
README holds its figures), because it imports the command it measures: ``webgym_benchmarks``
may not import ``webgym_leaderboards``. Imports ``webgym`` and ``webgym_leaderboards.verify``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

# (owner module or class, attribute, label, depth in the table)
PARTS = (
    ("webgym.envs.shopping:ShoppingEnv", "reset", "env reset", 0),
    ("webgym.envs.shopping:ShoppingEnv", "step", "env step", 0),
    ("webgym.transport:ASGITransport", "request", "shop request handling (reset and step)", 1),
    ("webgym.shop.reward", "get_type_reward", "reward: title nouns (spaCy)", 2),
    ("webgym.shop.reward", "load_tagger", "of which the tagger's import and load", 3),
    ("webgym.shop.catalog:Catalog", "search", "catalog search (FTS5 BM25)", 2),
    ("webgym.shop.app:ShopPages", "render", "page rendering (Jinja)", 2),
    ("webgym.envs.shopping", "observe_page", "observation of the served page", 1),
)


_INHERITED = object()  # a wrapped attribute the owner did not define itself


def _owner(spec: str) -> Any:
    import importlib

    module, _, cls = spec.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


def measure(run_dir: Path) -> dict[str, Any]:
    """Verify ``run_dir`` once; CPU seconds and calls per part, totals, wall time. The wrapped
    functions are put back afterwards."""
    cpu: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    first: dict[str, bool] = {}
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        originals.append((owner, name, vars(owner).get(name, _INHERITED)))
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if first.get(label):  # a part called inside itself counts once
                return fn(*args, **kwargs)
            first[label] = True
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu[label] += time.process_time() - t
                calls[label] += 1
                first[label] = False

        setattr(owner, name, timed)

    t0, w0 = time.process_time(), time.perf_counter()
    from webgym.runs import RunDir
    from webgym.shop.catalog import open_catalog
    from webgym_leaderboards.verify import verify_run

    try:
        for spec, name, label, _depth in PARTS:
            wrap(_owner(spec), name, label)
        split = RunDir(run_dir).read_manifest().get("split")
        known = open_catalog(None, split=split).splits()
        t1, w1 = time.process_time(), time.perf_counter()
        verified = verify_run(run_dir, known)
        t2, w2 = time.process_time(), time.perf_counter()
    finally:
        for owner, name, own in reversed(originals):
            if own is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
    return {
        "run": str(run_dir),
        "episodes": len(verified.run.episodes),
        "steps": verified.n_steps,
        "setup_cpu_s": t1 - t0,
        "verify_cpu_s": t2 - t1,
        "verify_wall_s": w2 - w1,
        "setup_wall_s": w1 - w0,
        "parts": {
            label: {"cpu_s": cpu[label], "calls": calls[label]} for _s, _n, label, _d in PARTS
        },
    }


def render(result: dict[str, Any]) -> str:
    total = result["verify_cpu_s"]
    lines = [
        f"verify of {result['run']}: {result['episodes']} episodes, {result['steps']} steps",
        f"{'part':<52} {'CPU s':>7} {'share':>6} {'calls':>6} {'ms/call':>8}",
        f"{'verify_run (validation and replay)':<52} {total:7.2f} {'100%':>6}",
    ]
    for _spec, _name, label, depth in PARTS:
        part = result["parts"][label]
        each = 1000 * part["cpu_s"] / part["calls"] if part["calls"] else 0.0
        name = "  " * (depth + 1) + label
        share = f"{100 * part['cpu_s'] / total:.0f}%" if total else "-"
        lines.append(f"{name:<52} {part['cpu_s']:7.2f} {share:>6} {part['calls']:6d} {each:8.2f}")
    lines.append(
        f"CPU per step (replay, all parts): {1000 * total / max(1, result['steps']):.2f} ms; "
        f"wall {result['verify_wall_s']:.1f} s (imports and catalog: "
        f"{result['setup_cpu_s']:.2f} s CPU before it)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (webgym-bench run --out)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(args.run)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
