"""The trainer registry: which trainers there are, found as data, and the policy a run starts
from.

* **Built-in trainers** are the modules (and packages) of ``webgym_agents.algos`` that declare
  ``TRAINER = TrainerInfo(...)`` (webgym_agents/toolkit/training.py). Nothing lists them: on the
  first look-up (:func:`get_trainer`, :func:`list_trainers`) each module of that package whose
  source names ``TRAINER`` (or calls ``register_trainer(``) is imported and its ``TRAINER`` is
  registered. Trainer modules import torch, which ``import webgym_agents`` must not; they are
  imported only then.
* **Other packages' trainers**: every installed entry point of the group ``webgym.trainers``
  (``[project.entry-points."webgym.trainers"] mine = "mypkg.mytrainer"``) names a module that
  declares ``TRAINER`` or calls :func:`register_trainer` when imported.
* Registering a trainer registers the agent that plays its checkpoints (unless the trainer
  names another ``eval_agent``).
* **Presets**: :func:`preset_config` resolves a preset name, an older alias included (with a
  one-line note).

The trainers do not import this module (they are data to it), so no circle runs through it.
Imports ``webgym_agents.toolkit``, ``webgym_agents.base`` and ``webgym_agents.release``, and
``webgym_agents.algos`` only at run time, by its modules' names; never the ``webgym_agents``
package face (which imports this module back), ``webgym_benchmarks`` or
``webgym_leaderboards``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import pkgutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webgym_agents.base import is_registered, register_agent
from webgym_agents.shipped import RELEASE_PREFIX, ReleaseError, list_releases, resolve_checkpoint
from webgym_agents.toolkit.checkpoints import policy_problem, read_checkpoint
from webgym_agents.toolkit.training import CommonConfig, TrainerInfo, TrainRun

__all__ = [
    "TRAINER_ENTRY_POINTS",
    "TrainerInfo",
    "UnknownTrainerError",
    "get_trainer",
    "list_trainers",
    "preset_config",
    "register_trainer",
    "starting_checkpoint_problem",
    "starting_checkpoints",
]

ALGOS_PACKAGE = "webgym_agents.algos"
"""Where the built-in trainers live."""

# ----------------------------------------------------------------------------------------------
# The trainer registry


class UnknownTrainerError(KeyError, ValueError):
    """No trainer is registered under that name; the message lists the trainable agents."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_TRAINERS: dict[str, TrainerInfo] = {}

TRAINER_ENTRY_POINTS = "webgym.trainers"
"""The entry-point group of trainers from other packages: each entry names a module that calls
:func:`register_trainer` when imported."""

_discovered = False


def _trainer_modules() -> list[str]:
    """The modules and packages of ``webgym_agents.algos`` whose source declares ``TRAINER``
    or calls ``register_trainer(`` (a package: its ``__init__.py``)."""
    # by name, at run time: the trainers import the toolkit, so the toolkit never imports them
    package = importlib.import_module(ALGOS_PACKAGE)
    found = []
    for mod in pkgutil.iter_modules(package.__path__):
        folder = Path(getattr(mod.module_finder, "path", ""))
        path = folder / mod.name / "__init__.py" if mod.ispkg else folder / f"{mod.name}.py"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "TRAINER" in text or "register_trainer(" in text:
            found.append(f"{ALGOS_PACKAGE}.{mod.name}")
    return sorted(found)


def _load(module_name: str) -> None:
    """Import a trainer module and register the ``TRAINER`` it declares (a module that called
    :func:`register_trainer` itself has registered already)."""
    module = importlib.import_module(module_name)
    info = getattr(module, "TRAINER", None)
    if not isinstance(info, TrainerInfo):
        return
    known = _TRAINERS.get(info.name)
    if known is None or known.train_fn is not info.train_fn:  # the same trainer: registered
        add_trainer(info)


def _discover_trainers() -> None:
    """Import every trainer module (once): ``webgym_agents.algos``', then the entry points'."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    try:
        for name in _trainer_modules():
            _load(name)
    except BaseException:
        _discovered = False
        raise
    for ep in importlib.metadata.entry_points(group=TRAINER_ENTRY_POINTS):
        try:
            _load(ep.value.partition(":")[0])
        except Exception as err:  # noqa: BLE001 - another package's trainer must not break ours
            warnings.warn(
                f"the trainer entry point {ep.name} = {ep.value!r} does not load: {err}",
                RuntimeWarning,
                stacklevel=2,
            )


def add_trainer(info: TrainerInfo) -> TrainerInfo:
    """Register ``info`` (checked as :func:`register_trainer` checks) and, unless it names
    another ``eval_agent``, the agent that plays its checkpoints."""
    name, presets = info.name, info.presets
    if name in _TRAINERS:
        raise ValueError(f"a trainer named {name!r} is already registered")
    if not presets:
        raise ValueError(f"trainer {name!r} needs at least one preset")
    for preset, config in presets.items():
        if not isinstance(config, CommonConfig):
            raise TypeError(
                f"trainer {name!r}: preset {preset!r} is a {type(config).__name__}, not a "
                "CommonConfig (a trainer's config dataclass extends "
                "webgym_agents.toolkit.training.CommonConfig)"
            )
    for old, new in info.preset_aliases.items():
        if new not in presets:
            raise ValueError(f"trainer {name!r}: preset alias {old!r} names no preset {new!r}")
    own_agent = not info.eval_agent
    if own_agent:
        info = dataclasses.replace(info, eval_agent=name)
    _TRAINERS[name] = info
    if own_agent:
        _register_checkpoint_agent(name, info.description)
    return info


def register_trainer(
    name: str,
    train_fn: Callable[[Any, TrainRun], Path],
    presets: dict[str, Any],
    *,
    description: str = "",
    eval_agent: str | None = None,
    preset_aliases: dict[str, str] | None = None,
) -> TrainerInfo:
    """Register ``train_fn`` as the trainer of agent ``name`` with ``presets`` (name -> config):
    what another package's trainer module calls when imported (the built-in ones declare
    ``TRAINER`` instead).

    Every preset must be a :class:`CommonConfig` (an instance of the trainer's config, which
    extends it). Registering a taken name raises ``ValueError``. Unless ``eval_agent`` names
    another agent, an agent called ``name`` is registered too: it plays this trainer's
    checkpoints (``webgym_agents.load_trained_agent``, which checks the checkpoint's
    ``trained_by``).
    """
    return add_trainer(
        TrainerInfo(
            name, train_fn, dict(presets), description, eval_agent or "",
            dict(preset_aliases or {}),
        )
    )  # fmt: skip


def _register_checkpoint_agent(name: str, description: str) -> None:
    def factory(checkpoint: str, **kwargs: Any):
        # on first use: the loader imports torch and the policies
        from webgym_agents.trained import load_trained_agent

        return load_trained_agent(checkpoint, trained_by=name, **kwargs)

    def check(checkpoint: str) -> str | None:
        return policy_problem(
            checkpoint,
            trained_by=name,
            make=f"`webgym-bench train --agent {name}` makes one (OUT/checkpoints/latest)",
        )

    if not is_registered(name):  # a plugin may have registered its own agent first
        register_agent(
            name,
            factory,
            description=f"the policy on a checkpoint of {name}: {description}"
            f" (webgym-bench train --agent {name})",
            needs_checkpoint=True,
            check_checkpoint=check,
        )


def list_trainers() -> list[TrainerInfo]:
    """Every registered trainer, sorted by name."""
    _discover_trainers()
    return [info for _, info in sorted(_TRAINERS.items())]


def preset_config(info: TrainerInfo, preset: str) -> tuple[str, Any, str | None]:
    """(the preset's name, its config, a one-line note when ``preset`` is an older alias);
    ``KeyError`` naming the presets for an unknown one."""
    if preset in info.presets:
        return preset, info.presets[preset], None
    new = info.preset_aliases.get(preset)
    if new is None:
        raise KeyError(
            f"unknown preset {preset!r} for {info.name}; presets: {', '.join(info.presets)}"
        )
    note = f"preset {preset!r} of {info.name} is its preset {new!r} (another name, one config)"
    return new, info.presets[new], note


def get_trainer(name: str) -> TrainerInfo:
    """The trainer of agent ``name``; :class:`UnknownTrainerError` lists the trainable ones."""
    _discover_trainers()
    info = _TRAINERS.get(name)
    if info is None:
        names = ", ".join(sorted(_TRAINERS)) or "none registered"
        raise UnknownTrainerError(f"no trainer for agent {name!r}; trainable agents: {names}")
    return info


# ----------------------------------------------------------------------------------------------
# The policy a run starts from


def starting_checkpoints(config: Any) -> dict[str, str]:
    """The config's fields that name a policy to start from, those set: its text fields whose
    name ends in ``_checkpoint`` (``init_checkpoint``; digiq's ``behaviour_checkpoint``), each
    a folder or ``released:<name>`` (agents/release.py)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name.endswith("_checkpoint") and isinstance(value, str) and value.strip():
            out[f.name] = value.strip()
    return out


def _command_that_makes(path: Path) -> str | None:
    """The ``webgym-bench train`` command whose run directory holds ``path``, when the path
    spells one: ``runs/bc-scorer-cpu/checkpoints/latest`` is trainer bc, preset scorer-cpu."""
    parts = path.parts
    if "checkpoints" not in parts or parts.index("checkpoints") == 0:
        return None
    run_dir = Path(*parts[: parts.index("checkpoints")])
    stem = run_dir.name.removeprefix("train-")
    _discover_trainers()
    for name, info in sorted(_TRAINERS.items()):
        preset = stem[len(name) + 1 :] if stem.startswith(name + "-") else None
        if preset in info.presets or preset in info.preset_aliases:
            return f"webgym-bench train --agent {name} --preset {preset} --out {run_dir}"
    return None


def _shipped_alternative(key: str, backbone: str | None) -> str:
    """``, or set FIELD = "released:bc" ...`` when a shipped checkpoint on ``backbone`` exists
    (bc's first); else empty."""
    names = [
        r.name
        for r in list_releases()
        if backbone is None or read_checkpoint(r.path).backbone == backbone
    ]
    if not names:
        return ""
    name = "bc" if "bc" in names else names[0]
    return (
        f', or set {key} = "{RELEASE_PREFIX}{name}" in a --config file: the shipped {name}, '
        "found from any working directory"
    )


def starting_checkpoint_problem(config: Any) -> str | None:
    """Why a run of ``config`` cannot start from the policy its :func:`starting_checkpoints`
    name (one line: the field, what is wrong, the command that makes it or the shipped
    checkpoint to use instead), or None. Reads small JSON files only: a command asks it before
    it creates the output directory. A resumed run starts from its own latest checkpoint: do
    not ask then."""
    backbone = getattr(config, "backbone", None)
    for key, value in starting_checkpoints(config).items():
        try:  # released:<name>, trained:<agent>/<preset> or a folder
            path = resolve_checkpoint(value).expanduser()
        except (ReleaseError, ValueError) as e:
            return f"{key} {value}: {e}"
        found = read_checkpoint(path)
        if found.is_policy:
            if backbone and found.backbone and found.backbone != backbone:
                return (
                    f"{key} {value} was trained on {found.backbone}, the config says backbone "
                    f"{backbone}: start from a policy on {backbone}"
                    + _shipped_alternative(key, backbone)
                )
            continue
        command = _command_that_makes(path)
        make = f"`{command}` makes it" if command else "train a policy into it first"
        what = found.problem or f"is {found.what()}, not a policy"
        named = value if str(path) == value else f"{value} ({path})"
        return f"{key} {named} {what}; {make}" + _shipped_alternative(key, backbone)
    return None
