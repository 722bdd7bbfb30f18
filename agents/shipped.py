"""The shipped-checkpoint format: where shipped checkpoints are, what a folder holds, checking
it, and reading its weights back. Making one from a training run, and loading one as a
policy, is webgym_agents/release.py's (the folder layout and the whole story are there).

A shipped checkpoint is a folder ``agents/released/<name>/`` (``config.json``,
``adapter.safetensors``, ``head.safetensors``, ``release.json``); configs name one as
``released:<name>`` (:func:`resolve_checkpoint`). :func:`read_release` checks the files'
hashes, the base backbone's fingerprint and its weights' hash, and adds the float16 deltas to
the base encoder: what a policy class needs to build itself from the release
(``ScorerPolicy.from_release``).

Imports ``webgym`` and ``webgym_agents.models`` only (torch when weights are read); never a
policy, the toolkit, ``webgym_benchmarks`` or ``webgym_leaderboards``: the policies import it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webgym.runs import sha256_file

__all__ = [
    "RELEASED_DIR",
    "RELEASE_PREFIX",
    "TRAINED_PREFIX",
    "Release",
    "ReleaseError",
    "display_path",
    "find_release",
    "is_release",
    "list_releases",
    "read_release",
    "release_config",
    "resolve_checkpoint",
    "trained_checkpoint",
]

RELEASED_DIR = Path(__file__).resolve().parent / "released"
"""The registry of shipped checkpoints: one folder per agent name."""

RELEASE_PREFIX = "released:"
"""``released:bc`` names the shipped checkpoint ``bc`` where a config takes a checkpoint."""
TRAINED_PREFIX = "trained:"

FORMAT = "webgym-release"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
ADAPTER_FILE = "adapter.safetensors"
HEAD_FILE = "head.safetensors"
RELEASE_FILE = "release.json"
CONTENT_FILES = (CONFIG_FILE, ADAPTER_FILE, HEAD_FILE)  # what the content hash covers
_SCORER_KIND = "scorer-policy"


class ReleaseError(ValueError):
    """A shipped checkpoint that is missing, damaged, or made over other base weights; the
    message names the file and the command that rebuilds it."""


def _content_hash(file_hashes: dict[str, str]) -> str:
    """The checkpoint's hash: sha256 over its content files' names and sha256s, sorted."""
    lines = "".join(f"{name}\0{file_hashes[name]}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Release:
    """One shipped checkpoint folder (nothing is checked until :meth:`verify`)."""

    path: Path

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def info(self) -> dict[str, Any]:
        """``release.json`` (a :class:`ReleaseError` naming it when it is unreadable)."""
        return _read_json(self.path / RELEASE_FILE, self)

    @property
    def sha256(self) -> str:
        return str(self.info.get("sha256") or "")

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def results(self) -> dict[str, Any] | None:
        return self.info.get("results")

    def rebuild_hint(self) -> str:
        """How to get a whole copy back: git, or the release command."""
        try:
            rebuild = json.loads((self.path / RELEASE_FILE).read_text()).get("rebuild")
        except (OSError, ValueError):
            rebuild = None
        hint = f"restore it with `git checkout -- {display_path(self.path)}`"
        if rebuild:
            hint += f" or rebuild it with `{rebuild}`"
        return hint

    @staticmethod
    def content_files(files: dict[str, Any]) -> tuple[str, ...]:
        """The files the content hash covers: all three, or config and heads where the
        encoder is another shipped checkpoint's (``adapter_from`` in the hashed config)."""
        if ADAPTER_FILE in files:
            return CONTENT_FILES
        return tuple(n for n in CONTENT_FILES if n != ADAPTER_FILE)

    def verify(self) -> dict[str, Any]:
        """Check every file against its sha256 in ``release.json`` and the content hash;
        returns ``release.json``. A :class:`ReleaseError` names the first file that fails."""
        info = self.info
        files = info.get("files")
        if info.get("format") != FORMAT or not isinstance(files, dict):
            raise ReleaseError(
                f"{display_path(self.path / RELEASE_FILE)} is not a {FORMAT} file; "
                f"{self.rebuild_hint()}"
            )
        if info.get("format_version") != FORMAT_VERSION:
            raise ReleaseError(
                f"{display_path(self.path / RELEASE_FILE)}: format_version "
                f"{info.get('format_version')!r} is not {FORMAT_VERSION}; {self.rebuild_hint()}"
            )
        for name in self.content_files(files):
            path = self.path / name
            if name not in files:
                raise ReleaseError(
                    f"{display_path(self.path / RELEASE_FILE)} records no sha256 of {name}; "
                    f"{self.rebuild_hint()}"
                )
            if not path.is_file():
                raise ReleaseError(
                    f"shipped checkpoint {self.name}: {display_path(path)} is missing; "
                    f"{self.rebuild_hint()}"
                )
            if sha256_file(path) != files[name]:
                raise ReleaseError(
                    f"shipped checkpoint {self.name}: {display_path(path)} does not match its "
                    f"sha256 in {RELEASE_FILE} (damaged or replaced); {self.rebuild_hint()}"
                )
        if _content_hash({n: files[n] for n in self.content_files(files)}) != info.get("sha256"):
            raise ReleaseError(
                f"shipped checkpoint {self.name}: the content hash in "
                f"{display_path(self.path / RELEASE_FILE)} does not match its files; "
                f"{self.rebuild_hint()}"
            )
        return info

    def describe(self) -> str:
        """``bc (sha256 0123456789ab), reproduces Score 74.0, SR 23.0% on test (500 episodes)``"""
        text = f"{self.name} (sha256 {self.short_hash})"
        row = self.results
        if row:
            text += f", reproduces {format_row(row)}"
        else:
            text += ", no results row recorded"
        return text


def format_row(row: dict[str, Any]) -> str:
    score, sr = row.get("score"), row.get("success_rate")
    return (
        f"Score {score:.1f}, SR {sr * 100:.1f}% on {row.get('split')} "
        f"({row.get('n_episodes')} episodes, {row.get('mode')} mode)"
    )


def _read_json(path: Path, release: Release | None = None) -> dict[str, Any]:
    hint = f"; {release.rebuild_hint()}" if release is not None else ""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReleaseError(f"{display_path(path)} is missing{hint}") from None
    except (OSError, ValueError) as e:
        raise ReleaseError(f"{display_path(path)} is unreadable ({e}){hint}") from None
    if not isinstance(data, dict):
        raise ReleaseError(f"{display_path(path)} is not a JSON object{hint}")
    return data


# ----------------------------------------------------------------------------------------------
# The registry


def is_release(directory: str | Path) -> bool:
    """Whether ``directory`` is a shipped-checkpoint folder (it holds ``release.json``)."""
    return (Path(directory) / RELEASE_FILE).is_file()


def list_releases(root: str | Path | None = None) -> list[Release]:
    """Every shipped checkpoint in ``root`` (default :data:`RELEASED_DIR`), by name."""
    root = Path(root) if root is not None else RELEASED_DIR
    if not root.is_dir():
        return []
    return [Release(p) for p in sorted(root.iterdir()) if is_release(p)]


def find_release(name: str, root: str | Path | None = None) -> Release | None:
    """The shipped checkpoint of agent ``name``, or None."""
    root = Path(root) if root is not None else RELEASED_DIR
    if not name or "/" in name or name.startswith("."):
        return None
    path = root / name
    return Release(path) if is_release(path) else None


def trained_checkpoint(agent_preset: str) -> Path:
    """``<agent>/<preset>``: the latest checkpoint of the run that ``webgym-bench train --agent
    <agent> --preset <preset> --out runs/<agent>-<preset>`` writes (the GPU presets start from
    the bc run of their own preset, which is not shipped)."""
    agent, sep, preset = agent_preset.partition("/")
    if not sep or not agent or not preset:
        raise ValueError(
            f"{TRAINED_PREFIX}{agent_preset}: expected {TRAINED_PREFIX}<agent>/<preset>"
        )
    return Path("runs") / f"{agent}-{preset}" / "checkpoints" / "latest"


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint folder from a config's spelling: ``released:<name>`` is the shipped
    checkpoint ``name`` (a :class:`ReleaseError` lists the shipped ones when there is none);
    ``trained:<agent>/<preset>`` the latest checkpoint of that preset's training run
    (:func:`trained_checkpoint`); anything else is a path, returned as it is."""
    text = str(spec)
    if text.startswith(TRAINED_PREFIX):
        return trained_checkpoint(text[len(TRAINED_PREFIX) :].strip())
    if not text.startswith(RELEASE_PREFIX):
        return Path(spec)
    name = text[len(RELEASE_PREFIX) :].strip()
    release = find_release(name)
    if release is None:
        shipped = ", ".join(r.name for r in list_releases()) or "none"
        raise ReleaseError(
            f"no shipped checkpoint {name!r} (in {display_path(RELEASED_DIR)}); shipped: {shipped}"
        )
    return release.path


def _release_of(name_or_dir: str | Path) -> Release:
    text = str(name_or_dir)
    if text.startswith(RELEASE_PREFIX):
        return Release(resolve_checkpoint(text))
    path = Path(name_or_dir)
    if is_release(path):
        return Release(path)
    found = find_release(text)
    if found is None:
        shipped = ", ".join(r.name for r in list_releases()) or "none"
        raise ReleaseError(f"{text!r} is no shipped checkpoint; shipped: {shipped}")
    return found


# ----------------------------------------------------------------------------------------------
# Loading


def base_weights_hash(state: dict[str, Any]) -> str:
    """sha256 over a module's tensors (sorted names, float32 bytes): which base weights a
    release's deltas apply to (the backbone's fingerprint covers its architecture only)."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode() + b"\0" + str(tuple(t.shape)).encode() + b"\0")
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def release_config(directory: str | Path) -> dict[str, Any]:
    """A shipped checkpoint's ``config.json`` (the fields ``policy.json`` has, and more)."""
    release = Release(Path(directory))
    return _read_json(release.path / CONFIG_FILE, release)


def _adapter_path(release: Release, config: dict[str, Any]) -> Path:
    """The adapter file a release's encoder is made of: its own, or the shared one that
    ``adapter_from`` names, checked against the sha256 recorded there."""
    shared = config.get("adapter_from")
    if not shared:
        if not (release.path / ADAPTER_FILE).is_file():
            raise ReleaseError(
                f"shipped checkpoint {release.name}: {display_path(release.path / ADAPTER_FILE)} "
                f"is missing; {release.rebuild_hint()}"
            )
        return release.path / ADAPTER_FILE
    path = release.path.parent / str(shared.get("name")) / ADAPTER_FILE
    if not path.is_file():
        raise ReleaseError(
            f"shipped checkpoint {release.name} uses the encoder of {shared.get('name')!r}, "
            f"whose {display_path(path)} is missing; {release.rebuild_hint()}"
        )
    if sha256_file(path) != shared.get("sha256"):
        raise ReleaseError(
            f"shipped checkpoint {release.name} was made over {shared.get('name')}'s encoder "
            f"with sha256 {str(shared.get('sha256'))[:12]}, and {display_path(path)} is another "
            f"(re-released or damaged); {release.rebuild_hint()}"
        )
    return path


@dataclass(frozen=True)
class ReleaseWeights:
    """What :func:`read_release` reads: the checked release, its ``release.json`` (``info``)
    and ``config.json`` (``config``), the backbone with the release's deltas added to its
    encoder's tensors, and the heads' tensors (float32, as stored)."""

    release: Release
    info: dict[str, Any]
    config: dict[str, Any]
    backbone: Any
    heads: dict[str, Any]


def read_release(name_or_dir: str | Path, *, backbone: Any = None) -> ReleaseWeights:
    """A shipped checkpoint's weights: ``name`` (``bc``), ``released:bc`` or a folder. Checks
    the files' hashes, the base backbone's fingerprint and its weights' hash, then adds the
    float16 deltas to the base encoder (``backbone``, loaded when None)."""
    import torch
    from safetensors.torch import load_file

    # with the weights only: the backbones import torch and transformers
    from webgym_agents.models.backbone import BackboneMismatch, load_backbone

    release = _release_of(name_or_dir)
    info = release.verify()
    config = release_config(release.path)
    if config.get("kind") != _SCORER_KIND:
        raise ReleaseError(
            f"{display_path(release.path / CONFIG_FILE)} holds a {config.get('kind')!r}; only "
            f"{_SCORER_KIND} checkpoints are shipped"
        )
    name = config["backbone"]
    if backbone is None:
        backbone = load_backbone(name)
    if backbone.name != name:
        raise BackboneMismatch(f"{release.path} was made over {name}, not {backbone.name}")
    try:
        backbone.check_fingerprint(config.get("fingerprint") or {})
    except BackboneMismatch as e:
        raise ReleaseError(f"shipped checkpoint {release.name}: {e}") from None
    base = backbone.model.state_dict()
    if base_weights_hash(base) != config.get("base_sha256"):
        raise ReleaseError(
            f"shipped checkpoint {release.name} was made over other {name} weights than the "
            f"installed ones (base_sha256 in {display_path(release.path / CONFIG_FILE)}); "
            f"{release.rebuild_hint()}"
        )
    deltas = load_file(str(_adapter_path(release, config)))
    unknown = sorted(set(deltas) - set(base))
    if unknown:
        raise ReleaseError(
            f"{display_path(release.path / ADAPTER_FILE)} holds tensors the base encoder lacks: "
            f"{', '.join(unknown[:5])}; {release.rebuild_hint()}"
        )
    with torch.no_grad():
        for key, delta in deltas.items():
            base[key].add_(delta.to(base[key].dtype))
    heads = load_file(str(release.path / HEAD_FILE))
    return ReleaseWeights(release, info, config, backbone, heads)
