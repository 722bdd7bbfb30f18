"""The agent layer against the real shop in text mode: the registry and the observation
helpers. (The scripted agents, ``random`` and ``rule``, are tests/agents/scripted/'s.)"""

from __future__ import annotations

import pytest

import webgym_agents
from webgym_agents import Agent, AgentInfo, make_agent, register_agent
from webgym_agents.base import list_agents, unregister_agent
from webgym_agents.observation import goal_without_price, has_search_bar, option_groups
from webgym_agents.scripted.rule_agent import RuleAgent

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
