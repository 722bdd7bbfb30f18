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
    # trainers' own rollouts use their own salt (agents.rollouts.rollout_seed)
    assert episode_seed(0, "train-0001", salt=TRAIN_SEED_SALT) == 2094880610
    assert episode_seed(3, "test-0003", salt=TRAIN_SEED_SALT) == 1762004585
    from agents.rollouts import rollout_seed

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
    from agents.bc import PRESETS, _episodes_from_run
    from tests.benchmarks.helpers import actions, cli, summaries

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
