"""The agent layer: the agent protocol, its registry and the baselines.

``import agents`` registers the built-in agents, so that ``make_agent("rule")`` works::

    from agents import make_agent, list_agents
    agent = make_agent("random")

Imports ``webgym`` only for observation and action types; never ``benchmarks`` or
``leaderboards``.
"""

from agents.base import (
    Agent,
    AgentInfo,
    UnknownAgentError,
    check_agent,
    list_agents,
    make_agent,
    register_agent,
    unregister_agent,
)
from agents.random_agent import RandomAgent
from agents.rule_agent import RuleAgent


def _make_lm_agent(**kwargs):
    """``lm``: imported on first use, so that ``import agents`` does not load torch."""
    from agents.lm_agent import LMAgent

    return LMAgent(**kwargs)


register_agent(
    "lm",
    _make_lm_agent,
    description=(
        "a language-model policy (checkpoint from LMPolicy.save): constrained choice over the "
        "available actions or free generation"
    ),
    needs_checkpoint=True,
)


def _make_bc_agent(**kwargs):
    """``bc``: the ``lm`` agent on a checkpoint written by the ``bc`` trainer (agents/bc.py)."""
    agent = _make_lm_agent(**kwargs)
    trained_by = agent.policy.metadata.get("trained_by")
    if trained_by != "bc":
        agent.close()
        raise ValueError(
            f"{kwargs.get('checkpoint')} was not trained by bc (trained_by: {trained_by!r}); "
            "play it with --agent lm"
        )
    agent.name = "bc"
    return agent


register_agent(
    "bc",
    _make_bc_agent,
    description="the lm agent on a behaviour-cloning checkpoint (webgym-bench train --agent bc)",
    needs_checkpoint=True,
)

__all__ = [
    "Agent",
    "AgentInfo",
    "RandomAgent",
    "RuleAgent",
    "UnknownAgentError",
    "check_agent",
    "list_agents",
    "make_agent",
    "register_agent",
    "unregister_agent",
]
