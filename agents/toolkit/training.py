"""What every trainer shares: the common config, the run directory, and what a trainer is
(:class:`TrainerInfo`, data). The registry that finds the trainers is
webgym_agents/toolkit/trainers.py; rollouts live in toolkit/rollouts.py, returns and advantages
in toolkit/returns.py, shared losses in toolkit/losses.py, the on-policy plumbing in
toolkit/onpolicy.py.

A trainer is one module of ``webgym_agents.algos`` (``agents/algos/<name>.py``; Digi-Q a
package) with a config dataclass holding every hyper-parameter, a ``train_<name>(config, run)``
function written top to bottom, and ``TRAINER = TrainerInfo(name, train_fn, presets, ...)``:

* **Configs.** A trainer's config dataclass extends :class:`CommonConfig` (seed, threads,
  device, backbone, episode step limit, evaluation episodes, checkpoint cadence), so that
  ``webgym-bench train`` reads those fields of any trainer directly. Each trainer has the
  presets ``smoke``, ``cpu`` and ``gpu`` (instances of its config; some add more, and older
  names stay as ``preset_aliases``). :func:`config_from_file` overrides preset fields from a
  JSON or TOML file; an unknown key is an error naming the valid ones (:class:`ConfigError`).
* **The run directory** (:class:`TrainRun`)::

      OUT/
        config.json               {"trainer", "preset", "config"}: written once, checked on resume
        metrics.csv               one row per iteration, appended
        learning_curve.png        the metrics that move against the iteration (toolkit/curves.py),
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
  redone. Under data-parallel training (toolkit/data_parallel.py) only rank 0 writes the
  directory; the other processes read it (resume) and write nothing.

Imports ``webgym`` (the env's step limit) and ``webgym_agents.toolkit``; never the trainer
registry, ``webgym_agents.algos``, the ``webgym_agents`` package face, ``webgym_benchmarks``
or ``webgym_leaderboards``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import random
import shutil
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from webgym.envs import MAX_EPISODE_STEPS
from webgym.runs import atomic_path, atomic_write_bytes
from webgym_agents.toolkit import data_parallel

__all__ = [
    "CommonConfig",
    "ConfigError",
    "ConfigMismatch",
    "TrainRun",
    "TrainerInfo",
    "config_from_file",
    "config_to_dict",
    "latest_checkpoint",
    "override_config",
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
    """The trainer runs under a multi-process launcher (agents/toolkit/data_parallel.py); a config
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


def _utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
            atomic_write_bytes(self.config_path, (json.dumps(wanted, indent=2) + "\n").encode())

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
        with atomic_path(self.metrics_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

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
        """Redraw ``learning_curve.png`` (:func:`webgym_agents.toolkit.curves.draw_learning_curve`:
        the scores, success rates, losses, explained variance and KL that move, a few panels);
        None before the first row."""
        # matplotlib on use only
        from webgym_agents.toolkit.curves import draw_learning_curve

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

        from webgym.terminal import progress_bar  # the terminal's rich on use only

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


# ----------------------------------------------------------------------------------------------
# What a trainer is: data the registry (webgym_agents.toolkit.trainers) reads


@dataclass(frozen=True)
class TrainerInfo:
    """A trainer as data: ``train_fn(config, run) -> checkpoint path`` and its presets. A
    trainer module declares one as ``TRAINER``; the registry
    (``webgym_agents.toolkit.trainers``) reads it.

    ``eval_agent`` is the agent name that plays the trainer's checkpoints in the harness (by
    default an agent of the trainer's own name, which the registry registers).
    ``preset_aliases`` maps an older preset name to the one it now is (``scorer-cpu`` ->
    ``cpu``): old commands and run directories keep working.
    """

    name: str
    train_fn: Callable[[Any, TrainRun], Path]
    presets: dict[str, Any]
    description: str = ""
    eval_agent: str = ""
    preset_aliases: dict[str, str] = field(default_factory=dict)
