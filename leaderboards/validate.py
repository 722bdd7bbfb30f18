"""Validation of a run directory before it enters the leaderboard.

``validate_run(run_dir, known_splits)`` reads a run (format: ``docs/run-format.md``) strictly,
re-derives its metrics from the episode records and returns a ``ValidatedRun``, or raises
``SubmissionRefused`` with a reason a person can act on. Checks, in order:

1. the manifest parses and carries its provenance (agent, created, package versions, machine,
   and WebGym's git hash or, without one, WebGym's version), each in its form: a git hash is
   a commit id (7 to 40 hex digits, or 64), the creation time is not in the future
   (``CLOCK_SKEW`` allowed), an agent whose registry entry loads a checkpoint
   (``webgym_agents.check_agent``: the trained ones) names its checkpoint's sha256, and the step
   limit is a positive integer;
2. the split it was made on is a known split *version* (same name and content hash as in the
   catalog) and every task id belongs to it;
3. its task set is the whole split or a prefix of it (what ``--episodes N`` selects): a run
   with episodes dropped, or on chosen tasks, is not comparable with any other and is refused;
4. the run is complete: every task id of the manifest has a valid ``summary.json`` (the missing
   ones are named; a corrupt file is named);
5. each episode summary agrees with its ``steps.jsonl`` (number of steps, error episodes
   included; final reward; success == (reward == 1.0); invalid-action and effect counts), its
   seed is the one the run's seed and its task id give (``webgym.runs.episode_seed``), and its
   ``observations.jsonl``, where it has one, holds the pages of its steps
   (``webgym.runs.observations_problem``);
6. the metrics recomputed from those records (``webgym_benchmarks.metrics``, the one way to compute
   them) equal the run's ``summary.json``.

Before any of them, every entry under the run must be a regular file or folder inside it
(``RunRecords.unsafe``: no symlink, of a file or a folder, no FIFO, no device).

The run is read once, by ``webgym.runs.read_run`` (the one reader of a run: bounded, line by
line, never blocking), which returns its records and what it could not read as problems;
these checks are the leaderboard's policy over them, strict: where a resume would quietly redo
a bad episode and ``show`` would warn, a submission is refused, at the first problem in the
order above. ``validate_run`` takes a run directory or the records read from it already.

These checks read files only. Whether the records are what the shop does with the recorded
actions is :mod:`webgym_leaderboards.verify`'s replay, which ``submit`` runs after them.

An entry's identity (:func:`records_digest`) is what happened, never what the manifest says
about it: the task set (split and version, catalog content, the number of tasks, step limit,
mode) and each episode's replayed content (actions, observation digests, rewards, purchase);
not timestamps, timings, retry counts, the agent's name or the run's seed, nor what the agent
said of why it acted (a step's ``decision``) or the page texts (``observations.jsonl``). The
duplicate check (the same identity already on the board) belongs to the store, which
``webgym_leaderboards.submit`` consults.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from webgym.runs import (
    STEPS_FILE,
    SUMMARY_FILE,
    RunDir,
    RunProblem,
    RunRecords,
    episode_seed,
    observations_problem,
    run_records,
    step_counts,
)

# ... and WebGym's commit (``git_hash``) or, for a run made from an install that is no git
# checkout, its version (``package_versions.webgym``).
PROVENANCE_FIELDS = ("agent", "created", "package_versions", "machine")
# Metrics compared between the recomputation and the run's summary.json (when present there).
COMPARED_METRICS = (
    "n_episodes",
    "score",
    "score_se",
    "success_rate",
    "success_se",
    "avg_steps",
    "invalid_action_rate",
    "effect_rate",
    "n_errors",
)
REL_TOL = 1e-6
ABS_TOL = 1e-6
# A run's ``created`` may be this far ahead of this machine's clock (clocks of two machines).
CLOCK_SKEW = timedelta(minutes=10)
# What ``git rev-parse HEAD`` prints (full or abbreviated; SHA-1, or SHA-256 repositories).
COMMIT_ID = re.compile(r"[0-9a-f]{7,40}|[0-9a-f]{64}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Rewards enter the identity rounded: the replay compares them with a tolerance, so a forger's
# 1e-12 added to a reward must not make the episode new.
DIGEST_DECIMALS = 6


class SubmissionRefused(Exception):
    """A run that may not enter the leaderboard; ``reason`` says why (printed to the user)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Episode:
    """One complete episode as read from disk (summary and the steps it claims)."""

    task_id: str
    summary: dict[str, Any]
    steps: list[dict[str, Any]]
    dir: Path
    # observations.jsonl: the page texts after the reset and each step (none in older runs)
    observations: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # the screenshots that are not regular PNG files inside the run, one line each
    screenshot_problems: list[str] = field(default_factory=list, repr=False)

    @property
    def summary_path(self) -> Path:
        return self.dir / SUMMARY_FILE

    @property
    def steps_path(self) -> Path:
        return self.dir / STEPS_FILE


@dataclass(frozen=True)
class ValidatedRun:
    """A run that passed every check; ``entry()`` is the row the store keeps.

    ``split_size`` is the size of the split in the catalog it was checked against (not the
    manifest's word); ``catalog_hash`` the content hash of the catalog the run is ranked on
    (``submit`` sets the one it replayed on; else the manifest's, or "" when it names none).
    """

    run_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    episodes: list[Episode] = field(repr=False)
    split_size: int = 0
    catalog_hash: str = ""

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    @property
    def max_steps(self) -> int:
        """The step limit the episodes were played under (``--max-steps``)."""
        return int(self.manifest["max_episode_steps"])

    @property
    def task_set(self) -> str:
        """The tasks the run covers, as the board shows them: ``test (500)``, ``test[:20]``."""
        m = self.manifest
        return task_set_label(m["split"], len(m["task_ids"]), self.split_size)

    @property
    def task_set_key(self) -> dict[str, Any]:
        """What makes two runs comparable: the same tasks of the same split version on the same
        catalog content, under the same step limit, in the same mode."""
        m = self.manifest
        return {
            "split": m["split"],
            "split_hash": m["split_hash"],
            "catalog_hash": self.catalog_hash,
            "n_tasks": len(m["task_ids"]),
            "max_steps": self.max_steps,
            "mode": m.get("mode"),
        }

    @property
    def records_digest(self) -> str:
        """The entry's identity: :func:`records_digest` of its task set and episodes."""
        return records_digest(self.task_set_key, self.episodes)

    def entry(self) -> dict[str, Any]:
        m, x = self.manifest, self.metrics
        return {
            "run_id": self.run_id,
            "agent": m["agent"],
            "checkpoint": m.get("checkpoint"),
            "checkpoint_sha256": m.get("checkpoint_sha256"),
            "split": m["split"],
            "split_hash": m["split_hash"],
            "catalog_hash": self.catalog_hash,
            "mode": m.get("mode"),
            "max_steps": self.max_steps,
            "task_set": self.task_set,
            "n_tasks": len(m["task_ids"]),
            "n_episodes": int(x["n_episodes"]),
            "score": float(x["score"]),
            "score_se": float(x.get("score_se") or 0.0),
            "success_rate": float(x["success_rate"]),
            "success_se": float(x.get("success_se") or 0.0),
            "avg_steps": float(x["avg_steps"]),
            "run_created": m["created"],
            "git_hash": m.get("git_hash") or "",  # "": made from an install, not a checkout
            "git_dirty": bool(m.get("git_dirty")),
            "package_versions": m["package_versions"],
            "machine": m["machine"],
            "run_path": str(self.run_dir.resolve()),
            "records_digest": self.records_digest,
            "metrics": x,
        }


# ---------------------------------------------------------------------------------------------
# What a problem of the records means here (webgym.runs.read_run reads them)


def check_manifest(records: RunRecords) -> dict[str, Any]:
    """The run's manifest, when the leaderboard can read it: a manifest of this format version
    naming its split, split version and tasks; else ``SubmissionRefused``."""
    problem, path = records.manifest_problem, RunDir(records.path).manifest_path
    if problem is not None:
        if problem.kind == "missing" and problem.path == path:
            raise SubmissionRefused(f"run manifest is missing: {path}")
        if problem.kind == "corrupt":
            raise SubmissionRefused(f"corrupt run manifest {problem.message}")
        raise SubmissionRefused(problem.message)  # not a folder, unsafe, another format
    manifest = records.manifest
    for key in ("split", "split_hash", "task_ids"):
        if key not in manifest:
            raise SubmissionRefused(f"{path} has no {key!r}")
    if not isinstance(manifest["task_ids"], list) or not manifest["task_ids"]:
        raise SubmissionRefused(f"{path}: 'task_ids' is empty")
    return manifest


def check_files(records: RunRecords) -> None:
    """Every entry under the run is a regular file or folder inside it (no symlink, FIFO,
    device, socket); else ``SubmissionRefused`` naming the first."""
    unsafe = records.unsafe
    if unsafe:
        more = f" (and {len(unsafe) - 1} more)" if len(unsafe) > 1 else ""
        raise SubmissionRefused(unsafe[0].message + more)


def file_refusal(problem: RunProblem) -> str:
    """A problem of an episode's file, in the words of a refusal: naming the file."""
    if str(problem.path) in problem.message:
        return problem.message
    return f"corrupt episode file {problem.path}: {problem.message}"


def read_episodes(records: RunRecords) -> list[Episode]:
    """Every episode of the manifest's tasks, complete and readable, or ``SubmissionRefused``."""
    episodes = [records.by_task[tid] for tid in records.task_ids]
    unnamed = [ep for ep in episodes if ep.state == "unnamed"]
    if unnamed:  # a task id that cannot be a folder name
        path = RunDir(records.path).manifest_path
        raise SubmissionRefused(f"{path}: {unnamed[0].problems[0].message}")
    damaged = [ep for ep in episodes if ep.state == "damaged"]
    if damaged:
        raise SubmissionRefused(damaged[0].problems[0].message)
    corrupt = records.corrupt
    if corrupt:
        why = next(iter(corrupt.values()))
        more = f" (and {len(corrupt) - 1} more)" if len(corrupt) > 1 else ""
        raise SubmissionRefused(f"corrupt episode file {why}{more}")
    missing = records.missing
    if missing:
        raise SubmissionRefused(
            f"incomplete run: {len(missing)} of {len(records.task_ids)} episodes have no "
            f"summary.json: {_names(missing)} (resume the run to finish them)"
        )
    out = []
    for ep in episodes:
        problem = ep.steps_problem
        if problem is not None and problem.kind != "missing":  # a missing file holds no steps
            raise SubmissionRefused(file_refusal(problem))
        if ep.observations_problem is not None:
            raise SubmissionRefused(file_refusal(ep.observations_problem))
        out.append(
            Episode(
                ep.task_id,
                ep.summary,
                ep.steps,
                ep.path,
                ep.observations,
                [p.message for p in ep.screenshot_problems],
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Metrics (webgym_benchmarks.metrics: the one way to compute them)


def recompute_metrics(episodes: list[Episode], n_expected: int) -> dict[str, Any]:
    """The run's metrics from its (already cross-checked) episode summaries."""
    from webgym_benchmarks.metrics import compute_metrics, episodes_frame

    frame = episodes_frame([e.summary for e in episodes])
    return dict(compute_metrics(frame, n_expected=n_expected))


def _reward(x: Any) -> float:
    return round(float(x or 0.0), DIGEST_DECIMALS)


def machine_failure(record: dict[str, Any]) -> bool:
    """The step of an error episode on which the machine failed: the env truncated it with
    the error as its action error, and no reward (the one step a replay does not check)."""
    return (
        record.get("truncated") is True
        and record.get("terminated") is False
        and bool(record.get("last_action_error"))
        and record.get("reward") == 0.0
    )


def _action_key(record: dict[str, Any]) -> str:
    """A step's action as it enters the identity: its canonical form (``Action.to_string``),
    so that spelling (quotes, spaces, an ``Action:`` prefix) does not make an episode new; an
    action that failed (an action error, which the replay reproduces) is ``"invalid"``, whatever
    was typed."""
    from webgym.actions import InvalidAction, parse_action

    if record.get("last_action_error"):
        return "invalid"
    try:
        return parse_action(str(record.get("action"))).to_string()
    except InvalidAction:
        return "invalid"


def episode_content(ep: Episode) -> dict[str, Any]:
    """What a replay shows of an episode (``webgym_leaderboards.verify``): per step the action
    (:func:`_action_key`), the observation digest and the reward; the episode's reward and
    purchase. Nothing the replay does not check takes part: not timings, retries, finish time,
    seed or error text; not the step an error episode's machine failed on (a trailing step that
    looks like one is left out, error or not); and the purchase only where the replay checks it
    and it paid (an error episode counts 0, and its purchase is not checked)."""
    s, steps = ep.summary, ep.steps
    if steps and machine_failure(steps[-1]):
        steps = steps[:-1]
    reward = _reward(s.get("reward"))
    paid = not s.get("error") and reward > 0
    return {
        "task_id": ep.task_id,
        "steps": [
            [_action_key(st), st.get("obs_digest"), _reward(st.get("reward"))] for st in steps
        ],
        "reward": reward,
        "purchased_asin": s.get("purchased_asin") if paid else None,
    }


def records_digest(task_set: dict[str, Any], episodes: list[Episode]) -> str:
    """sha256 over the task set (:attr:`ValidatedRun.task_set_key`) and the episodes' replayed
    content (:func:`episode_content`, by task id), canonical JSON: an entry's identity, the
    duplicate key. Two runs whose episodes did the same on the same task set have one digest,
    whatever their manifests, timings or agent names say."""
    content = sorted((episode_content(e) for e in episodes), key=lambda c: c["task_id"])
    blob = json.dumps(
        {"task_set": task_set, "episodes": content},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Checks


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def _check_provenance(manifest: dict[str, Any], path: Path) -> None:
    missing = [k for k in PROVENANCE_FIELDS if not manifest.get(k)]
    if missing:
        raise SubmissionRefused(
            f"missing provenance in {path}: {', '.join(missing)} (a leaderboard row must say "
            "what produced it; re-run with `webgym-bench run`)"
        )
    for key in ("package_versions", "machine"):
        if not isinstance(manifest[key], dict):
            raise SubmissionRefused(f"missing provenance in {path}: {key!r} is not an object")
    for key in ("agent", "created"):
        if not isinstance(manifest[key], str):
            raise SubmissionRefused(f"bad provenance in {path}: {key!r} is not a string")
    _check_created(manifest["created"], path)
    commit, version = manifest.get("git_hash"), manifest["package_versions"].get("webgym")
    if commit is None and not (isinstance(version, str) and version.strip()):
        raise SubmissionRefused(
            f"missing provenance in {path}: git_hash, and no package_versions.webgym either (a "
            "leaderboard row must say which WebGym made it: its commit or its version; re-run "
            "with `webgym-bench run`)"
        )
    if commit is not None and not (isinstance(commit, str) and COMMIT_ID.fullmatch(commit)):
        raise SubmissionRefused(
            f"bad provenance in {path}: git_hash {commit!r} is not a commit id "
            "(7 to 40 hex digits, or 64, as `git rev-parse HEAD` prints)"
        )
    _check_checkpoint(manifest, path)
    limit = manifest.get("max_episode_steps")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise SubmissionRefused(
            f"{path}: max_episode_steps {limit!r} is not a positive integer (the step limit is "
            "part of the run's task set)"
        )


def _check_created(created: str, path: Path) -> None:
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise SubmissionRefused(
            f"missing provenance in {path}: 'created' is not an ISO 8601 time ({created!r})"
        ) from None
    if when.tzinfo is None:  # the harness writes UTC with a Z; a bare time is read as UTC
        when = when.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if when > now + CLOCK_SKEW:
        raise SubmissionRefused(
            f"bad provenance in {path}: created {created!r} is in the future (this machine's "
            f"clock says {now.isoformat(timespec='seconds')})"
        )


def _check_checkpoint(manifest: dict[str, Any], path: Path) -> None:
    """A named checkpoint hash is a sha256; an agent that plays a checkpoint (its registry
    entry ``needs_checkpoint``: the trained agents) names one, an agent that takes none names
    none. An agent this installation does not know or cannot load (a plugin's), and a
    ``module:factory`` agent (whose module is not imported), are checked for form only."""
    agent, sha = manifest["agent"], manifest.get("checkpoint_sha256")
    if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise SubmissionRefused(
            f"bad provenance in {path}: checkpoint_sha256 {sha!r} is not a sha256 (64 hex digits)"
        )
    from webgym_agents import AgentLoadError, UnknownAgentError, check_agent, is_agent_spec

    if is_agent_spec(agent):  # module:factory: never imported on a manifest's word
        return
    try:
        info = check_agent(agent)
    except (UnknownAgentError, AgentLoadError):  # a plugin not installed, or broken, here
        return
    except ValueError:  # it needs a checkpoint
        if sha is None:
            raise SubmissionRefused(
                f"bad provenance in {path}: agent {agent!r} plays a trained checkpoint, but the "
                "manifest names no checkpoint_sha256 (re-run with --checkpoint)"
            ) from None
        return
    if not info.needs_checkpoint and sha is not None:
        raise SubmissionRefused(
            f"bad provenance in {path}: agent {agent!r} takes no checkpoint, but the manifest "
            "names a checkpoint_sha256"
        )


def task_set_label(split: str, n_tasks: int, split_size: int | None) -> str:
    """``test (500)`` for a whole split, ``test[:20]`` for its first 20 tasks."""
    return f"{split} ({n_tasks})" if n_tasks == split_size else f"{split}[:{n_tasks}]"


def _split_versions(known_splits: Any) -> dict[str, dict[str, Any]]:
    """``{name: {"hash": ..., "task_ids": list | None}}`` from TaskSplits or plain hashes
    (with plain hashes the task ids cannot be checked, and the run is refused)."""
    out: dict[str, dict[str, Any]] = {}
    for name, split in dict(known_splits).items():
        if isinstance(split, str):
            out[name] = {"hash": split, "task_ids": None}
        else:
            out[name] = {"hash": split.hash, "task_ids": list(split.task_ids)}
    return out


def _check_split(manifest: dict[str, Any], known_splits: Any) -> int:
    """Check the run's split version and tasks; returns the split's size in this catalog."""
    versions = _split_versions(known_splits)
    name, got = manifest["split"], manifest["split_hash"]
    if name not in versions:
        known = ", ".join(sorted(versions)) or "none"
        raise SubmissionRefused(
            f"run made on split {name!r}, which this catalog does not have (splits: {known})"
        )
    want = versions[name]["hash"]
    if got != want:
        raise SubmissionRefused(
            f"run made on split {name!r} version {got}; this catalog's {name!r} is {want} "
            "(the tasks differ: re-run the agent on this catalog's split)"
        )
    ids = versions[name]["task_ids"]
    task_ids = manifest["task_ids"]
    if len(set(task_ids)) != len(task_ids):
        raise SubmissionRefused("the manifest lists a task id twice")
    if ids is None:
        raise SubmissionRefused(
            f"cannot check the tasks of the run: split {name!r} is known here by its hash only"
        )
    known = set(ids)
    foreign = [t for t in task_ids if t not in known]
    if foreign:
        raise SubmissionRefused(f"task ids not in split {name!r}: {_names(foreign)}")
    _check_task_set(manifest, ids)
    return len(ids)


def _check_task_set(manifest: dict[str, Any], split_ids: list[str]) -> None:
    """A run covers its split or the split's first N tasks (``--episodes N``), nothing else:
    a Score over tasks someone chose (or over the episodes left after dropping the failed
    ones) cannot be ranked against anyone's."""
    name, task_ids = manifest["split"], manifest["task_ids"]
    prefix = split_ids[: len(task_ids)]
    if set(task_ids) == set(prefix):
        if manifest.get("split_size") not in (None, len(split_ids)):
            raise SubmissionRefused(
                f"the manifest says split {name!r} has {manifest['split_size']} tasks; "
                f"it has {len(split_ids)}"
            )
        return
    outside = [t for t in prefix if t not in set(task_ids)]
    raise SubmissionRefused(
        f"the run covers {len(task_ids)} chosen tasks of split {name!r}, not the whole split "
        f"nor its first {len(task_ids)} (missing from that prefix: {_names(outside)}); the "
        f"board ranks runs over the same tasks only: run the whole split, or --episodes N"
    )


def _names(ids: list[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


def _check_episode(ep: Episode, manifest: dict[str, Any]) -> None:
    split = manifest["split"]
    s, path = ep.summary, ep.summary_path
    for key in ("task_id", "n_steps", "reward", "success"):
        if key not in s:
            raise SubmissionRefused(f"corrupt episode file {path}: no {key!r}")
    if s["task_id"] != ep.task_id:
        raise SubmissionRefused(
            f"corrupt episode file {path}: task_id {s['task_id']!r} in the folder of {ep.task_id}"
        )
    if s.get("split", split) != split:
        raise SubmissionRefused(
            f"episode {ep.task_id}: summary says split {s['split']!r}, manifest {split!r}"
        )
    try:
        reward, n_steps = float(s["reward"]), int(s["n_steps"])
    except (TypeError, ValueError):
        raise SubmissionRefused(
            f"corrupt episode file {path}: reward/n_steps are not numbers"
        ) from None
    if not math.isfinite(reward) or not 0.0 <= reward <= 1.0:
        raise SubmissionRefused(f"episode {ep.task_id}: reward {reward} is outside [0, 1]")
    if bool(s["success"]) != (reward == 1.0):
        raise SubmissionRefused(
            f"episode {ep.task_id}: success={s['success']} but reward is {reward} "
            "(success means reward == 1.0)"
        )
    want_seed = episode_seed(int(manifest.get("seed") or 0), ep.task_id)
    if s.get("seed") != want_seed:
        raise SubmissionRefused(
            f"episode {ep.task_id}: seed {s.get('seed')!r}, but the run's seed "
            f"{manifest.get('seed')!r} gives {want_seed} for this task (webgym.runs.episode_seed)"
        )
    steps_path = ep.steps_path
    # error episodes too: their steps.jsonl is the last attempt's, n_steps counts its lines
    if n_steps != len(ep.steps):
        raise SubmissionRefused(
            f"episode {ep.task_id}: summary.json says n_steps={n_steps} but {steps_path} has "
            f"{len(ep.steps)} step lines"
        )
    limit = int(manifest["max_episode_steps"])
    if n_steps > limit:
        raise SubmissionRefused(
            f"episode {ep.task_id}: {n_steps} steps, beyond the run's limit of {limit}"
        )
    numbers = [st.get("step") for st in ep.steps]
    if numbers != list(range(1, len(ep.steps) + 1)):
        raise SubmissionRefused(
            f"episode {ep.task_id}: {steps_path} steps are not numbered 1..{len(ep.steps)}"
        )
    bad = next((st["step"] for st in ep.steps if not isinstance(st.get("action"), str)), None)
    if bad is not None:
        raise SubmissionRefused(f"episode {ep.task_id}: step {bad} records no action string")
    why = observations_problem(ep.steps, ep.observations)
    if why:
        raise SubmissionRefused(f"episode {ep.task_id}: {why}")
    if s.get("error"):
        # an episode that failed after every retry counts as reward 0; its steps are checked
        # by the replay (they must agree up to where the attempt stopped)
        if reward != 0.0:
            raise SubmissionRefused(
                f"episode {ep.task_id}: counted as an error ({s['error']!r}) but its reward is "
                f"{reward}, not 0"
            )
        return
    if not ep.steps:
        raise SubmissionRefused(
            f"episode {ep.task_id}: no steps, and no error: an episode is played until it ends"
        )
    last = float(ep.steps[-1].get("reward") or 0.0) if ep.steps else 0.0
    if not _close(last, reward):
        raise SubmissionRefused(
            f"episode {ep.task_id}: reward mismatch: summary.json says {reward} but the last "
            f"step in steps.jsonl has reward {last}"
        )
    counts = step_counts(ep.steps)
    for key in ("n_invalid_actions", "n_effect"):
        count = counts[key]
        if key in s and s[key] != count:
            raise SubmissionRefused(
                f"episode {ep.task_id}: summary.json says {key}={s[key]} but steps.jsonl "
                f"gives {count}"
            )


def _check_summary(records: RunRecords, metrics: dict[str, Any]) -> None:
    path, problem = RunDir(records.path).summary_path, records.summary_problem
    if problem is not None and problem.kind == "missing":
        raise SubmissionRefused(
            f"{path} is missing: the run did not finish (resume it with `webgym-bench run`)"
        )
    if problem is not None:
        raise SubmissionRefused(f"corrupt run summary {problem.message}")
    claimed = records.summary
    if claimed.get("complete") is False:
        raise SubmissionRefused(f"{path} says the run is not complete")
    diffs = [
        f"{k}: summary.json says {claimed[k]} but the records give {metrics[k]}"
        for k in COMPARED_METRICS
        if k in claimed and k in metrics and not _close(claimed[k], metrics[k])
    ]
    if diffs:
        raise SubmissionRefused(
            "the run's summary.json disagrees with its episode records: " + "; ".join(diffs)
        )


def validate_run(run: Path | str | RunRecords, known_splits: Any) -> ValidatedRun:
    """Check a run directory for the leaderboard (see the module docstring): ``run`` is its
    path, or its records (``webgym.runs.read_run``) when the caller has read it already.

    ``known_splits``: ``{name: TaskSplit}`` (e.g. ``catalog.splits()``) or ``{name: hash}``.
    Raises ``SubmissionRefused`` with the reason.
    """
    records = run_records(run)
    manifest = check_manifest(records)
    check_files(records)
    _check_provenance(manifest, RunDir(records.path).manifest_path)
    split_size = _check_split(manifest, known_splits)

    episodes = read_episodes(records)
    for ep in episodes:
        _check_episode(ep, manifest)

    metrics = recompute_metrics(episodes, len(records.task_ids))
    _check_summary(records, metrics)
    recorded = manifest.get("catalog")
    catalog_hash = recorded.get("content_hash") if isinstance(recorded, dict) else None
    return ValidatedRun(
        records.path,
        manifest,
        metrics,
        episodes,
        split_size=split_size,
        catalog_hash=catalog_hash if isinstance(catalog_hash, str) else "",
    )
