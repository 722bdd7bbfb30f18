"""The local leaderboard: one SQLite file of submitted, validated runs.

Location: ``--db PATH``, else ``$WEBGYM_LEADERBOARD``, else
``platformdirs.user_data_dir("webgym")/leaderboard.sqlite``. The schema is versioned with
SQLite's ``user_version`` pragma and has no migrations: a file of an older version is moved aside
(``leaderboard.sqlite.schema1``, with a warning) and a new board started; a newer one is refused.
Version 2 (task sets, entries verified by replay) replaced version 1, whose entries were never
replayed; version 3 (the step limit and catalog content in the task set, entries known by what
happened in their episodes) replaced version 2.

Entries are ranked within their *task set* (:attr:`Entry.task_set_key`): the same split version
on the same catalog content, the same tasks (the whole split, ``test (500)``, or its first N,
``test[:20]``), the same step limit and the same mode; a Score over anything else is not
comparable. ``records_digest`` (``webgym_leaderboards.validate.records_digest``: the task set and
the episodes' replayed content) is an entry's identity: one row per identity.
"""

from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3
# What the entries of an older schema lack (printed when such a board is moved aside).
_OLDER = {
    1: "entries not verified by replay",
    2: "entries known by their timestamps, task sets without the step limit",
}
DB_ENV = "WEBGYM_LEADERBOARD"
JSON_COLUMNS = ("package_versions", "machine", "metrics")

_SCHEMA = """
CREATE TABLE entries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id            TEXT NOT NULL,
    agent             TEXT NOT NULL,
    checkpoint        TEXT,
    checkpoint_sha256 TEXT,
    split             TEXT NOT NULL,
    split_hash        TEXT NOT NULL,
    catalog_hash      TEXT NOT NULL,
    mode              TEXT,
    max_steps         INTEGER NOT NULL,
    task_set          TEXT NOT NULL,
    n_tasks           INTEGER NOT NULL,
    n_episodes        INTEGER NOT NULL,
    score             REAL NOT NULL,
    score_se          REAL NOT NULL,
    success_rate      REAL NOT NULL,
    success_se        REAL NOT NULL,
    avg_steps         REAL NOT NULL,
    submitted         TEXT NOT NULL,
    run_created       TEXT NOT NULL,
    git_hash          TEXT NOT NULL,
    git_dirty         INTEGER NOT NULL,
    package_versions  TEXT NOT NULL,
    machine           TEXT NOT NULL,
    run_path          TEXT NOT NULL,
    records_digest    TEXT NOT NULL UNIQUE,
    metrics           TEXT NOT NULL
);
CREATE INDEX entries_split ON entries (split, split_hash, task_set, max_steps, score DESC);
"""


class DuplicateSubmission(Exception):
    """The same episodes over the same task set are already on the board (``entry`` is the
    existing row), whatever the manifests say."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(
            f"duplicate submission: these episodes are already entry #{entry.id} "
            f"({entry.agent}, run {entry.run_id}, submitted {entry.submitted}): the same "
            "actions, pages and rewards on the same task set, whatever the manifest, timings "
            "or agent name say"
        )
        self.entry = entry


class SchemaMismatch(Exception):
    """The database file was written by another schema version."""


@dataclass(frozen=True)
class Entry:
    """One leaderboard row; ``rank`` is filled in by ``LeaderboardStore.ranked``."""

    id: int
    run_id: str
    agent: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    split: str
    split_hash: str
    catalog_hash: str  # content hash of the catalog it was replayed on ("" if never named)
    mode: str | None
    max_steps: int  # the step limit its episodes were played under
    task_set: str  # "test (500)": the whole split; "test[:20]": its first 20 tasks
    n_tasks: int
    n_episodes: int
    score: float
    score_se: float
    success_rate: float
    success_se: float
    avg_steps: float
    submitted: str
    run_created: str
    git_hash: str  # "": no commit recorded (an install that is no git checkout)
    git_dirty: bool
    package_versions: dict[str, Any]
    machine: dict[str, Any]
    run_path: str
    records_digest: str
    metrics: dict[str, Any]
    rank: int | None = None

    @property
    def git_short(self) -> str:
        """The commit's first 8 digits (``+dirty``: uncommitted changes), or, for a run made
        from an install that is no git checkout (``git_hash`` ""), WebGym's version."""
        if not self.git_hash:
            version = self.package_versions.get("webgym")
            return f"v{version}" if version else "-"
        return self.git_hash[:8] + ("+dirty" if self.git_dirty else "")

    @property
    def checkpoint_short(self) -> str:
        return self.checkpoint_sha256[:8] if self.checkpoint_sha256 else "-"

    @property
    def task_set_key(self) -> tuple[str, str, str, str, int, str]:
        """Entries with equal keys are comparable (ranked on one table)."""
        return (
            self.split,
            self.split_hash,
            self.catalog_hash,
            self.task_set,
            self.max_steps,
            self.mode or "",
        )

    @property
    def conditions(self) -> str:
        """The step limit and mode of the task set: ``15 steps, text mode``."""
        return f"{self.max_steps} steps" + (f", {self.mode} mode" if self.mode else "")

    @property
    def task_set_title(self) -> str:
        """The task set in full: ``test[:20], 15 steps, text mode``."""
        return f"{self.task_set}, {self.conditions}"

    @property
    def date(self) -> str:
        """The day the run was made (YYYY-MM-DD)."""
        return self.run_created[:10]


def default_db_path() -> Path:
    """``$WEBGYM_LEADERBOARD``, else the user data dir's ``leaderboard.sqlite``."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("webgym")) / "leaderboard.sqlite"


def _row_to_entry(row: sqlite3.Row, rank: int | None = None) -> Entry:
    data = dict(row)
    for key in JSON_COLUMNS:
        data[key] = json.loads(data[key])
    data["git_dirty"] = bool(data["git_dirty"])
    return Entry(**data, rank=rank)


def rank_entries(entries: list[Entry]) -> list[Entry]:
    """Rank within each task set (:func:`task_set_order`: the whole split first, then longer
    prefixes first) by Score, then success rate, then earliest submission; ties on Score and
    success rate share a rank (competition ranking: 1, 2, 2, 4)."""
    out: list[Entry] = []
    for group in task_set_groups(entries):
        ordered = sorted(group, key=lambda e: (-e.score, -e.success_rate, e.submitted, e.id))
        ranked: list[Entry] = []
        for i, e in enumerate(ordered):
            prev = ranked[-1] if ranked else None
            same = prev is not None and (prev.score, prev.success_rate) == (e.score, e.success_rate)
            rank = prev.rank if same and prev is not None else i + 1
            ranked.append(_with_rank(e, rank))
        out.extend(ranked)
    return out


def task_set_groups(entries: list[Entry]) -> list[list[Entry]]:
    """The entries by task set (:attr:`Entry.task_set_key`), in :func:`task_set_order`."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.task_set_key, []).append(e)
    return [groups[k] for k in sorted(groups, key=lambda k: task_set_order(groups[k][0]))]


def task_set_order(e: Entry) -> tuple[Any, ...]:
    """Sort key of a task set: by split and version, the whole split first, then more tasks,
    then the longer step limit, then mode and catalog."""
    whole = not e.task_set.endswith("]")
    return (
        e.split,
        e.split_hash,
        not whole,
        -e.n_tasks,
        e.task_set,
        -e.max_steps,
        e.mode or "",
        e.catalog_hash,
    )


def _with_rank(e: Entry, rank: int | None) -> Entry:
    from dataclasses import replace

    return replace(e, rank=rank)


class LeaderboardStore:
    """The SQLite file of entries. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if 0 < version < SCHEMA_VERSION:
            # an older board: its entries were checked less (_OLDER), so they are not carried
            # over; the file is kept beside the new one, and re-submitting a run ranks it again
            self._db.close()
            old = self.path.with_name(f"{self.path.name}.schema{version}")
            self.path.replace(old)
            warnings.warn(
                f"leaderboard {self.path} had schema version {version} "
                f"({_OLDER.get(version, 'an older schema')}); moved to {old}, starting a new "
                "board: re-submit runs to rank them",
                stacklevel=2,
            )
            self._open()
        self._init_schema()

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys=ON")

    def _init_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='entries'"
        ).fetchall()
        if version == 0 and not tables:
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            self._db.close()
            raise SchemaMismatch(
                f"leaderboard {self.path} has schema version {version}; this webgym uses "
                f"version {SCHEMA_VERSION} (move the file aside to start a new board)"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LeaderboardStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------

    def find_digest(self, digest: str) -> Entry | None:
        row = self._db.execute(
            "SELECT * FROM entries WHERE records_digest = ?", (digest,)
        ).fetchone()
        return _row_to_entry(row) if row else None

    def add(self, entry: dict[str, Any], *, submitted: str | None = None) -> Entry:
        """Insert a row (``ValidatedRun.entry()``); raises ``DuplicateSubmission``."""
        existing = self.find_digest(entry["records_digest"])
        if existing is not None:
            raise DuplicateSubmission(existing)
        row = dict(entry)
        row["submitted"] = submitted or datetime.now(UTC).isoformat(timespec="seconds")
        row["git_dirty"] = int(bool(row["git_dirty"]))
        for key in JSON_COLUMNS:
            row[key] = json.dumps(row.get(key) or {}, sort_keys=True, default=str)
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        try:
            with self._db:
                cur = self._db.execute(f"INSERT INTO entries ({cols}) VALUES ({marks})", row)
        except sqlite3.IntegrityError:  # a concurrent submit of the same records
            existing = self.find_digest(entry["records_digest"])
            if existing is None:
                raise
            raise DuplicateSubmission(existing) from None
        return self.get(int(cur.lastrowid))

    def get(self, entry_id: int) -> Entry:
        row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise KeyError(f"no leaderboard entry #{entry_id} in {self.path}")
        return _row_to_entry(row)

    def __iter__(self) -> Iterator[Entry]:
        for row in self._db.execute("SELECT * FROM entries ORDER BY id"):
            yield _row_to_entry(row)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def entries(
        self,
        split: str | None = None,
        split_hash: str | None = None,
        task_set: str | None = None,
    ) -> list[Entry]:
        sql, args = "SELECT * FROM entries WHERE 1=1", []
        for column, value in (("split", split), ("split_hash", split_hash), ("task_set", task_set)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        return [_row_to_entry(r) for r in self._db.execute(sql, args)]

    def ranked(
        self, split: str, split_hash: str | None = None, task_set: str | None = None
    ) -> list[Entry]:
        """The board of one split (optionally one version of it, one task set), best first
        within each task set, ranks set (:func:`rank_entries`)."""
        return rank_entries(self.entries(split, split_hash, task_set))

    def comparable(self, entry: Entry) -> list[Entry]:
        """The ranked entries over ``entry``'s task set (:attr:`Entry.task_set_key`)."""
        return [
            e
            for e in self.ranked(entry.split, entry.split_hash, entry.task_set)
            if e.task_set_key == entry.task_set_key
        ]

    def rank_of(self, entry: Entry) -> int:
        """The entry's rank among the entries over its task set."""
        for e in self.comparable(entry):
            if e.id == entry.id:
                return int(e.rank or 0)
        raise KeyError(entry.id)
