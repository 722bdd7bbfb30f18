"""Language-model backbones for the WebGym agents (see ``backbone`` and ``cache``).

``cache`` (model files, ``fetch_models``, ``list_models``) and ``threads``
(``configure_torch_threads``: the one thread-count rule) are imported eagerly and need neither
torch nor transformers at import; ``backbone`` (``load_backbone``, ``Backbone``,
``ValueHead``, ...) is imported on first use, so ``webgym-bench models list`` stays instant.

The bottom of ``webgym_agents``: imports ``webgym`` only, never another room of the agents.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from webgym_agents.models.cache import (  # noqa: E402
    FETCH_COMMAND,
    ModelNotPrepared,
    ModelStatus,
    cache_root,
    fetch_models,
    list_models,
    model_dir,
    not_prepared_message,
)
from webgym_agents.models.threads import configure_torch_threads, torch_threads_for  # noqa: E402

_LAZY = {
    "BACKBONES",
    "Backbone",
    "BackboneMismatch",
    "Generation",
    "NotACausalLM",
    "SequenceScores",
    "ValueHead",
    "check_fingerprint",
    "load_backbone",
}

__all__ = [
    "FETCH_COMMAND",
    "ModelNotPrepared",
    "ModelStatus",
    "cache_root",
    "configure_torch_threads",
    "fetch_models",
    "list_models",
    "model_dir",
    "not_prepared_message",
    "torch_threads_for",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        # on first use: the backbones import torch and transformers
        from webgym_agents.models import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module 'webgym_agents.models' has no attribute {name!r}")
