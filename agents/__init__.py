"""The agent layer: the agent protocol, its registry and the baselines.

``import agents`` registers the built-in agents, so that ``make_agent("rule")`` works::

    from agents import make_agent, list_agents
    agent = make_agent("random")

Imports ``webgym`` only for observation and action types; never ``benchmarks`` or
``leaderboards``.
"""

from agents.base import Agent, AgentInfo, UnknownAgentError, list_agents, make_agent, register_agent
from agents.random_agent import RandomAgent
from agents.rule_agent import RuleAgent

__all__ = [
    "Agent",
    "AgentInfo",
    "RandomAgent",
    "RuleAgent",
    "UnknownAgentError",
    "list_agents",
    "make_agent",
    "register_agent",
]
