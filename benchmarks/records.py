"""The run directory (docs/run-format.md): atomic writes, the manifest, episode records,
completeness, loading, and the handling of corrupt or half-written files.

A run is a directory of append-only records plus a manifest. Every whole file is written
atomically (``NAME.tmp-<pid>`` in the same folder, fsync, ``os.replace``), so a reader sees the
old file or the new one, never a mixture. An episode is complete exactly when its
``summary.json`` exists and parses into a summary of the right task; anything else in its
folder is a leftover of an interrupted attempt and is discarded when the episode is re-run.

This module is the one place that knows the layout: the runner writes through it, ``show``
and the leaderboard read through :func:`load_run`. Imports nothing from ``webgym`` or
``agents``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_IDENTITY",
    "CorruptRecord",
    "EpisodeWriter",
    "ManifestMismatch",
    "RunDir",
    "RunRecords",
    "atomic_write_bytes",
    "atomic_write_json",
    "load_run",
    "manifest_mismatches",
    "utc_now",
]

FORMAT_VERSION = 1

# The manifest fields that fix what a run measures: a resume must agree on every one of them.
# (workers, executor, command, machine... may change between the sessions of one run.)
MANIFEST_IDENTITY = (
    "format_version",
    "agent",
    "checkpoint_sha256",
    "split",
    "split_hash",
    "task_ids",
    "seed",
    "mode",
    "max_episode_steps",
)

SUMMARY_REQUIRED = ("task_id", "n_steps", "reward", "success", "error", "finished")


class CorruptRecord(ValueError):
    """A record file that exists but cannot be used (half-written, not JSON, wrong content)."""


class ManifestMismatch(ValueError):
    """An existing run directory holds a different run; the message says which fields differ."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ----------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, whole."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    """Parse ``path``; :class:`CorruptRecord` (with the reason) when it is not whole JSON."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise CorruptRecord(f"{path}: not UTF-8 text ({e})") from None
    if not text.strip():
        raise CorruptRecord(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptRecord(f"{path}: not valid JSON ({e})") from None


def sha256_file(path: Path | str) -> str:
    """sha256 of a file, or of a directory's files (sorted relative paths and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def manifest_mismatches(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The identity fields on which two manifests disagree, as readable lines."""
    out = []
    for key in MANIFEST_IDENTITY:
        a, b = old.get(key), new.get(key)
        if a != b:
            if key == "task_ids" and isinstance(a, list) and isinstance(b, list):
                out.append(
                    f"task_ids: the run covers {len(a)} tasks "
                    f"({_ids_brief(a)}), this command {len(b)} ({_ids_brief(b)})"
                )
            else:
                out.append(f"{key}: the run has {a!r}, this command {b!r}")
    return out


def _ids_brief(ids: list[str]) -> str:
    return ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "") if ids else "none"


# ----------------------------------------------------------------------------------------------
# The run directory


class RunDir:
    """Paths and small operations on one run directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # paths -----------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def episodes_path(self) -> Path:
        return self.path / "episodes"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def log_path(self) -> Path:
        return self.path / "run.log"

    @property
    def invocations_path(self) -> Path:
        return self.path / "invocations.jsonl"

    def episode_path(self, task_id: str) -> Path:
        if not task_id or "/" in task_id or task_id in (".", ".."):
            raise ValueError(f"not a usable task id for a folder name: {task_id!r}")
        return self.episodes_path / task_id

    # manifest --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict):
            raise CorruptRecord(f"{self.manifest_path}: not a JSON object")
        return manifest

    def create_or_check(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write ``manifest`` for a new run, or check it against the existing one (a resume).

        Returns the manifest in force (the existing one on a resume); raises
        :class:`ManifestMismatch` when the directory holds a different run and
        :class:`CorruptRecord` when its manifest is unreadable.
        """
        if self.exists():
            old = self.read_manifest()
            diffs = manifest_mismatches(old, manifest)
            if diffs:
                raise ManifestMismatch(
                    f"{self.path} holds a different run; refusing to resume it:\n  "
                    + "\n  ".join(diffs)
                    + "\nUse another --out, or repeat the run's own options to resume it."
                )
            return old
        if self.path.exists() and any(p.name != "run.log" for p in self.path.iterdir()):
            raise ManifestMismatch(
                f"{self.path} exists, is not empty and has no manifest.json: not a run "
                "directory; choose another --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.episodes_path.mkdir(exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    # episodes --------------------------------------------------------------------------------
    def read_episode_summary(self, task_id: str) -> dict[str, Any]:
        """The complete episode's summary; :class:`FileNotFoundError` when there is none,
        :class:`CorruptRecord` when it exists but is not a whole summary of this task."""
        path = self.episode_path(task_id) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(path)
        summary = read_json(path)
        if not isinstance(summary, dict):
            raise CorruptRecord(f"{path}: not a JSON object")
        missing = [k for k in SUMMARY_REQUIRED if k not in summary]
        if missing:
            raise CorruptRecord(f"{path}: missing fields {missing}")
        if summary["task_id"] != task_id:
            raise CorruptRecord(f"{path}: written for task {summary['task_id']!r}")
        return summary

    def scan(self, task_ids: Iterable[str]) -> EpisodeScan:
        """Sort ``task_ids`` into complete, corrupt (summary exists but unusable), partial
        (a folder without summary: an interrupted attempt) and not started."""
        scan = EpisodeScan()
        for tid in task_ids:
            try:
                scan.complete[tid] = self.read_episode_summary(tid)
            except FileNotFoundError:
                if self.episode_path(tid).exists():
                    scan.partial.append(tid)
                else:
                    scan.missing.append(tid)
            except CorruptRecord as e:
                scan.corrupt[tid] = str(e)
        return scan

    def clear_episode(self, task_id: str) -> Path:
        """Remove whatever an earlier attempt left and return the fresh, empty folder."""
        path = self.episode_path(task_id)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def read_steps(self, task_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The steps of an episode and a problem description (a torn or bad line) or None."""
        path = self.episode_path(task_id) / "steps.jsonl"
        if not path.is_file():
            return [], "steps.jsonl is missing"
        steps, problem = [], None
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    steps.append(json.loads(line))
                except json.JSONDecodeError:
                    problem = f"steps.jsonl line {i} is not JSON"
                    break
        return steps, problem

    # the log and invocations -------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append one line to ``run.log`` (single ``write`` in append mode: lines never mix)."""
        line = f"{utc_now()} pid={os.getpid()} {message}\n".encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def append_invocation(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=_json_default) + "\n").encode()
        fd = os.open(self.invocations_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read_invocations(self) -> list[dict[str, Any]]:
        if not self.invocations_path.is_file():
            return []
        out = []
        for line in self.invocations_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


@dataclass
class EpisodeScan:
    complete: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)
    partial: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[str]:
        return [*self.corrupt, *self.partial, *self.missing]


class EpisodeWriter:
    """Writes one episode's records: ``steps.jsonl`` line by line, screenshots, then the
    summary, atomically and last. Owned by exactly one worker at a time."""

    def __init__(self, run: RunDir, task_id: str) -> None:
        self.run, self.task_id = run, task_id
        self.path = run.clear_episode(task_id)
        self.n_steps = 0
        self._steps = open(self.path / "steps.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def step(self, record: dict[str, Any]) -> None:
        self._steps.write(json.dumps(record, default=_json_default) + "\n")
        self._steps.flush()
        self.n_steps += 1

    def screenshot(self, step: int, pixels: Any) -> None:
        from PIL import Image

        folder = self.path / "screenshots"
        folder.mkdir(exist_ok=True)
        tmp = folder / f"step-{step:03d}.png.tmp-{os.getpid()}"
        Image.fromarray(pixels).save(tmp, format="PNG")
        os.replace(tmp, folder / f"step-{step:03d}.png")

    def finish(self, summary: dict[str, Any]) -> None:
        self.close()
        atomic_write_json(self.path / "summary.json", summary)

    def close(self) -> None:
        if not self._steps.closed:
            self._steps.flush()
            os.fsync(self._steps.fileno())
            self._steps.close()


# ----------------------------------------------------------------------------------------------
# Loading a run


@dataclass
class RunRecords:
    """Everything :func:`load_run` could read of a run, plus what it could not."""

    path: Path
    manifest: dict[str, Any]
    episodes: list[dict[str, Any]]  # complete episode summaries, in the manifest's task order
    corrupt: dict[str, str]  # task_id -> why its summary.json is unusable
    missing: list[str]  # task ids of the manifest with no complete episode (incl. corrupt)
    warnings: list[str]  # other problems (steps that disagree with the summary, ...)
    wall_time_s: float

    @property
    def n_expected(self) -> int:
        return len(self.manifest.get("task_ids") or []) or len(self.episodes)


def load_run(path: Path | str, *, check_steps: bool = True) -> RunRecords:
    """Read a run directory without trusting any aggregate in it.

    Never raises for a bad episode file: a corrupt ``summary.json`` lands in ``corrupt``; with
    ``check_steps`` the step counters (``n_steps``, ``n_invalid_actions``, ``n_effect``) are
    recomputed from ``steps.jsonl`` and a disagreement is reported in ``warnings`` (the steps
    win). Raises :class:`CorruptRecord` / ``FileNotFoundError`` only for the manifest.
    """
    run = RunDir(path)
    if not run.manifest_path.is_file():
        raise FileNotFoundError(f"{run.path} is not a run directory (no manifest.json)")
    manifest = run.read_manifest()
    task_ids = list(manifest.get("task_ids") or [])
    if not task_ids and run.episodes_path.is_dir():
        task_ids = sorted(p.name for p in run.episodes_path.iterdir() if p.is_dir())
    scan = run.scan(task_ids)
    warnings: list[str] = []
    episodes = []
    for tid in task_ids:
        summary = scan.complete.get(tid)
        if summary is None:
            continue
        if check_steps and not summary.get("error"):
            steps, problem = run.read_steps(tid)
            if problem:
                warnings.append(f"{tid}: {problem}")
            else:
                counts = {
                    "n_steps": len(steps),
                    "n_invalid_actions": sum(1 for s in steps if s.get("last_action_error")),
                    "n_effect": sum(1 for s in steps if s.get("effect_label") == 1),
                }
                for key, value in counts.items():
                    if key in summary and summary[key] != value:
                        warnings.append(
                            f"{tid}: summary {key}={summary[key]} but steps.jsonl "
                            f"gives {value}; using the steps"
                        )
                summary = {**summary, **counts}
        episodes.append(summary)
    wall = sum(float(i.get("wall_s") or 0.0) for i in run.read_invocations())
    return RunRecords(
        run.path,
        manifest,
        episodes,
        scan.corrupt,
        [t for t in task_ids if t not in scan.complete],
        warnings,
        wall,
    )
