"""``gigpo``: Group-in-Group Policy Optimization (Feng et al., 2025), multi-turn, critic-free.

    for each iteration:
        for each of tasks_per_iteration train tasks: G rollouts from the identical start
        episode level:  A^E_i = (R_i - mean_g R) / (std_g R + 1e-4)            (GRPO's advantage)
        step level:     turns of the group that share an observation (an "anchor state" s~):
                        R_t^i = gamma^(T_i - 1 - t) R_i
                        A^S_t^i = (R_t^i - mean_{s~} R) / (std_{s~} R + 1e-4)
        A_t^i = A^E_i + omega * A^S_t^i        (R: the config's objective, r by default)
        drop the rollouts whose every A_t^i is 0 (a group with equal rewards and no anchor
        that tells its actions apart teaches nothing)
        for num_iterations passes over minibatches of rollouts:
            rho = exp(logp_theta - logp_old)           per turn, logp_old frozen at collection
            L = -min(rho A, clip(rho, 1 - eps, 1 + eps_high) A) + beta KL_k3(pi || pi_ref)

The step level is what assigns credit to one decision: at a product page that lacks the
instruction's option (one anchor state, met by several rollouts of the group), the rollouts
that went back and bought the right product later score above those that bought here, whatever
the episode's other turns did. The anchor key is the page as the policy reads it: the text
twin's accessibility tree, exact, plus the results the agent has opened (its episode memory,
which the policy reads too). Imports webgym_agents' toolkit only.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from webgym_agents.observation import visited_items
from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.losses import clipped_surrogate
from webgym_agents.toolkit.onpolicy import (
    BACK_ACTIONS,
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
from webgym_agents.toolkit.returns import anchor_step_advantages, group_advantages
from webgym_agents.toolkit.rollouts import Rollout, rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class GiGPOConfig(OnPolicyConfig):
    group_size: int = 8  # G: rollouts per task from the identical start
    scale_rewards: str = "group"  # episode level: group / batch / none (GRPO's)
    step_scale: str = "std"  # step level: std / none (the paper's mean_std_norm / mean_norm)
    omega: float = 1.0  # weight of the step-level advantage
    gamma: float = 0.95  # discount of the step-level returns
    loss_type: str = "dapo"  # grpo / dapo / dr_grpo
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    beta: float = 0.0  # k3 KL to the frozen starting policy
    num_iterations: int = 2  # passes over each batch
    minibatch_rollouts: int = 16  # rollouts per optimizer step


PRESETS = {
    "smoke": GiGPOConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=2, group_size=3, n_envs=6,
        max_steps=6, val_tasks=3, lr=1e-3, minibatch_rollouts=3, beta=0.04,
    ),
    # 2 CPU cores, one torch thread, from bc, only the scoring heads trained (frozen encoder:
    # embeddings cached): 90 iterations x 16 tasks x G = 8 rollouts at T = 1, 15 % of the
    # training decisions drawn uniformly, half the rollouts forking a "< Prev" probe (bc puts
    # ~1e-9 on going back: neither sampling nor uniform draws among ~10 candidates try it
    # often enough), the linear feature path at 10x the rate; the objective the success
    # indicator: buying a product that lacks a named option can never succeed, so any way back
    # that sometimes does is worth more (with partial credit the two are about equal under bc)
    "cpu": GiGPOConfig(
        init_checkpoint="released:bc", iterations=90,
        tasks_per_iteration=16, group_size=8, n_envs=16, lr=3e-3, feature_lr=3e-2,
        temperature=1.0, explore=0.15, back_probes=0.5, score_weight=0.0, success_bonus=1.0,
        train_encoder=False, val_tasks=200, eval_every=15, minibatch_rollouts=16,
        torch_threads=1, checkpoint_every=15,
    ),
    # the candidate scorer on a large GPU (from bc --preset scorer-gpu), as grpo's scorer-gpu
    "gpu": GiGPOConfig(
        device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
        tasks_per_iteration=32, group_size=8, n_envs=32, val_tasks=250, minibatch_rollouts=32,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "scorer-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


def anchor_key(obs: dict[str, Any]) -> str:
    """The anchor state of an observation: the page (its accessibility tree, or text) and the
    results the agent has opened this episode, hashed."""
    page = str(obs.get("axtree") or obs.get("text") or "")
    memory = ",".join(sorted(visited_items(obs)))
    return hashlib.blake2b(f"{page}\x00{memory}".encode(), digest_size=16).hexdigest()


def gigpo_advantages(
    rollouts: list[Rollout], config: GiGPOConfig, probes: list[Rollout] = ()
) -> list[torch.Tensor]:
    """A_t^i = A^E_i + omega * A^S_t^i for every turn of ``rollouts`` (groups of G adjacent),
    then of ``probes``: each joins its task's group, at both levels (a probe's turns start at
    its fork, so its anchors are the states it shares with the group's rollouts)."""
    groups = with_probes(rollouts, probes, config.group_size)
    advantage: dict[int, torch.Tensor] = {}
    for group in groups:
        rewards = torch.tensor([objective(r, config) for r in group])
        scale = config.scale_rewards if not probes else "group"
        episode = group_advantages(rewards, len(group), scale)
        step = anchor_step_advantages(
            [[anchor_key(t.obs) for t in r.turns] for r in group],
            [float(x) for x in rewards],
            config.gamma,
            config.step_scale,
        )
        for r, a_e, a_step in zip(group, episode, step, strict=True):
            advantage[id(r)] = float(a_e) + config.omega * a_step
    return [advantage[id(r)] for r in [*rollouts, *probes]]


def train_gigpo(config: GiGPOConfig, run: TrainRun):
    learner = start_learner(config, run)
    policy, optimizer = learner.policy, learner.optimizer
    reference = reference_policy(config, policy)  # pi_ref: the start (bc), frozen

    def save(it: int) -> None:
        learner.save(run, it)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 2])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        rollouts, probes = collect_groups(config, policy, tasks, it, gen)
        t_collect = time.perf_counter() - t0
        advantages = gigpo_advantages(rollouts, config, probes)
        kept = [
            (r, a) for r, a in zip([*rollouts, *probes], advantages, strict=True)
            if r.valid and r.turns and bool(a.abs().max() > 0)
        ]  # fmt: skip
        batch = TurnBatch.of([r for r, _ in kept])
        adv_of_turn = torch.tensor(
            [float(kept[e][1][t]) for e, t in zip(batch.episode, batch.turn, strict=True)]
        )
        rows = [[] for _ in kept]  # rows = rollouts, columns = their turns
        for j, e in enumerate(batch.episode):
            rows[e].append(j)
        losses, stats_log, norms = [], [], []
        for _ in range(config.num_iterations):
            for idx in minibatches(len(kept), config.minibatch_rollouts, gen):
                turns = [j for e in idx for j in rows[e]]
                logp_flat = batch.logprobs(policy, turns)
                ref_flat = None
                if reference is not None:
                    with torch.no_grad():
                        ref_flat = batch.logprobs(reference, turns)
                logp, old, ref, mask = as_rows(
                    idx, rows, turns, logp_flat, batch, ref_flat, adv_of_turn
                )
                adv = torch.zeros_like(mask)  # A_t^i, per turn: (B, L) as the rows
                for b, e in enumerate(idx):
                    adv[b, : len(rows[e])] = kept[e][1]
                loss, st = clipped_surrogate(
                    logp, old, adv, mask, eps_low=config.epsilon, eps_high=config.epsilon_high,
                    loss_type=config.loss_type, max_len=config.max_steps, ref_logp=ref,
                    beta=config.beta,
                )  # fmt: skip
                loss.backward()
                norms.append(clip_and_step(policy, optimizer, config.grad_clip))
                losses.append(float(loss.detach()))
                stats_log.append(st)
        stats = rollout_stats(rollouts)
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        flat = torch.cat([a for _, a in kept]) if kept else torch.zeros(0)
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_avg_steps": stats["avg_steps"],
            "train_env_steps": sum(len(r.turns) for r in rollouts), "errored": stats["errored"],
            "dropped_rollout_frac": 1 - len(kept) / max(1, len(rollouts)),
            "went_back_frac": float(np.mean([_went_back(r) for r in rollouts])),
            **probe_stats(probes),
            "loss": mean(losses), "clip_frac": mean([s.clip_frac for s in stats_log]),
            "approx_kl": mean([s.approx_kl for s in stats_log]),
            "kl_ref": mean([s.kl_ref for s in stats_log]),
            "adv_mean": float(flat.mean()) if len(flat) else float("nan"),
            "adv_std": float(flat.std()) if len(flat) > 1 else float("nan"),
            "grad_norm": mean(norms), "collect_s": t_collect,
        })  # fmt: skip
    return run.latest_path


def _went_back(rollout: Rollout) -> bool:
    """The rollout left a product page without buying (``< Prev`` or Back to Search)."""
    return any(t.action in BACK_ACTIONS for t in rollout.turns)


TRAINER = TrainerInfo(
    "gigpo",
    train_gigpo,
    PRESETS,
    description="GiGPO (episode- plus anchor-state step-level group advantages, PPO clip)",
    preset_aliases=PRESET_ALIASES,
)

__all__ = ["PRESETS", "GiGPOConfig", "anchor_key", "gigpo_advantages", "train_gigpo"]
