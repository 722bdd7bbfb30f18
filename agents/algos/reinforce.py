"""``reinforce``: REINFORCE with a learned state-value baseline (ArCHer's critic).

    for each iteration:
        play tasks_per_iteration train tasks with pi_theta (temperature T), and fork a share
            of them (back_probes) at a product page with "< Prev" taken there
        G_t = gamma^(T-1-t) R                                    MC return, no bootstrapping
        b_t = V_phi(s_t)                                          the baseline, before its update
        A_t = G_t - b_t                                           unbiased: b depends on s only
              (normalize_advantages: (A - mean) / std over the batch, as PPO codes do)
        actor:  L(theta) = -mean_t A_t log pi_theta(a_t | s_t)   one pass, on-policy
                (a probe's forced "< Prev" only where A_t > 0)
        critic: L(phi)   = 0.5 mean_t (V_phi(s_t) - G_t)^2       critic_epochs passes

The policy is the candidate scorer (policies/scorer_policy.py); the critic a copy of its encoder
with a scalar head. Imports webgym_agents only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.losses import value_mse
from webgym_agents.toolkit.onpolicy import (
    CriticConfig,
    TurnBatch,
    actor_critic_presets,
    clip_and_step,
    collect_groups,
    critic_values,
    forced_turns,
    iteration_tasks,
    minibatches,
    objective,
    probe_stats,
    start_learner,
)
from webgym_agents.toolkit.returns import discounted_returns
from webgym_agents.toolkit.rollouts import rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class ReinforceConfig(CriticConfig):  # gamma, the critic's lrs, critic_epochs: CriticConfig's
    normalize_advantages: bool = False  # (A - mean) / std over the batch (off: the plain estimator)


PRESETS = {
    "smoke": ReinforceConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=4, n_envs=4, max_steps=6,
        val_tasks=3, lr=1e-3, critic_lr=1e-3, minibatch_size=16, back_probes=1.0,
    ),
    # 2 CPU cores, one torch thread, from bc, only the scoring heads trained: grpo's cpu
    # recipe ("< Prev" probes, success objective, the feature path at 10x lr, T = 1) with
    # REINFORCE's estimator, undiscounted, on-policy (no uniform exploration), at a third of
    # grpo's rates, the advantages centred and scaled over the batch: with the plain G_t - V(s_t)
    # the critic's lag (V above the falling returns: mean A -0.15) pushed every sampled action
    # down, and it stopped buying within 3-14 iterations (docs/results.md); the critic's top
    # layer learns
    "cpu": ReinforceConfig(
        init_checkpoint="released:bc", iterations=30, tasks_per_iteration=64, n_envs=16,
        temperature=1.0, back_probes=0.5, score_weight=0.0, success_bonus=1.0, gamma=1.0,
        lr=1e-3, feature_lr=1e-2, normalize_advantages=True, train_encoder=False,
        critic_train_layers=1,
        val_tasks=200, eval_every=10, checkpoint_every=10, torch_threads=1,
    ),
    **actor_critic_presets(ReinforceConfig),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "lm-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


def train_reinforce(config: ReinforceConfig, run: TrainRun):
    learner = start_learner(config, run)
    policy, optimizer = learner.policy, learner.optimizer
    critic, critic_opt = learner.critic, learner.critic_optimizer

    def save(it: int) -> None:
        learner.save(run, it)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 1])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        rollouts, probes = collect_groups(config, policy, tasks, it, gen)
        t_collect = time.perf_counter() - t0
        # a probe's turns start at its fork: its G_t are the returns from there
        batch = TurnBatch.of(rollouts + probes, config.critic_input, config.max_steps)
        # G_t = gamma^(T-1-t) R for every turn of every valid episode (R: the objective)
        returns = torch.cat(
            [
                discounted_returns(objective(r, config), len(r.turns), config.gamma)
                for r in batch.rollouts
            ]
        )
        values = critic_values(
            critic, batch.critic_states
        )  # b_t = V(s_t), before it sees these G_t
        advantages = returns - values  # A_t = G_t - V(s_t)
        if config.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        # a forced "< Prev" with A <= 0 is left out: the plain gradient would push an action the
        # policy all but never takes further down without end (grad log pi does not vanish)
        forced = forced_turns(batch, range(len(batch)))
        weight = (~forced | (advantages > 0)).to(advantages.dtype)
        # actor: -mean_t A_t log pi(a_t | s_t), one pass over the batch, a step per minibatch
        actor_losses, norms = [], []
        for idx in minibatches(len(batch), config.minibatch_size, gen):
            loss = -(weight[idx] * advantages[idx] * batch.logprobs(policy, idx)).mean()
            loss.backward()
            norms.append(clip_and_step(policy, optimizer, config.grad_clip))
            actor_losses.append(float(loss.detach()))
        # critic: 0.5 mean (V(s_t) - G_t)^2
        critic_losses = []
        for _ in range(config.critic_epochs):
            for idx in minibatches(len(batch), config.minibatch_size, gen):
                loss = value_mse(critic.values([batch.critic_states[i] for i in idx]), returns[idx])
                loss.backward()
                clip_and_step(critic, critic_opt, config.grad_clip)
                critic_losses.append(float(loss.detach()))
        stats = rollout_stats(rollouts)
        var_g = float(returns.var()) if len(returns) > 1 else float("nan")
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": len(batch), "errored": stats["errored"],
            **probe_stats(probes),
            "actor_loss": float(np.mean(actor_losses)),
            "critic_loss": float(np.mean(critic_losses)),
            "explained_variance": 1 - float((returns - values).var()) / var_g if var_g else 0.0,
            "adv_mean": float(advantages.mean()), "adv_std": float(advantages.std()),
            "grad_norm": float(np.mean(norms)), "collect_s": t_collect,
        })  # fmt: skip
    return run.latest_path


TRAINER = TrainerInfo(
    "reinforce",
    train_reinforce,
    PRESETS,
    description="REINFORCE with a learned state-value baseline on the candidate-scorer policy",
    preset_aliases=PRESET_ALIASES,
)

__all__ = ["PRESETS", "ReinforceConfig", "train_reinforce"]
