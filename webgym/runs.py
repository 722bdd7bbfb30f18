"""The run-record format (docs/run-format.md): the one module that reads and writes run
directories.

A run is a directory of append-only records plus a manifest::

    RUN/manifest.json                            build_manifest, RunDir.create_or_check
    RUN/episodes/<task_id>/steps.jsonl           step_record, EpisodeWriter.step
    RUN/episodes/<task_id>/observations.jsonl    observation_record, EpisodeWriter.observation
    RUN/episodes/<task_id>/screenshots/step-NNN.png    screenshot_path, EpisodeWriter.screenshot
    RUN/episodes/<task_id>/summary.json          episode_summary, EpisodeWriter.finish
    RUN/results.parquet, RUN/results.csv         RunDir.results_paths (webgym_benchmarks.metrics)
    RUN/summary.json                             RunDir.write_summary / read_summary
    RUN/run.log, RUN/invocations.jsonl           RunDir.log, RunDir.append_invocation
    RUN/run.lock                                 RunDir.lock (one writer at a time)

Every whole file is written atomically (:func:`atomic_path`: a temporary name in the same
folder, fsync, ``os.replace``), so a reader sees the old file or the new one, never a mixture.
An episode is complete exactly when its ``summary.json`` exists and parses into a summary of
the right task; anything else in its folder is a leftover of an interrupted attempt and is
discarded when the episode is re-run.

What must agree between whoever writes a run and whoever re-plays it lives here too: the
episode seed (:func:`episode_seed`, a function of the run seed and the task id alone) and the
observation digest (:func:`obs_digest`) that a replay checks every rebuilt page against.

Writers: the harness (``webgym_benchmarks.runner``), the tests. Readers: one, :func:`read_run`,
which returns a run's records and, as :class:`RunProblem` s, what it could not read, raising on
none; its callers say what a problem means: ``webgym-bench show`` and ``compare`` (through
:func:`load_run`) warn, the leaderboard's validation refuses, its viewer shows it. A resume reads
episodes through the same :meth:`RunDir.read_episode` (:meth:`RunDir.scan`), and so do the
trainers (``webgym_agents.algos.bc`` re-plays runs). Imports nothing above ``webgym`` (and nothing
heavy: Pillow only to write a screenshot).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import stat
import subprocess
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "BENCH_SEED_SALT",
    "FORMAT_VERSION",
    "MAX_JSON_BYTES",
    "MAX_LINE_BYTES",
    "MAX_OBSERVATION_CHARS",
    "OBSERVATIONS_FILE",
    "MAX_SCREENSHOT_BYTES",
    "PNG_SIGNATURE",
    "MANIFEST_IDENTITY",
    "STEPS_FILE",
    "SUMMARY_FILE",
    "SUMMARY_REQUIRED",
    "TRAIN_SEED_SALT",
    "CorruptRecord",
    "EpisodeRecords",
    "EpisodeScan",
    "EpisodeWriter",
    "ManifestMismatch",
    "RunDir",
    "RunLock",
    "RunLocked",
    "RunProblem",
    "RunRecords",
    "UnsafeFile",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "build_manifest",
    "chain_step",
    "decision_record",
    "collect_provenance",
    "is_webgym_checkout",
    "episode_seed",
    "episode_summary",
    "folder_problem",
    "load_run",
    "read_run",
    "run_records",
    "manifest_mismatches",
    "obs_digest",
    "observation_matches",
    "observation_record",
    "observations_problem",
    "open_regular",
    "path_problem",
    "png_problem",
    "read_jsonl",
    "records_problem",
    "read_bounded",
    "read_json",
    "screenshot_name",
    "screenshot_path",
    "sha256_file",
    "webgym_commit",
    "step_counts",
    "steps_digest",
    "step_record",
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

# Bounds on what a reader of a run reads into memory. A step line holds no observation (only
# its digest, the URL, the action): a few hundred bytes, 1 MiB leaves room for any action an
# agent may write. A JSON file (the manifest lists the task ids; a summary) is small too.
MAX_LINE_BYTES = 1 << 20  # one line of steps.jsonl / invocations.jsonl
MAX_JSON_BYTES = 16 << 20  # manifest.json, summary.json
MAX_SCREENSHOT_BYTES = 64 << 20  # one screenshot
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_SIDE = 16384  # pixels, width or height, of a sane screenshot
# An observation's page text is kept whole up to this many characters (a text-mode page is
# about 500): written as UTF-8 JSON, a line stays well inside MAX_LINE_BYTES.
MAX_OBSERVATION_CHARS = 100_000
# The bounds of a step's ``decision`` (what the agent said of why it acted): a few KB a step.
MAX_REASON_CHARS = 500
MAX_DECISION_TEXT_CHARS = 4000
MAX_CANDIDATES = 10
MAX_CANDIDATE_CHARS = 300

# The file names inside an episode's folder (episodes/<task_id>/).
STEPS_FILE = "steps.jsonl"
OBSERVATIONS_FILE = "observations.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"

# Salts of :func:`episode_seed`. The harness's episodes (the ones recorded in runs, and re-played
# from them) use BENCH_SEED_SALT; trainers' own rollouts use TRAIN_SEED_SALT, so that training
# never plays a task from the very start an evaluation run plays it from.
BENCH_SEED_SALT = "webgym-bench"
TRAIN_SEED_SALT = "webgym-train"


class CorruptRecord(ValueError):
    """A record file that exists but cannot be used (half-written, not JSON, wrong content)."""


class UnsafeFile(CorruptRecord):
    """A path in a run that is not a regular file (or folder) inside the run: a symlink, a FIFO,
    a device, a socket, or a file or line beyond the readers' bounds. The message names it."""


@dataclass(frozen=True)
class RunProblem:
    """One thing wrong with a run's records, as data: :func:`read_run` gathers them and raises
    on none; its callers decide what each one means (validation refuses the run, the viewer
    shows it on the episode, ``show`` warns).

    ``path``: the file or folder it is in; ``line``: the line of a JSONL file it is in (from 1;
    None: the file as a whole); ``message``: one line saying what is wrong, naming the path or
    the file; ``kind``: ``missing`` (a file that is not there), ``unsafe`` (not a regular file
    or folder inside the run, or a file beyond the readers' bounds), ``corrupt`` (there, but
    not usable: not JSON, a torn line, a summary without its fields or of another task),
    ``format`` (a manifest of a format version this webgym does not read) or ``disagrees``
    (records that contradict each other: a summary's counts and its steps); ``task_id``: the
    episode it belongs to (None: the run's own files)."""

    path: Path
    line: int | None
    message: str
    kind: str = "corrupt"
    task_id: str | None = None

    def __str__(self) -> str:
        return self.message


class ManifestMismatch(ValueError):
    """An existing run directory holds a different run; the message says which fields differ."""


class RunLocked(RuntimeError):
    """Another live process is writing this run directory; the message names it."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ----------------------------------------------------------------------------------------------
# What writer and re-player must agree on


def episode_seed(seed: int, task_id: str, *, salt: str = BENCH_SEED_SALT) -> int:
    """The episode's env and agent seed: a hash of (salt, run seed, task id), in [0, 2**31).

    ``int(sha256(f"{salt}:{seed}:{task_id}")[:8 bytes], big-endian) mod 2**31``: independent of
    the worker that plays the episode and of the order episodes are played in.
    """
    digest = hashlib.sha256(f"{salt}:{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


def obs_digest(obs: Mapping[str, Any]) -> str:
    """sha256 (hex) of an observation's ``text``: the ``obs_digest`` of a step record."""
    return hashlib.sha256(str(obs.get("text", "")).encode()).hexdigest()


def screenshot_name(step: int) -> str:
    """The file name of the screenshot taken after ``step`` (0: after reset)."""
    return f"step-{step:03d}.png"


def screenshot_path(episode_dir: Path | str, step: int) -> Path:
    """Where ``--screenshots`` keeps the image taken after ``step`` (0 = after reset)."""
    return Path(episode_dir) / "screenshots" / screenshot_name(step)


# ----------------------------------------------------------------------------------------------
# Records


def step_record(
    *,
    step: int,
    action: str,
    obs: Mapping[str, Any],
    reward: float,
    terminated: bool,
    truncated: bool,
    effect: Mapping[str, Any] | None,
    elapsed_s: float,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of ``steps.jsonl``: the action, and what it led to (``obs``, the observation
    after it, and ``effect``, the env's ``info["action_effect"]``). ``decision`` (a
    :func:`decision_record`: why the agent acted) is kept when given; a step without one has
    no ``decision`` key."""
    effect = effect or {}
    record = {
        "step": step,
        "action": action,
        "reward": float(reward),
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "last_action_error": obs.get("last_action_error") or "",
        "effect_label": effect.get("label"),
        "text_distance": effect.get("text_distance"),
        "pixel_distance": effect.get("pixel_distance"),
        "obs_digest": obs_digest(obs),
        "url": obs.get("url"),
        "elapsed_s": round(elapsed_s, 6),
    }
    if decision:
        record["decision"] = dict(decision)
    return record


def _clip(text: Any, limit: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def decision_record(explained: Any) -> dict[str, Any] | None:
    """The ``decision`` of a step record from what an agent's ``explain()`` returned (None:
    nothing to record).

    A string is a one-line ``reason``. A mapping may hold ``reason`` (str, on one line),
    ``text`` (str: what a language model generated, kept as it is, empty or not),
    ``candidates`` (the actions it weighed, best first: mappings with ``action`` and ``prob``,
    or ``(action, prob)`` pairs) and ``value`` (a critic's estimate of the state); anything
    else is dropped.
    Bounded: a reason of :data:`MAX_REASON_CHARS`, a text of :data:`MAX_DECISION_TEXT_CHARS`,
    :data:`MAX_CANDIDATES` candidates of :data:`MAX_CANDIDATE_CHARS` each, probabilities
    rounded to 4 decimals; the candidates are kept in the order given."""
    if explained is None:
        return None
    if isinstance(explained, str):
        explained = {"reason": explained}
    if not isinstance(explained, Mapping):
        return {"reason": _clip(f"explain() gave a {type(explained).__name__}", MAX_REASON_CHARS)}
    out: dict[str, Any] = {}
    reason = explained.get("reason")
    if reason is not None and str(reason).strip():
        out["reason"] = _clip(" ".join(str(reason).split()), MAX_REASON_CHARS)
    if explained.get("text") is not None:  # kept as generated, empty or not
        out["text"] = _clip(explained["text"], MAX_DECISION_TEXT_CHARS)
    cands = []
    for item in list(explained.get("candidates") or [])[:MAX_CANDIDATES]:
        if isinstance(item, Mapping):
            action, prob = item.get("action"), item.get("prob")
        elif isinstance(item, list | tuple) and len(item) == 2:
            action, prob = item
        else:
            continue
        p = _finite(prob)
        cands.append(
            {
                "action": _clip(action, MAX_CANDIDATE_CHARS),
                "prob": None if p is None else round(p, 4),
            }
        )
    if cands:
        out["candidates"] = cands
    value = _finite(explained.get("value"))
    if value is not None:
        out["value"] = round(value, 4)
    return out or None


def observation_record(step: int, obs: Mapping[str, Any]) -> dict[str, Any]:
    """One line of ``observations.jsonl``: the page text the agent saw after ``step`` (0: after
    the reset), the ``text`` field whose sha256 is that step's ``obs_digest``; cut to
    :data:`MAX_OBSERVATION_CHARS`, with ``"cut": true``, when longer."""
    text = str(obs.get("text", ""))
    record: dict[str, Any] = {"step": step, "text": text[:MAX_OBSERVATION_CHARS]}
    if len(text) > MAX_OBSERVATION_CHARS:
        record["cut"] = True
    return record


def observation_matches(record: Mapping[str, Any], text: str) -> bool:
    """Whether an ``observations.jsonl`` record holds ``text`` (its first
    :data:`MAX_OBSERVATION_CHARS` characters, when it was cut)."""
    recorded = record.get("text")
    if not isinstance(recorded, str):
        return False
    if record.get("cut"):
        return len(text) > MAX_OBSERVATION_CHARS and text.startswith(recorded)
    return recorded == text


def observations_problem(
    steps: list[Mapping[str, Any]], observations: list[Mapping[str, Any]]
) -> str | None:
    """Why an episode's ``observations.jsonl`` records do not belong to its steps (None: they
    do, or there are none). They are numbered 0, 1, ... (the reset, then each step), no further
    than the steps go, each a text; the text after step k hashes to step k's ``obs_digest``
    (a cut text is not checked against it)."""
    for i, record in enumerate(observations):
        if record.get("step") != i:
            return f"observations.jsonl line {i + 1} is not the observation after step {i}"
        if not isinstance(record.get("text"), str):
            return f"observations.jsonl line {i + 1} holds no text"
    if len(observations) > len(steps) + 1:
        return (
            f"observations.jsonl has {len(observations)} observations for {len(steps)} steps "
            f"(at most {len(steps) + 1}: the reset's and one per step)"
        )
    for record in observations[1:]:
        k = record["step"]
        want = steps[k - 1].get("obs_digest")
        if not record.get("cut") and obs_digest(record) != want:
            return (
                f"observations.jsonl: the page text after step {k} is not the page of its "
                "step record (its sha256 is not the step's obs_digest)"
            )
    return None


def step_counts(steps: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The counters an episode summary carries, from its step records: ``n_steps``,
    ``n_invalid_actions`` (a non-empty ``last_action_error``) and ``n_effect`` (effect label 1)."""
    steps = list(steps)
    return {
        "n_steps": len(steps),
        "n_invalid_actions": sum(1 for s in steps if s.get("last_action_error")),
        "n_effect": sum(1 for s in steps if s.get("effect_label") == 1),
    }


_EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def chain_step(digest: str, record: Mapping[str, Any]) -> str:
    """One link of :func:`steps_digest`: the chain so far, extended by ``record``."""
    return hashlib.sha256(digest.encode() + _canonical(record)).hexdigest()


def steps_digest(steps: Iterable[Mapping[str, Any]]) -> str:
    """The digest chain of an episode's step records, the ``steps_digest`` of its summary:
    ``h0 = sha256("")``, ``h_i = sha256(hex(h_{i-1}) + canonical JSON of step i)`` (sorted keys,
    no spaces), hex of the last. Every step, its observation digest included, in its place."""
    digest = _EMPTY_DIGEST
    for record in steps:
        digest = chain_step(digest, record)
    return digest


def _isclose(a: Any, b: Any) -> bool:
    try:
        return abs(float(a) - float(b)) <= 1e-9 + 1e-9 * abs(float(b))
    except (TypeError, ValueError):
        return False


def records_problem(summary: Mapping[str, Any], steps: list[Mapping[str, Any]]) -> str | None:
    """Why an episode's step records do not hold against its summary (None: they do).

    The steps are numbered 1..``n_steps`` and each carries an observation digest (64 hex
    digits); their digest chain is the summary's ``steps_digest`` (where the summary has one:
    runs written before it existed do not); an episode that did not fail has steps, its
    reward and end flags are its last step's, its counters those of its steps; an error
    episode has reward 0. What a resume checks before it keeps an episode."""
    n = summary.get("n_steps")
    if n != len(steps):
        return f"summary.json counts {n} steps but steps.jsonl has {len(steps)}"
    numbers = [st.get("step") for st in steps]
    if numbers != list(range(1, len(steps) + 1)):
        return f"steps.jsonl steps are not numbered 1..{len(steps)}"
    for st in steps:
        digest = st.get("obs_digest")
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            return f"steps.jsonl step {st.get('step')} has no observation digest"
    want = summary.get("steps_digest")
    if want is not None and want != steps_digest(steps):
        return (
            "the digest chain of steps.jsonl is not the summary's steps_digest (a step line "
            "was changed, swapped or reordered)"
        )
    if summary.get("error"):
        if not _isclose(summary.get("reward"), 0.0):
            return f"an error episode with reward {summary.get('reward')!r}, not 0"
        return None
    if not steps:
        return "no steps, and no error"
    last = steps[-1]
    if not _isclose(summary.get("reward"), last.get("reward")):
        return (
            f"summary.json says reward {summary.get('reward')!r} but the last step has "
            f"{last.get('reward')!r}"
        )
    for key in ("terminated", "truncated"):
        if key in summary and bool(summary[key]) != bool(last.get(key)):
            return f"summary.json says {key}={summary[key]!r}, the last step {last.get(key)!r}"
    for key, value in step_counts(steps).items():
        if key in summary and summary[key] != value:
            return f"summary.json says {key}={summary[key]!r} but steps.jsonl gives {value}"
    return None


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def png_problem(data: bytes) -> str | None:
    """Why ``data`` is not a sane PNG image (None: it is): the PNG signature, then an ``IHDR``
    chunk with its CRC, 1..16384 pixels a side, a known bit depth and colour type. Reads the
    header only (no decoding)."""
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG image (no PNG signature)"
    head = data[8:33]
    if len(head) < 25 or head[4:8] != b"IHDR" or int.from_bytes(head[:4], "big") != 13:
        return "not a PNG image (no IHDR header)"
    if zlib.crc32(head[4:21]) != int.from_bytes(head[21:25], "big"):
        return "a damaged PNG image (IHDR checksum)"
    width, height = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
    depth, colour = head[16], head[17]
    if not (1 <= width <= MAX_PNG_SIDE and 1 <= height <= MAX_PNG_SIDE):
        return f"a PNG image of {width}x{height} pixels (a screenshot is 1..{MAX_PNG_SIDE} a side)"
    if depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
        return f"a malformed PNG image (bit depth {depth}, colour type {colour})"
    return None


def episode_summary(
    *,
    task_id: str,
    split: str,
    seed: int,
    n_steps: int,
    reward: float,
    terminated: bool,
    truncated: bool,
    n_invalid_actions: int,
    n_effect: int,
    attempts: int = 1,
    difficulty: str | None = None,
    category: str | None = None,
    reward_info: Mapping[str, Any] | None = None,
    error: str | None = None,
    purchased_asin: str | None = None,
    timings: Mapping[str, float] | None = None,
    finished: str | None = None,
    steps_digest: str | None = None,
) -> dict[str, Any]:
    """An episode's ``summary.json``; ``success`` is ``reward == 1.0``, ``finished`` now.
    ``steps_digest`` (:func:`steps_digest` of its steps) is filled in by
    :meth:`EpisodeWriter.finish` when left None."""
    reward = float(reward)
    return {
        "task_id": task_id,
        "split": split,
        "seed": seed,
        "difficulty": difficulty,
        "category": category,
        "n_steps": n_steps,
        "reward": reward,
        "success": reward == 1.0,
        "reward_info": dict(reward_info or {}),
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "error": error,
        "attempts": attempts,
        "n_invalid_actions": n_invalid_actions,
        "n_effect": n_effect,
        "purchased_asin": purchased_asin,
        "timings": dict(timings or {}),
        "finished": finished or utc_now(),
        "steps_digest": steps_digest,
    }


# ----------------------------------------------------------------------------------------------
# Atomic writes, reads


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary name beside ``path`` (same folder and suffix, so a writer that picks its
    format by the suffix still does) for the caller to write; on leaving without an error it
    replaces ``path`` in one rename, so readers see the old file or the new one, whole. On an
    error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, whole, and
    the new one survives a crash once this returns (fsync of the file and its folder)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def atomic_write_json(
    path: Path | str, obj: Any, *, sort_keys: bool = False, default: Any = None
) -> None:
    """``obj`` as indented JSON (numpy values and paths as JSON unless ``default`` says how),
    written by :func:`atomic_write_bytes`."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, default=default or _json_default)
    atomic_write_bytes(path, (text + "\n").encode())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path | str) -> Any:
    """Parse ``path``; :class:`CorruptRecord` (with the reason) when it is not whole JSON."""
    path = Path(path)
    return _parse_json(path, path.read_bytes())


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptRecord(f"{path}: not UTF-8 text ({e})") from None
    if not text.strip():
        raise CorruptRecord(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptRecord(f"{path}: not valid JSON ({e})") from None


def _read_object(path: Path, root: Path) -> dict[str, Any]:
    doc = _parse_json(path, read_bounded(root, path, MAX_JSON_BYTES))
    if not isinstance(doc, dict):
        raise CorruptRecord(f"{path}: not a JSON object")
    return doc


# ----------------------------------------------------------------------------------------------
# Reading files inside a run: regular files inside it, bounded, never blocking


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _refusal(path: Path | str, what: str) -> str:
    return f"{path} is {what}: a run holds only regular files and folders, inside it"


def path_problem(root: Path | str, path: Path | str, *, folder: bool = False) -> str | None:
    """Why ``path`` (a path under the run directory ``root``, built from it) may not be read
    (None: it may, or it does not exist): one of its components under ``root`` is a symlink,
    the path leaves ``root``, or it is not a regular file (``folder``: a folder). Looks with
    ``lstat`` only: nothing is opened, so a FIFO cannot block."""
    root, path = Path(root), Path(path)
    try:
        rel = path.relative_to(root)
    except ValueError:
        return f"{path} is outside the run directory {root}"
    if ".." in rel.parts:
        return f"{path} is outside the run directory {root}"
    cur = root
    for i, part in enumerate(rel.parts):
        cur = cur / part
        try:
            mode = os.lstat(cur).st_mode
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return f"{cur.parent} is not a folder"
        last = i == len(rel.parts) - 1
        if stat.S_ISLNK(mode):
            return _refusal(cur, "a symlink")
        if not last and not stat.S_ISDIR(mode):
            return f"{cur} is not a folder"
        if last and folder and stat.S_ISREG(mode):
            return f"{cur} is not a folder"
        if last and not (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)):
            return _refusal(cur, _kind(mode))
    return None


def open_regular(root: Path | str, path: Path | str) -> BinaryIO:
    """Open ``path`` under the run directory ``root`` for reading, binary, if it is a regular
    file inside the run (:func:`path_problem`); :class:`UnsafeFile` when it is not,
    ``FileNotFoundError`` when it does not exist. Opened without following a symlink and
    without blocking (a FIFO put there after the check is refused, not waited on)."""
    path = Path(path)
    why = path_problem(root, path)
    if why:
        raise UnsafeFile(why)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink put there after the check
        raise UnsafeFile(f"{path} cannot be opened as a regular file ({e.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFile(_refusal(path, _kind(mode)))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(root: Path | str, path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` inside the run ``root`` (:func:`open_regular`);
    :class:`UnsafeFile` when it holds more than ``limit`` bytes (nothing beyond is read)."""
    with open_regular(root, path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{path} is larger than {limit} bytes, the bound for this file")
    return data


def read_jsonl(
    root: Path | str, path: Path | str, *, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """The JSON objects of ``path`` (a regular file inside the run ``root``), one line at a
    time: ``(line number, object, None)``, or ``(line number, None, problem)`` once, for the
    first line that is longer than ``max_line`` bytes, not UTF-8, not JSON or not an object,
    after which nothing more is read. Blank lines are skipped. Never holds more than one line
    in memory. :class:`UnsafeFile` / ``FileNotFoundError`` as :func:`open_regular`."""
    name = Path(path).name
    with open_regular(root, path) as f:
        for i, line in enumerate(iter(lambda: f.readline(max_line + 1), b""), 1):
            if len(line) > max_line and not (len(line) == max_line + 1 and line[-1:] == b"\n"):
                yield i, None, f"{name} line {i} is longer than {max_line} bytes"
                return
            if not line.strip():
                continue
            try:
                doc = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield i, None, f"{name} line {i} is not JSON"
                return
            if not isinstance(doc, dict):
                yield i, None, f"{name} line {i} is not a JSON object"
                return
            yield i, doc, None


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


def folder_problem(path: Path | str) -> str | None:
    """Why no folder can be made (or used) at ``path``, in words, or None: ``path`` or one of
    the paths above it exists and is not a folder (a file, say), or the folder, or the nearest
    one that exists above it, cannot be written. Looks only (``stat``, ``access``), so that a
    command can refuse its output folder before it creates anything."""
    path = Path(path)
    cur = path
    while True:
        try:
            mode = os.stat(cur).st_mode  # a symlink to a folder is a folder
        except (FileNotFoundError, NotADirectoryError):
            if cur.parent == cur:
                return None
            cur = cur.parent
            continue
        except OSError as e:
            return f"{cur} cannot be looked at ({e.strerror or e})"
        if not stat.S_ISDIR(mode):
            what = "a file" if stat.S_ISREG(mode) else _kind(mode)
            return f"{cur} is {what}, not a folder"
        if not os.access(cur, os.W_OK | os.X_OK):
            return f"{cur} is not writable"
        return None


def _check_summary(path: Path, task_id: str, summary: Mapping[str, Any]) -> None:
    """:class:`CorruptRecord` unless ``summary`` is a whole summary of ``task_id``."""
    missing = [k for k in SUMMARY_REQUIRED if k not in summary]
    if missing:
        raise CorruptRecord(f"{path}: missing fields {missing}")
    if summary["task_id"] != task_id:
        raise CorruptRecord(f"{path}: written for task {summary['task_id']!r}")


# ----------------------------------------------------------------------------------------------
# The manifest


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


DISTRIBUTION = "webgym-shopping"  # WebGym's distribution name (pyproject.toml's project.name)
_SOURCE_ROOT = Path(__file__).resolve().parent.parent  # above the webgym package


def _no_git_env() -> dict[str, str]:
    """The environment without GIT_* variables (a GIT_DIR set for another repository must
    not answer for WebGym's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def is_webgym_checkout(root: Path) -> bool:
    """Whether ``root`` is a source tree of WebGym: it holds ``webgym/`` and a
    ``pyproject.toml`` whose project is named ``webgym-shopping`` (:data:`DISTRIBUTION`)."""
    import tomllib

    try:
        with open(root / "pyproject.toml", "rb") as f:
            name = tomllib.load(f).get("project", {}).get("name")
    except (OSError, ValueError):
        return False
    return (root / "webgym").is_dir() and name == DISTRIBUTION


def _checkout_commit(root: Path, ignore: tuple[str, ...]) -> tuple[str | None, bool | None]:
    """HEAD of the git checkout whose top level is ``root`` and whether its tracked files have
    changes (``ignore``: pathspecs left out of that), or (None, None)."""
    env = _no_git_env()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root, env=env, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None, None  # no checkout, or root sits inside another repository
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root, env=env, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             *(f":!{p}" for p in ignore)],
            cwd=root, env=env, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _installed_commit() -> str | None:
    """The commit pip recorded when it installed WebGym from a git repository
    (``direct_url.json``, PEP 610: ``pip install git+https://...@commit``), or None."""
    try:
        text = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        info = json.loads(text) if text else None
    except (importlib.metadata.PackageNotFoundError, OSError, ValueError):
        return None
    vcs = info.get("vcs_info") if isinstance(info, dict) else None
    commit = vcs.get("commit_id") if isinstance(vcs, dict) and vcs.get("vcs") == "git" else None
    return commit if isinstance(commit, str) and commit else None


def webgym_commit(
    ignore: tuple[str, ...] = (), *, root: Path | None = None
) -> tuple[str | None, bool | None]:
    """The commit of WebGym's own code and whether it has uncommitted changes: HEAD of the
    source tree this package was imported from when that tree is a git checkout of WebGym
    (:func:`is_webgym_checkout`, and the checkout's top level), else the commit pip recorded
    installing it from git (then not dirty), else (None, None): a wheel install records its
    version only. Never the repository of the current directory, nor one the install happens
    to sit in. ``ignore``: pathspecs left out of the dirty check; ``root``: the source tree
    (default: the one above this package)."""
    root = _SOURCE_ROOT if root is None else root
    if is_webgym_checkout(root):
        commit, dirty = _checkout_commit(root, ignore)
        if commit is not None:
            return commit, dirty
    commit = _installed_commit()
    return (commit, False) if commit is not None else (None, None)


def _machine() -> dict[str, Any]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(mem, 1) if mem else None,
    }


def collect_provenance(executor: str) -> dict[str, Any]:
    """What produced a run: ``package_versions`` (``webgym``: the installed distribution's
    version), ``git_hash`` and ``git_dirty`` (:func:`webgym_commit`: WebGym's own, None when
    WebGym is no git checkout), ``machine``."""
    git_hash, git_dirty = webgym_commit()
    return {
        "package_versions": {
            "webgym": _version(DISTRIBUTION),
            "gymnasium": _version("gymnasium"),
            "playwright": _version("playwright"),
            "torch": _version("torch"),
            "ray": _version("ray") if executor == "ray" else None,
            "python": platform.python_version(),
        },
        "git_hash": git_hash,
        "git_dirty": git_dirty,
        "machine": _machine(),
    }


def build_manifest(
    *,
    run_id: str,
    agent: str,
    agent_description: str,
    checkpoint: str | None,
    split: str,
    split_hash: str,
    split_size: int,
    task_ids: list[str],
    seed: int,
    mode: str,
    max_episode_steps: int,
    workers: int,
    executor: str,
    catalog: dict[str, Any],
    screenshots: bool,
    max_retries: int,
    command: list[str],
    created: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run's ``manifest.json``. ``provenance`` defaults to :func:`collect_provenance` (this
    machine and checkout), ``created`` to now."""
    prov = dict(provenance) if provenance is not None else collect_provenance(executor)
    return {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "created": created or utc_now(),
        "agent": agent,
        "agent_description": agent_description,
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint else None,
        "split": split,
        "split_hash": split_hash,
        "split_size": split_size,
        "task_ids": task_ids,
        "seed": seed,
        "mode": mode,
        "max_episode_steps": max_episode_steps,
        "workers": workers,
        "executor": executor,
        "screenshots": screenshots,
        "max_retries": max_retries,
        "catalog": catalog,
        "package_versions": prov.get("package_versions"),
        "git_hash": prov.get("git_hash"),
        "git_dirty": prov.get("git_dirty"),
        "machine": prov.get("machine"),
        "command": command,
    }


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
    def results_paths(self) -> tuple[Path, Path]:
        """``results.parquet`` and ``results.csv``: one row per complete episode."""
        return self.path / "results.parquet", self.path / "results.csv"

    @property
    def log_path(self) -> Path:
        return self.path / "run.log"

    @property
    def invocations_path(self) -> Path:
        return self.path / "invocations.jsonl"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def episode_path(self, task_id: str) -> Path:
        if not task_id or "/" in task_id or task_id in (".", ".."):
            raise ValueError(f"not a usable task id for a folder name: {task_id!r}")
        return self.episodes_path / task_id

    def steps_path(self, task_id: str) -> Path:
        return self.episode_path(task_id) / STEPS_FILE

    def observations_path(self, task_id: str) -> Path:
        return self.episode_path(task_id) / OBSERVATIONS_FILE

    def episode_summary_path(self, task_id: str) -> Path:
        return self.episode_path(task_id) / SUMMARY_FILE

    def screenshot_path(self, task_id: str, step: int) -> Path:
        return screenshot_path(self.episode_path(task_id), step)

    def episode_folders(self) -> list[str]:
        """The names of the folders under ``episodes/``, sorted (the task ids written to)."""
        if not self.episodes_path.is_dir():
            return []
        return sorted(p.name for p in self.episodes_path.iterdir() if p.is_dir())

    # manifest --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.lexists(self.manifest_path)

    def read_manifest(self) -> dict[str, Any]:
        return _read_object(self.manifest_path, self.path)

    # what may be read ------------------------------------------------------------------------
    def path_problem(self, path: Path | str, *, folder: bool = False) -> str | None:
        """Why ``path`` (under this run) may not be read (:func:`path_problem`), or None."""
        return path_problem(self.path, path, folder=folder)

    def unsafe_entries(self, under: Path | str | None = None) -> list[str]:
        """Every entry under this run (or under ``under``, a folder in it) that is not a
        regular file or folder inside it, one line each naming it: symlinks (to files or
        folders, followed nowhere), FIFOs, devices, sockets. ``lstat`` only: nothing opened."""
        return [p.message for p in self.unsafe_problems(under)]

    def unsafe_problems(self, under: Path | str | None = None) -> list[RunProblem]:
        """:meth:`unsafe_entries` as :class:`RunProblem` s (kind ``unsafe``), each with the
        episode it is in (an entry below ``episodes/<task_id>/``)."""
        top = Path(under) if under is not None else self.path
        why = self.path_problem(top, folder=True) if under is not None else None
        if why:
            return [RunProblem(top, None, why, "unsafe", self._episode_of(top))]
        if not os.path.lexists(top):
            return []
        out = []
        for folder, dirs, files in os.walk(top, followlinks=False):
            for name in sorted(dirs) + sorted(files):
                path = Path(folder) / name
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:  # removed meanwhile
                    continue
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    message = _refusal(path, _kind(mode))
                    out.append(RunProblem(path, None, message, "unsafe", self._episode_of(path)))
        return out

    def _episode_of(self, path: Path) -> str | None:
        """The task id of the episode folder ``path`` is in, or is (None: elsewhere)."""
        try:
            parts = path.relative_to(self.episodes_path).parts
        except ValueError:
            return None
        return parts[0] if parts else None

    def check(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Whether ``manifest`` may be written here (``None``: a new run) or resumes the run
        already here (its manifest is returned). Writes nothing; raises
        :class:`ManifestMismatch` when the directory holds a different run (or is no run
        directory) and :class:`CorruptRecord` when its manifest is unreadable."""
        if self.exists():
            old = self.read_manifest()
            diffs = manifest_mismatches(old, manifest)
            if diffs:
                raise ManifestMismatch(
                    f"{self.path} holds a different run; refusing to resume it:\n  "
                    + "\n  ".join(diffs)
                    + "\nUse another --out, or repeat the run's own options to resume it."
                )
            why = self.path_problem(self.episodes_path, folder=True)
            if why and self.episodes_path.is_symlink():
                raise ManifestMismatch(
                    f"{why}; the run directory is damaged: move it aside and re-run to resume"
                )
            if why:
                raise ManifestMismatch(
                    f"{self.episodes_path} is not a folder: the run directory is damaged; "
                    "move that file aside and re-run to resume"
                )
            return old
        if self.path.exists() and not self.path.is_dir():
            raise ManifestMismatch(f"{self.path} is a file, not a run directory")
        if self.path.exists() and any(
            p.name not in ("run.log", LOCK_FILE) for p in self.path.iterdir()
        ):
            raise ManifestMismatch(
                f"{self.path} exists, is not empty and has no manifest.json: not a run "
                "directory; choose another --out"
            )
        return None

    def create_or_check(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write ``manifest`` for a new run, or check it against the existing one (a resume).

        Returns the manifest in force (the existing one on a resume); raises as :meth:`check`.
        """
        old = self.check(manifest)
        if old is not None:
            return old
        self.path.mkdir(parents=True, exist_ok=True)
        self.episodes_path.mkdir(exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    # the run's summary -------------------------------------------------------------------------
    def write_summary(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, metrics)

    def read_summary(self) -> dict[str, Any] | None:
        """The run's ``summary.json`` (``None`` when there is none; never trust it: recompute)."""
        if not os.path.lexists(self.summary_path):
            return None
        return _read_object(self.summary_path, self.path)

    # episodes --------------------------------------------------------------------------------
    def read_episode_summary(self, task_id: str, *, strict: bool = True) -> dict[str, Any]:
        """The complete episode's summary; :class:`FileNotFoundError` when there is none,
        :class:`CorruptRecord` when it exists but is not a whole summary of this task (with
        ``strict=False``, for showing a run as it is: when it is not a JSON object)."""
        path = self.episode_summary_path(task_id)
        if not os.path.lexists(path):
            raise FileNotFoundError(path)
        summary = _read_object(path, self.path)
        if strict:
            _check_summary(path, task_id, summary)
        return summary

    def write_episode_summary(self, task_id: str, summary: dict[str, Any]) -> None:
        """Write the episode's ``summary.json`` (atomically): it is complete from now on."""
        atomic_write_json(self.episode_summary_path(task_id), summary)

    def read_episode(
        self, task_id: str, *, check: bool = False, traces: bool = False
    ) -> EpisodeRecords:
        """Everything of one episode, read through the one reader of episode records: its
        summary and steps, its ``state`` and, as :class:`RunProblem` s naming the path, its
        ``problems``.

        Only regular files inside the run are read (:func:`open_regular`); ``steps.jsonl`` line
        by line, each at most :data:`MAX_LINE_BYTES`. ``state``: ``missing`` (no folder),
        ``damaged`` (a file, a symlink, ... where its folder belongs), ``partial`` (no
        ``summary.json``: an interrupted attempt), ``corrupt`` (a summary that cannot be
        used; ``summary`` still holds it where it is a JSON object), else ``complete``. With
        ``traces`` (or ``check``), its ``observations.jsonl`` and the headers of its
        screenshots are read too (``observations``, ``observations_problem``,
        ``screenshot_problems``). With ``check`` (a resume deciding whether to keep it), a
        complete episode is ``torn`` when its ``steps.jsonl`` cannot be read whole or has
        another number of lines than ``n_steps``, and ``unsound`` when its records do not hold
        against its summary (:func:`records_problem`), its ``observations.jsonl`` (when it
        has one) cannot be read whole or is not the pages of its steps
        (:func:`observations_problem`), or its folder holds a symlink, a FIFO, a device or a
        screenshot that is not a PNG. Raises ``ValueError`` only for a task id
        that cannot be a folder name."""
        path = self.episode_path(task_id)
        ep = EpisodeRecords(task_id, path)
        why = self.path_problem(path, folder=True)
        if why:
            kind = "corrupt" if path.is_file() and not path.is_symlink() else "unsafe"
            ep.state, ep.problems = "damaged", [RunProblem(path, None, why, kind, task_id)]
            return ep
        if not os.path.lexists(path):
            return ep
        ep.steps, ep.steps_problem = self.read_records(self.steps_path(task_id), task_id)
        if traces or check:
            ep.observations, ep.observations_problem = self._read_observations(task_id)
            ep.screenshot_problems = self._screenshot_problems(task_id)
        summary_path = self.episode_summary_path(task_id)
        if not os.path.lexists(summary_path):
            ep.state = "partial"
            ep.problems = [ep.steps_problem] if ep.steps_problem else []
            return ep
        ep.state, ep.summary, problem = "corrupt", *self._read_summary(task_id)
        if problem:
            ep.problems = [problem]
            return ep
        ep.state = "complete"
        if ep.steps_problem:
            ep.problems.append(ep.steps_problem)
        elif ep.summary.get("n_steps") != len(ep.steps):
            message = (
                f"summary.json counts {ep.summary.get('n_steps')} steps but steps.jsonl has "
                f"{len(ep.steps)}"
            )
            steps_path = self.steps_path(task_id)
            ep.problems.append(RunProblem(steps_path, None, message, "disagrees", task_id))
        if not check:
            return ep
        if ep.problems:
            ep.state = "torn"
            return ep
        unsound = self.unsafe_problems(path) + ep.screenshot_problems
        why = records_problem(ep.summary, ep.steps)
        if why:
            unsound.append(RunProblem(self.steps_path(task_id), None, why, "disagrees", task_id))
        pages = ep.observations_problem
        why = None if pages else observations_problem(ep.steps, ep.observations)
        if why:
            pages = RunProblem(self.observations_path(task_id), None, why, "disagrees", task_id)
        if pages:
            unsound.append(pages)
        if unsound:
            ep.state, ep.problems = "unsound", unsound
        return ep

    def _read_summary(self, task_id: str) -> tuple[dict[str, Any] | None, RunProblem | None]:
        """The episode's ``summary.json`` (the JSON object, where it is one) and why it is not
        a whole summary of this task (None: it is)."""
        path = self.episode_summary_path(task_id)
        summary, problem = _read_run_file(self, path, task_id)
        if summary is None:
            return None, problem
        try:
            _check_summary(path, task_id, summary)
        except CorruptRecord as e:
            return summary, RunProblem(path, None, str(e), "corrupt", task_id)
        return summary, None

    def scan(self, task_ids: Iterable[str], *, check_steps: bool = False) -> EpisodeScan:
        """:meth:`read_episode` of every task id, sorted by state into complete, corrupt,
        damaged, partial, missing and, with ``check_steps`` (a resume), torn and unsound (a
        resume re-runs all but the complete ones). ``records`` keeps what was read."""
        scan = EpisodeScan()
        for tid in task_ids:
            ep = self.read_episode(tid, check=check_steps)
            scan.records[tid] = ep
            why = "; ".join(p.message for p in ep.problems)
            if ep.state == "complete":
                scan.complete[tid] = ep.summary
            elif ep.state == "missing":
                scan.missing.append(tid)
            elif ep.state == "partial":
                scan.partial.append(tid)
            else:
                getattr(scan, ep.state)[tid] = why
        return scan

    def screenshot_problems(self, task_id: str) -> list[str]:
        """One line per screenshot of the episode that is not a regular PNG file inside the
        run (:func:`png_problem` on its header), naming it."""
        return [p.message for p in self._screenshot_problems(task_id)]

    def _screenshot_problems(self, task_id: str) -> list[RunProblem]:
        folder = self.episode_path(task_id) / "screenshots"
        if not os.path.lexists(folder):
            return []
        why = self.path_problem(folder, folder=True)
        if why:
            return [RunProblem(folder, None, why, "unsafe", task_id)]
        out = []
        for path in sorted(folder.iterdir()):
            if not path.name.endswith(".png"):
                continue
            try:
                self.read_png(path, header_only=True)
            except FileNotFoundError:
                continue
            except CorruptRecord as e:
                out.append(RunProblem(path, None, str(e), "unsafe", task_id))
        return out

    def read_png(self, path: Path | str, *, header_only: bool = False) -> bytes:
        """The bytes of a PNG image in this run (with ``header_only``, its first 33): a
        regular file inside the run, a sane PNG (:func:`png_problem`) of at most
        :data:`MAX_SCREENSHOT_BYTES`; :class:`UnsafeFile` naming it otherwise."""
        limit = 33 if header_only else MAX_SCREENSHOT_BYTES
        with open_regular(self.path, path) as f:
            data = f.read(limit + 1)
        if header_only:
            data = data[:limit]
        elif len(data) > limit:
            raise UnsafeFile(f"{path} is larger than {limit} bytes, the bound for a screenshot")
        why = png_problem(data)
        if why:
            raise UnsafeFile(f"{path} is {why}")
        return data

    def read_screenshot(self, task_id: str, step: int) -> bytes:
        """The screenshot taken after ``step`` (:meth:`read_png`); ``FileNotFoundError`` when
        the episode has none."""
        return self.read_png(self.screenshot_path(task_id, step))

    def clear_episode(self, task_id: str) -> Path:
        """Remove whatever an earlier attempt left (a folder, or a file in its place) and
        return the fresh, empty folder."""
        path = self.episode_path(task_id)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.mkdir(parents=True)
        return path

    def read_records(
        self, path: Path | str, task_id: str | None = None
    ) -> tuple[list[dict[str, Any]], RunProblem | None]:
        """The JSON objects of a JSONL file of this run (:func:`read_jsonl`: line by line, each
        at most :data:`MAX_LINE_BYTES`), up to the first line that cannot be read, and what
        stopped the reading (None: the file was read whole): the file is ``missing``,
        ``unsafe`` (nothing read) or cannot be read, or a line is ``corrupt`` (its number in
        ``line``)."""
        path = Path(path)
        out: list[dict[str, Any]] = []
        try:
            for i, record, problem in read_jsonl(self.path, path):
                if problem:
                    return out, RunProblem(path, i, problem, "corrupt", task_id)
                out.append(record)
        except FileNotFoundError:
            return [], RunProblem(path, None, f"{path.name} is missing", "missing", task_id)
        except UnsafeFile as e:
            return [], RunProblem(path, None, str(e), "unsafe", task_id)
        except OSError as e:
            message = f"{path} cannot be read ({e.strerror or e})"
            return [], RunProblem(path, None, message, "corrupt", task_id)
        return out, None

    def read_steps(self, task_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The steps of an episode and a problem description (a torn or bad line) or None."""
        steps, problem = self.read_records(self.steps_path(task_id), task_id)
        return steps, problem.message if problem else None

    def read_observations(self, task_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The episode's :func:`observation_record` lines (none when it has no
        ``observations.jsonl``: a run written before they were recorded) and a problem
        description (a torn or bad line, an unsafe file) or None. Read as ``steps.jsonl`` is:
        line by line, each at most :data:`MAX_LINE_BYTES`."""
        pages, problem = self._read_observations(task_id)
        return pages, problem.message if problem else None

    def _read_observations(self, task_id: str) -> tuple[list[dict[str, Any]], RunProblem | None]:
        pages, problem = self.read_records(self.observations_path(task_id), task_id)
        return pages, None if problem is not None and problem.kind == "missing" else problem

    # the log and invocations -------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append one line to ``run.log`` (single ``write`` in append mode: lines never mix)."""
        line = f"{utc_now()} pid={os.getpid()} {message}\n".encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def lock(self, command: list[str] | None = None) -> RunLock:
        """Take this run directory's writer lock (``run.lock``; see :class:`RunLock`): raises
        :class:`RunLocked` while another live process holds it. Use as a context manager."""
        return RunLock.acquire(self.lock_path, command)

    def append_invocation(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=_json_default) + "\n").encode()
        fd = os.open(self.invocations_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read_invocations(self) -> list[dict[str, Any]]:
        """The invocation records (a line that cannot be read ends the list; an unsafe file,
        a symlink or a FIFO, reads as none)."""
        return self.read_records(self.invocations_path)[0]


class RunLock:
    """One writer per run directory: ``run.lock`` names its holder (pid, host, since, command),
    and the holder keeps an exclusive ``flock`` on the file for as long as it lives.

    The kernel drops a ``flock`` when its process dies, however it dies (SIGKILL included),
    so a lock file that nobody holds is stale: the next writer takes it over and says so
    (``note``). Where the file system has no ``flock``, the holder's pid decides instead (a
    live pid on this host, or any pid on another host, holds the lock). Released on exit:
    the file is removed while still held, so a waiting process never takes a removed file.
    """

    def __init__(self, path: Path, fd: int, note: str | None) -> None:
        self.path, self._fd, self.note = path, fd, note

    @classmethod
    def acquire(cls, path: Path | str, command: list[str] | None = None) -> RunLock:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # the file may be removed and re-created between open and flock
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                held = _flock(fd)
                holder = _lock_holder(fd)
                if held is False or (held is None and holder and _holder_alive(holder)):
                    raise RunLocked(_locked_message(path, holder))
                try:
                    current = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
                if not current:
                    os.close(fd)
                    continue
                mine = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": utc_now(),
                    "command": command,
                }
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(mine) + "\n").encode(), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            return cls(path, fd, _stale_note(path, holder) if holder else None)
        raise RunLocked(f"could not take the lock {path}: it keeps being replaced")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _flock(fd: int) -> bool | None:
    """An exclusive, non-blocking flock: True (ours), False (someone holds it), None (this file
    system cannot lock)."""
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None


def _lock_holder(fd: int) -> dict[str, Any] | None:
    """What a lock file says about its holder (None: empty or unreadable)."""
    try:
        doc = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _holder_alive(holder: Mapping[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: nothing here can tell, so assume it lives
    try:
        os.kill(int(holder.get("pid")), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _holder_text(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "another process (the lock file does not say which)"
    text = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
    command = holder.get("command")
    if isinstance(command, list) and command:
        text += f" ({' '.join(map(str, command))[:200]})"
    return text


def _locked_message(path: Path, holder: Mapping[str, Any] | None) -> str:
    return (
        f"{path.parent} is being written by {_holder_text(holder)}: one writer per run "
        f"directory. Wait for it to finish (or stop it), then re-run to resume; the lock is "
        f"{path}, released when its holder exits or dies."
    )


def _stale_note(path: Path, holder: Mapping[str, Any]) -> str:
    gone = "" if _holder_alive(holder) else "; that process is gone"
    return (
        f"took over a stale lock {path}: it named {_holder_text(holder)}, which no longer "
        f"holds it{gone}"
    )


@dataclass
class EpisodeRecords:
    """One episode as :meth:`RunDir.read_episode` read it: records, state and problems."""

    task_id: str
    path: Path | None  # None: a task id that cannot be a folder name
    # complete, corrupt, torn, unsound, damaged, partial, missing; unnamed (a task id that
    # cannot be a folder name: only :func:`read_run` says so, read_episode raises)
    state: str = "missing"
    summary: dict[str, Any] | None = None  # the summary.json object (whole where complete)
    steps: list[dict[str, Any]] = field(default_factory=list)  # up to the first bad line
    problems: list[RunProblem] = field(default_factory=list)  # why it is in its state
    steps_problem: RunProblem | None = None  # why steps.jsonl could not be read whole
    # with ``traces``: the page texts (none in older runs), why observations.jsonl could not be
    # read whole (None: it could, or there is none), the screenshots that are no PNG files
    observations: list[dict[str, Any]] = field(default_factory=list, repr=False)
    observations_problem: RunProblem | None = None
    screenshot_problems: list[RunProblem] = field(default_factory=list)


@dataclass
class EpisodeScan:
    complete: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)  # task_id -> why
    torn: dict[str, str] = field(default_factory=dict)  # a summary, but steps.jsonl damaged
    unsound: dict[str, str] = field(default_factory=dict)  # records that do not hold
    damaged: dict[str, str] = field(default_factory=dict)  # a file where its folder belongs
    partial: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    records: dict[str, EpisodeRecords] = field(default_factory=dict, repr=False)

    @property
    def todo(self) -> list[str]:
        return [
            *self.corrupt,
            *self.torn,
            *self.unsound,
            *self.damaged,
            *self.partial,
            *self.missing,
        ]


class EpisodeWriter:
    """Writes one episode's records: ``steps.jsonl`` line by line, screenshots, then the
    summary, atomically and last. Owned by exactly one worker at a time."""

    def __init__(self, run: RunDir, task_id: str) -> None:
        self.run, self.task_id = run, task_id
        self.path = run.clear_episode(task_id)
        self.n_steps = 0
        self.steps_digest = _EMPTY_DIGEST  # :func:`steps_digest` of the steps written so far
        self._steps = open(run.steps_path(task_id), "a", encoding="utf-8")  # noqa: SIM115
        self._observations = open(  # noqa: SIM115
            run.observations_path(task_id), "a", encoding="utf-8"
        )

    def step(self, record: dict[str, Any]) -> None:
        """Append one :func:`step_record`."""
        line = json.dumps(record, default=_json_default)
        self._steps.write(line + "\n")
        self._steps.flush()
        self.n_steps += 1
        # chained over the record as a reader will parse it back
        self.steps_digest = chain_step(self.steps_digest, json.loads(line))

    def observation(self, step: int, obs: Mapping[str, Any]) -> None:
        """Append the :func:`observation_record` of ``obs``, seen after ``step`` (0: after the
        reset): the page text the agent acts on next."""
        line = json.dumps(observation_record(step, obs), ensure_ascii=False)
        self._observations.write(line + "\n")
        self._observations.flush()

    def screenshot(self, step: int, pixels: Any) -> None:
        """Save the screenshot (an RGB array) taken after ``step`` (0: after reset)."""
        from PIL import Image

        path = screenshot_path(self.path, step)
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the steps and observations and write the :func:`episode_summary` (its
        ``steps_digest``, when None, set to the steps written): the episode is complete."""
        self.close()
        if summary.get("steps_digest") is None:
            summary["steps_digest"] = self.steps_digest
        self.run.write_episode_summary(self.task_id, summary)

    def close(self) -> None:
        for f in (self._steps, self._observations):
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())
                f.close()


# ----------------------------------------------------------------------------------------------
# Reading a run: the one reader of a run's records


@dataclass
class RunRecords:
    """Everything :func:`read_run` could read of a run, and, as :class:`RunProblem` s, what it
    could not (``problems``). Reading decides nothing: whoever reads a run says what a problem
    means to it (validation refuses the run, the viewer shows it, ``show`` warns)."""

    path: Path
    manifest: dict[str, Any] | None = None  # None: no manifest could be read (manifest_problem)
    # why the manifest is missing, unsafe, corrupt, or of a format version this webgym does not
    # read (then ``manifest`` holds it); None: it is a manifest of :data:`FORMAT_VERSION`
    manifest_problem: RunProblem | None = None
    summary: dict[str, Any] | None = None  # the run's summary.json as written (never trusted)
    summary_problem: RunProblem | None = None  # why there is none (missing, unsafe, corrupt)
    # the manifest's task ids (its order; the episode folders when it lists none)
    task_ids: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # episode folders the manifest does not list
    by_task: dict[str, EpisodeRecords] = field(default_factory=dict, repr=False)  # every episode
    unsafe: list[RunProblem] = field(default_factory=list)  # with ``traces``: every such entry
    invocations: list[dict[str, Any]] = field(default_factory=list, repr=False)
    invocations_problem: RunProblem | None = None  # a line that ended invocations.jsonl
    check_steps: bool = True

    @property
    def n_expected(self) -> int:
        return len(self.task_ids) or len(self.episodes)

    @property
    def wall_time_s(self) -> float:
        """The wall time of the run's invocations (``invocations.jsonl``), in seconds."""
        return sum(float(i.get("wall_s") or 0.0) for i in self.invocations)

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """The complete episodes' summaries in the manifest's task order; with ``check_steps``
        the step counters (``n_steps``, ``n_invalid_actions``, ``n_effect``) of an episode that
        did not fail are recounted from its ``steps.jsonl``, where it reads whole (the steps
        win; a disagreement is in ``warnings``)."""
        out = []
        for tid in self.task_ids:
            ep = self.by_task[tid]
            if ep.state != "complete":
                continue
            summary = ep.summary
            if self.check_steps and not summary.get("error") and not ep.steps_problem:
                summary = {**summary, **step_counts(ep.steps)}
            out.append(summary)
        return out

    @property
    def corrupt(self) -> dict[str, str]:
        """task_id -> why its summary.json is unusable."""
        return {
            t: "; ".join(p.message for p in self.by_task[t].problems)
            for t in self.task_ids
            if self.by_task[t].state == "corrupt"
        }

    @property
    def missing(self) -> list[str]:
        """The task ids of the manifest with no complete episode (corrupt ones included)."""
        return [t for t in self.task_ids if self.by_task[t].state != "complete"]

    @property
    def warnings(self) -> list[str]:
        """With ``check_steps``: the complete episodes (that did not fail) whose steps.jsonl
        does not read whole, or whose counters disagree with their summary, one line each."""
        if not self.check_steps:
            return []
        out = []
        for tid in self.task_ids:
            ep = self.by_task[tid]
            if ep.state != "complete" or ep.summary.get("error"):
                continue
            if ep.steps_problem:
                out.append(f"{tid}: {ep.steps_problem.message}")
                continue
            for key, value in step_counts(ep.steps).items():
                if key in ep.summary and ep.summary[key] != value:
                    out.append(
                        f"{tid}: summary {key}={ep.summary[key]} but steps.jsonl "
                        f"gives {value}; using the steps"
                    )
        return out

    @property
    def problems(self) -> list[RunProblem]:
        """Every problem found, once each: the run's own files, then each episode's."""
        found: list[RunProblem | None] = [
            self.manifest_problem,
            self.summary_problem,
            self.invocations_problem,
            *self.unsafe,
        ]
        for tid, ep in self.by_task.items():
            if ep.state in ("missing", "partial"):
                path = ep.path / SUMMARY_FILE
                message = f"{path} is missing: the episode is not complete"
                found.append(RunProblem(path, None, message, "missing", tid))
            found += [
                *ep.problems,
                ep.steps_problem,
                ep.observations_problem,
                *ep.screenshot_problems,
            ]
        out: dict[tuple[Path, int | None, str], RunProblem] = {}
        for p in found:
            if p is not None:
                out.setdefault((p.path, p.line, p.message), p)
        return list(out.values())


def read_run(path: Path | str, *, traces: bool = True, check_steps: bool = True) -> RunRecords:
    """Read a run directory: the one reader of its records, for every reader of runs (``show``
    and ``compare``, the metrics, validation, the viewer). Never raises on what the run holds:
    whatever cannot be read is a :class:`RunProblem` of the :class:`RunRecords`, and its
    callers decide what it means.

    Reads the manifest (once), the run's ``summary.json``, ``invocations.jsonl`` and, through
    :meth:`RunDir.read_episode`, every episode of the manifest's task ids and then any other
    episode folder (``unlisted``). With ``traces`` (validation, the viewer) it also reads each
    episode's ``observations.jsonl`` and screenshot headers and walks the run for entries that
    are not regular files or folders (``unsafe``); without it only what the metrics need.
    ``check_steps``: see :attr:`RunRecords.episodes`. A manifest whose ``format_version`` is
    not :data:`FORMAT_VERSION` is read as far as it goes, with a ``format`` problem."""
    run = RunDir(path)
    records = RunRecords(run.path, check_steps=check_steps)
    if not run.path.is_dir():
        message = f"{run.path} is not a run directory"
        records.manifest_problem = RunProblem(run.path, None, message, "missing")
        return records
    records.manifest, records.manifest_problem = _read_run_file(run, run.manifest_path)
    records.summary, records.summary_problem = _read_run_file(run, run.summary_path)
    records.invocations, problem = run.read_records(run.invocations_path)
    records.invocations_problem = None if problem and problem.kind == "missing" else problem
    manifest = records.manifest or {}
    version = manifest.get("format_version")
    if records.manifest is not None and version != FORMAT_VERSION:
        message = (
            f"{run.manifest_path}: format_version {version!r}; this webgym reads "
            f"version {FORMAT_VERSION}"
        )
        records.manifest_problem = RunProblem(run.manifest_path, None, message, "format")
    listed = manifest.get("task_ids")
    listed = [str(t) for t in listed] if isinstance(listed, list) else []
    folders = run.episode_folders()
    records.task_ids = listed or folders
    records.unlisted = [name for name in folders if name not in records.task_ids]
    if traces:
        records.unsafe = run.unsafe_problems()
    for tid in [*records.task_ids, *records.unlisted]:
        if tid in records.by_task:
            continue
        try:
            records.by_task[tid] = run.read_episode(tid, traces=traces)
        except ValueError as e:  # a task id that cannot be a folder name
            problem = RunProblem(run.manifest_path, None, str(e), "corrupt", tid)
            records.by_task[tid] = EpisodeRecords(tid, None, "unnamed", problems=[problem])
    return records


def run_records(run: Path | str | RunRecords) -> RunRecords:
    """``run`` read by :func:`read_run` (traces included), or ``run`` itself when it is a
    :class:`RunRecords` already: a command that has read a run hands its records on, and the
    run is read once."""
    return run if isinstance(run, RunRecords) else read_run(run)


def _read_run_file(
    run: RunDir, path: Path, task_id: str | None = None
) -> tuple[dict[str, Any] | None, RunProblem | None]:
    """A JSON object file of the run (the manifest, a summary) and why it cannot be had:
    ``missing``, ``unsafe`` (not a regular file inside the run, or too large) or ``corrupt``."""
    if not os.path.lexists(path):
        return None, RunProblem(path, None, f"{path} is missing", "missing", task_id)
    try:
        return _read_object(path, run.path), None
    except UnsafeFile as e:
        return None, RunProblem(path, None, str(e), "unsafe", task_id)
    except CorruptRecord as e:
        return None, RunProblem(path, None, str(e), "corrupt", task_id)
    except OSError as e:
        return None, RunProblem(path, None, f"{path}: {e.strerror or e}", "corrupt", task_id)


def load_run(path: Path | str, *, check_steps: bool = True) -> RunRecords:
    """:func:`read_run` for the metrics (``show``, ``compare``, the plots): the summaries and
    steps, not the traces. Never raises for a bad episode file: a corrupt ``summary.json`` lands
    in ``corrupt``; with ``check_steps`` the step counters are recounted from ``steps.jsonl``
    and a disagreement is reported in ``warnings`` (the steps win). Raises only for the
    manifest: ``FileNotFoundError`` when there is none, :class:`UnsafeFile` /
    :class:`CorruptRecord` when it cannot be read."""
    records = read_run(path, traces=False, check_steps=check_steps)
    if records.manifest is None:
        problem = records.manifest_problem
        if problem.kind == "missing":
            raise FileNotFoundError(f"{records.path} is not a run directory (no manifest.json)")
        raise (UnsafeFile if problem.kind == "unsafe" else CorruptRecord)(problem.message)
    for ep in records.by_task.values():
        if ep.state == "unnamed":
            raise ValueError(ep.problems[0].message)
    return records
