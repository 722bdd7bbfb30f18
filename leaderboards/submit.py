"""Submitting a run: validate it, verify it by replay, refuse duplicates, insert it, rank it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from leaderboards.store import DuplicateSubmission, Entry, LeaderboardStore
from leaderboards.validate import SubmissionRefused
from leaderboards.verify import verify_run


def submit_run(
    run_dir: Path | str,
    store: LeaderboardStore,
    known_splits: Any,
    *,
    catalog: Path | str | None = None,
) -> Entry:
    """Validate ``run_dir``, replay it (``leaderboards.verify``: on ``catalog``, the catalog
    file ``known_splits`` came from; default ``$WEBGYM_CATALOG``, else the embedded one) and
    add it to ``store``; returns the new entry with its rank (among the entries over the same
    task set) set.

    Raises ``SubmissionRefused`` (every refusal, duplicates included) with the reason.
    """
    run = verify_run(run_dir, known_splits, catalog=catalog).run
    existing = store.find_digest(run.records_digest)
    if existing is not None:
        duplicate = DuplicateSubmission(existing)
        raise SubmissionRefused(str(duplicate)) from duplicate
    try:
        entry = store.add(run.entry())
    except DuplicateSubmission as exc:
        raise SubmissionRefused(str(exc)) from exc
    return replace(entry, rank=store.rank_of(entry))
