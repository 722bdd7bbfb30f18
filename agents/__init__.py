"""The agent layer: the agent protocol, its registry and the baselines.

``import agents`` registers the built-in agents, so that ``make_agent("rule")`` works::

    from agents import make_agent, list_agents
    agent = make_agent("random")

Imports ``webgym`` only for observation and action types; never ``benchmarks`` or
``leaderboards``.
"""

from agents.base import (
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
from agents.random_agent import RandomAgent
from agents.reader_agent import ReaderAgent
from agents.rule_agent import RuleAgent


def _make_lm_agent(**kwargs):
    """``lm``: imported on first use, so that ``import agents`` does not load torch."""
    from agents.lm_agent import LMAgent

    return LMAgent(**kwargs)


def _check_lm_checkpoint(checkpoint: str) -> str | None:
    from agents.checkpoints import policy_problem

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


def load_trained_agent(checkpoint: str, *, trained_by: str | None = None, **kwargs):
    """The agent that plays ``checkpoint``: ``lm`` for an LM policy, ``scorer`` for a scorer
    (a training run's checkpoint folder, or a shipped one: agents/release.py).

    With ``trained_by``, the checkpoint must say it was written by that trainer, and the agent
    takes that name, so that leaderboard rows say how the weights were made.
    """
    import json
    from pathlib import Path

    info_path = Path(checkpoint) / "policy.json"
    if not info_path.is_file():  # a shipped checkpoint (agents/release.py) says it in config.json
        from agents.release import CONFIG_FILE, is_release

        if is_release(checkpoint):
            info_path = Path(checkpoint) / CONFIG_FILE
    kind = json.loads(info_path.read_text()).get("kind") if info_path.is_file() else None
    if kind == "scorer-policy":
        from agents.scorer_policy import ScorerAgent

        agent = ScorerAgent(checkpoint, **kwargs)
    else:  # an LM checkpoint, or a clear error from LMPolicy.load
        agent = _make_lm_agent(checkpoint=checkpoint, **kwargs)
    if trained_by is not None:
        found = agent.policy.metadata.get("trained_by")
        if found != trained_by:
            agent.close()
            from agents.checkpoints import read_checkpoint

            player = read_checkpoint(checkpoint).player()
            raise ValueError(
                f"{checkpoint} was not trained by {trained_by} (trained_by: {found!r}); "
                f"play it with --agent {player or ('scorer' if kind == 'scorer-policy' else 'lm')}"
            )
        agent.name = trained_by
    return agent


def _check_policy_checkpoint(checkpoint: str) -> str | None:
    from agents.checkpoints import policy_problem

    return policy_problem(
        checkpoint,
        make="`webgym-bench train --agent bc --preset scorer-cpu` makes one; "
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
    """Each trainer registers the agent that plays its checkpoints (``register_trainer``)."""
    from agents.training import list_trainers

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
