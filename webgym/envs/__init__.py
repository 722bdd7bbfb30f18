"""The Gymnasium environments. ``import webgym`` registers their ids."""

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
