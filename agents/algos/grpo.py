"""``grpo``: Group Relative Policy Optimization (DeepSeekMath), multi-turn, with DAPO's options.

    for each iteration:
        for each of tasks_per_iteration train tasks: G rollouts from the identical start
        A_i = (r_i - mean_g r) / (std_g r + 1e-4)      scale_rewards: group / batch / none
        dynamic sampling: drop the groups whose rewards are all equal (A = 0), log the share
        every turn (every "token": one choice per turn in choice mode) of rollout i gets A_i
        for num_iterations passes over minibatches of rollouts:
            rho = exp(logp_theta - logp_old)           per token, logp_old frozen at collection
            L = -min(rho A, clip(rho, 1 - eps, 1 + eps_high) A) + beta KL_k3(pi || pi_ref)
            aggregated by loss_type: grpo / dapo / dr_grpo (agents/toolkit/losses.py)

A sequence is one rollout, its tokens the choices of its turns (TRL's multi-turn completions
likewise hold every turn). Errored rollouts are left out of the group statistics (NaN) and
the loss. Imports webgym_agents only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.losses import clipped_surrogate
from webgym_agents.toolkit.onpolicy import (
    OnPolicyConfig,
    TurnBatch,
    as_rows,
    clip_and_step,
    collect_groups,
    iteration_tasks,
    minibatches,
    objective,
    probe_stats,
    reference_policy,
    start_learner,
    with_probes,
)
from webgym_agents.toolkit.returns import group_advantages
from webgym_agents.toolkit.rollouts import rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class GRPOConfig(OnPolicyConfig):
    group_size: int = 8  # G: TRL's default
    scale_rewards: str = "group"  # group / batch / none
    loss_type: str = "dapo"  # grpo / dapo / dr_grpo (TRL's default: dapo)
    epsilon: float = 0.2
    epsilon_high: float = 0.28  # DAPO's clip-higher; = epsilon for symmetric clipping
    beta: float = 0.0  # k3 KL to the frozen starting policy (TRL's default 0)
    num_iterations: int = 1  # passes over each batch (TRL's num_iterations)
    dynamic_sampling: bool = True  # drop all-equal groups
    minibatch_rollouts: int = 16  # rollouts per optimizer step


PRESETS = {
    "smoke": GRPOConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=2, group_size=3, n_envs=6,
        max_steps=6, val_tasks=3, lr=1e-3, minibatch_rollouts=3, beta=0.04, num_iterations=2,
    ),
    # 2 CPU cores, one torch thread, from bc, only the scoring heads trained (frozen encoder:
    # embeddings cached): gigpo's cpu recipe (90 iterations x 16 tasks x G = 8, "< Prev"
    # probes, success objective) without its step-level credit
    "cpu": GRPOConfig(
        init_checkpoint="released:bc", iterations=90,
        tasks_per_iteration=16, group_size=8, n_envs=16, lr=3e-3, feature_lr=3e-2,
        temperature=1.0, explore=0.15, back_probes=0.5, score_weight=0.0, success_bonus=1.0,
        train_encoder=False, val_tasks=200, eval_every=15, num_iterations=2,
        minibatch_rollouts=16, torch_threads=1, checkpoint_every=15,
    ),
    # the candidate scorer on a large GPU (from bc --preset scorer-gpu)
    "scorer-gpu": GRPOConfig(
        device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
        tasks_per_iteration=32, group_size=8, n_envs=32, val_tasks=250, minibatch_rollouts=32,
    ),
    # the decoder path: SmolLM2-135M acting in choice mode, an LM critic (policies/lm_critic.py);
    # from bc --preset gpu. Too slow for a CPU (docs/results.md: ~130 episodes an hour)
    "gpu": GRPOConfig(
        backbone="smollm2-135m", device="cuda", init_checkpoint="trained:bc/gpu",
        iterations=100, tasks_per_iteration=16, group_size=8, n_envs=32, val_tasks=250,
        lr=1e-6, minibatch_rollouts=16,
    ),
    # the decoder path on a random-init 2-layer LM (tests)
    "lm-smoke": GRPOConfig(
        backbone="tiny-lm", iterations=2, tasks_per_iteration=1, group_size=2, n_envs=2,
        max_steps=4, val_tasks=2, lr=1e-3, minibatch_rollouts=2, beta=0.04,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "lm-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


def informative_groups(rewards: Sequence[torch.Tensor], dynamic_sampling: bool) -> torch.Tensor:
    """DAPO's dynamic sampling: a group whose rewards are all equal has A_i = 0 for every member
    and only dilutes the batch, so it is dropped (errored rollouts, NaN, count as 0 here).
    Returns one bool per group: keep it."""
    if not dynamic_sampling:
        return torch.ones(len(rewards), dtype=torch.bool)
    spread = [
        float(r.nan_to_num(0).max() - r.nan_to_num(0).min()) if len(r) else 0.0 for r in rewards
    ]
    return torch.tensor(spread, dtype=torch.float64) > 0


def train_grpo(config: GRPOConfig, run: TrainRun):
    learner = start_learner(config, run)
    policy, optimizer = learner.policy, learner.optimizer
    reference = reference_policy(config, policy)  # pi_ref: the start (bc), frozen
    G = config.group_size

    def save(it: int) -> None:
        learner.save(run, it)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 2])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        rollouts, probes = collect_groups(config, policy, tasks, it, gen)
        t_collect = time.perf_counter() - t0
        # A_i = (r_i - mean_g) / (std_g + 1e-4); errored rollouts are NaN: out of the statistics
        # (a group's probes join it: their turns start at their fork)
        groups = with_probes(rollouts, probes, G)
        rewards = [torch.tensor([objective(r, config) for r in group]) for group in groups]
        if config.back_probes > 0:  # groups of unequal size: each normalised on its own
            advantages = [group_advantages(r, len(r), "group") for r in rewards]
        else:
            advantages = list(
                group_advantages(torch.cat(rewards), G, config.scale_rewards).view(-1, G)
            )
        keep_group = informative_groups(rewards, config.dynamic_sampling)
        kept = [
            (r, float(a))
            for group, adv, keep in zip(groups, advantages, keep_group, strict=True)
            for r, a in zip(group, adv, strict=True)
            if r.valid and bool(keep)
        ]
        batch = TurnBatch.of([r for r, _ in kept])
        adv_of_rollout = torch.tensor([a for _, a in kept])
        adv_of_turn = adv_of_rollout[torch.tensor(batch.episode, dtype=torch.long)]
        # rows = rollouts, columns = their turns: the (B, L) layout of the shared loss
        rows = [[] for _ in kept]
        for j, e in enumerate(batch.episode):
            rows[e].append(j)
        max_len = config.max_steps
        losses, stats_log, norms = [], [], []
        for _ in range(config.num_iterations):
            for idx in minibatches(len(kept), config.minibatch_rollouts, gen):
                turns = [j for e in idx for j in rows[e]]
                if not turns:
                    continue
                logp_flat = batch.logprobs(policy, turns)
                ref_flat = None
                if reference is not None:
                    with torch.no_grad():
                        ref_flat = batch.logprobs(reference, turns)
                logp, old, ref, mask = as_rows(
                    idx, rows, turns, logp_flat, batch, ref_flat, adv_of_turn
                )
                loss, st = clipped_surrogate(
                    logp, old, adv_of_rollout[idx], mask, eps_low=config.epsilon,
                    eps_high=config.epsilon_high, loss_type=config.loss_type, max_len=max_len,
                    ref_logp=ref, beta=config.beta,
                )  # fmt: skip
                loss.backward()
                norms.append(clip_and_step(policy, optimizer, config.grad_clip))
                losses.append(float(loss.detach()))
                stats_log.append(st)
        stats = rollout_stats(rollouts)
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": sum(len(r.turns) for r in rollouts), "errored": stats["errored"],
            "dropped_group_frac": 1 - float(keep_group.float().mean()),
            **probe_stats(probes),
            "loss": mean(losses), "clip_frac": mean([s.clip_frac for s in stats_log]),
            "approx_kl": mean([s.approx_kl for s in stats_log]),
            "kl_ref": mean([s.kl_ref for s in stats_log]),
            "adv_mean": float(adv_of_rollout.mean()) if kept else float("nan"),
            "adv_std": float(adv_of_rollout.std()) if len(kept) > 1 else float("nan"),
            "grad_norm": mean(norms), "collect_s": t_collect,
        })  # fmt: skip
    return run.latest_path


TRAINER = TrainerInfo(
    "grpo",
    train_grpo,
    PRESETS,
    description="GRPO (group-normalised rollouts, PPO clip, DAPO options) on the candidate scorer",
    preset_aliases=PRESET_ALIASES,
)

__all__ = ["PRESETS", "GRPOConfig", "train_grpo"]
