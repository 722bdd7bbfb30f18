"""How balanced the action-effect label is under an epsilon-random rule agent, per page type.

    python -m webgym_benchmarks.perf.effect_balance --mode text --episodes 40 --eps 0.3
    python -m webgym_benchmarks.perf.effect_balance --mode browser --episodes 8 --eps 0.3

The behaviour: with probability ``eps`` a click on a uniformly drawn entry of the page's
``clickable_actions`` (interactive and inert targets alike), otherwise the rule agent's action
(``webgym_agents.scripted.rule_agent``). Digi-Q's critic first learns y = 1[d(s, s') >= eps] from
such data,
so the label must not be 1 almost everywhere. Per page type (of the page the action was taken on:
search, results, item, item sub-page, done, other) the script prints the number of steps, the
share with label 1 (all steps, rule steps, random clicks on interactive and on inert targets),
and the share of the page's ``clickable_actions`` that are inert. In browser mode it also counts
inert clicks whose pixel distance is not 0 (a target outside the viewport is scrolled into view
first; a hovered link under the previous mouse position loses its hover).

Episodes are the first ``--episodes`` tasks of ``--split``; the draws come from one generator
seeded by ``--seed``, so a run is reproducible in text mode.

``--digiq``: instead, Digi-Q's own behaviour data, collected by ``webgym_agents.algos.digiq``'s
collection
with the ``cpu`` preset's behaviour (greedy bc, one explored turn per episode, label probes
forked from every visited state) on ``--episodes`` train episodes in ``--mode``; prints the
label-1 share per page type of all labelled rows, of the trajectory rows and of the probes.

    python -m webgym_benchmarks.perf.effect_balance --digiq --mode browser --episodes 48
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from urllib.parse import urlsplit

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import webgym  # noqa: F401 - registers the environments
from webgym.envs import MAX_EPISODE_STEPS, env_id_for_mode
from webgym.shop.catalog import default_catalog
from webgym_agents.scripted.rule_agent import RuleAgent

PAGE_TYPES = ("search", "results", "item", "item sub-page", "done", "other")


def page_type(url: str) -> str:
    """The kind of shop page at ``url`` (``/s/SESSION/...``)."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) == 2 and parts[0] == "s":
        return "search"
    tail = parts[2:]
    if tail == ["search"]:
        return "results"
    if tail == ["done"]:
        return "done"
    if len(tail) == 2 and tail[0] == "item":
        return "item"
    if len(tail) == 3 and tail[0] == "item":
        return "item sub-page"
    return "other"


def measure(mode: str, episodes: int, eps: float, split: str, seed: int) -> dict[str, dict]:
    """Counters per page type (see the module docstring)."""
    tasks = list(default_catalog().split(split).task_ids)[:episodes]
    rng = random.Random(seed)
    env = gym.make(env_id_for_mode(mode), split=split, task_ids=tasks)
    agent = RuleAgent()
    c: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    try:
        for task in tasks:
            obs, _ = env.reset(options={"task_id": task})
            agent.reset(obs["goal"])
            done = False
            while not done:
                kind = page_type(obs["url"])
                clickable, available = obs["clickable_actions"], set(obs["available_actions"])
                n_inert = sum(a not in available for a in clickable)
                c[kind]["targets"] += len(clickable)
                c[kind]["inert_targets"] += n_inert
                if clickable and rng.random() < eps:
                    action = rng.choice(clickable)
                    who = "inert" if action not in available else "interactive"
                else:
                    action, who = agent.act(obs), "rule"
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                effect = info["action_effect"]
                c[kind]["steps"] += 1
                c[kind]["label1"] += effect["label"]
                c[kind][f"{who}_steps"] += 1
                c[kind][f"{who}_label1"] += effect["label"]
                c[kind]["errors"] += bool(obs["last_action_error"])
                if who == "inert" and effect.get("pixel_distance", 0.0) > 0:
                    c[kind]["inert_pixels_moved"] += 1
    finally:
        env.close()
    return {k: dict(c[k]) for k in PAGE_TYPES if k in c}


def measure_digiq(mode: str, episodes: int, seed: int, checkpoint: str) -> dict[str, dict]:
    """Counters per page type of the Digi-Q ``cpu`` preset's collection (``--digiq``)."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from webgym_agents.algos.digiq import PRESETS, collect_offline_data, load_transitions
    from webgym_agents.toolkit.training import TrainRun

    n_envs = 8 if mode == "text" else 2  # browser: one Chromium per env, 2 cores
    cfg = replace(
        PRESETS["cpu"], seed=seed, collect_mode=mode, n_episodes=episodes,
        episodes_per_part=episodes, n_envs=n_envs, behaviour_checkpoint=checkpoint,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        run = TrainRun(Path(tmp) / "run", cfg, trainer="digiq", preset="cpu", show_progress=False)
        frame = load_transitions(collect_offline_data(cfg, run)[0])
    c: dict[str, dict] = {}
    for kind, group in frame.groupby("page_type"):
        probe = group["probe"].to_numpy(bool)
        label = group["effect_label"].to_numpy()
        c[str(kind)] = {
            "rows": len(group),
            "label1": int(label.sum()),
            "steps": int((~probe).sum()),
            "steps_label1": int(label[~probe].sum()),
            "probes": int(probe.sum()),
            "probes_label1": int(label[probe].sum()),
        }
    return c


def report_digiq(figures: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("page type", "labelled rows", "label 1", "trajectory steps: label 1"):
        table.add_column(col, justify="left" if col == "page type" else "right")
    table.add_column("label probes: label 1", justify="right")
    for kind, f in _with_total(figures):
        table.add_row(
            kind,
            str(f["rows"]),
            _share(f["label1"], f["rows"]),
            _share(f["steps_label1"], f["steps"]),
            _share(f["probes_label1"], f["probes"]),
        )
    return table


def _with_total(figures: dict[str, dict]):
    """(page type, counters) for each page type, then ("all", their sums)."""
    total: dict[str, int] = defaultdict(int)
    for kind, f in figures.items():
        for k, v in f.items():
            total[k] += v
        yield kind, f
    yield "all", total


def _share(num: int, den: int) -> str:
    return f"{num / den:.0%} ({num}/{den})" if den else "-"


def report(figures: dict[str, dict], title: str, mode: str) -> Table:
    table = Table(title=title)
    cols = ["page type", "steps", "label 1", "rule: label 1", "random interactive: label 1"]
    cols += ["random inert: label 1", "inert share of clickable_actions"]
    if mode == "browser":
        cols.append("inert clicks, pixels moved")
    for col in cols:
        table.add_column(col, justify="left" if col == "page type" else "right")
    for kind, f in _with_total(figures):
        row = [
            kind,
            str(f.get("steps", 0)),
            _share(f.get("label1", 0), f.get("steps", 0)),
            _share(f.get("rule_label1", 0), f.get("rule_steps", 0)),
            _share(f.get("interactive_label1", 0), f.get("interactive_steps", 0)),
            _share(f.get("inert_label1", 0), f.get("inert_steps", 0)),
            _share(f.get("inert_targets", 0), f.get("targets", 0)),
        ]
        if mode == "browser":
            row.append(_share(f.get("inert_pixels_moved", 0), f.get("inert_steps", 0)))
        table.add_row(*row)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["text", "browser"], default="text")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the counters to this file")
    parser.add_argument("--digiq", action="store_true", help="Digi-Q's cpu-preset collection")
    parser.add_argument("--checkpoint", default="runs/bc-scorer-cpu/checkpoints/latest")
    args = parser.parse_args(argv)
    if args.digiq:
        figures = measure_digiq(args.mode, args.episodes, args.seed, args.checkpoint)
        title = (
            f"action-effect label of Digi-Q's cpu-preset data, {args.mode} mode, "
            f"{args.episodes} train episodes: greedy bc + one explored turn, label probes"
        )
        Console(width=200).print(report_digiq(figures, title))
    else:
        figures = measure(args.mode, args.episodes, args.eps, args.split, args.seed)
        title = (
            f"action-effect label, {args.mode} mode, {args.episodes} {args.split} episodes "
            f"(<= {MAX_EPISODE_STEPS} steps), eps={args.eps}: random click on "
            "clickable_actions, else the rule agent"
        )
        Console(width=200).print(report(figures, title, args.mode))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
