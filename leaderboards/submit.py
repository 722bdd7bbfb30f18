"""Submitting a run: validate it, verify it by replay, refuse duplicates, insert it, rank it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from webgym.runs import RunRecords, run_records
from webgym_leaderboards.store import DuplicateSubmission, Entry, LeaderboardStore
from webgym_leaderboards.validate import SubmissionRefused, check_manifest
from webgym_leaderboards.verify import Progress, verify_run


def submit_run(
    run_dir: Path | str | RunRecords,
    store: LeaderboardStore,
    known_splits: Any,
    *,
    catalog: Path | str | None = None,
    on_episode: Progress | None = None,
) -> Entry:
    """Validate ``run_dir``, replay it (``webgym_leaderboards.verify``: on ``catalog``, the catalog
    file ``known_splits`` came from; default ``$WEBGYM_CATALOG``, else the embedded one that
    holds the run's split) and
    add it to ``store``; returns the new entry with its rank (among the entries over the same
    task set) set.

    The entry's identity (``records_digest``: its task set, this catalog's content hash
    included, and its episodes' replayed content) must be new: the same episodes submitted again
    under another manifest (another agent name, other timestamps or timings) are a duplicate.

    The run is read once (``webgym.runs.read_run``; ``run_dir`` may be its records, read
    already): the catalog check, validation and the replay work on what was read.

    Raises ``SubmissionRefused`` (every refusal, duplicates included) with the reason.
    ``on_episode(done, total)`` hears of each episode the replay got through.
    """
    records = run_records(run_dir)
    content_hash = _check_catalog_hash(check_manifest(records), catalog)
    verified = verify_run(records, known_splits, catalog=catalog, on_episode=on_episode)
    run = replace(verified.run, catalog_hash=content_hash)
    existing = store.find_digest(run.records_digest)
    if existing is not None:
        duplicate = DuplicateSubmission(existing)
        raise SubmissionRefused(str(duplicate)) from duplicate
    try:
        entry = store.add(run.entry())
    except DuplicateSubmission as exc:
        raise SubmissionRefused(str(exc)) from exc
    return replace(entry, rank=store.rank_of(entry))


def _check_catalog_hash(manifest: dict[str, Any], catalog: Path | str | None) -> str:
    """The content hash of the catalog the run is replayed on (the one its entry is ranked
    on). Where the run's manifest names the content hash of the catalog it was made on (the
    harness records it), it must be this one, even where the split versions agree; an older run
    that names none is checked by the replay on this catalog alone."""
    recorded = manifest.get("catalog")
    recorded = recorded.get("content_hash") if isinstance(recorded, dict) else None
    from webgym.shop.catalog import open_catalog

    try:
        split = manifest.get("split") if isinstance(manifest.get("split"), str) else None
        with open_catalog(catalog, split=split) as current:
            here = current.content_hash
    except (OSError, ValueError) as e:
        raise SubmissionRefused(f"cannot open the catalog: {e}") from None
    if recorded is not None and recorded != here:
        raise SubmissionRefused(
            f"run made on catalog content {recorded}; this catalog is {here} (its products or "
            "tasks differ: re-run the agent on this catalog)"
        )
    return here
