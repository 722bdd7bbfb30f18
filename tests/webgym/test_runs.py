"""The run-record format (webgym/runs.py): the values writer and re-player must agree on, the
writers and readers, and a run the harness recorded re-played by behaviour cloning."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from webgym.runs import (
    TRAIN_SEED_SALT,
    CorruptRecord,
    EpisodeWriter,
    ManifestMismatch,
    RunDir,
    episode_seed,
    episode_summary,
    load_run,
    obs_digest,
    screenshot_name,
    step_counts,
    step_record,
)


def test_episode_seeds_keep_the_values_recorded_runs_were_played_with():
    # the harness's seeds since the first recorded run: changing them breaks every replay
    assert episode_seed(0, "test-0003") == 632177199
    assert episode_seed(7, "train-0001") == 1260241883
    # trainers' own rollouts use their own salt (webgym_agents.toolkit.rollouts.rollout_seed)
    assert episode_seed(0, "train-0001", salt=TRAIN_SEED_SALT) == 2094880610
    assert episode_seed(3, "test-0003", salt=TRAIN_SEED_SALT) == 1762004585
    from webgym_agents.toolkit.rollouts import rollout_seed

    assert rollout_seed(3, "test-0003") == 1762004585


def test_obs_digest_and_screenshot_names():
    assert obs_digest({"text": "hello"}) == hashlib.sha256(b"hello").hexdigest()
    assert obs_digest({}) == hashlib.sha256(b"").hexdigest()
    assert screenshot_name(0) == "step-000.png" and screenshot_name(12) == "step-012.png"


def _steps(n: int) -> list[dict]:
    return [
        step_record(
            step=i,
            action=f"click[{i}]",
            obs={"text": f"page {i}", "url": f"/{i}", "last_action_error": "" if i else "e"},
            reward=1.0 if i == n - 1 else 0.0,
            terminated=i == n - 1,
            truncated=False,
            effect={"label": i % 2, "text_distance": 0.5},
            elapsed_s=0.1234567,
        )
        for i in range(n)
    ]


def test_written_records_read_back(tmp_path):
    run = RunDir(tmp_path / "run")
    manifest = {"format_version": 1, "agent": "x", "split": "test", "task_ids": ["a", "b"]}
    assert run.check(manifest) is None and not run.path.exists()  # checking writes nothing
    run.create_or_check(manifest)
    steps = _steps(3)
    assert steps[0]["obs_digest"] == obs_digest({"text": "page 0"})
    assert steps[0]["last_action_error"] == "e" and steps[0]["elapsed_s"] == 0.123457
    writer = EpisodeWriter(run, "a")
    writer.screenshot(0, np.zeros((4, 6, 3), dtype=np.uint8))
    for st in steps:
        writer.step(st)
    counts = step_counts(steps)
    assert counts == {"n_steps": 3, "n_invalid_actions": 1, "n_effect": 1}
    summary = episode_summary(
        task_id="a", split="test", seed=1, reward=1.0, terminated=True, truncated=False, **counts
    )
    assert summary["success"] is True and summary["error"] is None and summary["finished"]
    writer.finish(summary)
    assert run.screenshot_path("a", 0).is_file()
    assert run.read_steps("a") == (steps, None)

    records = load_run(run.path)
    assert records.episodes == [summary] and records.missing == ["b"] and not records.warnings
    assert RunDir(run.path).create_or_check(manifest) == manifest  # a resume
    with pytest.raises(ManifestMismatch, match="agent: the run has 'x', this command 'y'"):
        run.check({**manifest, "agent": "y"})

    (run.steps_path("a")).write_text(json.dumps(steps[0]) + "\n[1]\n")
    assert run.read_steps("a") == ([steps[0]], "steps.jsonl line 2 is not a JSON object")
    run.episode_summary_path("a").write_text('{"task_id": "a"}')
    with pytest.raises(CorruptRecord, match="missing fields"):
        run.read_episode_summary("a")
    assert run.read_episode_summary("a", strict=False) == {"task_id": "a"}


def test_bc_replays_a_run_the_harness_recorded(tmp_path):
    """The harness writes episode seeds and observation digests through webgym.runs; behaviour
    cloning re-plays a run's actions from the same seeds and checks every rebuilt page against
    the same digests. Any disagreement would skip the episode."""
    from tests.helpers import actions, cli, summaries
    from webgym_agents.algos.bc import PRESETS, _episodes_from_run

    out = tmp_path / "run"
    result = cli("run", "--agent", "rule", "--split", "train", "--episodes", "3", "--out", out)
    assert result.exit_code == 0, result.output
    config = dataclasses.replace(PRESETS["smoke"], min_reward=0.0)
    kept, skipped = _episodes_from_run(out, config)
    recorded = summaries(out)
    assert skipped == 0 and [ep.task_id for ep in kept] == sorted(recorded)
    for ep in kept:
        assert ep.seed == recorded[ep.task_id]["seed"] == episode_seed(0, ep.task_id)
        assert [s.action for s in ep.steps] == actions(out, ep.task_id)
        assert ep.reward == recorded[ep.task_id]["reward"]


def test_replay_compares_urls_by_path_and_query_not_host():
    """A browser run records the shop at 127.0.0.1:PORT, the text twin replays on its own host."""
    from webgym.replay import step_differences

    rec = {"url": "http://127.0.0.1:45211/s/SESSION/search?q=dog+leash"}
    assert not [
        d
        for d in step_differences(
            rec, {"url": "http://shop.local/s/SESSION/search?q=dog+leash"}, mode="text"
        )
        if d.startswith("url")
    ]
    assert [
        d
        for d in step_differences(
            rec, {"url": "http://shop.local/s/SESSION/search?q=cat"}, mode="text"
        )
        if d.startswith("url")
    ]


# ----------------------------------------------------------------------------------------------
# Files inside a run are regular files inside the run


def _episode(tmp_path, *, screenshots: bool = True) -> RunDir:
    """A run with one complete episode "a" (3 steps, screenshots after each) written by the
    real writer."""
    run = RunDir(tmp_path / "run")
    run.create_or_check({"format_version": 1, "agent": "x", "split": "test", "task_ids": ["a"]})
    steps = [{**st, "step": st["step"] + 1} for st in _steps(3)]  # numbered 1..3
    writer = EpisodeWriter(run, "a")
    for st in steps:
        writer.step(st)
        if screenshots:
            writer.screenshot(st["step"], np.full((4, 6, 3), st["step"], dtype=np.uint8))
    if screenshots:
        writer.screenshot(0, np.zeros((4, 6, 3), dtype=np.uint8))
    writer.finish(
        episode_summary(
            task_id="a",
            split="test",
            seed=1,
            reward=1.0,
            terminated=True,
            truncated=False,
            **step_counts(steps),
        )
    )
    return run


def test_readers_refuse_symlinks_fifos_and_non_pngs_naming_the_path(tmp_path):
    import os

    from webgym.runs import UnsafeFile

    run = _episode(tmp_path)
    assert run.scan(["a"], check_steps=True).complete  # intact: kept
    assert run.read_screenshot("a", 1).startswith(b"\x89PNG\r\n\x1a\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")

    shot = run.screenshot_path("a", 1)
    shot.unlink()
    shot.symlink_to(secret)
    with pytest.raises(UnsafeFile, match=f"{shot} is a symlink"):
        run.read_screenshot("a", 1)
    scan = run.scan(["a"], check_steps=True)
    assert not scan.complete and f"{shot} is a symlink" in scan.unsound["a"]

    shot.unlink()
    shot.write_bytes(b"GIF89a not a png")  # a regular file, but not a PNG
    with pytest.raises(UnsafeFile, match="not a PNG image"):
        run.read_screenshot("a", 1)
    assert f"{shot} is not a PNG image" in run.scan(["a"], check_steps=True).unsound["a"]
    header = bytearray(run.read_screenshot("a", 0))
    header[16:20] = (0).to_bytes(4, "big")  # width 0 (and the IHDR checksum no longer holds)
    shot.write_bytes(bytes(header))
    assert "damaged PNG" in run.screenshot_problems("a")[0]

    steps_file = run.steps_path("a")
    copy = tmp_path / "steps-copy.jsonl"
    copy.write_bytes(steps_file.read_bytes())
    steps_file.unlink()
    steps_file.symlink_to(copy)  # the same, valid, lines: still refused
    steps, problem = run.read_steps("a")
    assert steps == [] and problem.startswith(f"{steps_file} is a symlink")

    steps_file.unlink()
    os.mkfifo(steps_file)  # reading a FIFO would block: it is refused before being opened
    steps, problem = run.read_steps("a")
    assert steps == [] and problem.startswith(f"{steps_file} is a FIFO")
    assert f"{steps_file} is a FIFO" in run.unsafe_entries()[0]

    # a symlinked episode folder, and a run whose episodes/ leaves the run
    outside = tmp_path / "elsewhere"
    (run.episodes_path / "a").rename(outside)
    (run.episodes_path / "a").symlink_to(outside)
    scan = run.scan(["a"], check_steps=True)
    assert scan.damaged == {
        "a": f"{run.episodes_path / 'a'} is a symlink: a run holds only "
        "regular files and folders, inside it"
    }
    with pytest.raises(UnsafeFile, match="is a symlink"):
        run.read_episode_summary("a")


def test_steps_are_read_line_by_line_with_a_bounded_length(tmp_path):
    import tracemalloc

    from webgym.runs import MAX_LINE_BYTES

    run = _episode(tmp_path, screenshots=False)
    path = run.steps_path("a")
    steps, _ = run.read_steps("a")
    assert max(len(line) for line in path.read_bytes().splitlines()) < 1000  # real lines
    # a valid JSON line longer than the bound (an action of 2 MiB) is refused, not parsed
    huge = {**steps[1], "action": "type[" + "x" * (2 * MAX_LINE_BYTES) + "]"}
    path.write_text(json.dumps(steps[0]) + "\n" + json.dumps(huge) + "\n")
    assert run.read_steps("a") == (
        [steps[0]],
        f"steps.jsonl line 2 is longer than {MAX_LINE_BYTES} bytes",
    )
    # a sparse file of 64 MiB without a newline: refused after reading one bound's worth
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    tracemalloc.start()
    try:
        _, problem = run.read_steps("a")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problem == f"steps.jsonl line 1 is longer than {MAX_LINE_BYTES} bytes"
    assert peak < 4 * MAX_LINE_BYTES, peak
    # a resume does not keep the episode
    assert "longer than" in run.scan(["a"], check_steps=True).torn["a"]


def test_resume_keeps_an_episode_only_if_its_records_hold(tmp_path):
    from webgym.runs import records_problem, steps_digest

    run = _episode(tmp_path, screenshots=False)
    summary = run.read_episode_summary("a")
    steps, _ = run.read_steps("a")
    assert summary["steps_digest"] == steps_digest(steps)  # written by EpisodeWriter.finish
    assert records_problem(summary, steps) is None
    path = run.steps_path("a")
    original = path.read_text()
    # one line swapped for another, valid one with the same step number: same count
    other = {**steps[1], "obs_digest": hashlib.sha256(b"another page").hexdigest()}
    lines = original.splitlines()
    lines[1] = json.dumps(other)
    path.write_text("\n".join(lines) + "\n")
    scan = run.scan(["a"], check_steps=True)
    assert "digest chain" in scan.unsound["a"] and scan.todo == ["a"]
    assert run.scan(["a"]).complete  # a plain scan (show) still reads it
    path.write_text(original)
    assert run.scan(["a"], check_steps=True).complete
    # a summary whose reward is not its last step's
    assert "reward" in records_problem({**summary, "reward": 0.5, "steps_digest": None}, steps)
    assert "numbered" in records_problem({**summary, "n_steps": 3}, [steps[0]] * 3)
