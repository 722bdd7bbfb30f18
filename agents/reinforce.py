"""``reinforce``: REINFORCE with a learned state-value baseline (seed 001).

    for each iteration:
        play tasks_per_iteration train tasks with pi_theta (temperature T)
        G_t = gamma^(T-1-t) R                                    MC return, no bootstrapping
        b_t = V_phi(s_t)                                          the baseline, before its update
        A_t = G_t - b_t                                           unbiased: b depends on s only
        actor:  L(theta) = -mean_t A_t log pi_theta(a_t | s_t)   one pass, on-policy
        critic: L(phi)   = 0.5 mean_t (V_phi(s_t) - G_t)^2       value_epochs passes

The policy is the candidate scorer (agents/scorer_policy.py); the critic a copy of its encoder
with a scalar head. Imports agents only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from agents.losses import value_mse
from agents.onpolicy import (
    OnPolicyConfig,
    TurnBatch,
    adamw,
    clip_and_step,
    iteration_tasks,
    minibatches,
    restore_critic_optimizer,
    run_iterations,
    save_checkpoint,
    split_task_ids,
    start_policy,
)
from agents.returns import discounted_returns
from agents.rollouts import collect_rollouts, rollout_stats
from agents.training import TrainRun, register_trainer


@dataclass
class ReinforceConfig(OnPolicyConfig):
    gamma: float = 0.95
    critic_lr: float = 1e-4  # the critic's encoder layers
    critic_head_lr: float = 3e-3  # its value head
    value_epochs: int = 2
    normalize_advantages: bool = False  # divide A by its batch std (off: the plain estimator)


PRESETS = {
    "smoke": ReinforceConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=4, n_envs=4, max_steps=6,
        val_tasks=3, lr=1e-3, critic_lr=1e-3, minibatch_size=16,
    ),
    # ~17-50 min on 2 CPU cores (one thread): 12 iterations x 48 episodes from bc, at T = 0.5
    "cpu": ReinforceConfig(
        init_checkpoint="runs/bc-scorer-cpu/checkpoints/latest", iterations=12, temperature=0.5,
        tasks_per_iteration=48, lr=5e-5, val_tasks=100, eval_every=2, torch_threads=1,
    ),
    "gpu": ReinforceConfig(
        device="cuda", init_checkpoint="runs/bc-scorer-gpu/checkpoints/latest", iterations=100,
        tasks_per_iteration=256, n_envs=32, val_tasks=250, minibatch_size=128,
    ),
}  # fmt: skip


def train_reinforce(config: ReinforceConfig, run: TrainRun):
    policy, critic = start_policy(config, run, critic=True)
    optimizer = adamw(policy, config)
    critic_opt = torch.optim.AdamW(critic.param_groups(config.critic_lr, config.critic_head_lr))
    start = run.restore(optimizer)
    restore_critic_optimizer(run, critic_opt)
    train_ids, val_ids = split_task_ids("train"), split_task_ids("validation")[: config.val_tasks]

    def step(it: int) -> dict:
        gen = np.random.default_rng([config.seed, it, 1])
        t0 = time.perf_counter()
        rollouts = collect_rollouts(
            policy, iteration_tasks(train_ids, config, it), seed=config.seed + it,
            n_envs=config.n_envs, temperature=config.temperature, rng=gen,
            max_steps=config.max_steps,
        )  # fmt: skip
        t_collect = time.perf_counter() - t0
        batch = TurnBatch.of(rollouts)
        # G_t = gamma^(T-1-t) R for every turn of every valid episode
        returns = torch.cat(
            [discounted_returns(r.reward, len(r.turns), config.gamma) for r in batch.rollouts]
        )
        with torch.no_grad():  # the baseline b_t = V(s_t), before the critic sees these returns
            values = torch.cat(
                [critic.values(batch.states[i : i + 64]) for i in range(0, len(batch), 64)]
            )
        advantages = returns - values  # A_t = G_t - V(s_t)
        if config.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-8)
        # actor: -mean_t A_t log pi(a_t | s_t), one pass over the batch, a step per minibatch
        actor_losses, norms = [], []
        for idx in minibatches(len(batch), config.minibatch_size, gen):
            loss = -(advantages[idx] * batch.logprobs(policy, idx)).mean()
            loss.backward()
            norms.append(clip_and_step(policy, optimizer, config.grad_clip))
            actor_losses.append(float(loss))
        # critic: 0.5 mean (V(s_t) - G_t)^2
        critic_losses = []
        for _ in range(config.value_epochs):
            for idx in minibatches(len(batch), config.minibatch_size, gen):
                loss = value_mse(critic.values([batch.states[i] for i in idx]), returns[idx])
                loss.backward()
                clip_and_step(critic, critic_opt, config.grad_clip)
                critic_losses.append(float(loss))
        stats = rollout_stats(rollouts)
        var_g = float(returns.var()) if len(returns) > 1 else float("nan")
        return {
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": len(batch), "errored": stats["errored"],
            "actor_loss": float(np.mean(actor_losses)),
            "critic_loss": float(np.mean(critic_losses)),
            "explained_variance": 1 - float((returns - values).var()) / var_g if var_g else 0.0,
            "adv_mean": float(advantages.mean()), "adv_std": float(advantages.std()),
            "grad_norm": float(np.mean(norms)), "collect_s": t_collect,
        }  # fmt: skip

    def save(it: int) -> None:
        save_checkpoint(run, it, policy, optimizer, critic=critic, critic_optimizer=critic_opt)

    run_iterations(config, run, start, step, save, policy, val_ids)
    return run.latest_path


register_trainer(
    "reinforce",
    train_reinforce,
    PRESETS,
    description="REINFORCE with a learned state-value baseline on the candidate-scorer policy",
    eval_agent="reinforce",
)

__all__ = ["PRESETS", "ReinforceConfig", "train_reinforce"]
