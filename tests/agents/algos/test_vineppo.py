"""VinePPO on real text envs and tiny models: forks start from the exact snapshot of a turn's
state and leave the episode alone, V is the mean of the forks' rewards, A_t = r_t + V(s_{t+1})
- V(s_t) with V(s_T) = 0, and the smoke preset trains into a checkpoint the harness plays."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers import cli
from webgym_agents.algos.vineppo import PRESETS, fork_values, play_forks, vine_advantages
from webgym_agents.observation import PREVIOUS_ACTIONS
from webgym_agents.toolkit.onpolicy import back_probes, collect, split_task_ids
from webgym_agents.toolkit.returns import turn_td_advantages
from webgym_agents.toolkit.rollouts import Rollout, Turn, collect_rollouts, make_env
from webgym_agents.toolkit.trainers import get_trainer
from webgym_agents.toolkit.training import TrainRun

K = 3


@pytest.fixture(scope="module")
def config():
    # near-uniform sampling (T = 5): some forks of a random-init policy buy within 6 steps
    return replace(PRESETS["smoke"], k_forks=K, temperature=5.0)


@pytest.fixture(scope="module")
def played(policy, config):
    """Three episodes collected with snapshots, a copy of their records, then their forks."""
    gen = np.random.default_rng(7)
    rollouts = collect(config, policy, split_task_ids("train")[:3], seed=7, rng=gen, snapshots=True)
    before = copy.deepcopy(_records(rollouts))
    forks = play_forks(config, policy, rollouts, seed=7, rng=gen)
    return rollouts, before, forks


def _records(rollouts):
    return [
        (r.task_id, r.reward, r.terminated, r.truncated,
         [(t.action, t.reward, t.obs["text"], t.obs["available_actions"], t.snapshot)
          for t in r.turns])
        for r in rollouts
    ]  # fmt: skip


def _turns(rollouts):
    return [(r, t, turn) for r in rollouts for t, turn in enumerate(r.turns)]


def test_forks_start_from_the_exact_snapshot_and_leave_the_episode_untouched(played, config):
    rollouts, before, forks = played
    turns = _turns(rollouts)
    assert all(r.valid for r in rollouts) and any(t > 0 for _, t, _ in turns)
    assert len(forks) == K * len(turns)
    for i, (r, t, turn) in enumerate(turns):
        for fork in forks[i * K : (i + 1) * K]:
            first = fork.turns[0].obs
            assert fork.valid and fork.task_id == r.task_id
            assert first["text"] == turn.obs["text"]
            assert first["available_actions"] == turn.obs["available_actions"]
            assert int(first["step"]) == int(turn.obs["step"]) == t
            # the fork has the episode's remaining steps, no more: max_steps - t
            assert len(fork.turns) <= config.max_steps - t
            if not fork.terminated:
                assert fork.truncated and len(fork.turns) == config.max_steps - t
    # playing the forks changed nothing the episodes recorded (snapshots included)
    assert _records(rollouts) == before


def test_a_probes_turns_are_forked_with_the_memory_of_the_episode_before_its_fork(policy, config):
    gen = np.random.default_rng(11)
    cfg = replace(config, back_probes=1.0, max_steps=8)
    rollouts = collect(cfg, policy, split_task_ids("train")[:4], seed=11, rng=gen, snapshots=True)
    probes = back_probes(cfg, policy, rollouts, gen, seed=11, snapshots=True)
    assert probes, "no rollout reached a product page to fork a probe from"
    probe = probes[0]
    assert all(turn.snapshot is not None for turn in probe.turns)
    before_fork = probe.turns[0].obs[PREVIOUS_ACTIONS]
    assert probe.turns[0].action == "click('prev')" and before_fork  # it forked mid-episode
    forks = play_forks(cfg, policy, [probe], seed=11, rng=gen)
    for t, turn in enumerate(probe.turns):
        for fork in forks[t * K : (t + 1) * K]:
            assert fork.turns[0].obs[PREVIOUS_ACTIONS] == turn.obs[PREVIOUS_ACTIONS]
            assert fork.turns[0].obs[PREVIOUS_ACTIONS][: len(before_fork)] == before_fork


def test_a_snapshot_replays_the_rest_of_its_episode_exactly(played):
    rollouts, _, _ = played
    r = max(rollouts, key=lambda r: len(r.turns))
    t = len(r.turns) // 2
    assert t > 0
    env = make_env("train", [r.task_id], max_steps=15)
    try:
        env.reset(seed=0, options={"task_id": r.task_id})
        env.unwrapped.restore(r.turns[t].snapshot)
        for k, turn in enumerate(r.turns[t:], start=t):
            obs, reward, terminated, *_ = env.step(turn.action)
            assert reward == turn.reward
            want = r.turns[k + 1].obs if k + 1 < len(r.turns) else r.final_obs
            assert obs["text"] == want["text"]
    finally:
        env.close()


def test_snapshots_do_not_change_the_rollouts(policy):
    ids = split_task_ids("train")[:2]
    kw = dict(n_envs=2, seed=3, max_steps=6, temperature=1.0)
    plain = collect_rollouts(policy, ids, rng=np.random.default_rng(1), **kw)
    kept = collect_rollouts(policy, ids, rng=np.random.default_rng(1), snapshots=True, **kw)
    strip = [(r.reward, [(t.action, t.reward, t.decision.logprob) for t in r.turns]) for r in plain]
    assert strip == [
        (r.reward, [(t.action, t.reward, t.decision.logprob) for t in r.turns]) for r in kept
    ]
    assert all(t.snapshot is None for r in plain for t in r.turns)
    assert all(t.snapshot["task_id"] == r.task_id for r in kept for t in r.turns)
    json.dumps([t.snapshot for r in kept for t in r.turns])  # small JSON-serialisable dicts


def test_v_is_the_mean_of_the_forks_rewards(played):
    _, _, forks = played
    values = fork_values(forks, K)
    by_hand = [np.mean([f.reward for f in forks[i : i + K]]) for i in range(0, len(forks), K)]
    assert values.tolist() == pytest.approx(by_hand)
    assert len({f.reward for f in forks}) > 2  # the forks' outcomes differ: not a trivial mean
    assert any(0 < v < 1 for v in values.tolist())

    # a failed fork is left out of its state's mean; a state whose forks all failed has none
    def ok(reward: float) -> Rollout:
        return Rollout("t", 0, 0, "g", turns=[Turn({}, None, reward, None)], reward=reward)

    failed = Rollout("t", 0, 0, "g", error="step raised: browser closed")
    v = fork_values([ok(1.0), ok(0.5), failed, failed, failed, failed], 3)
    assert v[0] == pytest.approx(0.75) and torch.isnan(v[1])


def test_advantage_is_r_plus_next_value_minus_value_with_a_zero_terminal_value():
    values = torch.tensor([0.2, 0.5, 0.4])
    bought = vine_advantages(values, torch.tensor([0.0, 0.0, 0.75]))
    assert bought.tolist() == pytest.approx([0.5 - 0.2, 0.4 - 0.5, 0.75 + 0.0 - 0.4])
    # truncated (no purchase): the last turn's advantage is -V(s_{T-1})
    assert vine_advantages(values, torch.zeros(3))[-1] == pytest.approx(-0.4)
    # a reward before the end counts where it is earned
    assert vine_advantages(torch.tensor([0.5, 0.25]), torch.tensor([0.5, 0.25])).tolist() == (
        pytest.approx([0.5 + 0.25 - 0.5, 0.25 + 0.0 - 0.25])
    )
    # one terminal reward: ArCHer's turn advantages with the forks' V
    assert torch.allclose(bought, turn_td_advantages(values, 0.75))


def test_smoke_preset_trains_into_a_checkpoint_that_webgym_bench_run_plays(tmp_path):
    out = tmp_path / "vineppo"
    result = cli("train", "--agent", "vineppo", "--preset", "smoke", "--out", out,
                 "--eval-episodes", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = TrainRun(out, PRESETS["smoke"], trainer="vineppo", preset="smoke",
                    show_progress=False).metrics()  # fmt: skip
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert int(row["forks"]) == PRESETS["smoke"].k_forks * int(row["train_env_steps"])
        assert int(row["fork_env_steps"]) >= int(row["forks"])
        assert 0.0 <= float(row["v_mean"]) <= 1.0 and float(row["fork_s"]) > 0
        assert row["clip_frac"] != "" and row["approx_kl"] != ""
    latest = out / "checkpoints" / "latest"
    assert json.loads((latest / "policy.json").read_text())["metadata"]["trained_by"] == "vineppo"
    played = tmp_path / "play"
    result = cli("run", "--agent", "vineppo", "--checkpoint", latest, "--split", "test",
                 "--episodes", "2", "--mode", "text", "--out", played)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((played / "manifest.json").read_text())
    assert manifest["agent"] == "vineppo" and manifest["checkpoint"] == str(latest.resolve())
    summary = json.loads((played / "summary.json").read_text())
    assert summary["n_episodes"] == 2, summary


def test_lm_smoke_preset_trains_saves_and_plays(tmp_path):
    info = get_trainer("vineppo")
    cfg = info.presets["lm-smoke"]
    run = TrainRun(tmp_path / "lm", cfg, trainer="vineppo", preset="lm-smoke", show_progress=False)
    latest = info.train_fn(cfg, run)
    rows = run.metrics()
    assert [int(r["iteration"]) for r in rows] == list(range(cfg.iterations + 1))
    assert all(int(r["forks"]) > 0 for r in rows[1:])
    assert json.loads((latest / "policy.json").read_text())["kind"] == "lm-policy"
    from webgym_agents import make_agent

    agent = make_agent("vineppo", checkpoint=str(latest))
    assert agent.name == "vineppo" and type(agent.policy).__name__ == "LMPolicy"
    agent.close()
