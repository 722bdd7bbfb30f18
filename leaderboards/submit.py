"""Submitting a run: validate it, refuse duplicates, insert it, say its rank."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from leaderboards.store import DuplicateSubmission, Entry, LeaderboardStore
from leaderboards.validate import SubmissionRefused, ValidatedRun, validate_run


def submit_run(run_dir: Path | str, store: LeaderboardStore, known_splits: Any) -> Entry:
    """Validate ``run_dir`` and add it to ``store``; returns the new entry with its rank set.

    Raises ``SubmissionRefused`` (every refusal, duplicates included) with the reason.
    """
    run: ValidatedRun = validate_run(run_dir, known_splits)
    existing = store.find_digest(run.records_digest)
    if existing is not None:
        duplicate = DuplicateSubmission(existing)
        raise SubmissionRefused(str(duplicate)) from duplicate
    try:
        entry = store.add(run.entry())
    except DuplicateSubmission as exc:
        raise SubmissionRefused(str(exc)) from exc
    return replace(entry, rank=store.rank_of(entry))
