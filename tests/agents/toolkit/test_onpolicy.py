"""The on-policy toolkit on tiny models: lockstep rollouts, groups, errored episodes, the
scorer's log-probabilities, the critic's inputs, and resuming a killed run. (The trainers built
on it are tested under tests/agents/algos/.)"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from webgym_agents.policies.scorer_policy import ScorerCritic, candidates, state_text
from webgym_agents.toolkit.onpolicy import TurnBatch
from webgym_agents.toolkit.rollouts import collect_rollouts, make_env

REPO = Path(__file__).resolve().parents[3]


def test_group_rollouts_start_from_identical_observations(policy, train_ids):
    rollouts = collect_rollouts(
        policy, train_ids[:2], group_size=3, n_envs=4, seed=5, max_steps=6,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert [(r.task_id, r.group) for r in rollouts] == [
        (t, g) for t in train_ids[:2] for g in range(3)
    ]
    for task in train_ids[:2]:
        group = [r for r in rollouts if r.task_id == task]
        firsts = {
            (r.turns[0].obs["text"], tuple(r.turns[0].obs["available_actions"])) for r in group
        }
        assert len(firsts) == 1 and len({r.seed for r in group}) == 1
    # the groups differ in what was sampled, not in where they started
    assert len({tuple(t.action for t in r.turns) for r in rollouts}) > 1


def test_decision_logprob_is_the_acting_softmax_and_recomputes_exactly(policy, train_ids):
    env = make_env("train", train_ids, max_steps=6)
    obs, _ = env.reset(seed=1, options={"task_id": train_ids[0]})
    obs, *_ = env.step(f"search[{obs['goal']}]")  # a results page: many candidates
    env.close()
    for temperature in (1.0, 0.5):
        (d,) = policy.decide_batch([obs], temperature=temperature, rng=np.random.default_rng(3))
        scores = policy.scores([d.state], [d.candidates])[0].detach()
        expected = torch.log_softmax(scores / temperature, 0)[d.index]
        assert d.logprob == pytest.approx(float(expected), abs=1e-5)
        again = policy.logprobs([d.state], [d.candidates], [d.index], temperature=temperature)
        assert float(again[0]) == pytest.approx(d.logprob, abs=1e-5)
        assert again.requires_grad


class _CrashOnSecondStep(gym.Wrapper):
    """A fault injector: the env's second step of one task fails as a dead browser would."""

    def __init__(self, env, task_id: str):
        super().__init__(env)
        self.task_id, self.current, self.n = task_id, None, 0

    def reset(self, **kw):
        self.current, self.n = (kw.get("options") or {}).get("task_id"), 0
        return self.env.reset(**kw)

    def step(self, action):
        self.n += 1
        if self.current == self.task_id and self.n == 2:
            raise RuntimeError("Target page, context or browser has been closed")
        return self.env.step(action)


def test_errored_episode_is_marked_and_left_out_of_the_batch(policy, train_ids):
    bad = train_ids[1]
    rollouts = collect_rollouts(
        policy, train_ids[:3], n_envs=2, seed=0, max_steps=6,
        env_factory=lambda: _CrashOnSecondStep(make_env("train", train_ids, max_steps=6), bad),
    )  # fmt: skip
    by_task = {r.task_id: r for r in rollouts}
    assert by_task[bad].error and "closed" in by_task[bad].error and not by_task[bad].valid
    assert all(r.error is None for t, r in by_task.items() if t != bad)
    batch = TurnBatch.of(rollouts)
    assert bad not in {r.task_id for r in batch.rollouts}
    assert len(batch) == sum(len(r.turns) for t, r in by_task.items() if t != bad)


def test_critic_reads_the_state_only(policy, train_ids):
    env = make_env("train", train_ids, max_steps=6)
    obs, _ = env.reset(seed=1, options={"task_id": train_ids[0]})
    env.close()
    critic = ScorerCritic(policy.backbone)
    s = state_text(obs, 6)
    # whatever the candidates or the action taken, V(s) is the same number
    c = candidates(obs, 6)
    assert len(c.actions) >= 1
    v1 = critic.values([s])
    v2 = critic.values([s])
    assert torch.equal(v1, v2)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


_TIMING = ("collect_s", "val_s", "iteration_s")


def test_killed_train_resumes_with_the_row_it_would_have_written(tmp_path):
    overrides = tmp_path / "cfg.json"
    overrides.write_text('{"iterations": 3}')
    cmd = [sys.executable, "-m", "webgym_bench", "train", "--agent", "reinforce", "--preset",
           "smoke", "--config", str(overrides), "--eval-episodes", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    full = tmp_path / "full"
    subprocess.run([*cmd, "--out", str(full)], check=True, env=env, cwd=REPO, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once iteration 1 is checkpointed
        if (killed / "checkpoints" / "step-1" / "policy.json").is_file():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = _rows(killed / "metrics.csv")
    assert 1 <= max(int(r["iteration"]) for r in rows) < 3, "the run was not killed mid-way"
    subprocess.run([*cmd, "--out", str(killed)], check=True, env=env, cwd=REPO, capture_output=True)
    want, got = _rows(full / "metrics.csv"), _rows(killed / "metrics.csv")
    assert [r["iteration"] for r in got] == ["0", "1", "2", "3"]
    for a, b in zip(want, got, strict=True):
        assert {k: v for k, v in a.items() if k not in _TIMING} == {
            k: v for k, v in b.items() if k not in _TIMING
        }


def test_critic_facts_input_spells_out_budget_and_listed_results(policy, train_ids):
    from webgym_agents.policies.scorer_policy import critic_state_text

    rollouts = collect_rollouts(policy, train_ids[:2], n_envs=2, seed=4, max_steps=6)
    batch = TurnBatch.of(rollouts, "facts", 6)
    plain = TurnBatch.of(rollouts)
    turns = [t for r in batch.rollouts for t in r.turns]
    assert batch.critic_states == [critic_state_text(t.obs, 6) for t in turns]
    # the actor still reads its own state text: an unchanged policy's ratios are exactly 1
    assert batch.states == plain.states == plain.critic_states
    with torch.no_grad():
        again = batch.logprobs(policy, range(len(batch)))
    assert again.numpy() == pytest.approx(batch.old_logp.numpy(), abs=1e-5)
    for facts, state in zip(batch.critic_states, plain.states, strict=True):
        assert facts.startswith(state)  # the policy's state text, then the facts
        if "| results page" in state:
            assert "listed" in facts and "within budget" in facts
        if "| item page" in state:
            assert "within budget: " in facts and "goal options chosen" in facts
    assert any("| results page" in s for s in plain.states)
    with pytest.raises(ValueError, match="critic_input"):
        TurnBatch.of(rollouts, "pixels")
