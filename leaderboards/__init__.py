"""The local leaderboard: validation and verification by replay, store and rendering of submitted
runs, and the trace viewer.

Reads the run directory format of ``docs/run-format.md`` (written by ``webgym-bench run``)
through ``webgym.runs``, and scores runs with ``webgym_benchmarks.metrics``; nothing but the
``webgym-bench`` command (``webgym_bench.py``) imports this package.
"""

from webgym_leaderboards.store import (
    DuplicateSubmission,
    Entry,
    LeaderboardStore,
    SchemaMismatch,
    default_db_path,
    rank_entries,
)
from webgym_leaderboards.submit import submit_run
from webgym_leaderboards.validate import (
    SubmissionRefused,
    ValidatedRun,
    recompute_metrics,
    records_digest,
    validate_run,
)
from webgym_leaderboards.verify import VerifiedRun, verify_run

__all__ = [
    "DuplicateSubmission",
    "Entry",
    "LeaderboardStore",
    "SchemaMismatch",
    "SubmissionRefused",
    "ValidatedRun",
    "VerifiedRun",
    "default_db_path",
    "rank_entries",
    "recompute_metrics",
    "records_digest",
    "submit_run",
    "validate_run",
    "verify_run",
]
