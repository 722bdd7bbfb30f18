"""The LM critic: V(s) from a copy of the base LM with a scalar head (ArCHer's critic).

The value is read at ONE position, the last token of the observation's prompt (the prompt
boundary), so a response never changes it. It is an
:class:`~webgym_agents.policies.lm_agent.LMPolicy` whose value head is the point: it saves
and loads the same files with the same fingerprint checks
(``policy.json`` says ``"kind": "lm-critic"``), builds its prompts the same way, and
:meth:`values` is differentiable. The decoder path of the trainers (the ``gpu`` presets on an
LM backbone) uses it; on a CPU the scorer's critic (policies/scorer_policy.py) is the one used.

    critic = LMCritic.from_policy(policy)            # a copy of the policy's LM, a fresh head
    v = critic.values([critic.prompt(obs)])          # (1,), differentiable
    critic.save("ckpt/critic"); LMCritic.load("ckpt/critic")
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from webgym_agents.policies.lm_agent import LMPolicy

__all__ = ["LMCritic"]


class LMCritic(LMPolicy):
    """A causal LM with a scalar value head at the prompt boundary (zero-initialised)."""

    KIND = "lm-critic"

    def __init__(self, *args: Any, mlp_hidden: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.value_head is None:
            self.add_value_head(mlp_hidden)

    def __repr__(self) -> str:
        return f"LMCritic({self.backbone!r})"

    @classmethod
    def from_policy(cls, policy: LMPolicy, *, mlp_hidden: int | None = None) -> LMCritic:
        """A critic on a copy of ``policy``'s LM (its weights now), prompts built alike."""
        return cls(
            copy.deepcopy(policy.backbone), copy.deepcopy(policy.config), mlp_hidden=mlp_hidden
        )

    def param_groups(self, lr: float, head_lr: float) -> list[dict[str, Any]]:
        """AdamW groups: the LM's trainable weights at ``lr``, the value head at ``head_lr``."""
        assert self.value_head is not None
        lm = [p for p in self.backbone.model.parameters() if p.requires_grad]
        return [
            {"params": lm, "lr": lr},
            {"params": list(self.value_head.parameters()), "lr": head_lr},
        ]

    @classmethod
    def load(cls, directory: str | Path, *args: Any, **kwargs: Any) -> LMCritic:
        """The critic saved in ``directory``; an LM policy checkpoint is refused (it is not a
        trained critic, even with a value head), as is a mismatching backbone."""
        info = cls.read_info(directory)
        if info.get("kind") != cls.KIND:
            raise ValueError(
                f"{directory} holds a {info.get('kind')!r} checkpoint, not an LM critic "
                "(LMCritic.from_policy(LMPolicy.load(dir)) starts a critic from a policy)"
            )
        critic = super().load(directory, *args, **kwargs)
        assert isinstance(critic, LMCritic) and critic.value_head is not None
        return critic
