"""The scripted agents (agents/scripted/) against the real shop in text mode: ``random`` and
``rule``."""

from __future__ import annotations

import re

import pytest

from webgym_agents import Agent, make_agent
from webgym_agents.observation import goal_without_price, has_search_bar, option_groups
from webgym_agents.scripted.rule_agent import RuleAgent

MAX_STEPS = 15
TASKS = [f"test-{i:04d}" for i in range(10)]


def play(env, agent: Agent, task_id: str, seed: int | None = 0):
    """One whole episode: (actions, final reward, terminated, truncated, observations)."""
    obs, _ = env.reset(options={"task_id": task_id})
    agent.reset(obs["goal"], seed=seed)
    actions, observations = [], [obs]
    reward, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        action = agent.act(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
    return actions, reward, terminated, truncated, observations


# ---- random ---------------------------------------------------------------------------------


def test_random_emits_only_available_actions_or_a_search_of_goal_words(env):
    agent = make_agent("random")
    for seed, task in enumerate(TASKS[:4]):
        obs, _ = env.reset(options={"task_id": task})
        agent.reset(obs["goal"], seed=seed)
        goal_words = set(re.findall(r"\w+", goal_without_price(obs["goal"])))
        done = False
        while not done:
            action = agent.act(obs)
            if action.startswith("search["):
                assert has_search_bar(obs)
                assert set(re.findall(r"\w+", action[len("search[") : -1])) <= goal_words
            else:
                assert action in obs["available_actions"]
            obs, _, terminated, truncated, _ = env.step(action)
            assert obs["last_action_error"] == ""
            done = terminated or truncated


def test_random_is_reproducible_from_its_seed(env):
    agent = make_agent("random")
    first = play(env, agent, "test-0001", seed=7)[0]
    again = play(env, agent, "test-0001", seed=7)[0]
    assert first == again and len(first) > 1
    others = [play(env, agent, "test-0001", seed=s)[0] for s in (8, 9, 10)]
    assert any(other != first for other in others)


# ---- rule -----------------------------------------------------------------------------------


def test_rule_plays_whole_episodes_deterministically(env):
    agent = make_agent("rule")
    for task in TASKS:
        actions, reward, terminated, truncated, _ = play(env, agent, task)
        assert terminated and not truncated, (task, actions)
        assert len(actions) <= MAX_STEPS
        assert 0.0 <= reward <= 1.0
        assert actions[0].startswith("search[") and actions[-1] == "click('buy_now')"
        assert play(env, agent, task, seed=123)[:2] == (actions, reward)


def test_rule_chooses_the_options_the_instruction_names(env):
    actions, _, _, _, observations = play(env, make_agent("rule"), "test-0000")
    goal = observations[0]["goal"].casefold()
    item_page = observations[-2]  # the page Buy Now was clicked on
    for group in option_groups(item_page):
        if group.checked is not None:
            assert group.checked.label.casefold() in goal
    assert len(set(actions)) == len(actions)  # never clicks an option twice


def test_rule_buys_the_target_when_it_is_the_first_result(env, catalog):
    rule = RuleAgent()
    rewards = []
    for goal in catalog.split("test").goals[:100]:
        if catalog.search(rule.query(goal["instruction_text"]))[:1] != [goal["asin"]]:
            continue
        actions, reward, terminated, _, _ = play(env, rule, goal["task_id"])
        assert terminated and actions[1] == f"click('item_{goal['asin'].lower()}')"
        rewards.append(reward)
        if len(rewards) == 5:
            break
    if not rewards:
        pytest.skip("no test task has its target as the first result")
    assert max(rewards) == 1.0, rewards


def test_rule_act_batch_equals_act(env):
    obs, _ = env.reset(options={"task_id": "test-0002"})
    rule = make_agent("rule")
    rule.reset(obs["goal"])
    after_search, *_ = env.step(rule.act(obs))
    assert rule.act_batch([obs, after_search]) == [rule.act(obs), rule.act(after_search)]
