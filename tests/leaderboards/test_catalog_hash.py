"""Submit compares the catalog content hash a run's manifest records with this catalog's: a
run made on other products is refused even where the split versions agree."""

from __future__ import annotations

import json

import pytest

from webgym_leaderboards import SubmissionRefused, submit_run


def _manifest(run):
    return run / "manifest.json"


def test_a_real_run_records_this_catalogs_content_hash_and_submits(
    rule_run, store, known_splits, lb_catalog
):
    manifest = json.loads(_manifest(rule_run).read_text())
    assert manifest["catalog"]["content_hash"] == lb_catalog.content_hash
    assert submit_run(rule_run, store, known_splits).rank == 1


def test_a_run_made_on_another_catalog_is_refused_though_its_split_matches(
    rule_run, store, known_splits, lb_catalog
):
    manifest = json.loads(_manifest(rule_run).read_text())
    manifest["catalog"]["content_hash"] = "0123456789abcdef"  # the split hash is untouched
    _manifest(rule_run).write_text(json.dumps(manifest))
    with pytest.raises(SubmissionRefused, match="catalog content 0123456789abcdef"):
        submit_run(rule_run, store, known_splits)
