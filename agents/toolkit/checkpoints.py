"""What a checkpoint folder holds, read from its small JSON files (no weights are loaded), and
whether an agent can play it: so that a command refuses a checkpoint before it creates anything,
saying what the folder is and which agent plays it.

The files read::

    policy.json          a saved policy or critic (ScorerPolicy.save, LMPolicy.save, ...): its
                         "kind" (KINDS) and "metadata" (trained_by: the trainer that wrote it)
    config.json          the same fields, in a shipped checkpoint (agents/release.py), beside
                         its release.json
    trainer_state.json   a training run's checkpoint (toolkit/training.py, TrainRun): "trainer";
    training.json        a checkpoint saved before its trainer made a policy (digiq's phases
                         before Best-of-N extraction) has these and no policy.json

Imports the standard library, and ``webgym_agents.release`` and ``webgym_agents.base`` when it needs
them (no torch, until :meth:`Checkpoint.player` lists the agents, the trainers' among them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webgym_agents.base import list_agents
from webgym_agents.shipped import is_release, release_config

__all__ = [
    "KINDS",
    "POLICY_KINDS",
    "Checkpoint",
    "policy_problem",
    "read_checkpoint",
]

POLICY_FILE = "policy.json"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINING_FILE = "training.json"
MAX_INFO_BYTES = 4 << 20  # a policy.json is a few kB

KINDS = {
    "scorer-policy": "a scorer policy",
    "lm-policy": "an LM policy",
    "scorer-critic": "a scorer critic",
    "lm-critic": "an LM critic",
    "genac-critic": "a generative critic",
}
"""The kinds a ``policy.json`` names, in words."""

POLICY_KINDS = ("scorer-policy", "lm-policy")
"""The kinds an agent plays (the others are critics: value functions)."""


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`read_checkpoint` found in a folder; ``problem`` is said of the folder
    (``checkpoint PATH does not exist``)."""

    path: Path
    problem: str | None = None  # why it is no checkpoint folder: "does not exist", ...
    kind: str | None = None  # policy.json's (or a shipped checkpoint's config.json's)
    trained_by: str | None = None  # the policy's metadata: the trainer that wrote it
    trainer: str | None = None  # the training run that saved the folder (trainer_state.json)
    release: str | None = None  # the shipped checkpoint's name
    backbone: str | None = None  # the backbone the policy was trained on

    @property
    def is_policy(self) -> bool:
        return self.kind in POLICY_KINDS

    @property
    def kind_words(self) -> str:
        return KINDS.get(self.kind or "", f"a {self.kind!r} model")

    def what(self) -> str:
        """What the folder is, in words: ``a digiq checkpoint (a scorer policy)``."""
        if self.problem:
            return "not a checkpoint"
        by = self.trained_by or self.trainer
        if self.release:
            return f"the shipped checkpoint {self.release} ({self.kind_words})"
        if self.kind is not None and by:
            return f"a {by} checkpoint ({self.kind_words})"
        if self.kind is not None:
            return f"{self.kind_words} checkpoint"
        if self.trainer:
            return (
                f"a checkpoint of a {self.trainer} training run that holds no policy "
                f"(no {POLICY_FILE})"
            )
        return f"not a checkpoint (it has no {POLICY_FILE})"

    def player(self) -> str | None:
        """The agent that plays it (``--agent``): the agent of the trainer that wrote it, else
        ``scorer`` or ``lm`` by its kind; None for a critic or a folder without a policy."""
        if not self.is_policy:
            return None
        if self.trained_by:
            if self.trained_by in {a.name for a in list_agents()}:
                return self.trained_by
        return "scorer" if self.kind == "scorer-policy" else "lm"


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = f.read(MAX_INFO_BYTES + 1)
    if len(data) > MAX_INFO_BYTES:
        raise ValueError(f"larger than {MAX_INFO_BYTES} bytes")
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def read_checkpoint(path: str | Path) -> Checkpoint:
    """What the folder ``path`` holds (see the module docstring); never raises for a bad one:
    ``problem`` says why it is none (missing, a file, an unreadable ``policy.json``)."""
    path = Path(path)
    if not path.exists():
        where = "" if path.is_absolute() else f" (paths are relative to {Path.cwd()})"
        return Checkpoint(path, problem=f"does not exist{where}")
    if not path.is_dir():
        return Checkpoint(path, problem="is a file, not a checkpoint folder")
    trainer = None
    for name, key in ((TRAINER_STATE_FILE, "trainer"), (TRAINING_FILE, "trained_by")):
        try:
            trainer = trainer or _read_json(path / name).get(key) or None
        except (OSError, ValueError):
            pass
    info, release = None, None
    try:
        if (path / POLICY_FILE).is_file():
            info = _read_json(path / POLICY_FILE)
        else:
            if is_release(path):
                info = release_config(path)  # a ReleaseError (a ValueError) when unreadable
                release = str(info.get("name") or path.name)
    except (OSError, ValueError) as e:
        return Checkpoint(path, problem=f"has an unreadable {POLICY_FILE}: {e}", trainer=trainer)
    if info is None:
        return Checkpoint(path, trainer=str(trainer) if trainer else None)
    metadata = info.get("metadata") if isinstance(info.get("metadata"), dict) else {}
    by = metadata.get("trained_by")
    return Checkpoint(
        path,
        kind=str(info.get("kind")) if info.get("kind") else None,
        trained_by=str(by) if by else None,
        trainer=str(trainer) if trainer else None,
        release=release,
        backbone=str(info.get("backbone")) if info.get("backbone") else None,
    )


def policy_problem(
    path: str | Path,
    *,
    kinds: tuple[str, ...] = POLICY_KINDS,
    trained_by: str | None = None,
    make: str = "",
) -> str | None:
    """Why an agent cannot play the checkpoint ``path`` (one line: what the folder is and
    which agent plays it, or how to make one), or None. ``kinds``: the policy kinds the agent
    plays; ``trained_by``: the trainer its policy must come from; ``make``: how to make one."""
    found = read_checkpoint(path)
    head = f"checkpoint {path}"
    if found.problem:
        return f"{head} {found.problem}" + (f"; {make}" if make else "")
    if found.kind in kinds and (trained_by is None or found.trained_by == trained_by):
        return None
    player = found.player()
    if player is not None:
        why_not = (
            f"not trained by {trained_by}"
            if trained_by
            else "not " + " or ".join(KINDS[k] for k in kinds)
        )
        return f"{head} is {found.what()}, {why_not}: play it with --agent {player}"
    if found.kind is not None:  # a critic
        return f"{head} is {found.what()}, not a policy: no agent plays it"
    if found.trainer:
        return (
            f"{head} is {found.what()}: play that run's checkpoints/latest once "
            f"`webgym-bench train --agent {found.trainer}` has finished, with --agent "
            f"{found.trainer}"
        )
    return f"{head} is {found.what()}" + (f"; {make}" if make else "")
