"""The scorer policy reads the pages as it did when its checkpoints were trained.

``webgym_agents.policies.scorer_policy.state_text`` and ``candidates`` parse the observation's text
and accessibility tree; a trained checkpoint's results depend on what they return. Over real
text-mode episodes (the rule agent on validation tasks, and the rule agent mixed with seeded
random clicks so that sub-pages and back-navigation are visited too) both must give what they
gave before the shop wrote element ids on inert elements (``scorer_inputs_before.json``,
captured from the code of that time by ``python -m tests.agents.policies.test_scorer_inputs
--capture``), except for the one deliberate change since: options whose choice changes nothing
are not offered.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import webgym  # noqa: F401 - registers the environments
from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.policies.scorer_policy import FEATURES, N_FEATURES_V1, candidates, state_text
from webgym_agents.scripted.rule_agent import RuleAgent

FIXTURE = Path(__file__).with_name("scorer_inputs_before.json")
RULE_TASKS = [f"validation-{i:04d}" for i in range(5)]
MIXED_TASKS = [f"validation-{i:04d}" for i in range(5, 13)]
EPS = 0.4


def scorer_inputs(env, task_id: str, eps: float, seed: int) -> list[dict[str, Any]]:
    """One episode's ``state_text`` and ``candidates`` at every observation."""
    rng = random.Random(seed)
    agent = RuleAgent()
    obs, _ = env.reset(options={"task_id": task_id})
    agent.reset(obs["goal"], seed=seed)
    out = []
    done = False
    while True:
        c = candidates(obs, MAX_EPISODE_STEPS)
        out.append(
            {
                "url": obs["url"],
                "state": state_text(obs, MAX_EPISODE_STEPS),
                "actions": c.actions,
                "texts": c.texts,
                "features": c.features,
            }
        )
        if done:
            return out
        if obs["available_actions"] and rng.random() < eps:
            action = rng.choice(list(obs["available_actions"]))
        else:
            action = agent.act(obs)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated


def collect() -> dict[str, list[dict[str, Any]]]:
    env = gym.make("WebGym-ShoppingText-v0", split="validation")
    try:
        out = {}
        for task in RULE_TASKS:
            out[f"rule:{task}"] = scorer_inputs(env, task, 0.0, 0)
        for i, task in enumerate(MIXED_TASKS):
            out[f"mixed:{task}"] = scorer_inputs(env, task, EPS, i)
        return out
    finally:
        env.close()


@pytest.fixture(scope="module")
def now() -> dict[str, list[dict[str, Any]]]:
    return collect()


def test_the_fixture_covers_every_page_kind():
    before = json.loads(FIXTURE.read_text())
    kinds = {s["state"].split(" | ")[1].split(",")[0] for ep in before.values() for s in ep}
    assert {"search page", "results page", "item page", "item detail page"} <= kinds


def offered_now(step: dict[str, Any]) -> list[int]:
    """The indices of a captured step's candidates that are still offered: every one but the
    options no longer offered (the chosen value; in a dimension with a chosen value, a value
    the instruction does not name), read from the captured ``selected``/``goal_overlap``."""
    option, selected, named = (FEATURES.index(k) for k in ("option", "selected", "goal_overlap"))
    dimension = lambda a: a.rsplit("_", 1)[0]  # noqa: E731 - click('opt_1_0') -> click('opt_1
    decided = {
        dimension(a)
        for a, f in zip(step["actions"], step["features"], strict=True)
        if f[option] and f[selected]
    }
    return [
        k
        for k, (a, f) in enumerate(zip(step["actions"], step["features"], strict=True))
        if not f[option] or not (f[selected] or (dimension(a) in decided and not f[named]))
    ]


def test_state_text_and_candidates_are_what_they_were(now):
    before = json.loads(FIXTURE.read_text())
    assert list(now) == list(before)
    removed = 0
    for key, steps in before.items():
        assert len(now[key]) == len(steps), key
        for i, (was, got) in enumerate(zip(steps, now[key], strict=True)):
            assert got["url"] == was["url"] and got["state"] == was["state"], (key, i)
            keep = offered_now(was)
            removed += len(was["actions"]) - len(keep)
            for field in ("actions", "texts", "features"):
                was[field] = [was[field][k] for k in keep]
            for field in ("actions", "texts"):
                assert got[field] == was[field], (key, i, field)
            # the features a checkpoint of that time was trained on are unchanged; the ones
            # added since (visited, buy/back mismatch) are appended after them
            old = [f[:N_FEATURES_V1] for f in got["features"]]
            assert old == [f[:N_FEATURES_V1] for f in was["features"]], (key, i, "features")
    assert removed > 0  # the episodes do choose options, so the rule above was exercised


if __name__ == "__main__" and "--capture" in sys.argv:
    episodes = collect()
    lines = ",\n".join(
        f"{json.dumps(k)}: [\n"
        + ",\n".join(json.dumps(s, separators=(",", ":")) for s in v)
        + "\n]"
        for k, v in episodes.items()
    )
    FIXTURE.write_text("{\n" + lines + "\n}\n")  # one line per step: readable diffs
    print(f"wrote {FIXTURE}")
