"""The environment plays the ``ood`` split: ``gym.make(..., split="ood")`` opens the embedded
catalog's ood companion (no catalog file named), and a named catalog without it is refused."""

from __future__ import annotations

import gymnasium as gym
import pytest

import webgym  # noqa: F401 - registers the ids
from webgym.shop.catalog import default_catalog, ood_catalog
from webgym_agents.scripted.rule_agent import RuleAgent


@pytest.fixture(autouse=True)
def _no_catalog_file(monkeypatch):
    monkeypatch.delenv("WEBGYM_CATALOG", raising=False)


def test_text_env_plays_ood_episodes_to_a_purchase():
    split = ood_catalog().split("ood")
    env = gym.make("WebGym-ShoppingText-v0", split="ood")
    try:
        assert env.unwrapped.split_hash == split.hash
        assert env.unwrapped.task_ids == split.task_ids
        for task_id in ("ood-0000", "ood-0001"):
            goal = split.task(task_id)
            obs, info = env.reset(seed=0, options={"task_id": task_id})
            assert obs["goal"] == goal["instruction_text"]
            agent = RuleAgent()
            agent.reset(obs["goal"], seed=0)
            terminated = truncated = False
            while not (terminated or truncated):
                obs, reward, terminated, truncated, info = env.step(agent.act(obs))
            assert terminated and 0.0 < reward <= 1.0, (task_id, reward)
            assert info["split"] == "ood" and info["split_hash"] == split.hash
            assert info["purchased_asin"] not in default_catalog()  # an ood product
        _, info = env.reset(seed=3)  # a task drawn from the split
        assert info["task_id"].startswith("ood-") and info["split"] == "ood"
    finally:
        env.close()


def test_a_named_catalog_without_the_ood_split_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="no split 'ood'.*ood companion"):
        gym.make("WebGym-ShoppingText-v0", split="ood", catalog=str(default_catalog().path))
