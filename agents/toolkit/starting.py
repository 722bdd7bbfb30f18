"""Where an on-policy run starts: the policy (and optionally a critic) from the run's latest
checkpoint, else ``init_checkpoint`` (a folder or ``released:<name>``), else fresh on the
backbone; on an encoder the candidate scorer with a :class:`ScorerCritic`, on a causal LM an
:class:`~webgym_agents.policies.lm_agent.LMPolicy` with an
:class:`~webgym_agents.policies.lm_critic.LMCritic`. Data-parallel processes all start from
rank 0's weights.

``config`` is an :class:`~webgym_agents.toolkit.onpolicy.OnPolicyConfig`, read by its fields:
this module does not import onpolicy (which imports it and hands its names on). Imports the
policies, the models, the shipped-checkpoint format and the toolkit's data_parallel; never an
algorithm.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from webgym_agents.models.threads import configure_torch_threads
from webgym_agents.policies.scorer_policy import ScorerCritic, ScorerPolicy, read_info
from webgym_agents.shipped import resolve_checkpoint
from webgym_agents.toolkit import data_parallel
from webgym_agents.toolkit.training import TrainRun

if TYPE_CHECKING:
    from webgym_agents.policies.lm_agent import LMPolicy
    from webgym_agents.policies.lm_critic import LMCritic

Policy = Union[ScorerPolicy, "LMPolicy"]  # the scorer (cpu presets) or an LM (the decoder path)
Critic = Union[ScorerCritic, "LMCritic"]

__all__ = [
    "CRITIC_DIR",
    "Critic",
    "Policy",
    "freeze_lower_lm_layers",
    "fresh_policy",
    "load_policy",
    "start_policy",
]

CRITIC_DIR = "critic"


def _configure(config: Any) -> None:
    if config.ray and data_parallel.enabled():
        raise ValueError(
            "ray collection and data-parallel processes do not mix: give --ray or launch "
            "with accelerate/torchrun, not both"
        )

    # data-parallel processes on one machine share its cores
    configure_torch_threads(config.torch_threads or None, workers=data_parallel.local_world_size())


def start_policy(
    config: Any, run: TrainRun, *, critic: bool = False, critic_train_layers: int = 0
) -> tuple[Policy, Critic | None]:
    """The policy (and critic) to train: the run's latest checkpoint, else ``init_checkpoint``,
    else a fresh one on ``backbone``. A fresh critic copies the policy's weights and trains its
    top ``critic_train_layers`` layers (0: all).

    Two policy kinds, one set of trainers: on an encoder backbone the candidate scorer with a
    :class:`ScorerCritic` (the ``cpu`` presets); on a causal LM (``smollm2-135m``, ``tiny-lm``;
    the decoder path of the ``gpu`` presets) an :class:`~webgym_agents.policies.lm_agent.LMPolicy`
    acting in
    choice mode with an :class:`~webgym_agents.policies.lm_critic.LMCritic` (V read at the prompt
    boundary)."""
    _configure(config)
    torch.manual_seed(config.seed)  # fresh heads (policy, critic) are a function of the seed
    latest = run.latest_checkpoint()
    source = latest or (Path(config.init_checkpoint) if config.init_checkpoint else None)
    decoder = _is_decoder(config.backbone)
    if decoder and not config.train_encoder:
        raise ValueError(
            f"train_encoder=False trains only a scorer's heads; an LM policy ({config.backbone}) "
            "has none: set train_encoder to true"
        )
    policy = load_policy(source, config) if source is not None else fresh_policy(config)
    if policy.backbone.name != config.backbone:
        raise ValueError(
            f"{source} was trained on {policy.backbone.name}, the config says {config.backbone}"
        )
    if not decoder:
        policy.max_length, policy.max_steps = config.max_length, config.max_steps
    policy.eval()  # no dropout: the ratio of an unchanged policy is exactly 1
    value_fn = None
    if critic:
        critic_dir = latest / CRITIC_DIR if latest is not None else None
        resumed = critic_dir is not None and critic_dir.is_dir()
        if decoder:
            # the decoder path only: the LM modules are no part of the scorer's runs
            from webgym_agents.policies.lm_critic import LMCritic

            if resumed:
                value_fn = LMCritic.load(critic_dir, device=config.device)
            else:
                value_fn = LMCritic.from_policy(policy)
                freeze_lower_lm_layers(value_fn.backbone.model, critic_train_layers)
        elif resumed:
            value_fn = ScorerCritic.load(critic_dir)
        else:
            value_fn = ScorerCritic(
                copy.deepcopy(policy.backbone), max_length=config.max_length,
                train_layers=critic_train_layers,
            )  # fmt: skip
        value_fn.eval()
    data_parallel.broadcast_module(policy)  # data-parallel: every process starts from rank 0's
    data_parallel.broadcast_module(value_fn)
    return policy, value_fn


def _is_decoder(backbone: str) -> bool:
    return backbone in ("smollm2-135m", "tiny-lm")


def load_policy(source: Path, config: Any) -> Policy:
    """The policy saved in ``source``: a scorer or an LM policy checkpoint (else a clear error);
    ``released:<name>`` is a shipped checkpoint (agents/release.py)."""
    source = resolve_checkpoint(source)
    kind = read_info(source).get("kind")
    if kind == "scorer-policy" and not _is_decoder(config.backbone):
        return ScorerPolicy.load(source)
    if kind == "lm-policy" and _is_decoder(config.backbone):
        # the decoder path only: the LM modules are no part of the scorer's runs
        from webgym_agents.policies.lm_agent import LMPolicy

        return LMPolicy.load(source, device=config.device)
    want = "lm-policy" if _is_decoder(config.backbone) else "scorer-policy"
    raise ValueError(
        f"{source} holds a {kind!r} checkpoint; on-policy trainers on {config.backbone} start "
        f"from a {want} checkpoint (webgym-bench train --agent bc with that backbone)"
    )


def fresh_policy(config: Any) -> Policy:
    """An untrained policy on ``config.backbone`` (a fresh scorer head or the base LM)."""
    if _is_decoder(config.backbone):
        # the decoder path only: the LM modules are no part of the scorer's runs
        from webgym_agents.policies.lm_agent import LMPolicy

        return LMPolicy.from_backbone_name(config.backbone, device=config.device)
    return ScorerPolicy.from_backbone_name(
        config.backbone, seed=config.seed, max_length=config.max_length
    )


def freeze_lower_lm_layers(model: torch.nn.Module, train_layers: int) -> None:
    """An LM critic trains its top ``train_layers`` decoder layers and the final norm (0: all)."""
    layers = model.model.layers
    if train_layers <= 0 or train_layers >= len(layers):
        return
    model.requires_grad_(False)
    for layer in layers[len(layers) - train_layers :]:
        layer.requires_grad_(True)
    model.model.norm.requires_grad_(True)
