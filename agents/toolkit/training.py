"""What every trainer shares: the common config and presets, the trainer registry, the run
directory. Rollouts live in agents/rollouts.py, returns and advantages in agents/returns.py,
shared losses in agents/losses.py, the on-policy plumbing in agents/onpolicy.py.

A trainer is one file (``agents/<name>.py``) with a config dataclass holding every
hyper-parameter and a ``train_<name>(config, run)`` function written top to bottom:

* **Configs.** A trainer's config dataclass extends :class:`CommonConfig` (seed, threads,
  device, backbone, episode step limit, evaluation episodes, checkpoint cadence), so that
  ``webgym-bench train`` reads those fields of any trainer directly. Each trainer registers
  presets (``smoke``, ``cpu``, ``gpu``): instances of its config. :func:`config_from_file`
  overrides preset fields from a JSON or TOML file; an unknown key is an error naming the valid
  ones (:class:`ConfigError`).
* **The registry.** A trainer file calls :func:`register_trainer` (name, train function,
  presets, the agent that plays its checkpoints) at import. Nothing lists the trainers: on the
  first look-up (:func:`get_trainer`, :func:`list_trainers`) every module of the ``webgym_agents``
  package whose source calls ``register_trainer(`` is imported, and so is every installed entry
  point of the group ``webgym.trainers`` (a third-party trainer:
  ``[project.entry-points."webgym.trainers"] mine = "mypkg.mytrainer"``). Trainer modules
  import torch, which ``import webgym_agents`` must not; they are imported only then.
* **The run directory** (:class:`TrainRun`)::

      OUT/
        config.json               {"trainer", "preset", "config"}: written once, checked on resume
        metrics.csv               one row per iteration, appended
        learning_curve.png        the metrics that move against the iteration (agents/curves.py),
                                  redrawn after each row
        train.log                 "<UTC> message" lines
        checkpoints/step-N/       the policy (LMPolicy.save) + trainer_state.json (iteration,
                                  trainer fields) + optimizer.pt + rng.pt (torch.save)
        checkpoints/latest        symlink -> step-N, replaced atomically after a save

  A checkpoint folder is written under a temporary name and renamed into place, and ``latest``
  moves only after that, so a run killed at any moment resumes from a whole checkpoint:
  re-running the same command calls :meth:`TrainRun.restore`, which reloads the optimizer and RNG
  states and returns the iteration to continue from. A different config in the same directory is
  refused (:class:`ConfigMismatch`, naming the differing fields). Metrics rows written after the
  latest checkpoint (a run killed between the two) are dropped on resume, as those iterations are
  redone. Under data-parallel training (agents/data_parallel.py) only rank 0 writes the
  directory; the other processes read it (resume) and write nothing.

Imports ``webgym`` (the env's step limit) and ``webgym_agents``; never ``webgym_benchmarks`` or
``webgym_leaderboards``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import random
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents import data_parallel
from webgym_agents.checkpoints import read_checkpoint

__all__ = [
    "TRAINER_ENTRY_POINTS",
    "CommonConfig",
    "ConfigError",
    "ConfigMismatch",
    "TrainRun",
    "TrainerInfo",
    "UnknownTrainerError",
    "config_from_file",
    "config_to_dict",
    "get_trainer",
    "latest_checkpoint",
    "list_trainers",
    "override_config",
    "register_trainer",
    "starting_checkpoint_problem",
    "starting_checkpoints",
]

# ----------------------------------------------------------------------------------------------
# Configs


@dataclass
class CommonConfig:
    """The fields every trainer's config has; each trainer's config dataclass extends it (and
    may give a field another default by declaring it again)."""

    seed: int = 0
    torch_threads: int = 0  # 0: webgym_agents.models.threads' rule; > 0: exactly that many
    device: str = "cpu"
    backbone: str = "minilm"  # an webgym_agents.models.load_backbone name
    max_steps: int = MAX_EPISODE_STEPS  # episode step limit (rollouts and the evaluation)
    eval_episodes: int = 0  # validation episodes the harness plays after training (0: none)
    checkpoint_every: int = 1  # iterations between checkpoints (the last is always saved)
    keep_checkpoints: int = 2  # checkpoints kept in the run directory (latest always)

    supports_data_parallel: ClassVar[bool] = False
    """The trainer runs under a multi-process launcher (agents/data_parallel.py); a config
    class whose trainer does not (it would train the same thing in every process) says False,
    and ``webgym-bench train`` refuses to start it under one."""

    placement_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields that say where a run executes, not what it computes (Ray collection): a resumed
    run may change them."""


class ConfigError(ValueError):
    """A config file or override that does not fit the trainer's config dataclass."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def override_config(base: Any, overrides: dict[str, Any], *, source: str = "overrides") -> Any:
    """``base`` (a dataclass instance) with the fields in ``overrides`` replaced.

    Unknown keys raise :class:`ConfigError` naming the valid ones; a value of the wrong type
    (an int where a float is fine, a list where a tuple is) is converted when that is lossless,
    else refused.
    """
    fields = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {type(base).__name__}; "
            f"valid keys: {', '.join(fields)}"
        )
    values = {}
    for key, value in overrides.items():
        current = getattr(base, key)
        values[key] = _coerce(key, value, current, source)
    return dataclasses.replace(base, **values)


def _coerce(key: str, value: Any, current: Any, source: str) -> Any:
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(current)(value)
    else:
        return value
    raise ConfigError(
        f"{source}: {key} must be a {type(current).__name__} (like {current!r}), not {value!r}"
    )


def config_from_file(base: Any, path: str | Path) -> Any:
    """``base`` overridden by the keys of a JSON (``.json``) or TOML (``.toml``) file.

    The file holds a flat table of field names; a file written by a run (``config.json``, with
    ``trainer``/``preset``/``config`` keys) is accepted too, its ``config`` table being used.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} does not parse: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of fields, not {type(data)}")
    if set(data) >= {"trainer", "config"} and isinstance(data["config"], dict):
        data = data["config"]
    return override_config(base, data, source=str(path))


# ----------------------------------------------------------------------------------------------
# The trainer registry


@dataclass(frozen=True)
class TrainerInfo:
    """A registered trainer: ``train_fn(config, run) -> checkpoint path`` and its presets.

    ``eval_agent`` is the agent name that plays the trainer's checkpoints in the harness (by
    default an agent of the trainer's own name, which :func:`register_trainer` registers).
    """

    name: str
    train_fn: Callable[[Any, TrainRun], Path]
    presets: dict[str, Any]
    description: str = ""
    eval_agent: str = ""


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
    """The modules of the ``webgym_agents`` package whose source calls ``register_trainer(``."""
    import pkgutil

    found = []
    package = sys.modules[__name__.rpartition(".")[0]]  # imported before this module, always
    for mod in pkgutil.iter_modules(package.__path__):
        name = f"webgym_agents.{mod.name}"
        if mod.ispkg or name == __name__:
            continue
        path = Path(getattr(mod.module_finder, "path", "")) / f"{mod.name}.py"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "register_trainer(" in text:
            found.append(name)
    return sorted(found)


def _discover_trainers() -> None:
    """Import every trainer module (once): the ``webgym_agents`` package's, then the entry
    points'."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import importlib
    import importlib.metadata
    import warnings

    try:
        for name in _trainer_modules():
            importlib.import_module(name)
    except BaseException:
        _discovered = False
        raise
    for ep in importlib.metadata.entry_points(group=TRAINER_ENTRY_POINTS):
        try:
            ep.load()
        except Exception as err:  # noqa: BLE001 - another package's trainer must not break ours
            warnings.warn(
                f"the trainer entry point {ep.name} = {ep.value!r} does not load: {err}",
                RuntimeWarning,
                stacklevel=2,
            )


def register_trainer(
    name: str,
    train_fn: Callable[[Any, TrainRun], Path],
    presets: dict[str, Any],
    *,
    description: str = "",
    eval_agent: str | None = None,
) -> TrainerInfo:
    """Register ``train_fn`` as the trainer of agent ``name`` with ``presets`` (name -> config).

    Every preset must be a :class:`CommonConfig` (an instance of the trainer's config, which
    extends it). Registering a taken name raises ``ValueError``. Unless ``eval_agent`` names
    another agent, an agent called ``name`` is registered too: it plays this trainer's
    checkpoints (``webgym_agents.load_trained_agent``, which checks the checkpoint's
    ``trained_by``).
    """
    if name in _TRAINERS:
        raise ValueError(f"a trainer named {name!r} is already registered")
    if not presets:
        raise ValueError(f"trainer {name!r} needs at least one preset")
    for preset, config in presets.items():
        if not isinstance(config, CommonConfig):
            raise TypeError(
                f"trainer {name!r}: preset {preset!r} is a {type(config).__name__}, not a "
                "CommonConfig (a trainer's config dataclass extends "
                "webgym_agents.training.CommonConfig)"
            )
    info = TrainerInfo(name, train_fn, dict(presets), description, eval_agent or name)
    _TRAINERS[name] = info
    if eval_agent is None:
        _register_checkpoint_agent(name, description)
    return info


def _register_checkpoint_agent(name: str, description: str) -> None:
    from webgym_agents.base import _REGISTRY, register_agent

    def factory(checkpoint: str, **kwargs: Any):
        from webgym_agents.trained import load_trained_agent

        return load_trained_agent(checkpoint, trained_by=name, **kwargs)

    def check(checkpoint: str) -> str | None:
        from webgym_agents.checkpoints import policy_problem

        return policy_problem(
            checkpoint,
            trained_by=name,
            make=f"`webgym-bench train --agent {name}` makes one (OUT/checkpoints/latest)",
        )

    if name not in _REGISTRY:  # a plugin may have registered its own agent first
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


def get_trainer(name: str) -> TrainerInfo:
    """The trainer of agent ``name``; :class:`UnknownTrainerError` lists the trainable ones."""
    _discover_trainers()
    info = _TRAINERS.get(name)
    if info is None:
        names = ", ".join(sorted(_TRAINERS)) or "none registered"
        raise UnknownTrainerError(f"no trainer for agent {name!r}; trainable agents: {names}")
    return info


# ----------------------------------------------------------------------------------------------
# The training run directory


class ConfigMismatch(ValueError):
    """The output directory holds a run with another trainer or config."""


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest whole checkpoint of the training run in ``out_dir``
    (``checkpoints/latest``), or None before the first (or when there is no run)."""
    latest = Path(out_dir) / "checkpoints" / "latest"
    if latest.is_symlink() and (latest / "trainer_state.json").is_file():
        return latest
    return None


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
        if preset in info.presets:
            return f"webgym-bench train --agent {name} --preset {preset} --out {run_dir}"
    return None


def _shipped_alternative(key: str, backbone: str | None) -> str:
    """``, or set FIELD = "released:bc" ...`` when a shipped checkpoint on ``backbone`` exists
    (bc's first); else empty."""
    from webgym_agents.release import RELEASE_PREFIX, list_releases

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
    from webgym_agents.release import RELEASE_PREFIX, ReleaseError, resolve_checkpoint

    backbone = getattr(config, "backbone", None)
    for key, value in starting_checkpoints(config).items():
        if value.startswith(RELEASE_PREFIX):
            try:
                path = resolve_checkpoint(value)
            except ReleaseError as e:
                return f"{key} {value}: {e}"
        else:
            path = Path(value).expanduser()
        found = read_checkpoint(path)
        if found.is_policy:
            if backbone and found.backbone and found.backbone != backbone:
                return (
                    f"{key} {value} was trained on {found.backbone}, the config says backbone "
                    f"{backbone}: start from a policy on {backbone}"
                    + _shipped_alternative(key, backbone)
                )
            continue
        command = _command_that_makes(Path(value))
        make = f"`{command}` makes it" if command else "train a policy into it first"
        what = found.problem or f"is {found.what()}, not a policy"
        return f"{key} {value} {what}; {make}" + _shipped_alternative(key, backbone)
    return None


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class TrainRun:
    """One training run's directory (layout in the module docstring).

    ``TrainRun(out, config, trainer="bc")`` creates the directory and writes ``config.json``,
    or checks that the one there matches (:class:`ConfigMismatch` otherwise). ``keep`` is how
    many checkpoints to keep (older ones are deleted after a save; ``latest`` is always kept).

    Under data-parallel training every process makes one; only rank 0's (``main``) writes:
    elsewhere the writing methods do nothing and no progress is shown.
    """

    def __init__(
        self,
        out_dir: str | Path,
        config: Any,
        *,
        trainer: str,
        preset: str | None = None,
        keep: int = 2,
        show_progress: bool = True,
    ) -> None:
        self.dir = Path(out_dir)
        self.config = config
        self.trainer = trainer
        self.keep = max(1, int(keep))
        self.main = data_parallel.is_main()
        self.show_progress = show_progress and self.main
        self._console = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(exist_ok=True)
        wanted = {"trainer": trainer, "preset": preset, "config": config_to_dict(config)}
        if self.config_path.exists():
            old = json.loads(self.config_path.read_text())
            diffs = []
            if old.get("trainer") != trainer:
                diffs.append(f"trainer: {old.get('trainer')!r} there, {trainer!r} now")
            old_cfg, new_cfg = old.get("config", {}), wanted["config"]
            # a field added since that run was started compares as its default
            defaults = config_to_dict(type(config)()) if dataclasses.is_dataclass(config) else {}
            placement = getattr(type(config), "placement_fields", frozenset())
            for key in sorted((set(old_cfg) | set(new_cfg)) - placement):
                if old_cfg.get(key, defaults.get(key)) != new_cfg.get(key):
                    diffs.append(f"{key}: {old_cfg.get(key)!r} there, {new_cfg.get(key)!r} now")
            if diffs:
                raise ConfigMismatch(
                    f"{self.dir} holds a training run with another config; resume it with the "
                    "same preset and --config, or choose another --out. Differences: "
                    + "; ".join(diffs)
                )
        elif self.main:
            _atomic_write_text(self.config_path, json.dumps(wanted, indent=2) + "\n")

    # -------------------------------------------------------------- paths

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.csv"

    @property
    def curve_path(self) -> Path:
        return self.dir / "learning_curve.png"

    @property
    def log_path(self) -> Path:
        return self.dir / "train.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def latest_path(self) -> Path:
        """``checkpoints/latest`` (a symlink to the newest ``step-N``; absent before a save)."""
        return self.checkpoints_dir / "latest"

    def checkpoint_path(self, iteration: int) -> Path:
        return self.checkpoints_dir / f"step-{iteration}"

    def log(self, message: str) -> None:
        """Append ``<UTC> message`` to ``train.log``."""
        if not self.main:
            return
        with open(self.log_path, "a") as f:
            f.write(f"{_utc()} {message}\n")

    @property
    def console(self) -> Any:
        """The rich console that progress bars and :meth:`say` print to."""
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    def say(self, message: str) -> None:
        """:meth:`log` the message and print it (above the progress bar, when shown)."""
        self.log(message)
        if self.show_progress:
            self.console.print(message, highlight=False)

    # -------------------------------------------------------------- checkpoints

    def latest_checkpoint(self) -> Path | None:
        """The newest whole checkpoint (``checkpoints/latest``), or None before the first."""
        return latest_checkpoint(self.dir)

    def trainer_state(self) -> dict[str, Any] | None:
        """The latest checkpoint's ``trainer_state.json``, or None."""
        ckpt = self.latest_checkpoint()
        if ckpt is None:
            return None
        return json.loads((ckpt / "trainer_state.json").read_text())

    def save_checkpoint(
        self,
        iteration: int,
        save_policy: Callable[[Path], None],
        optimizer: Any = None,
        *,
        state: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``checkpoints/step-<iteration>`` and point ``latest`` at it; returns the folder.

        ``iteration`` is the number of iterations done. ``save_policy(folder)`` writes the
        weights (``LMPolicy.save``); ``state`` (JSON) goes into ``trainer_state.json`` beside
        the iteration; ``metadata`` (JSON) into ``training.json`` (what the checkpoint is:
        trainer, data); the optimizer's ``state_dict`` and the Python, NumPy and torch RNG
        states are saved with ``torch.save``.
        """
        import torch

        final = self.checkpoint_path(iteration)
        if not self.main:
            return final
        tmp = self.checkpoints_dir / f".tmp-step-{iteration}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_policy(tmp)
        trainer_state = {
            "trainer": self.trainer,
            "iteration": int(iteration),
            "saved": _utc(),
            **(state or {}),
        }
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        (tmp / "training.json").write_text(
            json.dumps({"trained_by": self.trainer, **(metadata or {})}, indent=2) + "\n"
        )
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(_rng_states(), tmp / "rng.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        link = self.checkpoints_dir / f".latest.tmp-{os.getpid()}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(final.name, link)
        os.replace(link, self.latest_path)
        self.log(f"checkpoint {final.name}")
        self._prune()
        return final

    def _prune(self) -> None:
        steps = sorted(
            (p for p in self.checkpoints_dir.glob("step-*") if p.is_dir()),
            key=lambda p: int(p.name.split("-", 1)[1]),
        )
        current = self.latest_path.resolve() if self.latest_path.is_symlink() else None
        for old in steps[: -self.keep]:
            if old.resolve() != current:
                shutil.rmtree(old, ignore_errors=True)

    def restore(self, optimizer: Any = None, *, rng: bool = True) -> int:
        """Resume from the latest checkpoint: load the optimizer state (when given) and the RNG
        states, drop metrics rows past it; returns its iteration (0 when there is none).

        The trainer loads the policy itself (``LMPolicy.load(run.latest_checkpoint())``) before
        building the optimizer over its parameters.
        """
        import torch

        ckpt = self.latest_checkpoint()
        if ckpt is None:
            self._trim_metrics(0)
            return 0
        iteration = int(json.loads((ckpt / "trainer_state.json").read_text())["iteration"])
        if optimizer is not None and (ckpt / "optimizer.pt").is_file():
            optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
        if rng and (ckpt / "rng.pt").is_file():
            _set_rng_states(torch.load(ckpt / "rng.pt", weights_only=False))
        self._trim_metrics(iteration)
        self.log(f"resumed from {ckpt.resolve().name} (iteration {iteration})")
        return iteration

    # -------------------------------------------------------------- metrics

    def metrics(self) -> list[dict[str, str]]:
        """The rows of ``metrics.csv`` (strings, as read)."""
        if not self.metrics_path.is_file():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def _trim_metrics(self, iteration: int) -> None:
        if not self.main:
            return
        rows = self.metrics()
        keep = [r for r in rows if int(float(r["iteration"])) <= iteration]
        if len(keep) == len(rows):
            return
        if not keep:
            self.metrics_path.unlink()
        else:
            self._write_rows(keep, list(rows[0].keys()))
        self.plot()

    def _write_rows(self, rows: list[dict[str, Any]], fieldnames: list[str]) -> None:
        tmp = self.metrics_path.with_name(f"metrics.csv.tmp-{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_path)

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Append one iteration's metrics (must hold ``iteration``) and redraw the curve.

        The first row fixes the columns; later rows may leave some out (blank), not add new.
        """
        if "iteration" not in row:
            raise ValueError("a metrics row needs an 'iteration' field")
        if not self.main:
            return
        new = not self.metrics_path.is_file()
        if new:
            fieldnames = list(row)
        else:
            with open(self.metrics_path, newline="") as f:
                fieldnames = next(csv.reader(f))
        with open(self.metrics_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.plot()

    def plot(self) -> Path | None:
        """Redraw ``learning_curve.png`` (:func:`webgym_agents.curves.draw_learning_curve`: the
        scores, success rates, losses, explained variance and KL that move, a few panels);
        None before the first row."""
        from webgym_agents.curves import draw_learning_curve

        rows = self.metrics() if self.main else []
        if not rows:
            return None
        draw_learning_curve(rows, self.curve_path, title=f"{self.trainer}: {self.dir.name}")
        return self.curve_path

    # -------------------------------------------------------------- progress

    @contextlib.contextmanager
    def progress(
        self, total: int, completed: int = 0, description: str = "training"
    ) -> Iterator[Callable[..., None]]:
        """A rich progress bar over ``total`` units; yields ``update(advance=1, info="")``."""
        if not self.show_progress:
            yield lambda advance=1, info="": None
            return
        from rich.progress import TextColumn

        from webgym.terminal import progress_bar

        with progress_bar(self.console, TextColumn("{task.fields[info]}")) as bar:
            task = bar.add_task(description, total=total, completed=completed, info="")

            def update(advance: int = 1, info: str = "") -> None:
                bar.update(task, advance=advance, info=info)

            yield update


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
