"""What more reading is worth to the scripted ``reader``: its variants on the same tasks.

    python -m webgym_benchmarks.reader_variants [--split validation] [--tasks 250]

The learners reach the reader's level (docs/results.md), so the reader bounds what their
candidates let them read. Each variant changes one thing and is played greedily in the text env
on the split's first ``--tasks`` tasks; the table gives Score, SR and steps an episode:

- ``reader``: the shipped reader (options and price read on the product page);
- ``title-order-K``: among the first K results it would open, the one whose title holds the most
  instruction words first (the attributes a title names);
- ``query-bare`` / ``query-values``: the query without the request words ("i need"), or the
  product clause and the option values without their names ("... dash cam ivory");
- ``attributes-tab-N``: on a product page that fits, while N or more steps are left and the title
  lacks an instruction word, open the Attributes tab, and go back to the results when neither
  the title nor the attributes hold it (the reward counts an attribute as met when the
  product's attributes, title or text hold it).

Everything comes from the observation, as for the reader. Imports the reader and the env only.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections.abc import Callable
from typing import Any

import gymnasium as gym

import webgym  # noqa: F401  (registers the envs)
from webgym_agents.observation import (
    axtree_nodes,
    goal_options,
    goal_without_price,
    product_header,
    result_products,
)
from webgym_agents.policies.scorer_inputs import QUERY_PREFIX_RE
from webgym_agents.scripted.reader_agent import ReaderAgent
from webgym_agents.toolkit.onpolicy import split_task_ids

_WORD_RE = re.compile(r"[a-z0-9]+")
_FILLER = frozenset(
    "i a an the and or of for to in with need want looking am is that it my me some be would "
    "like get buy find please".split()
)


def instruction_words(goal: str) -> set[str]:
    """The content words of the instruction before its options clause."""
    head = " ".join(goal_without_price(goal).lower().split()).split(", with ")[0]
    return set(_WORD_RE.findall(head)) - _FILLER


def words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


class TitleOrder(ReaderAgent):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def open_next(self, obs: dict[str, Any], within: list[str], fresh: list[str]) -> str:
        titles = {f"click('{p.bid}')": p.title for p in result_products(obs)}
        wanted = instruction_words(obs.get("goal") or self.goal)
        pool = (within or fresh)[: self.k]
        return max(pool, key=lambda a: (len(wanted & words(titles.get(a, ""))), -pool.index(a)))


class Query(ReaderAgent):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def query(self, goal: str) -> str:
        core = super().query(goal).lower()
        bare = QUERY_PREFIX_RE.sub("", core).strip()
        if self.kind == "bare":
            return bare
        return " ".join([bare.split(", with ")[0]] + [v for _, v in goal_options(goal)])


class AttributesTab(ReaderAgent):
    def __init__(self, min_steps_left: int) -> None:
        super().__init__()
        self.min_steps_left = min_steps_left

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self._read: set[str] = set()  # products whose attributes were read and hold every word
        self._leave = False  # the attributes lacked a word: back to the results

    def _choose(self, obs: dict[str, Any]) -> str:
        actions = obs["available_actions"]
        steps_left = self.max_steps - int(obs.get("step", 0) or 0)
        header = product_header(obs)
        wanted = instruction_words(obs.get("goal") or self.goal)
        nodes = axtree_nodes(obs)
        if header and any(n.bid == "current_tab" and n.name == "Attributes" for n in nodes):
            listed = " ".join(n.name for n in nodes if (n.bid or "").startswith("attribute_"))
            if wanted <= words(header.title) | words(listed):
                self._read.add(header.title)
            else:
                self._leave = True
            return "click('prev')"  # back to the product page
        choice = super()._choose(obs)
        if header is None or "click('buy_now')" not in actions:
            return choice
        if self._leave:
            self._leave = False
            if steps_left >= 3:  # "< Prev", open another, buy
                return "click('prev')"
        fits = choice != "click('prev')"
        if (
            fits and header.title not in self._read and steps_left >= self.min_steps_left
            and not wanted <= words(header.title) and "click('tab_attributes')" in actions
        ):  # fmt: skip
            return "click('tab_attributes')"
        return choice


VARIANTS: dict[str, Callable[[], ReaderAgent]] = {
    "reader": ReaderAgent,
    "title-order-3": lambda: TitleOrder(3),
    "title-order-10": lambda: TitleOrder(10),
    "query-bare": lambda: Query("bare"),
    "query-values": lambda: Query("values"),
    "attributes-tab-4": lambda: AttributesTab(4),
    "attributes-tab-7": lambda: AttributesTab(7),
    "attributes-tab-10": lambda: AttributesTab(10),
}


def play(make: Callable[[], ReaderAgent], split: str, n_tasks: int) -> dict[str, float]:
    env = gym.make("WebGym-ShoppingText-v0", split=split)
    try:
        rewards, steps = [], []
        for task_id in split_task_ids(split)[:n_tasks]:
            obs, _ = env.reset(options={"task_id": task_id})
            agent = make()
            agent.reset(obs["goal"])
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                done = terminated or truncated
            rewards.append(float(reward))
            steps.append(int(obs["step"]))
    finally:
        env.close()
    return {
        "score": 100 * statistics.mean(rewards),
        "sr": 100 * sum(r == 1.0 for r in rewards) / len(rewards),
        "steps": statistics.mean(steps),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="validation")
    parser.add_argument("--tasks", type=int, default=250)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    print(f"{'variant':<18} {'Score':>6} {'SR %':>6} {'steps':>6}   ({args.split}, {args.tasks})")
    for name in args.variants:
        row = play(VARIANTS[name], args.split, args.tasks)
        print(f"{name:<18} {row['score']:>6.1f} {row['sr']:>6.1f} {row['steps']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
