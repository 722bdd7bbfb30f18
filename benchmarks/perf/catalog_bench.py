"""Catalog benchmark: generation, build, size, search and get() latency, memory.

    python -m webgym_benchmarks.perf.catalog_bench [--sizes 10000 100000] [--queries 1000]

For each catalog size: synthetic generation time (products + goals), SQLite build time, total,
file size, search latency p50 / p95 / max over varied queries (product types, goal
instructions, single words, misspellings, long pastes, junk and FTS5 syntax), ``get()``
latency (cold and cached), RSS of this process after the build, and RSS of a fresh subprocess
that only opens the catalog and serves the same queries (the shop server's footprint).
Targets: 100k products built in <= 60 s, search p95 <= 10 ms, serving RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD_TARGET_S = 60.0  # for 100k products, generation included
SEARCH_P95_TARGET_MS = 10.0
RSS_TARGET_MB = 1024.0

JUNK = [
    "",
    "   ",
    '"',
    '"unbalanced quote',
    "*",
    "sham*",
    "title:shampoo",
    "^boots",
    "(red OR blue) AND NOT green",
    "a NEAR b",
    "NEAR(shampoo boots, 2)",
    "-+-+-",
    "'; DROP TABLE products; --",
    "🙂🙂🙂 shampoo 🙂",
    "洗发水 シャンプー",
    "crème brûlée café",
    "\x00\x01\x02",
    "%_%_%",
    "AND OR NOT",
    "{title}: boots",
]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _misspell(rng: random.Random, word: str) -> str:
    if len(word) < 3:
        return word + word[-1:]
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:  # swap
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:  # drop
        return word[:i] + word[i + 1 :]
    return word[:i] + rng.choice("aeiourstn") + word[i:]  # insert


def make_queries(catalog, n: int, seed: int = 0) -> list[str]:
    """``n`` varied queries drawn from the catalog's own products and goals."""
    rng = random.Random(seed)
    goals = [g for s in catalog.splits().values() for g in s.goals]
    asins = [a for _, a in zip(range(5000), catalog.asins(), strict=False)]
    products = [catalog.get(a) for a in rng.sample(asins, min(len(asins), 500))]
    product_queries = sorted({p["query"] for p in products if p.get("query")})
    words = [w for p in products for w in p.get("Title", "").lower().split() if w.isalpha()]
    instructions = [g["instruction_text"] for g in goals] or [p["Title"] for p in products]
    out: list[str] = []
    kinds = ("type", "instruction", "word", "misspelt", "title", "long", "junk")
    weights = (25, 30, 15, 10, 10, 3, 7)
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind == "type" and product_queries:
            out.append(rng.choice(product_queries))
        elif kind == "instruction":
            out.append(rng.choice(instructions))
        elif kind == "word" and words:
            out.append(rng.choice(words))
        elif kind == "misspelt" and words:
            out.append(" ".join(_misspell(rng, w) for w in rng.choice(instructions).split()[:8]))
        elif kind == "title" and products:
            out.append(rng.choice(products)["Title"])
        elif kind == "long":
            text = " ".join(rng.choice(instructions) for _ in range(40))
            out.append((text * (10_000 // max(1, len(text)) + 1))[: rng.choice((500, 10_000))])
        else:
            out.append(rng.choice(JUNK))
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def measure_serving(path: Path, n_queries: int) -> dict:
    """Open the catalog, search and get(); latencies in ms. Used in a fresh subprocess too."""
    from webgym.shop.catalog import Catalog

    t0 = time.perf_counter()
    catalog = Catalog.open(path)
    open_ms = (time.perf_counter() - t0) * 1e3
    queries = make_queries(catalog, n_queries)
    for q in queries[:20]:  # warm the page cache the way a running server has it
        catalog.search(q)
    lat, cpu, hits = [], [], []
    for q in queries:
        c = time.thread_time()
        t = time.perf_counter()
        res = catalog.search(q)
        lat.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)
        hits.append(len(res))
    lat.sort()
    cpu.sort()
    asins = [a for q in queries[:200] for a in catalog.search(q)[:10]]
    # get(): a fresh Catalog so the LRU starts empty (cold = SQLite + JSON decode)
    fresh = Catalog.open(path)
    unique = list(dict.fromkeys(asins))
    cold, warm = [], []
    for a in unique:
        t = time.perf_counter()
        fresh.get(a)
        cold.append((time.perf_counter() - t) * 1e3)
    for a in unique:
        t = time.perf_counter()
        fresh.get(a)
        warm.append((time.perf_counter() - t) * 1e3)
    splits_ms = time.perf_counter()
    fresh.splits()
    splits_ms = (time.perf_counter() - splits_ms) * 1e3
    return {
        "open_ms": open_ms,
        "n_queries": len(queries),
        "p50_ms": _percentile(lat, 0.50),
        "p95_ms": _percentile(lat, 0.95),
        "max_ms": lat[-1],
        "cpu_p50_ms": _percentile(cpu, 0.50),
        "cpu_p95_ms": _percentile(cpu, 0.95),
        "mean_hits": statistics.fmean(hits),
        "get_cold_us": statistics.median(cold) * 1e3 if cold else float("nan"),
        "get_cached_us": statistics.median(warm) * 1e3 if warm else float("nan"),
        "splits_ms": splits_ms,
        "rss_mb": _rss_mb(),
    }


def bench_size(n: int, n_queries: int, workdir: Path) -> dict:
    from webgym.shop.catalog import build_catalog
    from webgym.shop.synthetic import generate_products
    from webgym.shop.tasks import generate_goals

    t0 = time.perf_counter()
    products = generate_products(n, seed=0)
    t1 = time.perf_counter()
    splits = generate_goals(products, seed=0)
    t2 = time.perf_counter()
    path = build_catalog(products, splits, workdir / f"bench-{n}.sqlite", source="synthetic")
    t3 = time.perf_counter()
    rss_build = _rss_mb()
    del products
    probe = subprocess.run(
        [sys.executable, "-m", "webgym_benchmarks.perf.catalog_bench", "--probe", str(path)]
        + ["--queries", str(n_queries)],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    serving = json.loads(probe.stdout.strip().splitlines()[-1])
    return {
        "n": n,
        "gen_s": t1 - t0,
        "goals_s": t2 - t1,
        "build_s": t3 - t2,
        "total_s": t3 - t0,
        "db_mb": path.stat().st_size / 2**20,
        "rss_build_mb": rss_build,
        **serving,
        "load_avg": os.getloadavg()[0],
        "cpus": os.cpu_count() or 0,
    }


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]FAIL[/]"

    table = Table(title="WebGym catalog benchmark (SQLite FTS5)")
    table.add_column("metric")
    for r in rows:
        table.add_column(f"{r['n']:,} products", justify="right")
    table.add_column("target")

    def line(label: str, key: str, fmt: str, target: str = "", check=None) -> None:
        cells = []
        for r in rows:
            cell = format(r[key], fmt)
            if check is not None and check(r) is not None:
                cell += " " + verdict(check(r))
            cells.append(cell)
        table.add_row(label, *cells, target)

    line("generate products (s)", "gen_s", ".2f")
    line("generate goals (s)", "goals_s", ".2f")
    line("build SQLite (s)", "build_s", ".2f")
    line(
        "total (s)",
        "total_s",
        ".2f",
        "100k <= 60 s",
        lambda r: r["total_s"] <= BUILD_TARGET_S if r["n"] >= 100_000 else None,
    )
    line("database size (MB)", "db_mb", ".1f")
    line("open (ms)", "open_ms", ".1f")
    line("search p50 (ms)", "p50_ms", ".2f")
    line(
        "search p95 (ms)",
        "p95_ms",
        ".2f",
        "<= 10 ms",
        lambda r: r["p95_ms"] <= SEARCH_P95_TARGET_MS,
    )
    line("search max (ms)", "max_ms", ".2f")
    line("search CPU p50 (ms)", "cpu_p50_ms", ".2f", "(thread CPU time:")
    line("search CPU p95 (ms)", "cpu_p95_ms", ".2f", " load-independent)")
    line("mean hits per search", "mean_hits", ".1f")
    line("get() cold (us)", "get_cold_us", ".1f")
    line("get() cached (us)", "get_cached_us", ".2f")
    line("splits() first call (ms)", "splits_ms", ".1f")
    line("RSS after build (MB)", "rss_build_mb", ".0f")
    line(
        "RSS serving, fresh process (MB)",
        "rss_mb",
        ".0f",
        "<= 1 GB",
        lambda r: r["rss_mb"] <= RSS_TARGET_MB,
    )
    line("1-min load average (other work)", "load_avg", ".1f", f"{rows[0]['cpus']} CPUs")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(measure_serving(args.probe, args.queries)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="webgym-catalog-bench-") as tmp:
        for n in args.sizes:
            rows.append(bench_size(n, args.queries, Path(tmp)))
            r = rows[-1]
            print(
                f"{n:,} products: total {r['total_s']:.1f} s, search p95 {r['p95_ms']:.2f} ms",
                file=sys.stderr,
            )
    print_table(rows)
    ok = all(r["p95_ms"] <= SEARCH_P95_TARGET_MS and r["rss_mb"] <= RSS_TARGET_MB for r in rows)
    ok = ok and all(r["total_s"] <= BUILD_TARGET_S for r in rows if r["n"] >= 100_000)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
