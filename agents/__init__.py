"""The agent layer: the agent protocol, its registry and the baselines.

``import webgym_agents`` registers the built-in agents, so that ``make_agent("rule")`` works::

    from webgym_agents import make_agent, list_agents
    agent = make_agent("random")

Imports ``webgym`` only for observation and action types; never ``webgym_benchmarks`` or
``webgym_leaderboards``.
"""

from webgym_agents.base import (
    ENTRY_POINT_GROUP,
    Agent,
    AgentInfo,
    AgentLoadError,
    UnknownAgentError,
    add_agent_loader,
    agent_source,
    check_agent,
    is_agent_spec,
    list_agents,
    make_agent,
    register_agent,
    unregister_agent,
)
from webgym_agents.scripted.random_agent import RandomAgent
from webgym_agents.scripted.reader_agent import ReaderAgent
from webgym_agents.scripted.rule_agent import RuleAgent
from webgym_agents.trained import load_trained_agent


def _make_lm_agent(**kwargs):
    """``lm``: imported on first use, so that ``import webgym_agents`` does not load torch."""
    # on first use: the LM policy imports torch
    from webgym_agents.policies.lm_agent import LMAgent

    return LMAgent(**kwargs)


def _check_lm_checkpoint(checkpoint: str) -> str | None:
    # on first use: the toolkit is no part of ``import webgym_agents``
    from webgym_agents.toolkit.checkpoints import policy_problem

    return policy_problem(
        checkpoint,
        kinds=("lm-policy",),
        make="`webgym-bench train --agent bc` makes one (or LMPolicy.save(dir))",
    )


register_agent(
    "lm",
    _make_lm_agent,
    description=(
        "a language-model policy (checkpoint from LMPolicy.save): constrained choice over the "
        "available actions or free generation"
    ),
    needs_checkpoint=True,
    check_checkpoint=_check_lm_checkpoint,
)


def _check_policy_checkpoint(checkpoint: str) -> str | None:
    # on first use: the toolkit is no part of ``import webgym_agents``
    from webgym_agents.toolkit.checkpoints import policy_problem

    return policy_problem(
        checkpoint,
        make="`webgym-bench train --agent bc --preset cpu` makes one; "
        "agents/released/bc is the shipped bc",
    )


register_agent(
    "scorer",
    lambda checkpoint, **kw: load_trained_agent(checkpoint, **kw),
    description="a candidate-scoring encoder policy (checkpoint from ScorerPolicy.save)",
    needs_checkpoint=True,
    check_checkpoint=_check_policy_checkpoint,
)


def _register_trainers_agents() -> None:
    """Each trainer registers the agent that plays its checkpoints (the registry does)."""
    # on the first look-up only: the registry imports the trainers, and they import torch
    from webgym_agents.toolkit.trainers import list_trainers

    list_trainers()


add_agent_loader(_register_trainers_agents)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Agent",
    "AgentInfo",
    "AgentLoadError",
    "RandomAgent",
    "ReaderAgent",
    "RuleAgent",
    "UnknownAgentError",
    "add_agent_loader",
    "agent_source",
    "check_agent",
    "is_agent_spec",
    "list_agents",
    "make_agent",
    "register_agent",
    "unregister_agent",
]
