"""Validation of runs written in the documented format (no harness needed: fake runs, whose
files agree but which were never played; ``test_verify.py`` replays and submits real runs)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from tests.fakerun import make_run, read_json, write_json
from webgym_leaderboards import (
    LeaderboardStore,
    SchemaMismatch,
    SubmissionRefused,
    submit_run,
    validate_run,
)
from webgym_leaderboards.store import SCHEMA_VERSION

REWARDS = [1.0, 0.5, 0.0, 1.0, 0.75]


def refused(run, known) -> str:
    with pytest.raises(SubmissionRefused) as info:
        validate_run(run, known)
    return info.value.reason


def test_valid_run_is_accepted(tmp_path, store, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS, agent="rule")
    validated = validate_run(run, known_splits)
    assert validated.metrics["n_episodes"] == 5
    assert validated.metrics["score"] == pytest.approx(65.0)
    assert validated.metrics["success_rate"] == pytest.approx(0.4)
    assert validated.task_set == "test[:5]"

    entry = store.add(validated.entry())
    assert store.rank_of(entry) == 1
    assert entry.agent == "rule"
    assert entry.split == "test" and entry.split_hash == test_split.hash
    assert entry.n_episodes == 5 and entry.n_tasks == 5 and entry.task_set == "test[:5]"
    assert entry.score == pytest.approx(65.0)
    assert entry.score_se > 0
    assert entry.git_hash.startswith("0123456789ab")
    assert entry.package_versions["webgym"] == "0.1.0"
    assert entry.machine["hostname"] == "test"
    assert entry.run_path == str(run.resolve())
    assert len(entry.records_digest) == 64
    assert entry.metrics["by_difficulty"]
    assert len(store) == 1


def test_fake_run_is_refused_at_submit_by_the_replay(tmp_path, store, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    with pytest.raises(SubmissionRefused) as info:
        submit_run(run, store, known_splits)
    assert "replay refused episode test-0000, step 1" in info.value.reason
    assert len(store) == 0


def test_incomplete_run_names_the_missing_episodes(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    missing = test_split.task_ids[3]
    (run / "episodes" / missing / "summary.json").unlink()
    reason = refused(run, known_splits)
    assert "incomplete" in reason and missing in reason and "1 of 5" in reason


def test_unknown_split_version_is_refused(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS, split_hash="deadbeefdeadbeef")
    reason = refused(run, known_splits)
    assert "run made on split 'test' version deadbeefdeadbeef" in reason
    assert f"this catalog's 'test' is {test_split.hash}" in reason


def test_unknown_split_name_and_foreign_task_ids(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    m = read_json(run / "manifest.json")
    m["split"] = "holdout"
    write_json(run / "manifest.json", m)
    assert "split 'holdout'" in refused(run, known_splits)
    run2 = make_run(tmp_path, test_split, rewards=[1.0], name="foreign")
    m = read_json(run2 / "manifest.json")
    m["task_ids"] = ["train-0001"]
    write_json(run2 / "manifest.json", m)
    assert "train-0001" in refused(run2, known_splits)


def test_tampered_episode_reward_names_task_and_values(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    task = test_split.task_ids[2]
    path = run / "episodes" / task / "summary.json"
    s = read_json(path)
    s["reward"], s["success"] = 1.0, True
    write_json(path, s)
    reason = refused(run, known_splits)
    assert task in reason and "reward" in reason
    assert "1.0" in reason and "0.0" in reason


def test_steps_disagreeing_with_summary(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    task = test_split.task_ids[1]
    steps = run / "episodes" / task / "steps.jsonl"
    lines = steps.read_text().splitlines()
    steps.write_text("\n".join(lines[:-1]) + "\n")  # drop the Buy Now step
    reason = refused(run, known_splits)
    assert task in reason and "n_steps" in reason and "step lines" in reason

    run2 = make_run(tmp_path, test_split, rewards=REWARDS, name="success-flag")
    path = run2 / "episodes" / test_split.task_ids[1] / "summary.json"
    s = read_json(path)
    s["success"] = True  # reward 0.5 is no success
    write_json(path, s)
    assert "success" in refused(run2, known_splits)


def test_tampered_run_summary_is_refused(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    s = read_json(run / "summary.json")
    s["score"] = 90.0
    write_json(run / "summary.json", s)
    reason = refused(run, known_splits)
    assert "score: summary.json says 90.0 but the records give 65.0" in reason


def test_missing_run_summary_is_refused(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS, write_run_summary=False)
    assert "summary.json is missing" in refused(run, known_splits)


def test_duplicate_submission_is_refused(tmp_path, store, rule_run, known_splits):
    first = submit_run(rule_run, store, known_splits)
    copy = tmp_path / "copy-of-run"
    shutil.copytree(rule_run, copy)
    for candidate in (rule_run, copy):
        with pytest.raises(SubmissionRefused) as info:
            submit_run(candidate, store, known_splits)
        assert "duplicate" in info.value.reason and f"#{first.id}" in info.value.reason
    assert len(store) == 1


@pytest.mark.parametrize("field", ["package_versions", "machine", "agent", "created"])
def test_missing_provenance_is_refused(tmp_path, test_split, known_splits, field):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    m = read_json(run / "manifest.json")
    m[field] = None
    write_json(run / "manifest.json", m)
    reason = refused(run, known_splits)
    assert "missing provenance" in reason and field in reason


def test_a_run_without_a_commit_needs_webgyms_version(tmp_path, test_split, known_splits, store):
    """A run made from an install that is no git checkout records WebGym's version and no
    commit: accepted, and its entry shows the version; with neither, refused."""
    from webgym_leaderboards.render import leaderboard_html

    run = make_run(tmp_path, test_split, rewards=REWARDS)
    m = read_json(run / "manifest.json")
    m["git_hash"], m["git_dirty"] = None, None
    write_json(run / "manifest.json", m)
    entry = validate_run(run, known_splits).entry()
    assert entry["git_hash"] == "" and entry["package_versions"]["webgym"] == "0.1.0"
    added = store.add(entry)
    assert added.git_short == "v0.1.0"
    page = leaderboard_html(store.ranked("test"), split="test")
    assert "<code>v0.1.0</code>" in page and "no git commit recorded (webgym 0.1.0)" in page
    del m["package_versions"]["webgym"]
    write_json(run / "manifest.json", m)
    reason = refused(run, known_splits)
    assert "missing provenance" in reason and "git_hash" in reason and "webgym" in reason


def test_corrupt_episode_files_are_named(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    task = test_split.task_ids[4]
    path = run / "episodes" / task / "summary.json"
    path.write_text('{"task_id": "' + task + '", "rew')
    reason = refused(run, known_splits)
    assert "corrupt" in reason and str(path) in reason

    run2 = make_run(tmp_path, test_split, rewards=REWARDS, name="bad-steps")
    steps = run2 / "episodes" / task / "steps.jsonl"
    steps.write_text(steps.read_text() + "{not json\n")
    reason = refused(run2, known_splits)
    assert "corrupt" in reason and str(steps) in reason and "line" in reason


def test_corrupt_or_missing_manifest(tmp_path, known_splits):
    run = tmp_path / "not-a-run"
    run.mkdir()
    assert "manifest" in refused(run, known_splits)
    (run / "manifest.json").write_text("[1, 2")
    assert "corrupt" in refused(run, known_splits)


def test_leaderboard_ordering(tmp_path, store, test_split, known_splits):
    runs = {
        "random": [0.0, 0.1, 0.0, 0.2],
        "rule": [1.0, 0.5, 0.0, 0.5],
        "oracle": [1.0, 1.0, 1.0, 0.5],
        "rule-again": [0.5, 1.0, 0.5, 0.0],  # same Score and success as "rule": shares its rank
    }
    for agent, rewards in runs.items():  # ranking is the store's: file-checked fake runs
        run = make_run(tmp_path, test_split, rewards=rewards, agent=agent)
        store.add(validate_run(run, known_splits).entry())
    board = store.ranked("test", test_split.hash)
    assert [e.agent for e in board] == ["oracle", "rule", "rule-again", "random"]
    assert [e.rank for e in board] == [1, 2, 2, 4]
    assert board[0].score == pytest.approx(87.5)
    assert store.ranked("validation") == []


def test_store_schema_is_versioned(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with LeaderboardStore(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(SchemaMismatch, match="schema version 99"):
        LeaderboardStore(path)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_board_is_moved_aside_not_refused(tmp_path, version):
    path = tmp_path / "board.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY)")
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
    with pytest.warns(UserWarning, match=f"schema version {version}"):
        store = LeaderboardStore(path)
    with store:
        assert len(store) == 0
    assert (tmp_path / f"board.sqlite.schema{version}").is_file()
    new = sqlite3.connect(path)
    assert new.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    new.close()


def test_default_location_follows_env(tmp_path, monkeypatch):
    from webgym_leaderboards import default_db_path

    monkeypatch.setenv("WEBGYM_LEADERBOARD", str(tmp_path / "x.sqlite"))
    assert default_db_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("WEBGYM_LEADERBOARD")
    assert default_db_path().name == "leaderboard.sqlite"
    assert "webgym" in str(default_db_path())


def test_digest_ignores_file_formatting(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    a = validate_run(run, known_splits).records_digest
    for path in (run / "episodes").glob("*/summary.json"):
        path.write_text(json.dumps(read_json(path)))  # re-serialised without indentation
    assert validate_run(run, known_splits).records_digest == a
