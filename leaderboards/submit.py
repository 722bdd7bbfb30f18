"""Submitting a run: validate it, verify it by replay, refuse duplicates, insert it, rank it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from leaderboards.store import DuplicateSubmission, Entry, LeaderboardStore
from leaderboards.validate import SubmissionRefused, read_manifest
from leaderboards.verify import verify_run


def submit_run(
    run_dir: Path | str,
    store: LeaderboardStore,
    known_splits: Any,
    *,
    catalog: Path | str | None = None,
) -> Entry:
    """Validate ``run_dir``, replay it (``leaderboards.verify``: on ``catalog``, the catalog
    file ``known_splits`` came from; default ``$WEBGYM_CATALOG``, else the embedded one that
    holds the run's split) and
    add it to ``store``; returns the new entry with its rank (among the entries over the same
    task set) set.

    Raises ``SubmissionRefused`` (every refusal, duplicates included) with the reason.
    """
    _check_catalog_hash(run_dir, catalog)
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


def _check_catalog_hash(run_dir: Path | str, catalog: Path | str | None) -> None:
    """The run's manifest names the content hash of the catalog it was made on (runs since
    issue 13 do): it must be this catalog's, even where the split versions agree."""
    manifest = read_manifest(Path(run_dir))
    recorded = (manifest.get("catalog") or {}).get("content_hash")
    if recorded is None:
        return  # an older run: the replay on this catalog still checks it
    from webgym.shop.catalog import open_catalog

    try:
        split = manifest.get("split") if isinstance(manifest.get("split"), str) else None
        with open_catalog(catalog, split=split) as current:
            here = current.content_hash
    except (OSError, ValueError) as e:
        raise SubmissionRefused(f"cannot open the catalog: {e}") from None
    if recorded != here:
        raise SubmissionRefused(
            f"run made on catalog content {recorded}; this catalog is {here} (its products or "
            "tasks differ: re-run the agent on this catalog)"
        )
