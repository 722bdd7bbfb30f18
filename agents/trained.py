"""The agent that plays a trained checkpoint, whichever policy kind it holds.

Imports torch only through the policy modules, on first use, so that ``import webgym_agents`` does
not load it.
"""

from __future__ import annotations

import json
from pathlib import Path

from webgym_agents.shipped import CONFIG_FILE, is_release
from webgym_agents.toolkit.checkpoints import read_checkpoint

__all__ = ["load_trained_agent"]


def load_trained_agent(checkpoint: str, *, trained_by: str | None = None, **kwargs):
    """The agent that plays ``checkpoint``: ``lm`` for an LM policy, ``scorer`` for a scorer
    (a training run's checkpoint folder, or a shipped one: agents/release.py).

    With ``trained_by``, the checkpoint must say it was written by that trainer, and the agent
    takes that name, so that leaderboard rows say how the weights were made.
    """
    info_path = Path(checkpoint) / "policy.json"
    if not info_path.is_file():  # a shipped checkpoint (agents/release.py) says it in config.json
        if is_release(checkpoint):
            info_path = Path(checkpoint) / CONFIG_FILE
    kind = json.loads(info_path.read_text()).get("kind") if info_path.is_file() else None
    if kind == "scorer-policy":  # the policy modules import torch: on first use only
        from webgym_agents.policies.scorer_policy import ScorerAgent

        agent = ScorerAgent(checkpoint, **kwargs)
    else:  # an LM checkpoint, or a clear error from LMPolicy.load
        from webgym_agents.policies.lm_agent import LMAgent

        agent = LMAgent(checkpoint=checkpoint, **kwargs)
    if trained_by is not None:
        found = agent.policy.metadata.get("trained_by")
        if found != trained_by:
            agent.close()
            player = read_checkpoint(checkpoint).player()
            raise ValueError(
                f"{checkpoint} was not trained by {trained_by} (trained_by: {found!r}); "
                f"play it with --agent {player or ('scorer' if kind == 'scorer-policy' else 'lm')}"
            )
        agent.name = trained_by
    return agent
