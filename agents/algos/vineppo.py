"""``vineppo``: VinePPO (Kazemnejad et al.) - PPO with values from forked rollouts, no critic.

    for each iteration:
        play tasks_per_iteration train tasks with pi_theta (temperature T); keep logp_old of
        every choice and a snapshot of every state s_t (env.unwrapped.snapshot()); fork a
        share of them (back_probes) at a product page with "< Prev" taken there
        1. values by Monte Carlo: K = k_forks forks of each s_t, restored from its snapshot
           (env.unwrapped.restore), played by pi_theta at T to the end or max_steps in all
           (max_steps - t steps left), in lockstep envs
           V(s_t) = (1/K) sum_k R_k         R_k: fork k's objective (0 unless Buy Now)
           V(s_T) = 0                       the terminal state: nothing follows it
        2. advantages, gamma 1:  A_t = r_t + V(s_{t+1}) - V(s_t)
           (r_t = 0 before Buy Now: A_t = V(s_{t+1}) - V(s_t);  A_{T-1} = R - V(s_{T-1}))
        3. actor: PPO clip, per-token ratios rho = exp(logp_theta - logp_old), eps 0.2,
           ppo_epochs passes over minibatches:  L = -mean min(rho A, clip(rho, 1-eps, 1+eps) A)

V(s_t) is an unbiased estimate of the current policy's value at the very state the episode
was in, where ArCHer's critic must learn it from the states' text; the price is K forks of
about T - t steps for every turn t. The forks are played by the rollout collector itself
(``collect(..., starts=snapshots)``). A fork that fails (an infrastructure error) is left out
of its state's mean; an episode with a state whose K forks all failed is left out of the loss.

Logged per iteration: Score and success rate (train and validation), forks and their env steps,
mean V, advantage mean/std, clip fraction, approximate KL, seconds collecting vs forking.
Imports webgym_agents only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from webgym_agents.observation import PREVIOUS_ACTIONS
from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.onpolicy import (
    OnPolicyConfig,
    Policy,
    TurnBatch,
    back_probes,
    collect,
    iteration_tasks,
    objective,
    ppo_turn_update,
    probe_stats,
    start_learner,
)
from webgym_agents.toolkit.rollouts import Rollout, rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class VinePPOConfig(OnPolicyConfig):
    k_forks: int = 9  # K: completions per state (the paper's 9)
    ppo_epochs: int = 2
    clip_eps: float = 0.2
    normalize_advantages: bool = False  # (A - mean) / std over the batch


PRESETS = {
    "smoke": VinePPOConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=3, n_envs=4, max_steps=6,
        val_tasks=3, lr=1e-3, minibatch_size=16, k_forks=2, back_probes=1.0,
    ),
    # grpo's cpu recipe ("< Prev" probes, whose turns are forked too, success objective, the
    # feature path at 10x lr, T = 1, heads only, from bc) with K = 4 forks of every turn. An
    # episode of T turns costs K x sum_t (T - t) ~ K T (T + 1) / 2 fork steps: episodes that go
    # back last ~7 turns, ~4 x 28 fork steps each, ~4,500 an iteration with the probes (60-130 s
    # an iteration on a shared core). K = 4, not the paper's 9: at K = 9 the same time buys
    # half the episodes; a K-fork mean of rewards in [0, 1] has a standard error <= 0.5 /
    # sqrt(K): 0.25 at K = 4, 0.17 at 9
    "cpu": VinePPOConfig(
        init_checkpoint="released:bc", iterations=40, tasks_per_iteration=32, n_envs=16,
        k_forks=4, temperature=1.0, back_probes=0.5, score_weight=0.0, success_bonus=1.0,
        lr=3e-3, feature_lr=3e-2, train_encoder=False, val_tasks=200, eval_every=10,
        checkpoint_every=10, torch_threads=1,
    ),
    # the candidate scorer on a large GPU (from bc --preset scorer-gpu), the paper's K = 9
    "scorer-gpu": VinePPOConfig(
        device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
        tasks_per_iteration=64, n_envs=32, val_tasks=250, minibatch_size=128,
    ),
    # the decoder path: SmolLM2-135M acting in choice mode; from bc --preset gpu
    "gpu": VinePPOConfig(
        backbone="smollm2-135m", device="cuda", init_checkpoint="trained:bc/gpu",
        iterations=100, tasks_per_iteration=16, n_envs=32, val_tasks=250, lr=1e-6,
    ),
    # the decoder path on a random-init 2-layer LM (tests): 1 episode of <= 3 turns and its
    # <= 2 x (3 + 2 + 1) fork steps an iteration (an LM step is ~1-2 s on this CPU)
    "lm-smoke": VinePPOConfig(
        backbone="tiny-lm", iterations=2, tasks_per_iteration=1, n_envs=2, max_steps=3,
        val_tasks=1, lr=1e-3, minibatch_size=8, k_forks=2,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "lm-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


def play_forks(
    config: VinePPOConfig,
    policy: Policy,
    rollouts: Sequence[Rollout],
    *,
    seed: int,
    rng: np.random.Generator,
) -> list[Rollout]:
    """``k_forks`` forks of every turn's state of ``rollouts`` (collected with ``snapshots``),
    played by ``policy`` at the sampling temperature: the K forks of the i-th state (episode
    by episode, turn by turn) are ``forks[i * K : (i + 1) * K]``. Each fork keeps its
    episode's memory (the turn's :data:`PREVIOUS_ACTIONS`: a probe's includes the actions
    before its fork)."""
    starts = [turn.snapshot for r in rollouts for turn in r.turns]
    if any(s is None for s in starts):
        raise ValueError("forks start from turn snapshots: collect the rollouts with snapshots")
    if not starts:
        return []
    task_ids = [s["task_id"] for s in starts]
    memory = [
        list(turn.obs.get(PREVIOUS_ACTIONS, [x.action for x in r.turns[:t]]))
        for r in rollouts
        for t, turn in enumerate(r.turns)
    ]
    forks = collect(
        config, policy, task_ids, seed=seed, rng=rng, group_size=config.k_forks, starts=starts,
        start_actions=memory,  # each fork knows what its episode already opened
    )  # fmt: skip
    assert len(forks) == len(starts) * config.k_forks  # every job returns a rollout
    return forks


def fork_values(
    forks: Sequence[Rollout], k: int, outcome: Callable[[Rollout], float] | None = None
) -> torch.Tensor:
    """V(s) = mean outcome (the final reward, or ``outcome(fork)``: the learner's objective)
    of each state's ``k`` adjacent forks; a failed fork is left out of its mean (NaN when all
    ``k`` failed)."""
    value = outcome or (lambda f: f.reward)
    rewards = torch.tensor([value(f) if f.valid else float("nan") for f in forks])
    return torch.nanmean(rewards.view(-1, k), dim=1)


def vine_advantages(values: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """A_t = r_t + V(s_{t+1}) - V(s_t) over one episode's turns, V(s_T) = 0, gamma 1.

    ``values`` are V(s_0) .. V(s_{T-1}), ``rewards`` r_0 .. r_{T-1}. With WebShop's single
    reward R at the last turn this is ArCHer's ``returns.turn_td_advantages(values, R)``."""
    next_values = torch.cat([values[1:], values.new_zeros(1)])
    return rewards.to(values.dtype) + next_values - values


def final_rewards(rollout: Rollout, outcome: float) -> torch.Tensor:
    """r_0 .. r_{T-1} of one episode: 0 before its last turn, ``outcome`` (its objective) at
    it (WebShop's single reward, at Buy Now or the step limit)."""
    rewards = torch.zeros(len(rollout.turns))
    rewards[-1] = outcome
    return rewards


def train_vineppo(config: VinePPOConfig, run: TrainRun):
    learner = start_learner(config, run)  # an OnPolicyConfig: policy and optimizer, no critic
    policy, optimizer = learner.policy, learner.optimizer
    K = config.k_forks

    def save(it: int) -> None:
        learner.save(run, it)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 4])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        rollouts = collect(
            config, policy, tasks, seed=config.seed + it, rng=gen, snapshots=True
        )  # each turn keeps logp_old and the snapshot of s_t
        t_collect = time.perf_counter() - t0
        probes = (
            back_probes(config, policy, rollouts, gen, config.seed + it, snapshots=True)
            if config.back_probes > 0 else []
        )  # fmt: skip
        valid = [r for r in rollouts + probes if r.valid]
        # 1. V(s_t) = mean objective of K forks from s_t, played by the same pi_theta at T
        t1 = time.perf_counter()
        forks = play_forks(config, policy, valid, seed=config.seed + it, rng=gen)
        R = lambda r: objective(r, config)  # noqa: E731
        values = fork_values(forks, K, R) if forks else torch.zeros(0)
        t_forks = time.perf_counter() - t1
        # 2. A_t = r_t + V(s_{t+1}) - V(s_t), V(s_T) = 0; an episode lacking a V is left out
        per_episode = values.split([len(r.turns) for r in valid])
        kept = [(r, v) for r, v in zip(valid, per_episode, strict=True) if not v.isnan().any()]
        batch = TurnBatch.of([r for r, _ in kept])
        advantages = torch.cat(
            [vine_advantages(v, final_rewards(r, R(r))) for r, v in kept] or [torch.zeros(0)]
        )
        if config.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        # 3. the actor: PPO clip with per-token ratios against logp_old (one token per turn)
        t2 = time.perf_counter()
        losses, st_log, norms = ppo_turn_update(
            policy, optimizer, batch, advantages, gen, epochs=config.ppo_epochs,
            minibatch_size=config.minibatch_size, clip_eps=config.clip_eps,
            grad_clip=config.grad_clip,
        )  # fmt: skip
        stats = rollout_stats(rollouts)
        mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": sum(len(r.turns) for r in valid), "errored": stats["errored"],
            **probe_stats(probes),
            "forks": len(forks), "fork_env_steps": sum(len(f.turns) for f in forks),
            "fork_errored": sum(not f.valid for f in forks),
            "dropped_episodes": len(valid) - len(kept),
            "v_mean": float(values.nanmean()) if len(values) else float("nan"),
            "adv_mean": float(advantages.mean()) if len(advantages) else float("nan"),
            "adv_std": float(advantages.std()) if len(advantages) > 1 else float("nan"),
            "actor_loss": mean(losses), "clip_frac": mean([s.clip_frac for s in st_log]),
            "approx_kl": mean([s.approx_kl for s in st_log]), "grad_norm": mean(norms),
            "collect_s": t_collect, "fork_s": t_forks, "update_s": time.perf_counter() - t2,
        })  # fmt: skip
    return run.latest_path


TRAINER = TrainerInfo(
    "vineppo",
    train_vineppo,
    PRESETS,
    description="VinePPO: PPO clip on A_t = r_t + V(s') - V(s), V the mean of K forked rollouts",
    preset_aliases=PRESET_ALIASES,
)

__all__ = [
    "PRESETS",
    "VinePPOConfig",
    "fork_values",
    "play_forks",
    "train_vineppo",
    "vine_advantages",
]
