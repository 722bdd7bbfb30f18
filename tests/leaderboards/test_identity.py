"""An entry is what happened in its episodes, over its task set: copies of a run dressed up with
other timings, timestamps or agent names are duplicates; provenance is checked for form; runs
over other step limits are ranked apart, and a manifest without ``split_size`` is not a new
task set. Real runs (conftest ``recorded_rule_run``) where the replay matters, file-checked fake
runs (``fakerun.make_run``) where it does not."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tests.fakerun import make_run, read_json, write_json
from webgym_leaderboards import DuplicateSubmission, SubmissionRefused, submit_run, validate_run
from webgym_leaderboards.store import task_set_groups

REWARDS = [1.0, 0.5, 0.0, 1.0]
SHA = "ab" * 32


def steps_of(run, task):
    path = run / "episodes" / task / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_steps(run, task, steps) -> None:
    path = run / "episodes" / task / "steps.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps))


def disguise(run, *, agent: str, **manifest_over) -> None:
    """What a copier does to make a run look new: other timings and finish times in the
    episode summaries, another agent name, run id and creation time, actions respelled (the same
    actions to the parser), the run summary's wall time."""
    for path in sorted((run / "episodes").glob("*/summary.json")):
        s = read_json(path)
        s["timings"] = {k: v + 1e-6 for k, v in s["timings"].items()}
        s["finished"] = "2026-12-01T00:00:00Z"
        s["attempts"] = 2
        write_json(path, s)
    for folder in sorted((run / "episodes").iterdir()):
        steps = steps_of(run, folder.name)
        for st in steps:
            st["elapsed_s"] += 0.5
            if st["action"].startswith("click('"):  # click('x') -> click("x")
                st["action"] = st["action"].replace("'", '"')
            elif st["action"].startswith("search["):  # search[q] -> search[ q ]
                st["action"] = "search[ " + st["action"][7:-1] + " ]"
        write_steps(run, folder.name, steps)
    m = read_json(run / "manifest.json")
    m.update(agent=agent, run_id="fresh-run", created="2026-12-01T00:00:00Z", **manifest_over)
    write_json(run / "manifest.json", m)
    s = read_json(run / "summary.json")
    s["wall_time_s"] = (s.get("wall_time_s") or 0) + 1.0
    write_json(run / "summary.json", s)


@pytest.mark.parametrize(
    "agent, over",
    [("random", {}), ("digiq", {"checkpoint": "/ckpt/digiq", "checkpoint_sha256": SHA})],
)
def test_a_copied_run_in_disguise_is_a_duplicate(
    rule_run, tmp_path, store, known_splits, agent, over
):
    first = submit_run(rule_run, store, known_splits)
    copy = tmp_path / "R2"
    shutil.copytree(rule_run, copy)
    disguise(copy, agent=agent, **over)
    with pytest.raises(SubmissionRefused) as info:
        submit_run(copy, store, known_splits)
    assert isinstance(info.value.__cause__, DuplicateSubmission)
    assert "duplicate" in info.value.reason and f"#{first.id}" in info.value.reason
    assert len(store) == 1


def test_the_identity_is_the_episodes_not_the_files(rule_run, tmp_path, known_splits):
    """What the replay checks enters the identity; what it does not, does not."""
    base = validate_run(rule_run, known_splits).records_digest
    copy = tmp_path / "copy"
    shutil.copytree(rule_run, copy)
    disguise(copy, agent="random")
    assert validate_run(copy, known_splits).records_digest == base
    # another action that leads to the same pages is another episode
    steps = steps_of(copy, "test-0004")
    steps[0]["action"] = steps[0]["action"].replace("search[ ", "search[ x ")
    write_steps(copy, "test-0004", steps)
    assert validate_run(copy, known_splits).records_digest != base


def test_what_the_agent_saw_and_said_is_no_part_of_the_identity(
    rule_run, tmp_path, store, known_splits
):
    """A step's ``decision`` and the episode's ``observations.jsonl`` are traces for people:
    the same episodes without them, or with other words for why, are the same entry."""
    from webgym.runs import steps_digest

    steps = steps_of(rule_run, "test-0004")
    assert all(st["decision"]["reason"] for st in steps)  # the rule agent says why
    assert (rule_run / "episodes" / "test-0004" / "observations.jsonl").is_file()
    first = submit_run(rule_run, store, known_splits)
    copy = tmp_path / "bare"
    shutil.copytree(rule_run, copy)
    for folder in sorted((copy / "episodes").iterdir()):
        bare = [
            {k: v for k, v in st.items() if k != "decision"} for st in steps_of(copy, folder.name)
        ]
        bare[0]["decision"] = {
            "reason": "another story",
            "candidates": [{"action": "x", "prob": 1}],
        }
        write_steps(copy, folder.name, bare)
        (folder / "observations.jsonl").unlink()
        summary = read_json(folder / "summary.json")
        write_json(folder / "summary.json", {**summary, "steps_digest": steps_digest(bare)})
    assert validate_run(copy, known_splits).records_digest == first.records_digest
    with pytest.raises(SubmissionRefused) as info:
        submit_run(copy, store, known_splits)
    assert isinstance(info.value.__cause__, DuplicateSubmission)


def test_a_digest_changes_with_the_task_set(tmp_path, test_split, known_splits):
    run = make_run(tmp_path, test_split, rewards=REWARDS)
    base = validate_run(run, known_splits)
    other = make_run(tmp_path, test_split, rewards=REWARDS, name="limit-60", max_episode_steps=60)
    assert validate_run(other, known_splits).records_digest != base.records_digest
    browser = make_run(tmp_path, test_split, rewards=REWARDS, name="browser", mode="browser")
    assert validate_run(browser, known_splits).records_digest != base.records_digest


def refusal(tmp_path, test_split, known_splits, name="refused", **over) -> str:
    run = make_run(tmp_path, test_split, rewards=REWARDS, name=name, **over)
    with pytest.raises(SubmissionRefused) as info:
        validate_run(run, known_splits)
    return info.value.reason


@pytest.mark.parametrize(
    "over, words",
    [
        ({"git_hash": "zz-not-a-commit"}, "is not a commit id"),
        ({"git_hash": "0123456"}, None),  # abbreviated: a commit
        ({"git_hash": "abc"}, "is not a commit id"),
        ({"git_hash": ""}, "is not a commit id"),
        ({"git_hash": None, "git_dirty": None}, None),  # an install: its version says it
        ({"git_hash": None, "package_versions": {"python": "3.11"}}, "no package_versions.webgym"),
        ({"agent": "nosuch.module:MyAgent"}, None),  # module:factory: never imported here
        ({"created": "2099-01-01T00:00:00Z"}, "is in the future"),
        ({"agent": "digiq"}, "names no checkpoint_sha256"),
        ({"agent": "lm", "checkpoint_sha256": "not-a-hash"}, "is not a sha256"),
        ({"agent": "digiq", "checkpoint": "/c", "checkpoint_sha256": SHA}, None),
        ({"agent": "rule", "checkpoint_sha256": SHA}, "takes no checkpoint"),
        ({"max_episode_steps": "15"}, "max_episode_steps"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
    ],
)
def test_provenance_is_checked_for_form(tmp_path, test_split, known_splits, over, words):
    if words is None:
        validate_run(make_run(tmp_path, test_split, rewards=REWARDS, **over), known_splits)
    else:
        assert words in refusal(tmp_path, test_split, known_splits, **over)


def test_created_within_clock_skew_is_accepted(tmp_path, test_split, known_splits):
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    validate_run(make_run(tmp_path, test_split, rewards=REWARDS, created=soon), known_splits)
    naive_future = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None).isoformat()
    reason = refusal(tmp_path, test_split, known_splits, created=naive_future)
    assert "in the future" in reason


# ---------------------------------------------------------------------------------------------
# Task sets


def test_runs_under_other_step_limits_are_ranked_apart(tmp_path, store, test_split, known_splits):
    long = make_run(tmp_path, test_split, rewards=[1.0, 1.0, 0.5, 1.0], agent="random",
                    name="random-60", max_episode_steps=60)  # fmt: skip
    short = make_run(tmp_path, test_split, rewards=[0.0, 0.5, 0.0, 0.0], agent="random",
                     name="random-15", max_episode_steps=15)  # fmt: skip
    for run in (short, long):
        store.add(validate_run(run, known_splits).entry())
    board = store.ranked("test", test_split.hash)
    assert [(e.run_id, e.max_steps, e.rank) for e in board] == [
        ("random-60", 60, 1),
        ("random-15", 15, 1),
    ]
    assert [len(g) for g in task_set_groups(board)] == [1, 1]
    assert all(store.rank_of(e) == 1 and len(store.comparable(e)) == 1 for e in board)

    from webgym_leaderboards.cli import app

    html = tmp_path / "board.html"
    runner = CliRunner(env={"COLUMNS": "100"})
    out = runner.invoke(app, ["leaderboard", "--db", str(store.path), "--html", str(html)])
    assert out.exit_code == 0, out.output
    assert "test[:4] version" in out.output
    assert "60 steps, text mode" in out.output and "15 steps, text mode" in out.output
    page = html.read_text()
    assert 'data-max-steps="60"' in page and 'data-max-steps="15"' in page
    assert '<td class="num max-steps">15</td>' in page


def test_a_manifest_without_split_size_is_the_same_task_set(
    tmp_path, store, test_split, known_splits
):
    full = make_run(tmp_path, test_split, rewards=[0.5] * test_split.size, name="full")
    entry = store.add(validate_run(full, known_splits).entry())
    assert entry.task_set == f"test ({test_split.size})"
    m = read_json(full / "manifest.json")
    del m["split_size"]
    write_json(full / "manifest.json", m)
    run = validate_run(full, known_splits)
    assert run.task_set == f"test ({test_split.size})"
    assert run.records_digest == entry.records_digest
    with pytest.raises(DuplicateSubmission):
        store.add(run.entry())
    assert len(store) == 1
