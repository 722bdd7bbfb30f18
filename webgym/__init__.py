"""WebGym: web shopping as a reinforcement-learning environment and benchmark.

``import webgym`` registers ``WebGym-Shopping-v0`` (real Chromium) and
``WebGym-ShoppingText-v0`` (browserless) with Gymnasium; nothing heavy is imported here.
"""

from webgym.envs import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "__version__"]

register_envs()
