"""The chaos suite: faults a run meets, each checked to end as a message, never as wrong numbers.

    python -m webgym_benchmarks.perf.chaos [--text-actions 10000] [--browser-actions 300] [--fast]

Scenarios (each one row of the printed table: scenario, figures, pass/fail):

- **text fuzz**: ``--text-actions`` fuzzed actions (``fuzz_action``: valid ones from the page,
  and malformed, out-of-range or hostile ones) in text mode; none may end an episode as a
  machine failure (``info["error"]``) and every observation must lie in ``observation_space``.
- **browser fuzz, paired**: ``--browser-actions`` fuzzed actions played in a browser env and a
  text env side by side (the same task and actions; ``mouse_click`` left out, as it exists in
  one mode only); no machine failure, and both modes give the same ``last_action_error`` and
  the same text on every step.
- **slow link**: a link whose page takes 7 s (longer than the click timeout, shorter than the
  navigation timeout) is followed, not cut.
- **browser killed** / **browser hung**: Chromium is SIGKILLed / SIGSTOPped mid-episode; the
  step ends the episode (``truncated``, ``info["error"]``) within the timeouts and the next
  reset works.
- **catalog damaged**: bytes overwritten in a copy of the catalog; it is refused on open with
  the command that rebuilds it; figures: open time with the integrity check.
- **shop bad requests**: nested JSON, a huge body, a bad restored state, a 5,000-digit page
  number: 4xx, never 500; an idle connection is closed.

The fast scenarios are also tests (``tests/webgym/envs/test_chaos_fuzz.py``,
``tests/webgym/shop/``); ``--fast`` runs only those here (no Chromium). Exit status 1 when a
scenario fails.
Imports only ``webgym``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from webgym_benchmarks.perf.chaos_row import Row

# --------------------------------------------------------------------------------------------
# The action fuzzer

_ODD_TEXT = [
    "😀",
    "🐶 dog",
    "\U0001f1fa\U0001f1f8",
    "\u200b\u200d",
    "\u202e reversed",
    "e\u0301\u0301\u0301",
    "東京 café naïve Ω",
    "\x01\x02\x07\x1b[31m",
    "\r\n",
    "\t",
    "\ufeff",
    "\uffff",
    "\ud800",
    "\udfff",
    "\x00",
    "%00%27%ZZ",
    "'; DROP TABLE products; --",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    '"',
    "'",
    "\\",
    "[",
    "]",
    "(",
    ")",
    "AND OR NOT NEAR(",
    "x" * 2000,
    "shampoo " * 300,
]
_NUMBERS = [
    "0",
    "-0",
    "1",
    "-1",
    "300",
    "-300",
    "1.5",
    "1e-320",
    "1e308",
    "-1e308",
    "1e309",
    "100000",
    "100001",
    "9" * 30,
    "9" * 400,
    "9" * 3000,
    "-" + "9" * 3000,
    "0x10",
    "1_000",
    "True",
    "None",
    "nan",
    "inf",
    "float('inf')",
    "1j",
    "10001",
    "5000",
]
_NAMES = [
    "click",
    "fill",
    "select_option",
    "scroll",
    "go_back",
    "noop",
    "send_msg_to_user",
    "mouse_click",
    "clik",
    "__import__",
    "os.system",
    "search",
]


def _odd_string(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(_ODD_TEXT)
    if roll < 0.7:
        return "".join(rng.choice(_ODD_TEXT)[:8] for _ in range(rng.randint(1, 6)))
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 40)))


def _quoted(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.5:
        return repr(text)  # escapes: a lone surrogate arrives as \ud800
    if roll < 0.8:
        return "'" + text + "'"  # raw: may not even be a valid literal
    return '"""' + text + '"""'


def _arg(rng: random.Random, obs: dict[str, Any]) -> str:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(_NUMBERS)
    if roll < 0.6:
        return _quoted(rng, _odd_string(rng))
    if roll < 0.8 and obs.get("available_actions"):  # a real bid of the page
        action = rng.choice(obs["available_actions"])
        return action[action.find("(") + 1 : action.rfind(")")] or "'x'"
    return rng.choice(["*x", "**k", "[1]", "{}", "f()", "a.b", "lambda: 0", "x=1", "bid='1'"])


def fuzz_action(rng: random.Random, obs: dict[str, Any], *, pixels: bool = True) -> Any:
    """One action for a fuzz run: a quarter valid (from the page, so episodes move on), the
    rest malformed, out of range or hostile text. ``pixels=False`` never gives mouse_click."""
    roll = rng.random()
    actions = list(obs.get("available_actions") or ())
    if roll < 0.25 and actions:
        return rng.choice(actions)
    if roll < 0.4:
        return f"search[{_odd_string(rng)}]"
    if roll < 0.45:
        return f"click[{_odd_string(rng)}]"
    if roll < 0.8:
        names = [n for n in _NAMES if pixels or n != "mouse_click"]
        args = ", ".join(_arg(rng, obs) for _ in range(rng.choice([0, 1, 1, 2, 2, 3])))
        text = f"{rng.choice(names)}({args})"
        if rng.random() < 0.1:
            text = rng.choice(["Action: ", "```\n", "`", "  "]) + text + rng.choice(["", "`", "\n"])
        return text
    if roll < 0.97:
        junk = _odd_string(rng)
        return junk if rng.random() < 0.8 else junk * (4001 // max(1, len(junk)) + 1)
    return rng.choice([None, 12, 1.5, b"click('x')", ["noop()"], ""])


# --------------------------------------------------------------------------------------------
# Checking observations


def _text_fields(space: spaces.Dict) -> dict[str, spaces.Space]:
    return {k: s for k, s in space.spaces.items() if isinstance(s, spaces.Text | spaces.Sequence)}


class SpaceChecker:
    """``observation_space.contains`` per field, each distinct value checked once (a full check
    of a 30 kB page costs ~5 ms; fuzzed steps repeat pages)."""

    def __init__(self, space: spaces.Dict) -> None:
        self.space = space
        self._seen: set[tuple[str, int]] = set()

    def outside(self, obs: dict[str, Any]) -> list[str]:
        """The fields of ``obs`` outside the space (empty when it is inside)."""
        bad = []
        if set(obs) != set(self.space.spaces):
            bad.append(f"keys {sorted(set(obs) ^ set(self.space.spaces))}")
        for key, sub in self.space.spaces.items():
            value = obs.get(key)
            if isinstance(sub, spaces.Text | spaces.Sequence):
                stamp = (key, hash(value))
                if stamp in self._seen:
                    continue
                if not sub.contains(value):
                    bad.append(key)
                    continue
                self._seen.add(stamp)
            elif not sub.contains(value):
                bad.append(key)
        return bad


# --------------------------------------------------------------------------------------------
# Fuzz runs


@dataclass
class FuzzResult:
    actions: int = 0
    episodes: int = 0
    invalid: int = 0  # steps reported in last_action_error
    failures: list[tuple[Any, str]] = field(default_factory=list)  # machine failures
    outside: list[tuple[Any, list[str]]] = field(default_factory=list)  # obs outside the space
    raised: list[tuple[Any, str]] = field(default_factory=list)  # step() raised
    mismatches: list[tuple[Any, str]] = field(default_factory=list)  # paired modes disagree
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.failures or self.outside or self.raised or self.mismatches)


def fuzz_env(env: gym.Env, n_actions: int, *, seed: int = 0, pixels: bool = True) -> FuzzResult:
    """Play ``n_actions`` fuzzed actions in ``env`` (episodes reset as they end)."""
    rng = random.Random(seed)
    checker = SpaceChecker(env.observation_space)
    out = FuzzResult()
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    out.episodes = 1
    while out.actions < n_actions:
        action = fuzz_action(rng, obs, pixels=pixels)
        out.actions += 1
        try:
            obs, _reward, terminated, truncated, info = env.step(action)
        except Exception as e:  # noqa: BLE001 - what is counted
            out.raised.append((action, f"{type(e).__name__}: {e}"))
            obs, _ = env.reset()
            out.episodes += 1
            continue
        if info.get("error"):
            out.failures.append((action, str(info["error"])))
        if obs["last_action_error"]:
            out.invalid += 1
        bad = checker.outside(obs)
        if bad:
            out.outside.append((action, bad))
        if terminated or truncated:
            obs, _ = env.reset()
            out.episodes += 1
    out.seconds = time.perf_counter() - t0
    return out


def fuzz_paired(browser: gym.Env, text: gym.Env, n_actions: int, *, seed: int = 0) -> FuzzResult:
    """The same fuzzed actions in both modes, step by step: failures, and disagreements of
    ``last_action_error`` or of the text observation."""
    rng = random.Random(seed)
    checker = SpaceChecker(browser.observation_space)
    out = FuzzResult()
    t0 = time.perf_counter()
    task = browser.unwrapped.task_ids[0]
    obs_b, _ = browser.reset(seed=seed, options={"task_id": task})
    obs_t, _ = text.reset(seed=seed, options={"task_id": task})
    out.episodes = 1
    while out.actions < n_actions:
        action = fuzz_action(rng, obs_t, pixels=False)
        if isinstance(action, str) and action.startswith("noop("):
            action = "noop(50)"  # a wait is a wait: keep the run short
        out.actions += 1
        try:
            obs_b, _, term_b, trunc_b, info_b = browser.step(action)
            obs_t, _, term_t, trunc_t, info_t = text.step(action)
        except Exception as e:  # noqa: BLE001
            out.raised.append((action, f"{type(e).__name__}: {e}"))
            break
        for mode, info in (("browser", info_b), ("text", info_t)):
            if info.get("error"):
                out.failures.append((action, f"{mode}: {info['error']}"))
        if obs_b["last_action_error"]:
            out.invalid += 1
        # the one per-mode difference: a browser's list of expected forms names mouse_click
        err_b, err_t = (
            o["last_action_error"].replace("mouse_click(x, y), ", "") for o in (obs_b, obs_t)
        )
        if err_b != err_t:
            out.mismatches.append(
                (action, f"errors: {obs_b['last_action_error']!r} / {obs_t['last_action_error']!r}")
            )
        elif obs_b["text"] != obs_t["text"]:
            out.mismatches.append((action, "text observations differ"))
        bad = checker.outside(obs_b)
        if bad:
            out.outside.append((action, bad))
        if term_b or trunc_b or term_t or trunc_t or out.mismatches:
            if out.mismatches:
                break  # the episodes have diverged: later steps say nothing more
            obs_b, _ = browser.reset(options={"task_id": task})
            obs_t, _ = text.reset(options={"task_id": task})
            out.episodes += 1
    out.seconds = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------------------------
# The other scenarios


def _fuzz_row(name: str, r: FuzzResult) -> Row:
    figures = (
        f"{r.actions} actions, {r.episodes} episodes, {r.invalid} reported invalid, "
        f"{len(r.failures)} machine failures, {len(r.raised)} raised, "
        f"{len(r.outside)} outside the space"
        + (f", {len(r.mismatches)} mode disagreements" if r.mismatches else "")
        + f"; {1000 * r.seconds / max(1, r.actions):.1f} ms/action"
    )
    for what in (r.failures, r.raised, r.outside, r.mismatches):
        for action, why in what[:3]:
            print(f"  {name}: {str(action)[:80]!r}: {str(why)[:200]}", file=sys.stderr)
    return Row(name, figures, r.ok)


def scenario_text_fuzz(n: int) -> Row:
    env = gym.make("WebGym-ShoppingText-v0")
    try:
        return _fuzz_row("text fuzz", fuzz_env(env, n, seed=13))
    finally:
        env.close()


def scenario_browser_fuzz(n: int) -> Row:
    browser = gym.make("WebGym-Shopping-v0", screenshot=False)
    text = gym.make("WebGym-ShoppingText-v0")
    try:
        return _fuzz_row("browser fuzz, paired with text", fuzz_paired(browser, text, n, seed=13))
    finally:
        browser.close()
        text.close()


SLOW_S = 7.0


class _SlowPages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if self.path == "/slow":
            time.sleep(SLOW_S)
            body = "<!doctype html><html><body><h1>Slow page</h1></body></html>"
        else:
            body = '<!doctype html><html><body><a bid="slow" href="/slow">slow</a></body></html>'
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def slow_link(chromium: str | None = None) -> tuple[bool, float, str]:
    """Follow a link whose page takes ``SLOW_S`` s: (followed, seconds, what happened)."""
    from webgym.actions import parse_action
    from webgym.browser import BrowserConfig, BrowserHost
    from webgym.observe import observe_page

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowPages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    config = BrowserConfig(**({"executable_path": chromium} if chromium else {}))
    host = BrowserHost.acquire(config)
    tab = host.new_tab()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        cap = tab.goto(url + "/")
        (step,) = observe_page(cap.html, cap.url).resolve(parse_action("click('slow')"))
        t0 = time.monotonic()
        try:
            cap = tab.execute(step)
        except Exception as e:  # noqa: BLE001 - the failure being looked for
            return False, time.monotonic() - t0, f"{type(e).__name__}: {e}"
        return "Slow page" in cap.html, time.monotonic() - t0, cap.url
    finally:
        tab.close()
        httpd.shutdown()
        httpd.server_close()


def scenario_slow_link() -> Row:
    ok, seconds, what = slow_link()
    cfg = __import__("webgym.browser", fromlist=["BrowserConfig"]).BrowserConfig()
    return Row(
        f"slow link ({SLOW_S:.0f} s page)",
        f"{'followed' if ok else 'cut'} after {seconds:.1f} s (click timeout "
        f"{cfg.action_timeout_s:.0f} s, navigation {cfg.navigation_timeout_s:.0f} s)"
        + ("" if ok else f": {what[:80]}"),
        ok,
    )


def _browser_fault(name: str, fault: Callable[[int], None], undo: Callable[[int], None]) -> Row:
    env = gym.make("WebGym-Shopping-v0", screenshot=False)
    try:
        env.reset(seed=0)
        host = env.unwrapped._host
        pid = host.pid
        fault(pid)
        t0 = time.monotonic()
        _, _, _, truncated, info = env.step("search[red shoes]")
        ended_s = time.monotonic() - t0
        undo(pid)
        t1 = time.monotonic()
        obs, _ = env.reset(seed=1)
        _, _, _, truncated_after, info_after = env.step("noop()")
        reset_s = time.monotonic() - t1
        ok = truncated and bool(info.get("error")) and not info_after.get("error")
        ok = ok and bool(obs["available_actions"]) and host.pid != pid
        return Row(
            name,
            f"episode ended in {ended_s:.1f} s ({str(info.get('error'))[:50]}); next reset "
            f"in {reset_s:.1f} s on a new Chromium",
            ok,
        )
    finally:
        env.close()


def scenario_browser_killed() -> Row:
    return _browser_fault(
        "browser killed (SIGKILL)", lambda pid: os.kill(pid, signal.SIGKILL), lambda pid: None
    )


def scenario_browser_hung() -> Row:
    def kill_stopped(pid: int) -> None:
        try:  # the relaunch already killed it; a stopped process left over would be ours
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    return _browser_fault(
        "browser hung (SIGSTOP)", lambda pid: os.kill(pid, signal.SIGSTOP), kill_stopped
    )


def corrupt_copy(src: Path, dst: Path, *, offset: int, data: bytes) -> Path:
    """A copy of the catalog file ``src`` at ``dst`` with ``data`` written at ``offset``."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return dst


def scenario_catalog() -> Row:
    from webgym.shop.catalog import Catalog, CatalogDamaged, default_catalog

    src = default_catalog().path
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good.sqlite"
        shutil.copyfile(src, good)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            Catalog(good).close()
            times.append(time.perf_counter() - t0)
        size = good.stat().st_size
        refused = 0
        offsets = [100, size // 3, size // 2, size - 5000]
        for i, offset in enumerate(offsets):
            bad = corrupt_copy(src, Path(tmp) / f"bad{i}.sqlite", offset=offset, data=b"\x5a" * 64)
            try:
                Catalog(bad).close()
            except CatalogDamaged as e:
                refused += "webgym shop build" in str(e)
            except ValueError as e:  # the header itself: not readable as SQLite at all
                refused += "webgym shop build" in str(e)
    return Row(
        "catalog damaged (bytes overwritten in a copy)",
        f"{refused}/{len(offsets)} damaged copies refused with the rebuild command; open "
        f"{1000 * min(times):.1f} ms with the integrity check ({size / 1e6:.0f} MB)",
        refused == len(offsets),
    )


def scenario_shop() -> Row:
    import httpx

    from webgym.shop.server import ShopServer

    checks: list[tuple[str, bool]] = []
    with ShopServer() as shop, httpx.Client(base_url=shop.url, timeout=60) as client:
        nested = "[" * 100_000 + "]" * 100_000
        r = client.post("/api/sessions", content=nested)
        checks.append(("nested JSON", r.status_code == 400))
        r = client.post("/api/sessions", content=b" " * (64 * 1024 * 1024))
        checks.append(("64 MB body", r.status_code == 413))
        for state in ([], {"goal": 1}, {"goal": {}, "history": 5}, {"goal": {}, "options": []}):
            r = client.post("/api/sessions", json={"state": state})
            checks.append((f"state {state}", r.status_code == 400))
        task = client.get("/api/tasks", params={"split": "test"}).json()["task_ids"][0]
        sid = client.post("/api/sessions", json={"task_id": task}).json()["session_id"]
        r = client.get(f"/s/{sid}/search", params={"q": "shoe", "page": "9" * 5000})
        checks.append(("5,000-digit page", r.status_code in (400, 404)))
        idle = _idle_closed(shop.url)
        checks.append(("idle connection closed", idle is not None))
    failed = [name for name, ok in checks if not ok]
    return Row(
        "shop bad requests",
        f"{len(checks) - len(failed)}/{len(checks)} answered 4xx / closed"
        + (f" (idle connection closed after {idle:.0f} s)" if idle is not None else "")
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        not failed,
    )


def _idle_closed(url: str, wait_s: float = 30.0) -> float | None:
    """Seconds until the server closes an idle kept-alive connection, or None."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        t0 = time.monotonic()
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return None
        return time.monotonic() - t0


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-actions", type=int, default=10_000)
    parser.add_argument("--browser-actions", type=int, default=300)
    parser.add_argument("--fast", action="store_true", help="only the scenarios without Chromium")
    args = parser.parse_args(argv)

    import webgym  # noqa: F401 - registers the env ids

    scenarios: list[Callable[[], Row]] = [
        lambda: scenario_text_fuzz(args.text_actions),
        scenario_catalog,
        scenario_shop,
    ]
    if not args.fast:
        scenarios += [
            lambda: scenario_browser_fuzz(args.browser_actions),
            scenario_slow_link,
            scenario_browser_killed,
            scenario_browser_hung,
        ]
    # the attacks on run files, servers and the board (each module's fast ones in CI)
    from webgym_benchmarks.perf import chaos_board, chaos_files, chaos_servers

    scenarios += (
        chaos_files.scenarios() + chaos_servers.scenarios(args.fast) + chaos_board.scenarios()
    )
    from rich.console import Console
    from rich.table import Table

    table = Table(title="WebGym chaos suite")
    for col in ("scenario", "figures", "result"):
        table.add_column(col, overflow="fold")
    rows = []
    for run in scenarios:
        t0 = time.perf_counter()
        try:
            row = run()
        except Exception as e:  # noqa: BLE001 - a scenario that breaks is a failed row
            row = Row(getattr(run, "__name__", "scenario"), f"{type(e).__name__}: {e}", False)
        rows.append(row)
        print(f"{row.scenario}: {'pass' if row.ok else 'FAIL'} ({time.perf_counter() - t0:.0f} s)")
        table.add_row(row.scenario, row.figures, "pass" if row.ok else "[bold red]FAIL[/]")
    Console(width=140).print(table)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
