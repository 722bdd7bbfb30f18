"""WebGym: web shopping as a reinforcement-learning environment and benchmark.

``import webgym`` registers ``WebGym-Shopping-v0`` (real Chromium) and
``WebGym-ShoppingText-v0`` (browserless) with Gymnasium; nothing heavy is imported here.
``webgym.AsyncShoppingEnv`` (the asyncio twin: many sessions on one event loop and one
Chromium) is imported on first use.
"""

from webgym.envs import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "AsyncShoppingEnv", "__version__"]

register_envs()


def __getattr__(name: str):
    if name == "AsyncShoppingEnv":
        from webgym.envs.async_shopping import AsyncShoppingEnv

        return AsyncShoppingEnv
    raise AttributeError(f"module 'webgym' has no attribute {name!r}")
