"""The agent layer against the real shop in text mode: the registry, ``random`` and ``rule``."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import webgym  # noqa: F401 - registers the environments
import webgym_agents
from webgym_agents import Agent, AgentInfo, make_agent, register_agent
from webgym_agents.base import list_agents, unregister_agent
from webgym_agents.observation import goal_without_price, has_search_bar, option_groups
from webgym_agents.scripted.rule_agent import RuleAgent

MAX_STEPS = 15
TASKS = [f"test-{i:04d}" for i in range(10)]


@pytest.fixture(scope="module")
def env():
    e = gym.make("WebGym-ShoppingText-v0")
    yield e
    e.close()


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


# ---- registry -------------------------------------------------------------------------------


def test_list_agents_names_the_baselines_with_descriptions():
    infos = {info.name: info for info in list_agents()}
    assert {"random", "rule"} <= set(infos)
    for name in ("random", "rule"):
        assert isinstance(infos[name], AgentInfo)
        assert infos[name].description
        assert infos[name].needs_checkpoint is False


def test_make_agent_builds_the_named_agent():
    assert isinstance(make_agent("random"), webgym_agents.RandomAgent)
    rule = make_agent("rule", choose_options=False)
    assert isinstance(rule, RuleAgent) and rule.choose_options is False
    assert rule.deterministic and not make_agent("random").deterministic


def test_unknown_agent_error_lists_the_valid_names():
    with pytest.raises(KeyError) as err:
        make_agent("rnd")
    message = str(err.value)
    assert "unknown agent 'rnd'" in message
    assert "random" in message and "rule" in message
    with pytest.raises(ValueError):  # the same error is a ValueError too
        make_agent("rnd")


def test_a_checkpoint_for_an_agent_without_weights_is_refused():
    with pytest.raises(ValueError, match="takes no checkpoint"):
        make_agent("rule", checkpoint="model.pt")


def test_an_agent_that_needs_a_checkpoint_gets_it_or_fails_clearly():
    class Loaded(Agent):
        name = "loaded-test"
        needs_checkpoint = True

        def __init__(self, checkpoint: str) -> None:
            super().__init__()
            self.checkpoint = checkpoint

        def act(self, observation):
            return "noop()"

    register_agent("loaded-test", Loaded, description="test only", needs_checkpoint=True)
    try:
        with pytest.raises(ValueError, match="needs a checkpoint"):
            make_agent("loaded-test")
        assert make_agent("loaded-test", checkpoint="ckpt/").checkpoint == "ckpt/"
        with pytest.raises(ValueError, match="already registered"):
            register_agent("loaded-test", Loaded, description="again")
        with pytest.raises(ValueError, match="has no ':'"):  # MODULE:FACTORY is no name
            register_agent("loaded:test", Loaded, description="a spec")
    finally:
        unregister_agent("loaded-test")


def test_register_agent_works_as_a_decorator():
    @register_agent("decorated-test", description="test only")
    class Decorated(Agent):
        def act(self, observation):
            return "noop()"

    try:
        assert isinstance(make_agent("decorated-test"), Decorated)
        assert make_agent("decorated-test").act_batch([{}, {}]) == ["noop()", "noop()"]
    finally:
        unregister_agent("decorated-test")


# ---- reading observations ---------------------------------------------------------------------


def test_observation_helpers_read_the_search_and_item_pages(env):
    obs, _ = env.reset(options={"task_id": "test-0000"})
    assert has_search_bar(obs) and option_groups(obs) == []
    obs, *_ = env.step(f"search[{goal_without_price(obs['goal'])}]")
    assert not has_search_bar(obs)
    first = next(a for a in obs["available_actions"] if a.startswith("click('item_"))
    obs, *_ = env.step(first)
    groups = option_groups(obs)
    assert groups and all(g.options for g in groups)
    radios = [o.bid for g in groups for o in g.options]
    assert all(f"click({bid!r})" in obs["available_actions"] for bid in radios)
    assert not any(o.checked for g in groups for o in g.options)
    obs, *_ = env.step(f"click({groups[0].options[-1].bid!r})")
    assert option_groups(obs)[0].checked.bid == groups[0].options[-1].bid
    # without the axtree the same facts come from the html
    assert option_groups({**obs, "axtree": ""}) == option_groups(obs)


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
