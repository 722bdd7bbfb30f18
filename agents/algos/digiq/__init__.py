"""Digi-Q (Bai et al., 2025) as a package: ``train`` holds the trainer (``TRAINER``)."""

from webgym_agents.algos.digiq.train import *  # noqa: F403
from webgym_agents.algos.digiq.train import TRAINER, __all__  # noqa: F401
