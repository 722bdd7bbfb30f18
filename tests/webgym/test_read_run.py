"""The one reader of a run's records (``webgym.runs.read_run``): what it reads of a run the
harness recorded, and what it makes of damage (a torn line, a missing summary, a manifest of
another format version, a run from before observations were recorded): problems as data, never
an exception; then what its readers make of them (validation refuses, the viewer shows, ``show``
reads on)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fakerun import read_json, record_run, write_json
from webgym.runs import (
    FORMAT_VERSION,
    CorruptRecord,
    RunDir,
    RunRecords,
    load_run,
    read_run,
)
from webgym_leaderboards import LeaderboardStore, SubmissionRefused, submit_run, validate_run
from webgym_leaderboards.viewer import load_run as view_run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """The rule agent on the first 3 test tasks, text mode, played by the harness."""
    return record_run(tmp_path_factory.mktemp("recorded") / "rule-test3", episodes=3)


@pytest.fixture
def run(recorded, tmp_path) -> Path:
    """A private copy of the recorded run, to damage."""
    return Path(shutil.copytree(recorded, tmp_path / recorded.name))


def refused(run, known) -> str:
    with pytest.raises(SubmissionRefused) as info:
        validate_run(run, known)
    return info.value.reason


def _cut_line(path: Path, line: int) -> None:
    """Keep ``path``'s lines before ``line`` and half of that one (a write torn mid-line)."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: line - 1]) + lines[line - 1][: len(lines[line - 1]) // 2])


def test_a_recorded_run_reads_whole_with_no_problems(run):
    records = read_run(run)
    manifest = read_json(run / "manifest.json")
    assert records.manifest == manifest and records.manifest["format_version"] == FORMAT_VERSION
    assert records.manifest_problem is None and records.summary_problem is None
    assert records.summary == read_json(run / "summary.json")
    assert records.problems == [] and records.unsafe == [] and records.warnings == []
    assert records.task_ids == manifest["task_ids"] and records.unlisted == []
    assert records.missing == [] and records.corrupt == {}
    for tid in records.task_ids:
        ep = records.by_task[tid]
        assert ep.state == "complete" and ep.summary["task_id"] == tid
        assert len(ep.steps) == ep.summary["n_steps"]
        assert [o["step"] for o in ep.observations] == list(range(len(ep.steps) + 1))
        assert ep.steps_problem is ep.observations_problem is None
        assert ep.screenshot_problems == []
    assert records.wall_time_s > 0
    # what show and compare read is the same records, without the traces
    metrics_view = load_run(run)
    assert metrics_view.episodes == records.episodes
    assert all(not ep.observations for ep in metrics_view.by_task.values())


def test_a_torn_jsonl_line_is_a_problem_with_its_line_number(run, catalog):
    tid = read_json(run / "manifest.json")["task_ids"][1]
    steps = RunDir(run).steps_path(tid)
    n_lines = len(steps.read_bytes().splitlines())
    _cut_line(steps, n_lines)
    pages = RunDir(run).observations_path(tid)
    _cut_line(pages, 2)

    records = read_run(run)  # no exception: the problems are data
    ep = records.by_task[tid]
    assert ep.state == "complete"  # its summary is whole; its steps are not
    assert len(ep.steps) == n_lines - 1  # the lines before the torn one
    problem = ep.steps_problem
    assert (problem.path, problem.line, problem.kind) == (steps, n_lines, "corrupt")
    assert problem.message == f"steps.jsonl line {n_lines} is not JSON"
    assert problem.task_id == tid
    assert ep.observations_problem.line == 2 and len(ep.observations) == 1
    assert problem in records.problems and ep.observations_problem in records.problems
    # show reads on, warning; validation refuses naming the file and the line; the viewer
    # shows the episode with the problem on it
    assert records.warnings == [f"{tid}: steps.jsonl line {n_lines} is not JSON"]
    assert refused(records, catalog.splits()) == (
        f"corrupt episode file {steps}: steps.jsonl line {n_lines} is not JSON"
    )
    trace = view_run(records).episode(tid)
    assert trace.steps == [] and f"steps.jsonl line {n_lines} is not JSON" in trace.problem


def test_a_missing_summary_is_a_problem_not_an_exception(run, catalog):
    tids = read_json(run / "manifest.json")["task_ids"]
    (run / "summary.json").unlink()
    (RunDir(run).episode_summary_path(tids[2])).unlink()

    records = read_run(run)
    assert records.summary is None
    assert records.summary_problem.kind == "missing"
    assert records.summary_problem.path == run / "summary.json"
    assert records.by_task[tids[2]].state == "partial"
    assert records.missing == [tids[2]] and len(records.episodes) == 2
    missing = [p for p in records.problems if p.kind == "missing"]
    assert [p.path for p in missing] == [
        run / "summary.json",
        RunDir(run).episode_summary_path(tids[2]),
    ]
    assert missing[1].task_id == tids[2]
    reason = refused(records, catalog.splits())
    assert reason.startswith("incomplete run: 1 of 3 episodes have no summary.json")
    assert view_run(records).run_summary is None  # the viewer shows the run all the same

    shutil.rmtree(RunDir(run).episode_path(tids[2]))  # the folder gone too: missing

    assert read_run(run).by_task[tids[2]].state == "missing"


def test_a_missing_run_summary_refuses_only_validation(recorded, tmp_path, catalog):
    run = Path(shutil.copytree(recorded, tmp_path / "run"))
    (run / "summary.json").unlink()
    assert "summary.json is missing: the run did not finish" in refused(run, catalog.splits())
    assert load_run(run).episodes  # show recomputes it


@pytest.mark.parametrize("version", [0, 2, None])
def test_a_manifest_of_another_format_version(run, catalog, version):
    doc = read_json(run / "manifest.json")
    if version is None:
        del doc["format_version"]
    else:
        doc["format_version"] = version
    write_json(run / "manifest.json", doc)

    records = read_run(run)
    assert records.manifest == doc  # read as far as it goes
    problem = records.manifest_problem
    assert problem.kind == "format" and problem.path == run / "manifest.json"
    assert problem.message == (
        f"{run / 'manifest.json'}: format_version {version!r}; this webgym reads version "
        f"{FORMAT_VERSION}"
    )
    assert len(records.episodes) == 3 and problem in records.problems
    assert refused(records, catalog.splits()) == problem.message
    assert len(load_run(run).episodes) == 3  # show reads what it can
    assert len(view_run(run).episodes) == 3


def test_a_run_from_before_observations_and_steps_digests_reads_without_problems(run, catalog):
    """Runs written before observations.jsonl and an episode's steps_digest existed (the same
    format version 1, as every run so far): nothing is missing from them."""
    rd = RunDir(run)
    for tid in read_json(run / "manifest.json")["task_ids"]:
        rd.observations_path(tid).unlink()
        summary = read_json(rd.episode_summary_path(tid))
        del summary["steps_digest"]
        write_json(rd.episode_summary_path(tid), summary)
    records = read_run(run)
    assert records.problems == []
    assert all(ep.observations == [] for ep in records.by_task.values())
    assert validate_run(records, catalog.splits()).metrics["n_episodes"] == 3


def test_an_unreadable_manifest_is_a_problem_of_the_records(run):
    (run / "manifest.json").write_text('{"format_version": 1, "task_ids": ["te')
    records = read_run(run)
    assert records.manifest is None and records.manifest_problem.kind == "corrupt"
    assert "not valid JSON" in records.manifest_problem.message
    with pytest.raises(CorruptRecord, match="not valid JSON"):
        load_run(run)  # show and compare: no run without a manifest
    with pytest.raises(SubmissionRefused, match="^corrupt file .*not valid JSON"):
        view_run(records)
    (run / "manifest.json").unlink()
    assert read_run(run).manifest_problem.kind == "missing"
    assert read_run(run / "summary.json").manifest_problem.message.endswith(
        "is not a run directory"
    )


def test_a_submission_works_on_the_records_it_read_once(run, catalog, tmp_path):
    """submit reads the run once: the catalog check, validation and the replay work on the
    records read, so a manifest that disappears afterwards is never looked for again."""
    records = read_run(run)
    assert isinstance(records, RunRecords)
    (run / "manifest.json").unlink()
    with LeaderboardStore(tmp_path / "board.sqlite") as store:
        entry = submit_run(records, store, catalog.splits())
        assert entry.rank == 1 and entry.n_episodes == 3
    with pytest.raises(SubmissionRefused, match="run manifest is missing"):
        validate_run(run, catalog.splits())  # read again: now it is missing


def test_problems_name_their_file_once(run):
    """A file that is a symlink is found by the walk and by its read: one problem."""
    tid = read_json(run / "manifest.json")["task_ids"][0]
    pages = RunDir(run).observations_path(tid)
    outside = run.parent / "pages.jsonl"
    pages.rename(outside)
    pages.symlink_to(outside)
    records = read_run(run)
    named = [p for p in records.problems if p.path == pages]
    assert len(named) == 1 and named[0].kind == "unsafe" and "is a symlink" in named[0].message
    assert json.loads(outside.read_text().splitlines()[0])["step"] == 0
