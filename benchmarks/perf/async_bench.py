"""Many sessions in one process: aggregate browser throughput and PSS of ``AsyncShoppingEnv``.

    python -m benchmarks.perf.async_bench [--steps 24]     # also section (f) of env_bench.py

In one run, on the same machine:

- throughput: the episode of ``env_bench`` (search, pages, item, options, noop, tab, Buy Now)
  played by 1, 2, 4 and 8 concurrent async browser sessions on one event loop and one Chromium
  (a context each), ``--steps`` timed steps per session after a warm-up episode; aggregate
  steps/s = all sessions' steps / wall time. Against it, one sync ``WebGym-Shopping-v0`` env
  playing the same steps.
- memory: PSS (process + descendants) after a reset of 1, 2 and 4 async sessions, per additional
  session = (PSS(4) - PSS(1)) / 3, each in a fresh subprocess, with a context per session and
  with one shared context; against it the raw Playwright cost of one more context
  (``env_bench.run_memory_floor``) and one more sync env, measured in the same run.
- where the time goes: the share of the wall time the event loop's thread spends in Python
  (observation, effect, JSON) vs waiting on Chromium, from the process CPU time.

Targets (printed with PASS/FAIL): 4 sessions >= 1.6x one session's throughput; each additional
session's PSS (a context each) <= 1.1x the raw cost of one more context.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from benchmarks.perf.env_bench import (
    EPISODE,
    _env_action,
    pss_mb,
    run_worker,
    test_goals,
)

CONCURRENCY = (1, 2, 4, 8)
TARGET_SPEEDUP_4 = 1.6
TARGET_MEM_RATIO = 1.1


async def _session_steps(env, goals: list[dict], steps: int, counts: list[int]) -> None:
    """Play episodes of ``goals`` (cycling) until ``steps`` steps are done."""
    done, i = 0, 0
    while done < steps:
        goal = goals[i % len(goals)]
        i += 1
        obs, _ = await env.reset(options={"task_id": goal["task_id"]})
        for kind, bid in EPISODE:
            action = _env_action(kind, bid, goal, obs)
            if action is None:
                continue
            obs, _, terminated, truncated, _ = await env.step(action)
            done += 1
            counts[0] += 1
            if terminated or truncated or done >= steps:
                break


async def run_async_throughput(n: int, steps: int, **env_kwargs) -> dict:
    import webgym

    goals = test_goals(8 + n)
    envs = [webgym.AsyncShoppingEnv(mode="browser", **env_kwargs) for _ in range(n)]
    try:
        warm = [0]
        await asyncio.gather(
            *(_session_steps(env, goals[k:], len(EPISODE), warm) for k, env in enumerate(envs))
        )
        counts = [0]
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(
            *(_session_steps(env, goals[k + 1 :], steps, counts) for k, env in enumerate(envs))
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))
    return {
        "n": n,
        "steps": counts[0],
        "wall_s": wall,
        "steps_per_s": counts[0] / wall,
        "python_cpu_share": cpu / wall,
    }


def run_sync_throughput(steps: int) -> dict:
    import gymnasium as gym

    import webgym  # noqa: F401 - registers the ids

    goals = test_goals(9)
    env = gym.make("WebGym-Shopping-v0").unwrapped
    try:

        def play(goal_list, budget):
            done, i = 0, 0
            while done < budget:
                goal = goal_list[i % len(goal_list)]
                i += 1
                obs, _ = env.reset(options={"task_id": goal["task_id"]})
                for kind, bid in EPISODE:
                    action = _env_action(kind, bid, goal, obs)
                    if action is None:
                        continue
                    obs, _, terminated, truncated, _ = env.step(action)
                    done += 1
                    if terminated or truncated or done >= budget:
                        break
            return done

        play(goals, len(EPISODE))
        cpu0, t0 = time.process_time(), time.perf_counter()
        n = play(goals[1:], steps)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        env.close()
    return {
        "n": 1,
        "steps": n,
        "wall_s": wall,
        "steps_per_s": n / wall,
        "python_cpu_share": cpu / wall,
    }


async def run_async_memory(shared_context: bool) -> dict:
    import webgym

    goals = test_goals(4)
    envs, pss = [], {0: pss_mb()}
    try:
        for n in (1, 2, 4):
            while len(envs) < n:
                env = webgym.AsyncShoppingEnv(mode="browser", shared_context=shared_context)
                await env.reset(options={"task_id": goals[len(envs)]["task_id"]})
                envs.append(env)
            await asyncio.sleep(0.5)
            pss[n] = pss_mb()
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))
    return {
        "pss_mb": pss,
        "first_env_mb": pss[1] - pss[0],
        "per_additional_env_mb": (pss[4] - pss[1]) / 3,
    }


def worker(name: str, steps: int) -> dict:
    if name == "async-speed":
        out = {"sync": run_sync_throughput(steps)}
        for n in CONCURRENCY:
            out[str(n)] = asyncio.run(run_async_throughput(n, steps))
        # Where the time goes: the same without screenshots (Chromium's capture + JPEG encode).
        for n in (1, 4):
            out[f"{n} no-pixels"] = asyncio.run(run_async_throughput(n, steps, screenshot=False))
        return out
    if name == "mem-async":
        return asyncio.run(run_async_memory(False))
    if name == "mem-async-shared":
        return asyncio.run(run_async_memory(True))
    raise ValueError(name)


def measure(steps: int) -> dict:
    """Everything of this benchmark, each part in a fresh subprocess, in one run."""
    return {
        "speed": run_worker("async-speed", steps, module="benchmarks.perf.async_bench"),
        "memory": {
            "floor (raw contexts)": run_worker("mem-floor", 0),
            "sync env": run_worker("mem-browser", 0),
            "async, a context each": run_worker(
                "mem-async", 0, module="benchmarks.perf.async_bench"
            ),
            "async, one shared context": run_worker(
                "mem-async-shared", 0, module="benchmarks.perf.async_bench"
            ),
        },
    }


def report(res: dict, con=None) -> int:
    from rich.console import Console
    from rich.table import Table

    con = con or Console(width=120)
    speed, mem = res["speed"], res["memory"]
    one = speed["1"]["steps_per_s"]
    t = Table(title="(f) concurrent sessions in one process: aggregate browser steps/s")
    for col in ("sessions", "steps", "wall s", "steps/s", "vs 1 async", "vs sync", "loop CPU"):
        t.add_column(col, justify="right")
    rows = [("1 sync env", speed["sync"])] + [(f"{n} async", speed[str(n)]) for n in CONCURRENCY]
    rows += [
        (f"{n} async, screenshot=False", speed[f"{n} no-pixels"])
        for n in (1, 4)
        if f"{n} no-pixels" in speed
    ]
    for name, d in rows:
        t.add_row(
            name,
            str(d["steps"]),
            f"{d['wall_s']:.1f}",
            f"{d['steps_per_s']:.2f}",
            f"{d['steps_per_s'] / one:.2f}x",
            f"{d['steps_per_s'] / speed['sync']['steps_per_s']:.2f}x",
            f"{100 * d['python_cpu_share']:.0f}%",
        )
    con.print(t)
    m = Table(title="(f) PSS per additional session, MB")
    for col in ("what", "1", "2", "4", "per additional"):
        m.add_column(col, justify="right")
    for name, d in mem.items():
        p = {int(k): v for k, v in d["pss_mb"].items()}
        m.add_row(name, *(f"{p[n]:.0f}" for n in (1, 2, 4)), f"{d['per_additional_env_mb']:.1f}")
    con.print(m)
    raw = mem["floor (raw contexts)"]["per_additional_env_mb"]
    per = mem["async, a context each"]["per_additional_env_mb"]
    speedup = speed["4"]["steps_per_s"] / one
    checks = [
        (
            f"4 sessions >= {TARGET_SPEEDUP_4}x one session",
            speedup >= TARGET_SPEEDUP_4,
            f"{speedup:.2f}x",
        ),
        (
            f"per additional session (a context each) <= {TARGET_MEM_RATIO}x raw context",
            per <= TARGET_MEM_RATIO * raw,
            f"{per:.1f} MB vs raw {raw:.1f} MB ({per / raw:.2f}x)",
        ),
    ]
    failed = 0
    for name, ok, measured in checks:
        failed += not ok
        con.print(f"{'PASS' if ok else 'FAIL'}  {name}: {measured}")
    con.print(f"load avg at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="AsyncShoppingEnv: N sessions in one process")
    ap.add_argument("--steps", type=int, default=24, help="timed steps per session")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("WORKER_JSON " + json.dumps(worker(args.worker, args.steps)))
        return 0
    print(f"load avg at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    res = measure(args.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
