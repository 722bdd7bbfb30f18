"""Measure d(s, s') for kinds of actions over real episodes, to justify the effect thresholds.

    python -m webgym_benchmarks.perf.effect_thresholds [--tasks 12]

For each test task, in the browser env: a no-op, a failing action (unknown id), a search (a
navigation), opening the target item (navigation), choosing each goal option (an option that
changes the page), choosing the same option again (no change), a scroll of the results page,
a sub-page tab and back (navigations). Prints min / median / max of the pixel and text distances
per kind, and how the default thresholds (``webgym.effects.EffectThresholds``) label them.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import webgym  # noqa: F401
from webgym.effects import EffectThresholds
from webgym.shop.catalog import default_catalog

EXPECTED = {
    "noop": 0,
    "failed action": 0,
    "same option again": 0,
    "navigation": 1,
    "option choice": 1,
    "scroll (results)": None,
}


def measure(n_tasks: int) -> dict[str, list[dict]]:
    catalog = default_catalog()
    env = gym.make("WebGym-Shopping-v0")
    seen: dict[str, list[dict]] = defaultdict(list)

    def step(kind: str, action: str) -> dict:
        _, _, _, _, info = env.step(action)
        seen[kind].append(info["action_effect"])
        return info

    goals = [g for g in catalog.split("test").goals if g["goal_options"]][:n_tasks]
    for goal in goals:
        env.reset(options={"task_id": goal["task_id"]})
        step("noop", "noop()")
        step("failed action", "click('no_such_element')")
        step("navigation", f"search[{goal['query']}]")
        step("scroll (results)", "scroll(0, 300)")
        core = env.unwrapped
        core._goto(f"/s/{core.session_id}/item/{goal['asin']}")
        for value in dict(goal["goal_options"]).values():
            step("option choice", f"click[{value}]")
            step("same option again", f"click[{value}]")
        step("navigation", "click('tab_features')")
        step("navigation", "click('prev')")
    env.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    args = parser.parse_args(argv)
    seen = measure(args.tasks)
    eps = EffectThresholds()
    table = Table(
        title=f"action-effect distances, browser mode, 1280x720, {args.tasks} tasks "
        f"(eps: pixel {eps.pixel}, text {eps.text})"
    )
    for col in (
        "kind",
        "n",
        "pixel min / med / max",
        "text min / med / max",
        "label=1",
        "expected",
    ):
        table.add_column(col)
    for kind, effects in seen.items():
        px = [e["pixel_distance"] for e in effects]
        tx = [e["text_distance"] for e in effects]
        ones = sum(e["label"] for e in effects)
        table.add_row(
            kind,
            str(len(effects)),
            f"{min(px):.2f} / {statistics.median(px):.2f} / {max(px):.2f}",
            f"{min(tx):.4f} / {statistics.median(tx):.4f} / {max(tx):.4f}",
            f"{ones}/{len(effects)}",
            {0: "0", 1: "1", None: "-"}[EXPECTED[kind]],
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
