"""ArCHer (agents/algos/archer.py) on tiny models: the advantages come from the critic after
its update, the smoke preset trains, the critic's buffer refits past turns and survives a resume,
critic pre-training keeps the best held-out pass and seeds the buffer, and a share of the
pre-training pairs is refit every iteration."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch

from webgym_agents.algos.archer import PRESETS as ARCHER_PRESETS
from webgym_agents.algos.archer import archer_advantages, archer_update
from webgym_agents.policies.scorer_policy import ScorerCritic
from webgym_agents.toolkit.onpolicy import TurnBatch, critic_values
from webgym_agents.toolkit.rollouts import collect_rollouts
from webgym_agents.toolkit.trainers import get_trainer
from webgym_agents.toolkit.training import TrainRun


def test_archer_advantages_come_from_the_critic_after_its_update(policy, train_ids):
    config = replace(ARCHER_PRESETS["smoke"], critic_lr=1e-2, lr=1e-3, ppo_epochs=1)
    rollouts = collect_rollouts(policy, train_ids[:4], n_envs=4, seed=2, max_steps=6)
    batch = TurnBatch.of(rollouts)
    import copy

    actor = copy.deepcopy(policy)
    critic = ScorerCritic(copy.deepcopy(actor.backbone))
    before = critic_values(critic, batch.states)
    metrics, adv = archer_update(
        config, actor, critic, torch.optim.AdamW(actor.parameters(), lr=1e-3),
        torch.optim.AdamW(critic.parameters(), lr=1e-2), batch, np.random.default_rng(0),
    )  # fmt: skip
    after = critic_values(critic, batch.states)
    assert not torch.allclose(before, after)  # the critic was trained
    assert torch.allclose(adv, archer_advantages(batch, after), atol=1e-6)
    assert not torch.allclose(adv, archer_advantages(batch, before), atol=1e-4)
    assert {"critic_loss", "explained_variance", "clip_frac", "approx_kl"} <= set(metrics)


def test_archer_learns_the_configured_objective_not_the_raw_reward(policy, train_ids):
    # success_bonus 1, score_weight 0: R = 1[r = 1], so a partial-credit purchase returns 0
    config = replace(
        ARCHER_PRESETS["smoke"], critic_lr=1e-2, ppo_epochs=1, score_weight=0.0,
        success_bonus=1.0, gae_lambda=0.5,
    )  # fmt: skip
    rollouts = collect_rollouts(policy, train_ids[:4], n_envs=4, seed=2, max_steps=6)
    batch = TurnBatch.of(rollouts)
    assert any(0 < r.reward < 1 for r in batch.rollouts)  # the objectives differ on this batch
    import copy

    actor = copy.deepcopy(policy)
    critic = ScorerCritic(copy.deepcopy(actor.backbone))
    _, adv = archer_update(
        config, actor, critic, torch.optim.AdamW(actor.parameters(), lr=1e-3),
        torch.optim.AdamW(critic.parameters(), lr=1e-2), batch, np.random.default_rng(0),
    )  # fmt: skip
    after = critic_values(critic, batch.states)
    success = lambda r: float(r.reward == 1.0)  # noqa: E731
    assert torch.allclose(adv, archer_advantages(batch, after, 0.5, success), atol=1e-6)
    assert not torch.allclose(adv, archer_advantages(batch, after, 0.5), atol=1e-4)


def test_smoke_preset_trains_and_writes_a_curve(tmp_path, smoke_trains_and_writes_a_curve):
    smoke_trains_and_writes_a_curve("archer", tmp_path)


def test_archer_critic_buffer_refits_past_turns_and_survives_a_resume(tmp_path):
    from webgym_agents.toolkit.onpolicy import start_learner

    info = get_trainer("archer")
    cfg = replace(info.presets["smoke"], critic_buffer=3, checkpoint_every=1)
    run = TrainRun(tmp_path / "a", cfg, trainer="archer", preset="smoke", show_progress=False)
    info.train_fn(cfg, run)
    saved = json.loads((run.latest_path / "critic" / "buffer.json").read_text())
    assert len(saved) == 1 and len(saved[0]) == 2  # one process; the last critic_buffer-1 its.
    rows = run.metrics()
    for part, row in zip(saved[0], rows[1:], strict=True):
        assert len(part) == int(row["train_env_steps"])  # every turn of that iteration
        assert all(0.0 <= g <= 1.0 for _, g in part)  # targets are returns of rewards in [0, 1]
    resumed = start_learner(cfg, TrainRun(tmp_path / "a", cfg, trainer="archer", preset="smoke",
                                          show_progress=False))  # fmt: skip
    assert [[list(p) for p in part] for part in resumed.critic_buffer] == saved[0]


def test_archer_critic_pretraining_keeps_the_best_heldout_pass_and_seeds_the_buffer(tmp_path):
    import re

    from webgym_agents.algos.archer import pretrain_critic
    from webgym_agents.toolkit.onpolicy import start_learner

    info = get_trainer("archer")
    cfg = replace(info.presets["smoke"], critic_pretrain_episodes=12, critic_pretrain_epochs=3,
                  critic_buffer=2, critic_lr=1e-2, critic_head_lr=1e-1)  # fmt: skip
    run = TrainRun(tmp_path / "p", cfg, trainer="archer", preset="smoke", show_progress=False)
    learner = start_learner(cfg, run)
    pretrain_critic(cfg, run, learner)
    log = (run.dir / "train.log").read_text()
    turns = int(re.search(r"critic pre-training: \d+ episodes, (\d+) turns", log).group(1))
    mses = [float(m) for m in re.findall(r"held-out MSE ([0-9.]+), explained", log)]
    kept = float(re.search(r"kept the pass with held-out MSE ([0-9.]+)", log).group(1))
    assert len(mses) == 1 + cfg.critic_pretrain_epochs  # before fitting, then every pass
    assert kept == min(mses)
    (fitted,) = learner.critic_buffer
    assert 0 < len(fitted) < turns  # the held-out tasks' turns are not in the buffer
    assert all(0.0 <= g <= 1.0 for _, g in fitted)


def test_archer_refits_a_share_of_the_pretraining_pairs_every_iteration(tmp_path):
    import csv

    from webgym_agents.algos.archer import train_archer
    from webgym_agents.toolkit.onpolicy import restore_critic_buffer

    info = get_trainer("archer")
    cfg = replace(info.presets["smoke"], critic_pretrain_episodes=8, critic_pretrain_epochs=1,
                  critic_pretrain_refit=0.5, critic_buffer=2, iterations=3, val_tasks=1,
                  eval_every=3)  # fmt: skip
    run = TrainRun(tmp_path / "r", cfg, trainer="archer", preset="smoke", show_progress=False)
    train_archer(cfg, run)
    anchor, last = restore_critic_buffer(run)  # the pre-training pairs stay first
    rows = list(csv.DictReader(open(run.dir / "metrics.csv")))
    its = [r for r in rows if r.get("critic_pairs")]
    steps = [int(r["train_env_steps"]) for r in its]
    assert len(its) == 3 and len(last) == steps[-1]
    share = round(0.5 * len(anchor))
    assert share > 0
    # iteration 1: its batch + half the anchor; later: + the previous iteration's batch
    assert int(its[0]["critic_pairs"]) == steps[0] + share
    assert [int(r["critic_pairs"]) for r in its[1:]] == [
        steps[i] + steps[i - 1] + share for i in (1, 2)
    ]
