"""The Gymnasium environments. ``import webgym`` registers their ids."""

from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import register, registry

ENV_IDS = {"WebGym-Shopping-v0": "browser", "WebGym-ShoppingText-v0": "text"}
ENV_ID_BY_MODE = {mode: env_id for env_id, mode in ENV_IDS.items()}
MAX_EPISODE_STEPS = 15  # WebShop's and Digi-Q's step limit; the one place it is written


def env_id_for_mode(mode: str) -> str:
    """The registered env id of ``mode`` ("browser" or "text")."""
    try:
        return ENV_ID_BY_MODE[mode]
    except KeyError:
        raise ValueError(
            f"unknown mode {mode!r}: expected one of {sorted(ENV_ID_BY_MODE)}"
        ) from None


def register_envs() -> None:
    for env_id, mode in ENV_IDS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point="webgym.envs.shopping:ShoppingEnv",
                max_episode_steps=MAX_EPISODE_STEPS,
                kwargs={"mode": mode},
            )


def restore(env: Any, snapshot: dict[str, Any]) -> tuple[dict, dict]:
    """Fork: continue the episode of ``snapshot`` (``env.unwrapped.snapshot()``) in ``env``, as
    made by ``gym.make`` (wrappers and all), in a new shop session; returns (obs, info).

    The one way to fork a wrapped env: ``env.unwrapped.restore`` restores the env alone, while
    this also sets the step count every wrapper keeps (gymnasium's ``TimeLimit``, and any
    wrapper with an ``_elapsed_steps``) to the snapshot's step and marks order-enforcing
    wrappers as reset, so the fork truncates at the episode's step limit, counted from the
    episode's start, whatever the env played before."""
    obs, info = env.unwrapped.restore(snapshot)
    step = int(snapshot["step"])
    layer = env
    while isinstance(layer, gym.Wrapper):
        if hasattr(layer, "_elapsed_steps"):
            layer._elapsed_steps = step
        if hasattr(layer, "_has_reset"):
            layer._has_reset = True
        layer = layer.env
    return obs, info
