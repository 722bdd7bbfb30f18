"""The language-model policy's checkpoint: ``policy.json`` (written last), the weights'
safetensors and the optional value head (:class:`LMCheckpoints`, a part of
:class:`~webgym_agents.policies.lm_agent.LMPolicy`: ``save``, ``read_info``, ``load``).

A mixin: never imports the policy module (which imports it).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

import torch

from webgym.runs import atomic_write_json
from webgym_agents.models.backbone import (
    Backbone,
    BackboneMismatch,
    ValueHead,
    load_backbone,
)
from webgym_agents.policies.lm_prompt import PromptConfig

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: no value head, page-first layout
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
VALUE_HEAD_FILE = "value_head.safetensors"


class LMCheckpoints:
    """Saving and loading: the checkpoint half of
    :class:`~webgym_agents.policies.lm_agent.LMPolicy`."""

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``policy.json``, ``model.safetensors`` and, with a value head,
        ``value_head.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if metadata:
            self.metadata.update(metadata)
        save_model(self.backbone.model, str(d / WEIGHTS_FILE))
        fingerprint = self.backbone.checkpoint_fingerprint()
        info = {
            "format_version": FORMAT_VERSION,
            "kind": self.KIND,
            "backbone": self.backbone.name,
            "fingerprint": fingerprint,
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "prompt_config": asdict(self.config),
            "add_eos": self.add_eos,
            "max_new_tokens": self.max_new_tokens,
            "metadata": self.metadata,
        }
        if self.value_head is not None:
            save_model(self.value_head, str(d / VALUE_HEAD_FILE))
            info["value_head"] = {
                "file": VALUE_HEAD_FILE,
                "config": self.value_head.config(),
                "reads": "last layer, last prompt token",
                "fingerprint": fingerprint,
            }
        else:
            (d / VALUE_HEAD_FILE).unlink(missing_ok=True)
        # written last: a half-saved checkpoint has none
        atomic_write_json(d / POLICY_FILE, info, sort_keys=True, default=str)
        return d

    @staticmethod
    def read_info(directory: str | Path) -> dict[str, Any]:
        """The checkpoint's ``policy.json``; a clear error when it is not an LM checkpoint."""
        d = Path(directory)
        path = d / POLICY_FILE
        if not path.is_file():
            # only to say what the folder holds instead (a read-only look at its JSON files)
            from webgym_agents.toolkit.checkpoints import read_checkpoint

            found = read_checkpoint(d)
            if found.kind is not None or found.trainer:  # another checkpoint: say what it is
                player = found.player()
                raise FileNotFoundError(
                    f"{d} is {found.what()}, not an LM policy checkpoint"
                    + (f": play it with --agent {player}" if player else "")
                )
            what = "does not exist" if not d.exists() else f"has no {POLICY_FILE}"
            raise FileNotFoundError(
                f"{d} is not an LM policy checkpoint: it {what}. Make one with "
                f"LMPolicy.save(dir) (an untrained one: "
                f"LMPolicy.from_backbone_name('tiny-lm').save(dir))"
            )
        info = json.loads(path.read_text())
        version = info.get("format_version")
        if version not in READABLE_FORMATS:
            raise ValueError(
                f"{path}: format_version {version!r} is not supported (this code reads "
                f"{', '.join(map(str, READABLE_FORMATS))})"
            )
        return info

    @classmethod
    def load(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        *,
        dtype: torch.dtype | None = None,
        backbone: Backbone | None = None,
    ) -> Self:
        """The policy saved in ``directory``, with its value head when it has one.

        Loads the backbone the checkpoint names (or checks the given ``backbone``) and raises
        :class:`BackboneMismatch`, with the reason, when the checkpoint's fingerprint (or its
        value head's) is not that backbone's. ``dtype`` defaults to the saved one.
        """
        from safetensors.torch import load_model

        d = Path(directory)
        info = cls.read_info(d)
        fp = info.get("fingerprint") or {}
        name = info.get("backbone")
        if fp.get("backbone") != name:
            raise BackboneMismatch(
                f"{d / POLICY_FILE}: the checkpoint names backbone {name!r} but its fingerprint "
                f"says it was trained on {fp.get('backbone')!r}"
            )
        if backbone is None:
            if dtype is None:
                dtype = getattr(torch, str(info.get("dtype", "float32")), torch.float32)
            backbone = load_backbone(name, device=device, dtype=dtype)
        backbone.check_fingerprint(fp)
        weights = d / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{d} has {POLICY_FILE} but no {WEIGHTS_FILE}")
        try:
            load_model(backbone.model, str(weights), strict=True, device=str(backbone.device))
        except RuntimeError as err:
            raise BackboneMismatch(
                f"{weights} does not fit backbone {backbone.name}: {err}"
            ) from err
        backbone.model.eval()
        head = cls._load_value_head(d, info.get("value_head"), backbone)
        return cls(
            backbone,
            PromptConfig.from_dict(info.get("prompt_config") or {}),
            add_eos=bool(info.get("add_eos", True)),
            max_new_tokens=int(info.get("max_new_tokens", 32)),
            metadata=info.get("metadata") or {},
            value_head=head,
        )

    @staticmethod
    def _load_value_head(
        d: Path, entry: dict[str, Any] | None, backbone: Backbone
    ) -> ValueHead | None:
        if not entry:
            return None
        from safetensors.torch import load_model

        try:
            backbone.check_fingerprint(entry.get("fingerprint") or {})
        except BackboneMismatch as err:
            raise BackboneMismatch(f"{d / POLICY_FILE}: the value head: {err}") from err
        config = dict(entry.get("config") or {})
        if int(config.get("hidden_size", -1)) != backbone.hidden_size:
            raise BackboneMismatch(
                f"{d / POLICY_FILE}: the value head reads {config.get('hidden_size')} features; "
                f"{backbone.name} has {backbone.hidden_size}"
            )
        path = d / str(entry.get("file") or VALUE_HEAD_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{d / POLICY_FILE} names a value head but {path} is missing")
        head = ValueHead.from_config(config)
        try:
            load_model(head, str(path), strict=True, device=str(backbone.device))
        except RuntimeError as err:
            raise BackboneMismatch(f"{path} does not fit its value head config: {err}") from err
        head.eval()
        return head
