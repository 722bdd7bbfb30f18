"""Environment speed and memory, against the raw Playwright floor and BrowserGym, in one run.

    python -m webgym_benchmarks.perf.env_bench [--steps 60] [--skip-peer] [--setup-peer]
        [--skip-memory] [--skip-concurrency] [--json out.json]

Everything below runs on the same machine in one invocation and is printed as one table
(medians and p90 of the wall time, mean CPU-seconds), then a per-kind table of the browser env's
step cost beside the floor's, the targets with PASS/FAIL and a per-step time breakdown of the
browser env:

(a) floor   - a plain sync Playwright script (no WebGym browser layer) on the same shop pages,
              served by its own ``ShopServer``: per step the same element operation the env does
              (link click, option/buy form submit, search fill + submit, or nothing for a noop),
              wait for "load", then a JPEG q90 1280x720 screenshot decoded to numpy (as
              ``BrowserConfig``), ``page.content()`` and ``locator("body").aria_snapshot()``.
              Reset floor: a session via the JSON API + goto the start page + the same capture.
(b) browser - ``WebGym-Shopping-v0``: an 11-step episode per test task (search, next page, prev
              page, item, option, noop, sub-page tab, back to item, option, noop, Buy Now) and
              reset. Steps are reported per kind so the floor comparison is like-for-like.
(c) text    - ``WebGym-ShoppingText-v0``, same episode, in a subprocess pinned to one core.
(d) peer    - BrowserGym 0.14.3 ``browsergym/miniwob.click-button`` (``browsergym_peer.py``,
              run by the peer virtualenv's python under ``benchmarks/perf/.peer/``).
(e) memory  - PSS (this process + descendants) with 1, 2 and 4 envs, each after a reset, in a
              fresh subprocess per mode; per additional env = (PSS(4) - PSS(1)) / 3.
(f) many    - ``async_bench.py``: aggregate browser steps/s of 1, 2, 4 and 8 concurrent
              ``AsyncShoppingEnv`` sessions in one process against one sync env, and PSS per
              additional async session against the raw cost of one more context (its tables).

CPU-seconds of a step or reset: user + system time, over the step, of this process and every
descendant (the Playwright driver; Chromium's browser, renderer, GPU and utility processes;
reaped children counted in their parent's times), ``tree_cpu_s`` read before and after it; the
shop server is a thread of this process in both (a) and (b), so its CPU counts too. Reported as
the mean per kind: psutil reads the times in clock ticks (10 ms a process), too coarse for the
median of one step's figures, while the mean over many steps is not biased by the ticks (the
text env's ~1 ms steps get no CPU figure). Each figure also holds part of one ``tree_cpu_s``
call (reading /proc of ~11 processes; its cost is printed), the same in (a) and (b). CPU time
moves less than wall time with other load on the cores, but it moves (shared caches, contended
locks, the clock frequency).

Targets (printed with PASS/FAIL, never tuned for): browser link-click step <= 1.3x the floor's
wall time and <= 1.2x its CPU-seconds; our reset and step >= 3x faster than BrowserGym's defaults;
text mode >= 300 steps/s on one core; each additional browser env <= 60 MB PSS.

The breakdown wraps a few functions with ``time.perf_counter`` while (b) runs (about a
microsecond per call, negligible against the milliseconds measured).

``--skip-peer --skip-memory --skip-concurrency`` leaves (a), (b) and (c): the floor's and the
browser env's step costs and their targets, about a minute at the default 60 steps.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from contextlib import suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEER_DIR = HERE / ".peer"
PEER_VENV = PEER_DIR / "venv"
PEER_PY = PEER_VENV / "bin" / "python"
PEER_BROWSERS = PEER_DIR / "browsers"
PEER_PACKAGES = ("browsergym-core==0.14.3", "browsergym-miniwob==0.14.3", "miniwob", "psutil")
PEER_CHROMIUM_DIR = "chromium-1117"  # the revision Playwright 1.44 looks for

# Step kinds of the episode; "link" is the like-for-like comparison with the floor.
LINK, OPTION, SEARCH, NOOP, BUY = "link", "option", "search", "noop", "buy"
KINDS = (LINK, OPTION, SEARCH, NOOP, BUY)
EPISODE = (
    (SEARCH, None),
    (LINK, "next_page"),
    (LINK, "prev_page"),
    (LINK, "@first_item"),
    (OPTION, "opt_0_0"),
    (NOOP, None),
    (LINK, "tab_features"),
    (LINK, "prev"),
    (OPTION, "opt_1_0"),
    (NOOP, None),
    (BUY, "buy_now"),
)

TARGET_FLOOR_RATIO = 1.3
TARGET_FLOOR_CPU_RATIO = 1.2
TARGET_PEER_SPEEDUP = 3.0
TARGET_TEXT_SPS = 300.0
TARGET_BROWSER_ENV_MB = 60.0


# ---- statistics ------------------------------------------------------------------------------
def quantiles(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "median_s": float("nan"), "p90_s": float("nan")}
    s = sorted(xs)
    return {
        "n": len(s),
        "median_s": statistics.median(s),
        "p90_s": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
    }


def cpu_stats(xs: list[float]) -> dict:
    """CPU-seconds per step: the mean is the figure (see the module docstring on clock ticks)."""
    if not xs:
        return {"n": 0, "mean_s": float("nan"), "median_s": float("nan")}
    return {"n": len(xs), "mean_s": statistics.fmean(xs), "median_s": statistics.median(xs)}


def pss_mb(tree: bool = True) -> float:
    """PSS of this process and, with ``tree``, all its descendants (the Playwright driver and
    every Chromium process), MB."""
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)] if tree else [me]:
        with suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / 2**20


def memory_figures(pss: dict[int, float], python: dict[int, float]) -> dict:
    """The memory section's figures from PSS with 0, 1, 2, 4 sessions open (the whole tree, and
    the Python process alone): the first session's cost and each additional one's,
    (PSS(4) - PSS(1)) / 3, and how much of that is this process's own (observations, spaces)."""
    return {
        "pss_mb": pss,
        "python_pss_mb": python,
        "first_env_mb": pss[1] - pss[0],
        "per_additional_env_mb": (pss[4] - pss[1]) / 3,
        "per_additional_python_mb": (python[4] - python[1]) / 3,
    }


def tree_cpu_s() -> float:
    """CPU-seconds (user + system) so far of this process and all its descendants: the
    Playwright driver and every Chromium process (browser, renderers, GPU, utility). A
    process's reaped children count in its own ``children_*`` times, so a renderer that exits
    is still counted once its parent (inside the tree) has reaped it."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited between the listing and the read
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_cpu_read_ms(calls: int = 20) -> float:
    """This process's CPU time for one ``tree_cpu_s`` call, now (the part of it that a step's
    CPU figure holds is at most this)."""
    t0 = time.process_time()
    for _ in range(calls):
        tree_cpu_s()
    return 1000 * (time.process_time() - t0) / calls


def test_goals(n: int) -> list[dict]:
    from webgym.shop.catalog import default_catalog

    return list(default_catalog().split("test").goals)[:n]


def episodes_needed(steps: int) -> int:
    return max(2, -(-steps // len(EPISODE)))


# ---- (a) the raw Playwright floor ------------------------------------------------------------
def api_session(base: str, task_id: str) -> str:
    """A shop session for ``task_id`` through the JSON API; its start page's path."""
    req = urllib.request.Request(
        base + "/api/sessions",
        data=json.dumps({"task_id": task_id}).encode(),
        headers={"content-type": "application/json", "accept": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["url"]


def raw_capture(page, cfg):
    """The floor's observation of a page: the JPEG screenshot decoded to numpy, the HTML and
    the ARIA snapshot (what the env captures). Returns the pixels."""
    import numpy as np
    from PIL import Image

    data = page.screenshot(type="jpeg", quality=cfg.jpeg_quality)
    with Image.open(io.BytesIO(data)) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape == (cfg.viewport[1], cfg.viewport[0], 3)
    page.content()
    page.locator("body").aria_snapshot()
    return pixels


def run_floor(steps: int) -> dict:
    from playwright.sync_api import sync_playwright

    from webgym.browser.config import DEFAULT_ARGS, BrowserConfig
    from webgym.shop.server import ShopServer

    cfg = BrowserConfig()
    width, height = cfg.viewport
    server = ShopServer().start()
    base = server.url

    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    resets: list[float] = []
    reset_cpu: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=cfg.executable_path, headless=True, args=list(DEFAULT_ARGS)
            )
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()

            def capture() -> None:
                raw_capture(page, cfg)

            goals = test_goals(episodes_needed(steps) + 1)
            for ep, goal in enumerate(goals):
                warm = ep == 0
                c0 = tree_cpu_s()  # outside the wall-time window: wall figures unchanged
                t0 = time.perf_counter()
                page.goto(base + api_session(base, goal["task_id"]), wait_until="load")
                capture()
                if not warm:
                    resets.append(time.perf_counter() - t0)
                    reset_cpu.append(tree_cpu_s() - c0)
                for kind, bid in EPISODE:
                    if bid == "@first_item":
                        bid = page.locator("[bid^=item_]").first.get_attribute("bid")
                    if bid is not None and page.locator(f"[bid={bid}]").count() == 0:
                        continue  # same skip rule as the env (the bid is not on this page)
                    c0 = tree_cpu_s()
                    t0 = time.perf_counter()
                    if kind == SEARCH:
                        page.fill("[bid=search_box]", goal["query"])
                        page.click("[bid=search_button]")
                    elif kind != NOOP:
                        page.click(f"[bid={bid}]")
                    if kind != NOOP:
                        page.wait_for_load_state("load")
                    capture()
                    if not warm:
                        times[kind].append(time.perf_counter() - t0)
                        cpu[kind].append(tree_cpu_s() - c0)
            read_ms = tree_cpu_read_ms()  # with the browser still up: the same tree as above
            browser.close()
    finally:
        server.stop()
    return {
        "reset": quantiles(resets),
        "steps": {k: quantiles(times[k]) for k in KINDS},
        "reset_cpu_s": cpu_stats(reset_cpu),
        "steps_cpu_s": {k: cpu_stats(cpu[k]) for k in KINDS},
        "tree_cpu_read_ms": read_ms,
    }


# ---- (b) the browser env, with a time breakdown ----------------------------------------------
class Breakdown:
    """Accumulates perf_counter time per wrapped function while ``active``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.active = False
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[label] += time.perf_counter() - t0

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def _install_breakdown() -> Breakdown:
    from playwright.sync_api import Locator, Page, Response

    import webgym.browser.tab as tab_mod
    import webgym.effects as effects_mod
    import webgym.envs.shopping as env_mod
    import webgym.inprocess as inprocess_mod
    from webgym.observe import PageView

    bd = Breakdown()
    bd.wrap(env_mod, "parse_action", "parse action")
    bd.wrap(PageView, "resolve", "resolve (PageView)")
    # The tab's operations are generators of Playwright calls: time the calls themselves.
    bd.wrap(Locator, "evaluate_all", "element probe (evaluate_all)")
    bd.wrap(Locator, "click", "locator.click")
    bd.wrap(Locator, "fill", "locator.fill")
    bd.wrap(Locator, "blur", "locator.blur")
    bd.wrap(Page, "wait_for_load_state", "wait for load")
    bd.wrap(Response, "body", "served html (response.body)")
    bd.wrap(Page, "screenshot", "screenshot (CDP, jpeg)")
    bd.wrap(tab_mod, "decode_screenshot", "decode jpeg -> numpy")
    bd.wrap(env_mod, "observe_page", "observe_page (parse html)")
    bd.wrap(effects_mod, "pixel_distance", "action_effect: pixel distance")
    bd.wrap(effects_mod, "text_distance", "action_effect: text distance")
    bd.wrap(env_mod, "action_effect", "action_effect (total)")
    bd.wrap(inprocess_mod.InProcessPage, "request_json", "JSON API call")
    bd.wrap(env_mod.ShoppingEnv, "_observation", "build obs dict")
    return bd


def _env_action(kind: str, bid: str | None, goal: dict, obs: dict) -> str | None:
    """The env action for an episode step, or None when its element is not on this page."""
    available = obs["available_actions"]
    if kind == SEARCH:
        return f"search[{goal['query']}]"
    if kind == NOOP:
        return "noop()"
    if bid == "@first_item":
        items = [a for a in available if a.startswith("click('item_")]
        return items[0] if items else None
    if kind == BUY:
        return "click[Buy Now]" if "click('buy_now')" in available else None
    action = f"click('{bid}')"
    return action if action in available else None


def run_env(mode: str, steps: int, breakdown: bool = False) -> dict:
    import gymnasium as gym

    from webgym.envs import env_id_for_mode  # importing webgym registers the ids

    env_id = env_id_for_mode(mode)
    env = gym.make(env_id).unwrapped
    bd = _install_breakdown() if breakdown else None
    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    resets: list[float] = []
    reset_cpu: list[float] = []
    errors: list[str] = []
    per_kind_bd: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    n_done = 0
    # CPU-seconds in browser mode only: a text step takes about a millisecond, under psutil's
    # 10 ms clock tick and about the cost of a tree_cpu_s read.
    with_cpu = mode == "browser"
    read_cpu = tree_cpu_s if with_cpu else lambda: 0.0
    try:
        goals = test_goals(episodes_needed(steps) + 1)
        for ep, goal in enumerate(goals):
            warm = ep == 0
            c0 = read_cpu()  # outside the wall-time window, as in the floor
            t0 = time.perf_counter()
            obs, _ = env.reset(options={"task_id": goal["task_id"]})
            if not warm:
                resets.append(time.perf_counter() - t0)
                reset_cpu.append(read_cpu() - c0)
            for kind, bid in EPISODE:
                action = _env_action(kind, bid, goal, obs)
                if action is None:
                    continue
                if bd is not None:
                    bd.totals.clear()
                    bd.active = not warm
                c0 = read_cpu()
                t0 = time.perf_counter()
                obs, _, terminated, _, _ = env.step(action)
                dt = time.perf_counter() - t0
                dcpu = read_cpu() - c0
                if bd is not None:
                    bd.active = False
                if warm:
                    continue
                times[kind].append(dt)
                cpu[kind].append(dcpu)
                n_done += 1
                if obs["last_action_error"]:
                    errors.append(f"{action}: {obs['last_action_error'][:120]}")
                if bd is not None:
                    row = per_kind_bd[kind]
                    row["step (total)"] += dt
                    for label, v in bd.totals.items():
                        row[label] += v
                if terminated:
                    break
        read_ms = tree_cpu_read_ms() if with_cpu else 0.0  # env still open: the same tree
    finally:
        if bd is not None:
            bd.restore()
        env.close()
    all_steps = [t for k in KINDS for t in times[k]]
    out = {
        "reset": quantiles(resets),
        "steps": {k: quantiles(times[k]) for k in KINDS},
        "all": quantiles(all_steps),
        "steps_per_s": len(all_steps) / sum(all_steps) if all_steps else 0.0,
        "errors": errors[:5],
    }
    if with_cpu:
        out["reset_cpu_s"] = cpu_stats(reset_cpu)
        out["steps_cpu_s"] = {k: cpu_stats(cpu[k]) for k in KINDS}
        out["all_cpu_s"] = cpu_stats([c for k in KINDS for c in cpu[k]])
        out["tree_cpu_read_ms"] = read_ms
    if breakdown:
        out["breakdown_ms_per_step"] = {
            kind: {label: 1000 * v / len(times[kind]) for label, v in row.items()}
            for kind, row in per_kind_bd.items()
        }
    return out


# ---- (e) memory -------------------------------------------------------------------------------
def run_memory(mode: str, **env_kwargs) -> dict:
    import gymnasium as gym

    from webgym.envs import env_id_for_mode  # importing webgym registers the ids

    env_id = env_id_for_mode(mode)
    goals = test_goals(4)
    envs, pss, python = [], {0: pss_mb()}, {0: pss_mb(tree=False)}
    try:
        for n in (1, 2, 4):
            while len(envs) < n:
                env = gym.make(env_id, **env_kwargs)
                env.reset(options={"task_id": goals[len(envs)]["task_id"]})
                envs.append(env)
            time.sleep(0.5)
            pss[n], python[n] = pss_mb(), pss_mb(tree=False)
    finally:
        for env in envs:
            env.close()
    return memory_figures(pss, python)


def run_memory_floor() -> dict:
    """Raw Playwright: one Chromium, 1/2/4 contexts (the memory floor), each doing an env
    reset's page work: a session of a test task through the API, its start page, the same
    capture as the floor's steps, and its last frame kept (an env must keep the frame it
    labels the next step against, and every screenshot agent holds one)."""
    from playwright.sync_api import sync_playwright

    from webgym.browser.config import DEFAULT_ARGS, BrowserConfig
    from webgym.shop.server import ShopServer

    cfg = BrowserConfig()
    server = ShopServer().start()
    goals = test_goals(4)
    pss, python = {0: pss_mb()}, {0: pss_mb(tree=False)}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=cfg.executable_path, headless=True, args=list(DEFAULT_ARGS)
            )
            pages, frames = [], []
            for n in (1, 2, 4):
                while len(pages) < n:
                    ctx = browser.new_context(
                        viewport={"width": cfg.viewport[0], "height": cfg.viewport[1]}
                    )
                    page = ctx.new_page()
                    task_id = goals[len(pages)]["task_id"]
                    page.goto(server.url + api_session(server.url, task_id), wait_until="load")
                    frames.append(raw_capture(page, cfg))
                    pages.append(page)
                time.sleep(0.5)
                pss[n], python[n] = pss_mb(), pss_mb(tree=False)
            browser.close()
    finally:
        server.stop()
    return memory_figures(pss, python)


# ---- subprocess workers ----------------------------------------------------------------------
def worker(name: str, steps: int) -> dict:
    if name == "text-speed":
        return run_env("text", steps)
    if name == "mem-browser":
        return run_memory("browser")
    if name == "mem-browser-shared":
        return run_memory("browser", shared_context=True)
    if name == "mem-text":
        return run_memory("text")
    if name == "mem-floor":
        return run_memory_floor()
    raise ValueError(name)


def run_worker(
    name: str,
    steps: int,
    one_core: bool = False,
    module: str = "webgym_benchmarks.perf.env_bench",
    extra: tuple[str, ...] = (),
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        module,
        "--worker",
        name,
        "--steps",
        str(steps),
        *extra,
    ]
    if one_core:
        cmd[:0] = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        if not shutil.which("taskset"):
            cmd += ["--pin-core"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("WORKER_JSON "):
            return json.loads(line[len("WORKER_JSON ") :])
    raise RuntimeError(f"worker {name} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


# ---- (d) BrowserGym peer ---------------------------------------------------------------------
def setup_peer() -> None:
    """Create the peer virtualenv (BrowserGym pins playwright==1.44, so it gets its own)."""
    if not PEER_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_PY), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def _peer_env() -> dict[str, str]:
    chrome = PEER_BROWSERS / PEER_CHROMIUM_DIR / "chrome-linux" / "chrome"
    chrome.parent.mkdir(parents=True, exist_ok=True)
    from webgym.browser.config import BrowserConfig

    target = BrowserConfig().executable_path
    if not chrome.is_symlink() or os.readlink(chrome) != target:
        with suppress(FileNotFoundError):
            chrome.unlink()
        chrome.symlink_to(target)
    html = subprocess.run(
        [
            str(PEER_PY),
            "-c",
            "import miniwob, os; "
            "print(os.path.join(os.path.dirname(miniwob.__file__), 'html', 'miniwob'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = dict(os.environ)
    env["MINIWOB_URL"] = f"file://{html}/"
    env["PLAYWRIGHT_BROWSERS_PATH"] = str(PEER_BROWSERS)
    return env


def run_peer(resets: int) -> dict:
    if not PEER_PY.exists():
        raise RuntimeError(f"no peer virtualenv at {PEER_VENV}: run with --setup-peer")
    proc = subprocess.run(
        [str(PEER_PY), str(HERE / "browsergym_peer.py"), "--resets", str(resets)],
        cwd=REPO,
        env=_peer_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BROWSERGYM_PEER_JSON "):
            return json.loads(line[len("BROWSERGYM_PEER_JSON ") :])
    raise RuntimeError(f"peer failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


# ---- report ----------------------------------------------------------------------------------
def _ms(q: dict) -> tuple[str, str]:
    if not q or not q.get("n"):
        return "-", "-"
    return f"{1000 * q['median_s']:.1f}", f"{1000 * q['p90_s']:.1f}"


def _cpu_ms(c: dict | None) -> str:
    return f"{1000 * c['mean_s']:.1f}" if c and c.get("n") else "-"


def _ratio(num: dict | None, den: dict | None, stat: str) -> float | None:
    """num / den of one statistic, or None when either side has no samples."""
    if num and den and num.get("n") and den.get("n") and den[stat] > 0:
        return num[stat] / den[stat]
    return None


def report(res: dict, steps: int) -> int:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=120)
    floor, br, tx = res["floor"], res["browser"], res["text"]
    peer, mem = res.get("peer"), res.get("memory")
    f_cpu, b_cpu = floor.get("steps_cpu_s", {}), br.get("steps_cpu_s", {})

    t = Table(title=f"WebGym env benchmark, {res['date']}", show_lines=False)
    for col in ("measurement", "n", "median ms", "p90 ms", "CPU ms (mean)", "note"):
        t.add_column(col, justify="left" if col in ("measurement", "note") else "right")

    def row(name: str, q: dict, note: str = "", cpu: dict | None = None) -> None:
        med, p90 = _ms(q)
        t.add_row(name, str(q.get("n", 0)), med, p90, _cpu_ms(cpu), note)

    row(
        "(a) floor reset (API session + goto + capture)",
        floor["reset"],
        cpu=floor.get("reset_cpu_s"),
    )
    for k in KINDS:
        note = "capture only" if k == NOOP else ""
        row(f"(a) floor step: {k}", floor["steps"][k], note, f_cpu.get(k))
    row("(b) browser reset", br["reset"], cpu=br.get("reset_cpu_s"))
    for k in KINDS:
        ratio = ""
        if floor["steps"][k]["n"] and br["steps"][k]["n"]:
            ratio = f"{br['steps'][k]['median_s'] / floor['steps'][k]['median_s']:.2f}x floor"
        row(f"(b) browser step: {k}", br["steps"][k], ratio, b_cpu.get(k))
    row(
        "(b) browser step: all kinds",
        br["all"],
        f"{br['steps_per_s']:.1f} steps/s",
        br.get("all_cpu_s"),
    )
    row("(c) text reset (1 core)", tx["reset"])  # no CPU figure: see run_env
    for k in KINDS:
        row(f"(c) text step: {k}", tx["steps"][k])
    row("(c) text step: all kinds (1 core)", tx["all"], f"{tx['steps_per_s']:.0f} steps/s")
    if peer:
        for key, label in (("default", "defaults, 0.5 s delay"), ("no_delay", "delay 0")):
            row(f"(d) BrowserGym reset ({label})", peer[key]["reset"])
            row(f"(d) BrowserGym step click ({label})", peer[key]["step"])
    con.print(t)
    if f_cpu and b_cpu:
        _print_step_cost(con, floor, br)

    if mem:
        m = Table(title="(e) PSS memory (process + descendants), MB")
        for col in ("mode", "0 envs", "1 env", "2 envs", "4 envs", "first env", "per extra env"):
            m.add_column(col, justify="right")
        for mode, d in mem.items():
            p = {int(k): v for k, v in d["pss_mb"].items()}
            m.add_row(
                mode,
                *(f"{p[n]:.0f}" for n in (0, 1, 2, 4)),
                f"{d['first_env_mb']:.0f}",
                f"{d['per_additional_env_mb']:.1f}",
            )
        if peer:
            p = {int(k): v for k, v in peer["memory"]["pss_mb"].items()}
            m.add_row(
                "BrowserGym",
                *(f"{p[n]:.0f}" for n in (0, 1, 2)),
                "-",
                f"{peer['memory']['first_env_mb']:.0f}",
                f"{peer['memory']['per_additional_env_mb']:.1f}",
            )
        con.print(m)

    checks: list[tuple[str, bool | None, str]] = []
    ratio = br["steps"][LINK]["median_s"] / floor["steps"][LINK]["median_s"]
    checks.append(
        (
            f"browser link-click step <= {TARGET_FLOOR_RATIO}x raw floor",
            ratio <= TARGET_FLOOR_RATIO,
            f"{ratio:.2f}x",
        )
    )
    cpu_ratio = _ratio(b_cpu.get(LINK), f_cpu.get(LINK), "mean_s")
    if cpu_ratio is not None:
        checks.append(
            (
                f"CPU-s per browser link-click step <= {TARGET_FLOOR_CPU_RATIO}x raw floor",
                cpu_ratio <= TARGET_FLOOR_CPU_RATIO,
                f"{cpu_ratio:.2f}x ({_cpu_ms(b_cpu[LINK])} vs {_cpu_ms(f_cpu[LINK])} ms, mean)",
            )
        )
    mix_f = _mix_median(floor, br)
    if mix_f:
        checks.append(
            ("  (info) browser episode mix vs floor on the same mix", None, f"{mix_f:.2f}x")
        )
    mix_cpu = _mix_median(floor, br, part="steps_cpu_s", stat="mean_s")
    if mix_cpu:
        checks.append(("  (info) the same, CPU-s (mean per kind)", None, f"{mix_cpu:.2f}x"))
    if peer:
        d = peer["default"]
        sp_r = d["reset"]["median_s"] / br["reset"]["median_s"]
        sp_s = d["step"]["median_s"] / br["all"]["median_s"]
        sp_l = d["step"]["median_s"] / br["steps"][LINK]["median_s"]
        checks.append(
            (
                f"reset >= {TARGET_PEER_SPEEDUP:.0f}x faster than BrowserGym default",
                sp_r >= TARGET_PEER_SPEEDUP,
                f"{sp_r:.2f}x",
            )
        )
        checks.append(
            (
                f"step (all kinds) >= {TARGET_PEER_SPEEDUP:.0f}x faster than BrowserGym default",
                sp_s >= TARGET_PEER_SPEEDUP,
                f"{sp_s:.2f}x",
            )
        )
        checks.append(("  (info) link-click step vs BrowserGym default", None, f"{sp_l:.2f}x"))
        nd = peer["no_delay"]["step"]["median_s"] / br["all"]["median_s"]
        checks.append(("  (info) step vs BrowserGym with delay 0", None, f"{nd:.2f}x"))
    else:
        checks.append(("speed-up over BrowserGym", None, "SKIPPED (no peer run)"))
    checks.append(
        (
            f"text mode >= {TARGET_TEXT_SPS:.0f} steps/s on one core",
            tx["steps_per_s"] >= TARGET_TEXT_SPS,
            f"{tx['steps_per_s']:.0f} steps/s",
        )
    )
    if mem:
        per_env = mem["browser"]["per_additional_env_mb"]
        checks.append(
            (
                f"additional browser env <= {TARGET_BROWSER_ENV_MB:.0f} MB PSS",
                per_env <= TARGET_BROWSER_ENV_MB,
                f"{per_env:.1f} MB",
            )
        )
        shared = mem["browser (shared_context=True)"]["per_additional_env_mb"]
        checks.append(
            (
                f"  same with shared_context=True <= {TARGET_BROWSER_ENV_MB:.0f} MB PSS",
                shared <= TARGET_BROWSER_ENV_MB,
                f"{shared:.1f} MB",
            )
        )
    else:
        checks.append(("PSS per additional browser env", None, "SKIPPED (no memory run)"))
    c = Table(title="Targets")
    for col in ("target", "result", "measured"):
        c.add_column(col)
    failed = 0
    for name, ok, measured in checks:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        failed += ok is False
        style = {"PASS": "green", "FAIL": "bold red"}.get(verdict, "")
        c.add_row(name, f"[{style}]{verdict}[/]" if style else verdict, measured)
    con.print(c)

    bd = br.get("breakdown_ms_per_step", {})
    if bd:
        b = Table(title="Browser step breakdown, ms per step (mean; nested rows overlap)")
        b.add_column("part")
        kinds = [k for k in KINDS if k in bd]
        for k in kinds:
            b.add_column(f"{k} (n={br['steps'][k]['n']})", justify="right")
        labels = sorted(
            {lab for k in kinds for lab in bd[k]} - {"step (total)"},
            key=lambda lab: -max(bd[k].get(lab, 0) for k in kinds),
        )
        for lab in ["step (total)", *labels]:
            b.add_row(lab, *(f"{bd[k].get(lab, 0.0):.1f}" for k in kinds))
        con.print(b)
    for name, d in (("browser", br), ("text", tx)):
        for e in d.get("errors", []):
            con.print(f"[yellow]{name} action error[/]: {e}")
    if peer:
        for key in ("default", "no_delay"):
            for e in peer[key].get("action_errors", []):
                con.print(f"[yellow]BrowserGym action error[/]: {e}")
        con.print(f"peer versions: {peer['versions']}")
    con.print(f"{failed} target(s) failed" if failed else "all targets passed")
    con.print(
        f"machine at start: {res['machine']}; at end: load avg "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    return failed


def _print_step_cost(con, floor: dict, br: dict) -> None:
    """Per step kind, the browser env's wall time and CPU-seconds beside the floor's."""
    from rich.table import Table

    t = Table(
        title="Step cost per kind, browser env vs raw floor: wall ms (median) and CPU ms (mean, "
        "Python + every Chromium process)"
    )
    columns = ("kind", "n floor", "n browser", "floor wall", "browser wall", "wall ratio")
    columns += ("floor CPU", "browser CPU", "CPU ratio")
    for col in columns:
        t.add_column(col, justify="left" if col == "kind" else "right")
    rows = [("reset", floor["reset"], br["reset"], floor["reset_cpu_s"], br["reset_cpu_s"])]
    rows += [
        (k, floor["steps"][k], br["steps"][k], floor["steps_cpu_s"][k], br["steps_cpu_s"][k])
        for k in KINDS
    ]
    for kind, fw, bw, fc, bc in rows:
        wall = _ratio(bw, fw, "median_s")
        cpu = _ratio(bc, fc, "mean_s")
        t.add_row(
            kind,
            str(fw.get("n", 0)),
            str(bw.get("n", 0)),
            _ms(fw)[0],
            _ms(bw)[0],
            "-" if wall is None else f"{wall:.2f}x",
            _cpu_ms(fc),
            _cpu_ms(bc),
            "-" if cpu is None else f"{cpu:.2f}x",
        )
    con.print(t)
    con.print(
        f"(one tree_cpu_s read costs {floor['tree_cpu_read_ms']:.2f} ms of Python CPU in the "
        f"floor, {br['tree_cpu_read_ms']:.2f} ms in the browser run; each CPU figure holds "
        "at most one)"
    )


def _mix_median(floor: dict, br: dict, part: str = "steps", stat: str = "median_s") -> float | None:
    """Browser/floor ratio of the count-weighted mean of per-kind medians (the same mix);
    ``part``/``stat`` pick another per-kind figure (``steps_cpu_s``/``mean_s``: CPU-seconds)."""
    num = den = 0.0
    for k in KINDS:
        n = br["steps"][k]["n"]
        if n and floor["steps"][k]["n"]:
            num += n * br[part][k][stat]
            den += n * floor[part][k][stat]
    return num / den if den else None


def machine() -> str:
    import platform

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load avg {load}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="WebGym env speed/memory vs floor and BrowserGym")
    ap.add_argument("--steps", type=int, default=60, help="timed browser steps (and floor)")
    ap.add_argument("--text-steps", type=int, default=0, help="timed text steps (default 10x)")
    ap.add_argument("--peer-resets", type=int, default=6)
    ap.add_argument("--skip-peer", action="store_true", help="do not run BrowserGym")
    ap.add_argument("--setup-peer", action="store_true", help="create the peer venv if missing")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--skip-memory", action="store_true", help="do not run (e)")
    ap.add_argument("--skip-concurrency", action="store_true", help="do not run (f)")
    ap.add_argument("--concurrency-steps", type=int, default=24, help="(f) steps per session")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--pin-core", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.pin_core:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print("WORKER_JSON " + json.dumps(worker(args.worker, args.steps)))
        return 0

    res: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    res["load_avg_start"] = os.getloadavg()
    print(f"{res['date']}  {res['machine']}", flush=True)
    print("(a) raw Playwright floor ...", flush=True)
    res["floor"] = run_floor(args.steps)
    print("(b) browser env ...", flush=True)
    res["browser"] = run_env("browser", args.steps, breakdown=True)
    print("(c) text env on one core ...", flush=True)
    res["text"] = run_worker("text-speed", args.text_steps or 10 * args.steps, one_core=True)
    if not args.skip_memory:
        print("(e) memory ...", flush=True)
        res["memory"] = {
            "floor (raw contexts)": run_worker("mem-floor", 0),
            "browser": run_worker("mem-browser", 0),
            "browser (shared_context=True)": run_worker("mem-browser-shared", 0),
            "text": run_worker("mem-text", 0),
        }
    if not args.skip_peer:
        print("(d) BrowserGym peer ...", flush=True)
        if args.setup_peer:
            setup_peer()
        res["peer"] = run_peer(args.peer_resets)
    res["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    report(res, args.steps)
    if not args.skip_concurrency:  # (f), its own tables: benchmarks/perf/async_bench.py
        print("(f) concurrent async sessions in one process ...", flush=True)
        cmd = [sys.executable, "-m", "webgym_benchmarks.perf.async_bench"]
        subprocess.run([*cmd, "--steps", str(args.concurrency_steps)], cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
