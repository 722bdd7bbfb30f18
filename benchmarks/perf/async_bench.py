"""Many sessions in one process: aggregate browser throughput and PSS of ``AsyncShoppingEnv``.

    python -m webgym_benchmarks.perf.async_bench [--steps 24]     # also section (f) of env_bench.py

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
  (observation, effect, JSON) vs waiting on Chromium, from the process CPU time; and the CPU a
  step costs: CPU-seconds (user + system) summed over this process and every descendant (the
  Playwright driver, Chromium's browser, renderer, GPU and utility processes; children that
  exited and were reaped inside the tree included) over the timed steps, divided by the steps.
  On C cores no arrangement of sessions can exceed the CPU bound C / (CPU-s per step) steps/s;
  each row prints its bound and the share of it reached, measured in the same run.

Targets (printed with PASS/FAIL): 4 sessions >= 1.6x one session's throughput; 4 sessions reach
>= 90 % of their CPU bound; each additional session's PSS (a context each) <= 1.1x the raw cost
of one more context.

``--steps 12 --concurrency 1,4 --skip-memory`` is a quick run (well under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from webgym_benchmarks.perf.env_bench import (
    EPISODE,
    _env_action,
    memory_figures,
    pss_mb,
    run_worker,
    test_goals,
    tree_cpu_s,
)

CONCURRENCY = (1, 2, 4, 8)
TARGET_SPEEDUP_4 = 1.6
TARGET_BOUND_SHARE_4 = 0.9
TARGET_MEM_RATIO = 1.1


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Meter:
    """Wall time, this process's CPU time and the process tree's CPU time of a timed part."""

    def __enter__(self) -> Meter:
        self.cpu0, self.tree0, self.t0 = time.process_time(), tree_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        self.tree = tree_cpu_s() - self.tree0

    def result(self, n: int, steps: int) -> dict:
        per_step = self.tree / max(steps, 1)
        bound = cores() / per_step if per_step > 0 else float("inf")
        return {
            "n": n,
            "steps": steps,
            "wall_s": self.wall,
            "steps_per_s": steps / self.wall,
            "python_cpu_share": self.cpu / self.wall,
            "tree_cpu_s": self.tree,
            "cpu_s_per_step": per_step,
            "cores_busy": self.tree / self.wall,
            "cores": cores(),
            "cpu_bound_steps_per_s": bound,
            "share_of_bound": (steps / self.wall) / bound,
        }


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
        with Meter() as meter:
            await asyncio.gather(
                *(_session_steps(env, goals[k + 1 :], steps, counts) for k, env in enumerate(envs))
            )
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))
    return meter.result(n, counts[0])


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
        with Meter() as meter:
            n = play(goals[1:], steps)
    finally:
        env.close()
    return meter.result(1, n)


async def run_async_memory(shared_context: bool) -> dict:
    import webgym

    goals = test_goals(4)
    envs, pss, python = [], {0: pss_mb()}, {0: pss_mb(tree=False)}
    try:
        for n in (1, 2, 4):
            while len(envs) < n:
                env = webgym.AsyncShoppingEnv(mode="browser", shared_context=shared_context)
                await env.reset(options={"task_id": goals[len(envs)]["task_id"]})
                envs.append(env)
            await asyncio.sleep(0.5)
            pss[n], python[n] = pss_mb(), pss_mb(tree=False)
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))
    return memory_figures(pss, python)


def worker(name: str, steps: int, concurrency: tuple[int, ...] = CONCURRENCY) -> dict:
    if name == "async-speed":
        out = {"sync": run_sync_throughput(steps)}
        for n in concurrency:
            out[str(n)] = asyncio.run(run_async_throughput(n, steps))
        # Where the time goes: the same without screenshots (Chromium's capture + JPEG encode).
        for n in sorted({1, 4} & set(concurrency)):
            out[f"{n} no-pixels"] = asyncio.run(run_async_throughput(n, steps, screenshot=False))
        return out
    if name == "mem-async":
        return asyncio.run(run_async_memory(False))
    if name == "mem-async-shared":
        return asyncio.run(run_async_memory(True))
    raise ValueError(name)


def measure(steps: int, concurrency: tuple[int, ...] = CONCURRENCY, memory: bool = True) -> dict:
    """Everything of this benchmark, each part in a fresh subprocess, in one run."""
    speed = run_worker(
        "async-speed",
        steps,
        module="webgym_benchmarks.perf.async_bench",
        extra=("--concurrency", ",".join(map(str, concurrency))),
    )
    if not memory:
        return {"speed": speed, "memory": {}}
    return {
        "speed": speed,
        "memory": {
            "floor (raw contexts)": run_worker("mem-floor", 0),
            "sync env": run_worker("mem-browser", 0),
            "async, a context each": run_worker(
                "mem-async", 0, module="webgym_benchmarks.perf.async_bench"
            ),
            "async, one shared context": run_worker(
                "mem-async-shared", 0, module="webgym_benchmarks.perf.async_bench"
            ),
        },
    }


def report(res: dict, con=None) -> int:
    from rich.console import Console
    from rich.table import Table

    con = con or Console(width=170)
    speed, mem = res["speed"], res["memory"]
    one = speed["1"]["steps_per_s"]
    ncores = speed["sync"].get("cores", 0)
    t = Table(
        title="(f) concurrent sessions in one process: aggregate browser steps/s, and the CPU "
        f"bound ({ncores} cores / CPU-s per step, Python + every Chromium process)"
    )
    columns = ("sessions", "steps", "wall s", "steps/s", "vs 1 async", "vs sync", "loop CPU")
    columns += ("CPU-s/step", "cores busy", "CPU bound steps/s", "of bound")
    for col in columns:
        t.add_column(col, justify="right")
    ns = [n for n in CONCURRENCY if str(n) in speed]
    rows = [("1 sync env", speed["sync"])] + [(f"{n} async", speed[str(n)]) for n in ns]
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
            f"{d['cpu_s_per_step']:.3f}",
            f"{d['cores_busy']:.2f}",
            f"{d['cpu_bound_steps_per_s']:.2f}",
            f"{100 * d['share_of_bound']:.0f}%",
        )
    con.print(t)
    checks = []
    if "4" in speed:
        speedup = speed["4"]["steps_per_s"] / one
        share = speed["4"]["share_of_bound"]
        checks += [
            (
                f"4 sessions >= {TARGET_SPEEDUP_4}x one session",
                speedup >= TARGET_SPEEDUP_4,
                f"{speedup:.2f}x",
            ),
            (
                f"4 sessions >= {100 * TARGET_BOUND_SHARE_4:.0f}% of the CPU bound",
                share >= TARGET_BOUND_SHARE_4,
                f"{100 * share:.0f}% of {speed['4']['cpu_bound_steps_per_s']:.2f} steps/s",
            ),
        ]
    if mem:
        checks.append(_memory(mem, con))
    failed = 0
    for name, ok, measured in checks:
        failed += not ok
        con.print(f"{'PASS' if ok else 'FAIL'}  {name}: {measured}")
    con.print(f"load avg at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return failed


def _memory(mem: dict, con) -> tuple[str, bool, str]:
    """Print the PSS table; the per-session memory check."""
    from rich.table import Table

    m = Table(title="(f) PSS per additional session, MB")
    for col in ("what", "1", "2", "4", "per additional", "of it Python"):
        m.add_column(col, justify="right")
    for name, d in mem.items():
        p = {int(k): v for k, v in d["pss_mb"].items()}
        m.add_row(
            name,
            *(f"{p[n]:.0f}" for n in (1, 2, 4)),
            f"{d['per_additional_env_mb']:.1f}",
            f"{d['per_additional_python_mb']:.1f}",
        )
    con.print(m)
    raw = mem["floor (raw contexts)"]["per_additional_env_mb"]
    per = mem["async, a context each"]["per_additional_env_mb"]
    return (
        f"per additional session (a context each) <= {TARGET_MEM_RATIO}x raw context",
        per <= TARGET_MEM_RATIO * raw,
        f"{per:.1f} MB vs raw {raw:.1f} MB ({per / raw:.2f}x)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="AsyncShoppingEnv: N sessions in one process")
    ap.add_argument("--steps", type=int, default=24, help="timed steps per session")
    ap.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCY)),
        help="the numbers of concurrent sessions to time (default 1,2,4,8)",
    )
    ap.add_argument("--skip-memory", action="store_true", help="leave out the PSS part")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    concurrency = tuple(sorted({int(n) for n in args.concurrency.split(",") if n.strip()} | {1}))
    if args.worker:
        out = worker(args.worker, args.steps, concurrency)
        print("WORKER_JSON " + json.dumps(out))
        return 0
    print(f"load avg at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    res = measure(args.steps, concurrency, memory=not args.skip_memory)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
