"""BrowserGym 0.14.3 MiniWoB peer measurement; runs INSIDE the peer virtualenv, prints JSON.

    benchmarks/perf/.peer/venv/bin/python benchmarks/perf/browsergym_peer.py --resets 6 --steps 12

Normally started by ``webgym_benchmarks.perf.env_bench`` (which sets up the environment variables
below). Measures, on ``browsergym/miniwob.click-button``:

* ``reset()`` and ``step("click('<bid>')")`` with BrowserGym's defaults
  (``pre_observation_delay=0.5`` s, a documented ``BrowserEnv`` argument), and again with
  ``pre_observation_delay=0``;
* PSS (MB) of this process and all its descendants with 1 and with 2 live environments, each
  after a reset; the difference is the cost of one additional environment.

Needs ``MINIWOB_URL`` (``file:///.../miniwob/html/miniwob/``) and ``PLAYWRIGHT_BROWSERS_PATH``
pointing at a folder whose ``chromium-1117/chrome-linux/chrome`` is the system Chromium:
BrowserGym launches its browsers (the task page and a chat window, two per environment)
without an executable path. Playwright adds ``--no-sandbox`` itself (its ``chromiumSandbox``
launch option is off by default), so running as root needs no ``pw_chromium_kwargs``.
Imports nothing from webgym (it is not installed in the peer virtualenv).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

TASK = "browsergym/miniwob.click-button"
_BUTTON_BIDS_JS = """() => Array.from(document.querySelectorAll('button[bid]'))
  .filter((b) => b.getClientRects().length > 0).map((b) => b.getAttribute('bid'))"""


def _pss_mb() -> float:
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            pass
    return total / 2**20


def _quantiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return {"n": len(xs), "median_s": statistics.median(xs), "p90_s": p90}


def _click_action(env) -> str:
    bids = env.unwrapped.page.evaluate(_BUTTON_BIDS_JS)
    if not bids:
        return "noop()"
    return f"click('{bids[0]}')"


def measure(delay: float | None, resets: int, steps_per_reset: int) -> dict:
    import browsergym.miniwob  # noqa: F401 - registers the tasks
    import gymnasium as gym

    kwargs = {} if delay is None else {"pre_observation_delay": delay}
    env = gym.make(TASK, **kwargs)
    reset_s, step_s, errors = [], [], []
    try:
        env.reset(seed=0)  # warm-up: first browser launch, page cache
        for i in range(resets):
            t0 = time.perf_counter()
            env.reset(seed=i + 1)
            reset_s.append(time.perf_counter() - t0)
            for _ in range(steps_per_reset):
                action = _click_action(env)
                t0 = time.perf_counter()
                obs, *_ = env.step(action)
                step_s.append(time.perf_counter() - t0)
                if obs.get("last_action_error"):
                    errors.append(obs["last_action_error"][:200])
    finally:
        env.close()
    return {
        "pre_observation_delay": 0.5 if delay is None else delay,
        "reset": _quantiles(reset_s),
        "step": _quantiles(step_s),
        "action_errors": errors[:3],
    }


def measure_memory() -> dict:
    import browsergym.miniwob  # noqa: F401
    import gymnasium as gym

    envs, pss = [], {}
    try:
        pss[0] = _pss_mb()
        for n in (1, 2):
            env = gym.make(TASK)
            env.reset(seed=n)
            envs.append(env)
            time.sleep(0.5)
            pss[n] = _pss_mb()
    finally:
        for env in envs:
            env.close()
    return {
        "pss_mb": pss,
        "first_env_mb": pss[1] - pss[0],
        "per_additional_env_mb": pss[2] - pss[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resets", type=int, default=6)
    ap.add_argument("--steps-per-reset", type=int, default=2)
    args = ap.parse_args()
    from importlib.metadata import version

    out = {
        "task": TASK,
        "versions": {
            "browsergym-core": version("browsergym-core"),
            "browsergym-miniwob": version("browsergym-miniwob"),
            "miniwob": version("miniwob"),
            "playwright": version("playwright"),
            "python": sys.version.split()[0],
        },
        "default": measure(None, args.resets, args.steps_per_reset),
        "no_delay": measure(0.0, args.resets, args.steps_per_reset),
        "memory": measure_memory(),
    }
    print("BROWSERGYM_PEER_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
