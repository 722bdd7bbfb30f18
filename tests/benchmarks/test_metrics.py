"""Metrics from hand-written episode records: known rewards give known Score, SR and s.e."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from webgym.runs import RunDir, atomic_write_json, load_run
from webgym_benchmarks.metrics import compute_metrics, episodes_frame, save_results

REWARDS = [1.0, 0.5, 0.0, 1.0, 0.75]


def _episode(i: int, reward: float, **extra) -> dict:
    return {
        "task_id": f"test-{i:04d}",
        "split": "test",
        "seed": i,
        "difficulty": ["easy", "hard"][i % 2],
        "category": "pets" if i < 3 else "garden",
        "n_steps": 4,
        "reward": reward,
        "success": reward == 1.0,
        "reward_info": {},
        "terminated": True,
        "truncated": False,
        "error": None,
        "attempts": 1,
        "n_invalid_actions": 1 if i == 0 else 0,
        "n_effect": 3,
        "purchased_asin": "B000",
        "timings": {"episode_s": 0.1},
        "finished": "2026-01-01T00:00:00Z",
        **extra,
    }


def test_known_rewards_give_known_metrics():
    df = episodes_frame([_episode(i, r) for i, r in enumerate(REWARDS)])
    m = compute_metrics(df, n_expected=6, wall_time_s=12.5)
    mean = sum(REWARDS) / 5
    sd = math.sqrt(sum((r - mean) ** 2 for r in REWARDS) / 4)
    assert m["score"] == pytest.approx(65.0)
    assert m["score_se"] == pytest.approx(sd / math.sqrt(5) * 100, rel=1e-5)
    assert m["success_rate"] == pytest.approx(0.4)
    assert m["success_se"] == pytest.approx(math.sqrt(0.4 * 0.6 / 5), rel=1e-5)
    assert m["avg_steps"] == 4
    assert m["invalid_action_rate"] == pytest.approx(1 / 20)
    assert m["effect_rate"] == pytest.approx(15 / 20)
    assert m["n_episodes"] == 5 and m["n_expected"] == 6 and m["complete"] is False
    assert m["n_errors"] == 0 and m["wall_time_s"] == 12.5
    # easy: episodes 0, 2, 4 (rewards 1, 0, 0.75)
    assert m["by_difficulty"]["easy"] == {
        "n": 3,
        "score": pytest.approx(100 * 1.75 / 3),
        "success_rate": pytest.approx(1 / 3),
    }
    assert m["by_category"]["garden"]["n"] == 2
    assert m["by_category"]["garden"]["score"] == pytest.approx(87.5)
    json.dumps(m)  # summary.json must be plain JSON


def test_errors_count_as_zero_and_single_episode_has_no_score_se():
    df = episodes_frame([_episode(0, 0.0, error="RuntimeError: boom", reward_info={})])
    m = compute_metrics(df)
    assert m["n_errors"] == 1 and m["score"] == 0 and m["score_se"] is None
    assert m["success_se"] == 0.0
    empty = compute_metrics(episodes_frame([]), n_expected=3)
    assert empty["n_episodes"] == 0 and empty["score"] is None and not empty["complete"]


def test_load_run_recomputes_from_records_and_survives_corrupt_files(tmp_path):
    run = RunDir(tmp_path / "run")
    ids = [f"test-{i:04d}" for i in range(len(REWARDS) + 1)]
    run.create_or_check({"format_version": 1, "agent": "x", "split": "test", "task_ids": ids})
    for i, r in enumerate(REWARDS):
        path = run.clear_episode(ids[i])
        steps = [
            {"step": k + 1, "action": "noop()", "last_action_error": "", "effect_label": 1}
            for k in range(4)
        ]
        (path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        atomic_write_json(path / "summary.json", _episode(i, r, n_effect=4))
    # the last task: a half-written summary
    (run.clear_episode(ids[-1]) / "summary.json").write_text('{"task_id": "test-00')
    # a summary that lies about its step count: the steps win, with a warning
    summary = json.loads((run.episode_path(ids[1]) / "summary.json").read_text())
    atomic_write_json(run.episode_path(ids[1]) / "summary.json", {**summary, "n_steps": 9})

    records = load_run(run.path)
    assert list(records.corrupt) == [ids[-1]] and records.missing == [ids[-1]]
    assert any("n_steps=9" in w for w in records.warnings)
    df = episodes_frame(records.episodes)
    m = compute_metrics(df, n_expected=records.n_expected)
    assert m["score"] == pytest.approx(65.0) and m["avg_steps"] == 4 and not m["complete"]
    save_results(df, run.path)
    back = pd.read_parquet(run.path / "results.parquet")
    assert list(back["reward"]) == REWARDS
    assert len(pd.read_csv(run.path / "results.csv")) == 5


def test_paired_difference_pairs_by_task_and_uses_the_paired_error():
    from webgym_benchmarks.metrics import episodes_frame, paired_difference

    def frame(rewards):
        return episodes_frame(
            [{"task_id": f"t{i}", "reward": r, "n_steps": 3} for i, r in enumerate(rewards)]
        )

    base = frame([0.5, 1.0, 0.0, 0.5])
    better = frame([1.0, 1.0, 0.5, 1.0, 1.0])  # one extra task, not in the baseline
    d = paired_difference(base, better)
    assert d["n_common"] == 4
    # per-task differences x 100: 50, 0, 50, 50 -> mean 37.5, sd 25, se 12.5
    assert d["score"]["diff"] == pytest.approx(37.5)
    assert d["score"]["se"] == pytest.approx(12.5)
    assert d["score"]["beats"] is True  # 37.5 > 2 x 12.5
    # successes: 0->1, 1->1, 0->0, 0->1: +100, 0, 0, +100 -> mean 50, se 28.87
    assert d["success_rate"]["diff"] == pytest.approx(50.0)
    assert d["success_rate"]["beats"] is False
    assert paired_difference(better, base)["score"]["diff"] == pytest.approx(-37.5)


def test_reward_loss_counts_each_missed_component_among_the_purchases():
    from webgym_benchmarks.metrics import reward_loss

    infos = [
        {"r_type": 1.0, "r_att": 1.0, "r_option": 1.0, "r_price": True},  # a success
        {"r_type": 1.0, "r_att": 0.5, "r_option": 0.0, "r_price": True},  # options, attribute
        {"r_type": 0.5, "r_att": 1.0, "r_option": 1.0, "r_price": False},  # type, price
        {"r_type": 1.0, "r_att": 1.0},  # a goal with no options and no price ceiling
        {},  # no purchase
    ]
    episodes = []
    for i, info in enumerate(infos):
        e = _episode(i, 1.0 if i == 0 else 0.4, reward_info=info, n_steps=3 + i)
        e["purchased_asin"] = None if i == 4 else f"B00000000{i}"
        episodes.append(e)
    actions = {"test-0000": ["search[x]", "click('item_b000000000')", "click('buy_now')"],
               "test-0001": ["click('item_b1')", "click('prev')", "click('item_b2')"]}  # fmt: skip
    targets = {"test-0000": "B000000000", "test-0001": "B00000000X"}
    loss = reward_loss(episodes, actions, targets)
    assert loss["n"] == 5 and loss["no_purchase"] == 0.2
    assert loss["miss_option"] == loss["miss_type"] == loss["miss_price"] == 0.2
    assert loss["miss_attribute"] == 0.2 and loss["bought_target"] == 0.2
    assert loss["avg_steps"] == sum(3 + i for i in range(5)) / 5
    assert loss["results_opened"] == 3 / 5
    assert reward_loss(episodes)["results_opened"] is None  # no actions given
    assert reward_loss(episodes)["bought_target"] is None
