"""``archer``: ArCHer PPO (seeds 001/002) - a turn-level critic, then PPO on turn advantages.

    for each iteration:
        play tasks_per_iteration train tasks with pi_theta; keep logp_old of every choice
        1. critic FIRST:  L(phi) = 0.5 mean_t (V_phi(s_t) - G_t)^2,  G_t = gamma^(T-1-t) R
           over this batch and the (s_t, G_t) of the last critic_buffer - 1 iterations
           V read at ONE position per turn: the end of the observation (the encoder's [CLS]
           over the state text alone: the response is never in the critic's input)
        2. advantages with the UPDATED critic:
           delta(t) = V(s_{t+1}) - V(s_t)  for t < T-1;   delta(T-1) = R - V(s_{T-1})
           A(t) = sum_k lambda^k delta(t+k)   (gae_lambda; 0, ArCHer's own: A(t) = delta(t))
           broadcast to every token of turn t's response
        3. actor: PPO clip, per-token ratios rho = exp(logp_theta - logp_old), eps 0.2,
           ppo_epochs passes over minibatches:  L = -mean min(rho A, clip(rho, 1-eps, 1+eps) A)
        (the first critic_warmup iterations run step 1 only: TD advantages need a fitted critic)

    critic_pretrain_episodes > 0: before iteration 1, the original ArCHer's critic-only phase on
    a large batch: the starting policy plays that many train episodes, the critic fits their
    (s_t, G_t) for critic_pretrain_epochs passes, keeping the pass with the lowest MSE on a
    tenth of the tasks held out of the fit (the critic otherwise memorises
    per-task returns); the fitted pairs then seed the critic buffer.
    critic_pretrain_refit > 0 keeps them for the whole run instead: each iteration the critic
    also refits that share of them, a fresh random subsample (a few passes over the run, not one
    per iteration, which would memorise them as the critic-only phase's later passes do).

Logged per iteration: success rate and Score (train and validation), critic loss, explained
variance, advantage mean/std, clip fraction, approximate KL. Imports webgym_agents only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from webgym_agents.toolkit.critic_diagnostics import explained_variance
from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.losses import value_mse
from webgym_agents.toolkit.onpolicy import (
    CriticConfig,
    Learner,
    TurnBatch,
    actor_critic_presets,
    back_probes,
    clip_and_step,
    collect,
    critic_values,
    iteration_tasks,
    minibatches,
    objective,
    ppo_turn_update,
    probe_stats,
    start_learner,
)
from webgym_agents.toolkit.returns import archer_advantages, turn_returns
from webgym_agents.toolkit.rollouts import rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class ArcherConfig(CriticConfig):  # gamma, the critic's lrs and layers: CriticConfig's
    ppo_epochs: int = 2
    clip_eps: float = 0.2
    normalize_advantages: bool = False
    # GAE's lambda over the turn-level TD errors (returns.turn_td_advantages): 0 is ArCHer's
    # one-step A(t) = V(s_{t+1}) - V(s_t); towards 1 the outcome R weighs more than the
    # critic's next values, which a critic explaining little of the returns needs
    gae_lambda: float = 0.0
    # the first critic_warmup iterations fit the critic only (the actor is not stepped): TD
    # advantages from a fresh critic are noise, and PPO on noise walks the policy off bc's
    critic_warmup: int = 0
    # iterations of (s_t, G_t) the critic fits each iteration, this one included (1: this batch
    # only). A critic fitted to this batch alone memorises its returns, and A(t) = V(s') - V(s)
    # from it shrinks to noise; older (on-policy-ish) data makes it generalise instead
    critic_buffer: int = 1
    # the critic-only phase before iteration 1 (docstring): 0 = none
    critic_pretrain_episodes: int = 0
    critic_pretrain_epochs: int = 4
    # share of the pre-training pairs refitted each iteration for the whole run (docstring);
    # 0: they only seed the critic buffer and leave it with the oldest iteration
    critic_pretrain_refit: float = 0.0


PRESETS = {
    "smoke": ArcherConfig(
        backbone="tiny-encoder", iterations=2, tasks_per_iteration=4, n_envs=4, max_steps=6,
        val_tasks=3, lr=1e-3, critic_lr=1e-3, minibatch_size=16,
    ),
    # grpo's cpu recipe (from bc: "< Prev" probes, the success objective, the feature path at
    # 10x the rate, T 1, heads only; reinforce's rates) with ArCHer's critic and PPO. Its
    # one-step TD advantages (gae_lambda 0) steered the policy down in this recipe: a critic
    # that explains little of the returns makes V(s') - V(s) noise (docs/results.md), so the
    # advantages are GAE's with lambda 0.95 over the same TD errors; 60 iterations (~75 min
    # beside another job): validation SR was still rising at 30 (39.5 %) and 40 (44.5 %)
    "cpu": ArcherConfig(
        init_checkpoint="released:bc", iterations=60, tasks_per_iteration=64, n_envs=16,
        temperature=1.0, back_probes=0.5, score_weight=0.0, success_bonus=1.0, gamma=1.0,
        lr=1e-3, feature_lr=1e-2, normalize_advantages=True, train_encoder=False,
        critic_train_layers=1, gae_lambda=0.95, critic_warmup=1, critic_buffer=2,
        val_tasks=200, eval_every=10, checkpoint_every=10, torch_threads=1,
    ),
    **actor_critic_presets(ArcherConfig),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "lm-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


def archer_update(
    config: ArcherConfig,
    policy,
    critic,
    optimizer: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer,
    batch: TurnBatch,
    gen: np.random.Generator,
    *,
    actor: bool = True,
    past: Sequence[tuple[str, float]] = (),
) -> tuple[dict, torch.Tensor]:
    """One ArCHer PPO update on ``batch``: critic (on ``batch`` and the ``past`` (s, G) pairs),
    advantages, actor (skipped when ``actor`` is False: a critic warm-up iteration).
    Returns (metrics, A)."""
    # R is the objective (score_weight * r + success_bonus * 1[r = 1]), as every trainer's
    R = lambda r: objective(r, config)  # noqa: E731
    returns = turn_returns(batch, config.gamma, R)  # G_t = gamma^(T-1-t) R
    # 1. the critic first: 0.5 (V(s_t) - G_t)^2
    v_before = critic_values(critic, batch.critic_states)
    fit_states = list(batch.critic_states) + [s for s, _ in past]
    fit_returns = torch.cat([returns, torch.tensor([g for _, g in past], dtype=returns.dtype)])
    critic_losses = []
    for _ in range(config.critic_epochs):
        for idx in minibatches(len(fit_states), config.minibatch_size, gen):
            loss = value_mse(critic.values([fit_states[i] for i in idx]), fit_returns[idx])
            loss.backward()
            clip_and_step(critic, critic_opt, config.grad_clip)
            critic_losses.append(float(loss.detach()))
    # 2. advantages from the UPDATED critic: GAE over delta(t) = V(s_{t+1}) - V(s_t),
    #    delta(T-1) = R - V(s_{T-1}) (lambda 0: A(t) = delta(t))
    values = critic_values(critic, batch.critic_states)
    advantages = archer_advantages(batch, values, config.gae_lambda, R)
    if config.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    # 3. the actor: PPO clip with per-token ratios against logp_old (one token per turn)
    losses, st_log, norms = ppo_turn_update(
        policy, optimizer, batch, advantages, gen, epochs=config.ppo_epochs if actor else 0,
        minibatch_size=config.minibatch_size, clip_eps=config.clip_eps, grad_clip=config.grad_clip,
    )  # fmt: skip
    metrics = {
        "critic_loss": float(np.mean(critic_losses)), "critic_pairs": len(fit_states),
        "explained_variance": explained_variance(v_before, returns, undefined=0.0),
        "explained_variance_after": explained_variance(values, returns, undefined=0.0),
        "adv_mean": float(advantages.mean()), "adv_std": float(advantages.std()),
        "actor_loss": float(np.mean(losses)) if losses else float("nan"),
        "clip_frac": float(np.mean([s.clip_frac for s in st_log])) if st_log else float("nan"),
        "approx_kl": float(np.mean([s.approx_kl for s in st_log])) if st_log else float("nan"),
        "grad_norm": float(np.mean(norms)) if norms else float("nan"),
    }  # fmt: skip
    return metrics, advantages


def pretrain_critic(config: ArcherConfig, run: TrainRun, learner: Learner) -> None:
    """The critic-only phase (docstring): fit V to the starting policy's MC returns on
    ``critic_pretrain_episodes`` episodes; the best pass on held-out tasks is kept."""
    critic, critic_opt = learner.critic, learner.critic_optimizer
    gen = np.random.default_rng([config.seed, 0, 3])
    n = config.critic_pretrain_episodes
    tasks = iteration_tasks(learner.train_ids, replace(config, tasks_per_iteration=n), 0)
    t0 = time.perf_counter()
    rollouts = collect(config, learner.policy, tasks, seed=config.seed, rng=gen)
    batch = TurnBatch.of(rollouts, config.critic_input, config.max_steps)
    returns = turn_returns(batch, config.gamma, lambda r: objective(r, config))
    stats = rollout_stats(rollouts)
    run.say(
        f"critic pre-training: {len(batch.rollouts)} episodes, {len(batch)} turns, Score "
        f"{stats['score']:.1f}, SR {stats['success_rate']:.2f} ({time.perf_counter() - t0:.0f} s)"
    )
    # a tenth of the TASKS held out: a held-out turn's own task is never fitted
    n_ep = len(batch.rollouts)
    if n_ep < 2:
        raise ValueError("critic_pretrain_episodes: at least 2 valid episodes are needed")
    heldout_ep = set(gen.permutation(n_ep)[: max(1, n_ep // 10)].tolist())
    held = np.array([e in heldout_ep for e in batch.episode])
    fit_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    held_states = [batch.critic_states[i] for i in held_idx]
    held_g = returns[held_idx]

    def heldout() -> tuple[float, float]:  # (MSE, explained variance) on the held-out turns
        v = critic_values(critic, held_states).numpy()
        g = held_g.numpy()
        return float(np.mean((v - g) ** 2)), explained_variance(v, g)

    (best_mse, ev), best_state = heldout(), copy.deepcopy(critic.state_dict())
    run.say(f"critic pre-training: held-out MSE {best_mse:.4f}, explained variance {ev:.3f}")
    for epoch in range(1, config.critic_pretrain_epochs + 1):
        losses = []
        for mb in minibatches(len(fit_idx), config.minibatch_size, gen):
            idx = fit_idx[mb]
            loss = value_mse(critic.values([batch.critic_states[i] for i in idx]), returns[idx])
            loss.backward()
            clip_and_step(critic, critic_opt, config.grad_clip)
            losses.append(float(loss.detach()))
        mse, ev = heldout()
        run.say(
            f"critic pre-training epoch {epoch}: loss {np.mean(losses):.4f}, held-out MSE "
            f"{mse:.4f}, explained variance {ev:.3f}"
        )
        if mse < best_mse:
            best_mse, best_state = mse, copy.deepcopy(critic.state_dict())
    critic.load_state_dict(best_state)
    run.say(f"critic pre-training: kept the pass with held-out MSE {best_mse:.4f}")
    if config.critic_buffer > 1 or config.critic_pretrain_refit > 0:
        learner.critic_buffer = [
            [(batch.critic_states[i], float(returns[i])) for i in fit_idx.tolist()]
        ]


def train_archer(config: ArcherConfig, run: TrainRun):
    learner = start_learner(config, run)
    policy, optimizer = learner.policy, learner.optimizer
    critic, critic_opt = learner.critic, learner.critic_optimizer
    if config.critic_pretrain_episodes and learner.start == 0:
        pretrain_critic(config, run, learner)

    def save(it: int) -> None:
        learner.save(run, it)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 3])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        probing = config.back_probes > 0
        rollouts = collect(config, policy, tasks, seed=config.seed + it, rng=gen, snapshots=probing)
        # "< Prev" probes: forks of product pages that go back first; the critic fits their
        # returns too, so A(t) = V(s') - V(s) can value going back (onpolicy.back_probes)
        probes = back_probes(config, policy, rollouts, gen, config.seed + it) if probing else []
        t_collect = time.perf_counter() - t0
        batch = TurnBatch.of([*rollouts, *probes], config.critic_input, config.max_steps)
        keep = config.critic_buffer - 1  # past iterations the critic refits
        # with critic_pretrain_refit the buffer's first part is the pre-training pairs, kept
        anchored = config.critic_pretrain_refit > 0 and config.critic_pretrain_episodes > 0
        anchor = learner.critic_buffer[:1] if anchored else []
        recent = learner.critic_buffer[len(anchor) :]
        past = [pair for part in recent[-keep:] for pair in part] if keep else []
        if anchor:
            pool = anchor[0]
            n = round(config.critic_pretrain_refit * len(pool))
            past += [pool[i] for i in sorted(gen.choice(len(pool), size=n, replace=False))]
        metrics, _ = archer_update(
            config, policy, critic, optimizer, critic_opt, batch, gen,
            actor=it > config.critic_warmup, past=past,
        )  # fmt: skip
        if keep:
            g = turn_returns(batch, config.gamma, lambda r: objective(r, config)).tolist()
            pairs = list(zip(batch.critic_states, g, strict=True))
            learner.critic_buffer = anchor + [*recent, pairs][-keep:]
        stats = rollout_stats(rollouts)
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": len(batch), "errored": stats["errored"],
            **probe_stats(probes),
            **metrics,
            "collect_s": t_collect,
        })  # fmt: skip
    return run.latest_path


TRAINER = TrainerInfo(
    "archer",
    train_archer,
    PRESETS,
    description="ArCHer PPO: turn-level MC critic first, then PPO on A(t) = V(s') - V(s)",
    preset_aliases=PRESET_ALIASES,
)

__all__ = [
    "PRESETS",
    "ArcherConfig",
    "archer_advantages",
    "archer_update",
    "pretrain_critic",
    "train_archer",
    "turn_returns",
]
