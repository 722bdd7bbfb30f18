"""The Gymnasium environments. ``import webgym`` registers their ids."""

from gymnasium.envs.registration import register, registry

ENV_IDS = {"WebGym-Shopping-v0": "browser", "WebGym-ShoppingText-v0": "text"}
MAX_EPISODE_STEPS = 15


def register_envs() -> None:
    for env_id, mode in ENV_IDS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point="webgym.envs.shopping:ShoppingEnv",
                max_episode_steps=MAX_EPISODE_STEPS,
                kwargs={"mode": mode},
            )
