"""``digiq``: Digi-Q (Bai et al., 2025): fine-tune a critic's representation, freeze it, learn
Q and V by TD on cached features, then extract a policy by Best-of-N (the Digi-Q paper).

    1. offline data   D = {(s, a, r, s', done, y, candidates)}: the behaviour policy plays train
                      tasks; pi_b(a|s) = (1 - eps) softmax_k(f_bc(s, a_k) / T)
                                         + eps Uniform(clickable_actions(s))
                      y = 1[d(s, s') >= eps_d]   (the env's info["action_effect"]["label"])
    2. fine-tune      phi = Enc(s [SEP] a), mean-pooled;  min_phi BCE(sigma(w . phi(s, a)), y)
                      (+ the aux objectives named in ``aux``), AdamW, cosine schedule
    3. freeze, cache  phi(s, a) for every candidate of every state and phi(s) for every state,
                      computed ONCE; then on the cache only (twin heads, targets by Polyak):
                      Q_i(s, a) -> r + gamma (1 - done) Vbar_i(s')
                      V_i(s)    -> Qbar_i(s, a_data)            (in-sample: no max over actions)
                      thetabar <- (1 - tau) thetabar + tau theta      (every update)
    4. Best-of-N      A(s, a_k) = min_i Q_i(s, a_k) - min_i V_i(s) over the state's N candidates
                      a* = argmax_k A;  L(pi) = -mean_s 1[A(s, a*) > threshold] log pi(a* | s)
                      (extract_anchor lambda > 0: - lambda mean log pi(a_b | s), s not kept)
                      threshold_sweep: one extraction per threshold, the best on validation

``critic_mode`` is Digi-Q's three options as one switch, on the same data: ``finetune_freeze``
(the above), ``frozen`` (skip 2: off-the-shelf features) and ``end_to_end`` (no 2; the TD loss of
3 trains the encoder too, with a target copy of encoder and heads, Polyak-averaged alike).

**Why MiniLM-L6 as the critic backbone** (the scorer's encoder family), not SmolLM2-135M: on this
2-core CPU one (s, a) pair of ~65 tokens costs ~20 ms forward through MiniLM (one thread, batch
16, measured with another job on the other core; ~70 ms forward+backward), while SmolLM2 costs
~2 s per state. Measured in the ``cpu`` run: 70.7k candidate pairs cached in ~26 min (21 ms
each), 9.9k states in 3 min, one fine-tune epoch of 8k logged transitions in 15 min. The pair is
cross-encoded (state and action in one sequence), so the features can depend on the action:
the Digi-Q paper's "action sensitivity".

**The behaviour policy.** The ``bc`` scorer checkpoint (``behaviour_checkpoint``) sampled at
``temperature``, mixed with probability ``explore_eps`` with a uniformly random click among the
page's ``clickable_actions`` (every element with a bid, inert ones too: clicking those changes
nothing, label 0). Without the exploration the data hold almost only effective actions (the
scorer lists effective ones), ~97 % label 1, and the effect classifier has nothing to learn.
The label balance per page type (positive share) is logged and written to
``data/label_balance.json``; it should be in [0.2, 0.8]. Measured with the bc scorer at T 1 on 48
train tasks (clickable_actions as webgym lists them: an item page has ~23 targets, 15 of them
effective; a results page ~47, 12 effective): explore_eps 0.3 gives item page 0.91, results 0.83,
search 0.80 positive (Score 55); 0.5 gives item page 0.88; **0.6** (the default) gives item page
0.74, results 0.55, search 0.49, item detail 0.67 (Score 47, ~9 steps per episode).

That per-step exploration spoils the returns the critic learns (the first ``cpu`` run,
docs/results.md): V and Q are those of a behaviour that wanders after every choice, and Best-of-N
then buys at once. ``explore="one_step"`` (the ``cpu`` preset) explores at exactly one turn t* of
each episode (uniform over the first ``explore_horizon`` turns) and follows bc everywhere else, so
the continuation after any logged action, the explored one included, is bc's, and Q(s, a) is one
step of improvement over bc. But greedy trajectories are ~87 % label 1 (docs/results.md), so the
effect label gets its negatives from **label probes** (``effect_probes`` per state, default 2):
from a fork of every visited s_t (``env.unwrapped.snapshot``/``restore``, as VinePPO forks), a
click drawn uniformly among the state's other clickables, played once, its (s_t, a, s', y)
stored with ``probe=True``. Probes are the effect fine-tuning's data and count in the label
balance; TD, extraction and the diagnostics read the trajectories only (``trajectories``).

**Candidates.** Per state the scorer's candidates (``scorer_policy.candidates``: available actions
and search queries), at most ``n_candidates`` of them (the logged action always, the rest drawn
from pi_b without replacement), plus the logged action when the behaviour policy explored outside
them. a* is taken among the candidates the policy can play (an exploratory inert click is a
candidate of the critic only).

**Run directory** (besides TrainRun's)::

    OUT/data/parts/part-NNNNN.parquet   collection, one part per episodes_per_part (resumable)
    OUT/data/transitions.parquet        the dataset (one row per transition); data.json: its
                                        SHA-256 and how it was made; label_balance.json
    OUT/critic/encoder-<digest>/        the fine-tuned encoder (critic_mode finetune_freeze)
    OUT/cache/<key>/                    phi(s) and phi(s, a) shards, key = data hash + encoder
                                        digest + max_length; a second run or a resume reads them
    OUT/diagnostics.json                the critic's diagnostics (toolkit/critic_diagnostics.py)
    checkpoints/step-N/                 after each phase; the last holds the extracted policy (a
                                        scorer-policy checkpoint) and ``digiq_critic.pt`` (heads)

A run resumes phase by phase (a phase interrupted is redone, except collection, which keeps its
finished parts). ``data`` points a run at another run's data (``OUT/data``): the three
``critic_mode`` runs of ``webgym-bench ablate digiq`` share one dataset.

Imports webgym_agents and webgym; never webgym_benchmarks or webgym_leaderboards.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from webgym.runs import sha256_file
from webgym_agents.policies.scorer_policy import (
    Candidates,
    ScorerPolicy,
    candidates,
    mean_pool,
    read_info,
    state_text,
)
from webgym_agents.release import resolve_checkpoint
from webgym_agents.toolkit.critic_diagnostics import critic_report, ranking_accuracy, write_report
from webgym_agents.toolkit.rollouts import Rollout, collect_rollouts, make_env, rollout_stats
from webgym_agents.toolkit.training import CommonConfig, TrainerInfo, TrainRun, config_to_dict

__all__ = [
    "AUX_OBJECTIVES",
    "CRITIC_MODES",
    "BehaviourPolicy",
    "CriticEncoder",
    "CriticHeads",
    "DigiQConfig",
    "FeatureCache",
    "PRESETS",
    "best_of_n",
    "cache_features",
    "collect_offline_data",
    "load_critic",
    "ranking_diagnostics",
    "load_transitions",
    "polyak_update",
    "probes_of",
    "td_targets",
    "train_digiq",
    "trajectories",
]

log = logging.getLogger(__name__)

CRITIC_MODES = ("finetune_freeze", "frozen", "end_to_end")
EXPLORE_MODES = ("per_step", "one_step")
AUX_OBJECTIVES = ("effect", "next_state", "contrastive", "inverse")
CRITIC_FILE = "digiq_critic.pt"
DATA_FILE = "transitions.parquet"
FORMAT = 2  # of the dataset and the cache; a change of either bumps it (2: label probes)


@dataclass
class DigiQConfig(CommonConfig):
    """Every hyper-parameter of Digi-Q; seed, torch_threads, device, backbone (the policy's),
    max_steps, eval_episodes, checkpoint_every and keep_checkpoints are CommonConfig's."""

    # 1. offline data
    behaviour_checkpoint: str = "released:bc"  # a scorer folder or released:NAME; "": fresh
    data: str = ""  # another run's data folder (OUT/data) to reuse; "" = collect here
    n_episodes: int = 1000  # train-split episodes of the behaviour policy
    temperature: float = 1.0  # the bc scorer's sampling temperature
    explore_eps: float = 0.6  # P(a uniformly random click among clickable_actions): docstring
    explore: str = "per_step"  # per_step: eps at every turn | one_step: one turn t* per episode
    explore_horizon: int = 4  # one_step: t* uniform in [0, explore_horizon)
    n_envs: int = 8  # envs stepped in lockstep while collecting
    collect_mode: str = "text"  # the env mode of the collection (browser: pixels in the label)
    episodes_per_part: int = 96  # episodes per parquet part (the unit of resuming)
    n_candidates: int = 16  # N: candidate actions per state (the logged one always among them)
    # label probes per state: uniform clicks among the state's other clickables, each played
    # from a fork of s_t (snapshot/restore); rows with probe=True feed the effect fine-tuning
    # and the label balance only, never TD or extraction (the trajectories stay pi_b's)
    effect_probes: int = 2
    heldout_fraction: float = 0.1  # tasks held out of training (accuracy, V against MC)
    # the critic
    critic_mode: str = "finetune_freeze"  # finetune_freeze | frozen | end_to_end
    critic_backbone: str = "minilm"  # an encoder (webgym_agents.models.load_backbone)
    critic_max_length: int = 128  # tokens of one (state, action) pair
    critic_encoder: str = ""  # a fine-tuned encoder (OUT/critic/encoder-*) to reuse: no phase 2
    # 2. representation fine-tuning
    aux: str = "effect"  # "+"-joined AUX_OBJECTIVES
    finetune_epochs: int = 1
    finetune_batch_size: int = 16
    finetune_lr: float = 5e-5  # the encoder; the heads at 20x
    finetune_warmup: float = 0.05  # share of updates with a linear warm-up, then cosine to 0
    finetune_max_pairs: int = 0  # 0: every logged training transition
    balance_classes: bool = True  # weigh the two effect labels equally in the BCE
    contrastive_temperature: float = 0.1
    # 3. TD on the frozen features
    feature_batch_size: int = 16  # pairs per encoder forward while caching
    gamma: float = 0.95
    tau: float = 0.1  # Polyak step of the targets, every update
    td_updates: int = 4000
    td_batch_size: int = 256
    td_lr: float = 1e-3
    head_hidden: int = 256
    v_target: str = "per_head"  # V_i -> Qbar_i(s, a) ("per_head", as Digi-Q) or min_j Qbar_j
    v_expectile: float = 0.5  # 0.5: V's plain MSE (Digi-Q); > 0.5: IQL's expectile (see below)
    e2e_updates: int = 100  # end_to_end: TD updates through the encoder (slow)
    e2e_batch_size: int = 8
    e2e_lr: float = 1e-5  # end_to_end: the encoder's lr (the heads keep td_lr)
    # 4. Best-of-N extraction (filtered BC of the scorer policy)
    threshold: float = 0.05
    # several values: one extraction per threshold, the policy best on validation kept (the
    # critic's scale decides how many states clear a threshold: docs/results.md, Digi-Q)
    threshold_sweep: tuple[float, ...] = ()
    # lambda of the behaviour anchor: L += -lambda mean log pi(a_b | s) over training states NOT
    # kept, a_b the behaviour's own (non-explored) action; 0 = Digi-Q's plain filtered BC
    extract_anchor: float = 0.0
    extract_epochs: int = 2
    extract_batch_size: int = 32
    extract_lr: float = 3e-3
    train_encoder: bool = False  # False: only the scorer's heads learn (the cheap option)
    grad_clip: float = 1.0
    val_tasks: int = 50  # greedy validation episodes before and after extraction
    log_every: int = 50  # updates between metrics rows in the long phases


PRESETS = {
    # tiny random-init models, 8 episodes: the whole pipeline in well under a minute
    "smoke": DigiQConfig(
        backbone="tiny-encoder", critic_backbone="tiny-encoder", behaviour_checkpoint="",
        torch_threads=1, n_episodes=8, episodes_per_part=4, n_envs=4, max_steps=6,
        critic_max_length=64, finetune_lr=1e-3, td_updates=60, td_batch_size=32,
        e2e_updates=4, e2e_batch_size=4, extract_epochs=1, extract_batch_size=8, val_tasks=3,
        log_every=20, heldout_fraction=0.25, aux="effect+contrastive+inverse",
        threshold=-1.0,  # a random scorer earns nothing: keep every state, to run the BC path
    ),
    # 2-core CPU, one thread, ~1.5 h with the harness's 100 validation episodes (measured with
    # other jobs on the cores, docs/results.md): 1,000 episodes x ~9 steps at 0.08-0.11 s/step
    # (17 min), one fine-tune epoch of 8k pairs at 1.8 s per update of 16 (15 min), 9.9k states
    # + 71k cached pairs at ~20 ms (29 min), 4,000 TD updates, 2 extraction epochs, heads only
    # explore one_step (not per_step at 0.6, the first cpu run: docs/results.md); 1,500 episodes
    # of ~4.5 steps keep the data near the first run's 8.9k transitions
    # the behaviour is GREEDY bc (T 0) apart from the one explored turn, so Q and V are
    # those of the policy to improve (at T 1 Best-of-N improved on bc-at-T-1, 62, not on greedy
    # bc, 74), and only confident advantages are imitated (threshold 0.3: at 0.05 and 0.2 the kept
    # sets, 3,182 and 202 states, were mostly the critic's noise; docs/results.md)
    # how many states clear 0.3 depends on the critic (26, 1 and 0 for three
    # encoders), so the threshold is chosen on validation; ties go to the first, the strictest
    "cpu": DigiQConfig(
        torch_threads=1, eval_episodes=100, val_tasks=100, explore="one_step", n_episodes=1500,
        temperature=0.0, threshold=0.3, threshold_sweep=(0.3, 0.2, 0.15, 0.1, 0.05),
        # 2 label probes per state triple the labelled rows: fine-tune on 6,000 of them (the
        # greedy-data run's 5,716 logged transitions took 20 min)
        finetune_max_pairs=6000,
    ),
    "gpu": DigiQConfig(
        device="cuda", behaviour_checkpoint="runs/bc-scorer-gpu/checkpoints/latest",
        n_episodes=6000, n_envs=32, finetune_epochs=3, finetune_batch_size=64,
        feature_batch_size=256, td_updates=20000, e2e_updates=2000, e2e_batch_size=32,
        extract_epochs=4, train_encoder=True, extract_lr=5e-5, val_tasks=250, eval_episodes=250,
    ),
}  # fmt: skip

METRICS = (
    "iteration", "phase", "episodes", "transitions", "data_score", "data_success_rate",
    "positive_share", "ft_update", "ft_loss", "ft_lr", "ft_heldout_acc",
    "ft_heldout_balanced_acc", "ft_heldout_positive_share", "cache_pairs", "cache_states",
    "cache_s", "td_update", "td_loss_q", "td_loss_v", "q_mean", "v_mean", "td_updates_per_s",
    "v_mc_mse", "action_sensitivity", "probe_acc", "extract_epoch", "bc_loss", "kept_share",
    "adv_star_mean", "val_score", "val_success_rate", "elapsed_s", "threshold",
)  # fmt: skip
"""metrics.csv's columns (the first row fixes them); phase 1 data, 2 fine-tune, 3 TD, 4 BoN."""


# ==============================================================================================
# 1. Offline data
# ==============================================================================================


def clickable_actions(obs: dict[str, Any]) -> list[str]:
    """``click('<bid>')`` for every element with a bid (webgym's observation contract), or the
    page's available actions where the observation does not carry them yet."""
    return list(obs.get("clickable_actions", obs.get("available_actions")) or ())


def page_type(state: str) -> str:
    """The page kind the state text names (``search page``, ``results page``, ``item page``...)."""
    parts = state.split(" | ")
    return parts[1].split(",")[0] if len(parts) > 1 else "page"


def _nodes_by_bid(obs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    from webgym_agents.observation import axtree_nodes

    try:
        nodes = axtree_nodes(obs)
    except ValueError:
        return {}
    return {n.bid: (n.role, n.name) for n in nodes if n.bid}


def critic_action_text(action: str, label: str, nodes: dict[str, tuple[str, str]]) -> str:
    """What the critic reads of an action: ``<role> '<label>'`` as the axtree line writes it
    (``link 'Briaro USB-C Cable $9.95'``, ``StaticText 'B04WNV3Q8J'``), ``search '<query>'``."""
    if action.startswith("search[") and action.endswith("]"):
        return f"search '{action[7:-1]}'"
    if action.startswith("click('") and action.endswith("')"):
        bid = action[7:-2]
        role, name = nodes.get(bid, ("element", ""))
        return f"{role} '{label or name or bid}'"
    return label or action


@dataclass
class BehaviourDecision:
    """One act of pi_b: the action, the scorer's candidates and probabilities at that state."""

    action: str
    state: str
    candidates: Candidates
    index: int  # the action's index among the candidates; -1 when explored outside them
    logprob: float  # log pi_b(a | s) of the mixture
    temperature: float
    explored: bool  # the action is the uniform click (eps branch)
    probs: list[float] = field(default_factory=list)  # softmax(f / T) over the candidates


class BehaviourPolicy:
    """pi_b(a | s_t) = (1 - eps_t) softmax_k(f(s_t, a_k) / T) + eps_t Uniform(clicks(s_t)),
    clicks = ``clickable_actions``.

    ``explore="per_step"``: eps_t = eps at every turn. ``explore="one_step"``: eps_t = 1 at one
    turn t* of each episode and 0 elsewhere, t* uniform in [0, horizon) (a stable hash of the
    goal and ``salt``, so that collection stays stateless and a resumed part replays the same
    plan): the episode's other turns are bc's, so the data's continuation values are bc's.
    ``decide_batch`` is what :func:`webgym_agents.toolkit.rollouts.collect_rollouts` calls."""

    def __init__(
        self,
        scorer: ScorerPolicy,
        explore_eps: float,
        max_steps: int,
        *,
        explore: str = "per_step",
        horizon: int = 4,
        salt: int = 0,
    ):
        if explore not in EXPLORE_MODES:
            raise ValueError(f"explore must be one of {EXPLORE_MODES}, not {explore!r}")
        self.scorer, self.eps, self.max_steps = scorer, float(explore_eps), int(max_steps)
        self.explore, self.horizon, self.salt = explore, max(1, int(horizon)), int(salt)

    def explore_turn(self, goal: str) -> int:
        """t* of the episode of ``goal`` (explore "one_step")."""
        return zlib.crc32(f"{self.salt}:{goal}".encode()) % self.horizon

    def eps_at(self, obs: dict) -> float:
        if self.explore == "per_step":
            return self.eps
        return float(int(obs.get("step", 0)) == self.explore_turn(str(obs.get("goal") or "")))

    @torch.no_grad()
    def decide_batch(self, observations, *, temperature: float = 1.0, rng=None):
        rng = rng if rng is not None else np.random.default_rng()
        states = [state_text(o, self.max_steps) for o in observations]
        cands = [candidates(o, self.max_steps) for o in observations]
        scores = self.scorer.scores(states, cands)
        out = []
        for obs, s, c, f in zip(observations, states, cands, scores, strict=True):
            probs = torch.softmax(f.double() / max(temperature, 1e-6), 0).numpy()
            probs = probs / probs.sum()
            clicks = clickable_actions(obs)
            eps = self.eps_at(obs) if clicks else 0.0
            explored = bool(clicks) and rng.random() < eps
            if explored:
                action = clicks[int(rng.integers(len(clicks)))]
            else:
                action = c.actions[int(rng.choice(len(c.actions), p=probs))]
            k = c.actions.index(action) if action in c.actions else -1
            # log pi_b(a|s) = log((1 - eps_t) p_soft(a) + eps_t 1[a clickable] / |clickable|)
            p = (1 - eps) * (probs[k] if k >= 0 else 0.0)
            p += eps * (clicks.count(action) / len(clicks) if clicks else 0.0)
            out.append(
                BehaviourDecision(
                    action,
                    s,
                    c,
                    k,
                    float(np.log(max(p, 1e-300))),
                    float(temperature),
                    explored,
                    probs.tolist(),
                )
            )
        return out


def _pool(d: BehaviourDecision, n: int, rng: np.random.Generator) -> list[int]:
    """The indices of the scorer candidates in the critic's pool: all if they fit in N, else
    the logged one and N-1 others drawn from pi_b without replacement (the scorer's order)."""
    m = len(d.candidates.actions)
    room = n - (1 if d.index < 0 else 0)
    if m <= room:
        return list(range(m))
    keep = {d.index} if d.index >= 0 else set()
    others = [k for k in range(m) if k not in keep]
    p = np.array([d.probs[k] for k in others]) + 1e-12
    keep |= set(
        int(k) for k in rng.choice(others, size=room - len(keep), replace=False, p=p / p.sum())
    )
    return sorted(keep)


def _where(rollout: Rollout, episode: int, t: int, state: str) -> dict[str, Any]:
    """The columns that place a dataset row: its episode, turn and state."""
    return {
        "task_id": rollout.task_id,
        "episode": episode,
        "t": t,
        "seed": rollout.seed,
        "page_type": page_type(state),
        "state": state,
    }


def transitions_of(
    rollout: Rollout, episode: int, config: DigiQConfig, heldout: bool, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """The dataset rows of one valid rollout (s_{t+1} of the last turn: its final observation)."""
    rows = []
    n_turns = len(rollout.turns)
    for t, turn in enumerate(rollout.turns):
        d: BehaviourDecision = turn.decision
        last = t == n_turns - 1
        nxt = rollout.final_obs if last else rollout.turns[t + 1].obs
        nodes = _nodes_by_bid(turn.obs)
        c = d.candidates
        pool = _pool(d, config.n_candidates, rng)
        acts = [c.actions[k] for k in pool]
        texts = [critic_action_text(c.actions[k], c.texts[k], nodes) for k in pool]
        policy_index = list(pool)
        logged_text = critic_action_text(d.action, c.texts[d.index] if d.index >= 0 else "", nodes)
        if d.index < 0:  # explored outside the scorer's candidates: a critic-only candidate
            acts.append(d.action)
            texts.append(logged_text)
            policy_index.append(-1)
        effect = turn.effect or {}
        rows.append(
            {
                **_where(rollout, episode, t, d.state),
                "action": d.action,
                "action_text": logged_text,
                "reward": float(turn.reward),
                "next_state": state_text(nxt or {}, config.max_steps) if nxt else "",
                "done": bool(last and rollout.terminated),
                "truncated": bool(last and rollout.truncated),
                "effect_label": int(effect.get("label", turn.effect_label or 0)),
                "text_distance": float(effect.get("text_distance", float("nan"))),
                "pixel_distance": float(effect.get("pixel_distance", float("nan"))),
                "action_error": turn.action_error,
                "cand_actions": acts,
                "cand_texts": texts,
                "cand_policy_index": policy_index,
                "logged_index": acts.index(d.action),
                "policy_actions": list(c.actions),
                "policy_texts": list(c.texts),
                "policy_features": [list(map(float, f)) for f in c.features],
                "behaviour_logp": d.logprob,
                "explored": d.explored,
                "episode_reward": float(rollout.reward),
                "episode_len": n_turns,
                "mc_return": float(rollout.reward) * config.gamma ** (n_turns - 1 - t),
                "heldout": bool(heldout),
                "probe": False,
            }
        )
    return rows


def probes_of(
    rollout: Rollout, episode: int, config: DigiQConfig, heldout: bool, env, rng
) -> list[dict[str, Any]]:
    """The label probes of one valid rollout (``collect_rollouts(snapshots=True)``): at each s_t,
    ``effect_probes`` clicks drawn uniformly without replacement among ``clickable_actions(s_t)``
    other than a_t, each played once from a fork of s_t in ``env`` (restore, step); rows
    (s_t, a, s', y, distances) in the dataset's columns with ``probe=True``. The greedy
    trajectory is untouched: the forks are new server sessions and draw from their own ``rng``.
    """
    core = env.unwrapped
    env.reset(seed=rollout.seed, options={"task_id": rollout.task_id})
    rows = []
    for t, turn in enumerate(rollout.turns):
        if turn.snapshot is None:
            raise ValueError("probes_of needs the rollout's snapshots (snapshots=True)")
        others = [a for a in dict.fromkeys(clickable_actions(turn.obs)) if a != turn.action]
        k = min(config.effect_probes, len(others))
        if not k:
            continue
        nodes = _nodes_by_bid(turn.obs)
        d: BehaviourDecision = turn.decision
        for j in sorted(rng.choice(len(others), size=k, replace=False)):
            action = others[int(j)]
            try:
                core.restore(turn.snapshot)
                nxt, reward, terminated, truncated, info = core.step(action)
            except Exception as err:  # noqa: BLE001 - a fork that fails loses one probe, no more
                log.warning("label probe %s at %s/%d failed: %s", action, rollout.task_id, t, err)
                continue
            if info.get("error"):  # the env's own failure (a crashed browser): not a label
                continue
            effect = info.get("action_effect") or {}
            text = critic_action_text(action, "", nodes)
            rows.append(
                {
                    **_where(rollout, episode, t, d.state),
                    "action": action,
                    "action_text": text,
                    "reward": float(reward),
                    "next_state": state_text(nxt, config.max_steps),
                    "done": bool(terminated),
                    "truncated": bool(truncated),
                    "effect_label": int(effect.get("label", 0)),
                    "text_distance": float(effect.get("text_distance", float("nan"))),
                    "pixel_distance": float(effect.get("pixel_distance", float("nan"))),
                    "action_error": str(nxt.get("last_action_error") or ""),
                    "cand_actions": [action],
                    "cand_texts": [text],
                    "cand_policy_index": [-1],
                    "logged_index": 0,
                    "policy_actions": [],
                    "policy_texts": [],
                    "policy_features": [],
                    "behaviour_logp": float(-np.log(len(others))),
                    "explored": True,
                    "episode_reward": float(rollout.reward),
                    "episode_len": len(rollout.turns),
                    "mc_return": float("nan"),  # a probe has no continuation
                    "heldout": bool(heldout),
                    "probe": True,
                }
            )
    return rows


def trajectories(frame):
    """The dataset's trajectory rows (TD, extraction, diagnostics), label probes left out, with a
    fresh positional index; a dataset from before the probes is returned as it is."""
    if "probe" not in frame:
        return frame
    return frame[~frame["probe"].to_numpy(bool)].reset_index(drop=True)


def _atomic_parquet(frame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _explore_words(config: DigiQConfig) -> str:
    if config.explore == "one_step":
        return f"one uniform clickable click per episode at t* < {config.explore_horizon}"
    return f"mixed with explore_eps {config.explore_eps} uniform clickable clicks"


def _collection_facts(config: DigiQConfig) -> dict[str, Any]:
    """What determines the dataset: a data folder made with other facts is not reused."""
    keys = (
        "seed",
        "behaviour_checkpoint",
        "n_episodes",
        "temperature",
        "explore_eps",
        "explore",
        "explore_horizon",
        "collect_mode",
        "episodes_per_part",
        "n_candidates",
        "effect_probes",
        "heldout_fraction",
        "max_steps",
        "gamma",
        "backbone",
    )
    return {"format": FORMAT, **{k: getattr(config, k) for k in keys}}


def label_balance(frame) -> dict[str, Any]:
    """The env's effect label per page type: n, positives, positive share (and overall), and how
    many of the n are label probes."""
    out: dict[str, Any] = {}
    for kind, group in [("all", frame), *sorted(frame.groupby("page_type"))]:
        n, pos = len(group), int(group["effect_label"].sum())
        share = pos / n if n else float("nan")
        out[str(kind)] = {
            "n": n,
            "positives": pos,
            "positive_share": share,
            "in_20_80": bool(0.2 <= share <= 0.8),
            "probes": int(group["probe"].sum()) if "probe" in group else 0,
        }
    return out


def _behaviour(config: DigiQConfig) -> ScorerPolicy:
    if config.behaviour_checkpoint:
        source = resolve_checkpoint(config.behaviour_checkpoint)  # a folder, or released:bc
        kind = read_info(source).get("kind")
        if kind != "scorer-policy":
            raise ValueError(
                f"{config.behaviour_checkpoint} holds a {kind!r} checkpoint; Digi-Q's behaviour "
                "policy is a scorer (webgym-bench train --agent bc --preset scorer-cpu)"
            )
        policy = ScorerPolicy.load(source)
        if policy.backbone.name != config.backbone:
            raise ValueError(
                f"{config.behaviour_checkpoint} was trained on {policy.backbone.name}, the "
                f"config says backbone {config.backbone}"
            )
    else:
        policy = ScorerPolicy.from_backbone_name(config.backbone, seed=config.seed)
    policy.max_length, policy.max_steps = policy.max_length, config.max_steps
    return policy.eval()


def collect_offline_data(config: DigiQConfig, run: TrainRun) -> tuple[Path, str]:
    """Phase 1: the dataset's parquet and its SHA-256, collected into ``OUT/data`` (resumable:
    finished parts are kept, a part interrupted is played again from its start) or, with
    ``config.data``, another run's, checked against its ``data.json``."""
    import pandas as pd

    from webgym_agents.toolkit.onpolicy import split_task_ids

    if config.data:
        folder = Path(config.data)
        folder = folder / "data" if (folder / "data" / DATA_FILE).is_file() else folder
        path = folder / DATA_FILE
        if not path.is_file():
            raise ValueError(f"data: {folder} holds no {DATA_FILE}")
        meta = json.loads((folder / "data.json").read_text())
        digest = sha256_file(path)
        if meta.get("sha256") != digest:
            raise RuntimeError(f"{path}: SHA-256 {digest} is not data.json's {meta.get('sha256')}")
        run.say(f"data: {path} ({meta.get('transitions')} transitions, sha256 {digest[:16]})")
        return path, digest

    folder = run.dir / "data"
    parts_dir = folder / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    facts = _collection_facts(config)
    path = folder / DATA_FILE
    meta_path = folder / "data.json"
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("facts") == facts and meta.get("sha256") == sha256_file(path):
            run.say(f"data: {path} already collected (sha256 {meta['sha256'][:16]})")
            return path, meta["sha256"]
    facts_path = parts_dir / "facts.json"
    if facts_path.is_file() and json.loads(facts_path.read_text()) != facts:
        raise RuntimeError(
            f"{parts_dir} holds parts collected with other settings "
            f"({json.loads(facts_path.read_text())}); use another --out"
        )
    _atomic_json(facts_path, facts)

    # the episode plan: a function of the seed only, so a resumed collection plays the same
    train_ids = split_task_ids("train")
    order = np.random.default_rng([config.seed, 11]).permutation(len(train_ids))
    plan = [train_ids[order[i % len(order)]] for i in range(config.n_episodes)]
    tasks = sorted(set(plan))
    held = np.random.default_rng([config.seed, 12]).permutation(len(tasks))
    n_held = int(round(config.heldout_fraction * len(tasks)))
    heldout = {tasks[i] for i in held[:n_held]}
    per = max(1, config.episodes_per_part)
    n_parts = math.ceil(len(plan) / per)
    done_parts = [k for k in range(n_parts) if (parts_dir / f"part-{k:05d}.parquet").is_file()]
    scorer = _behaviour(config)
    behaviour = BehaviourPolicy(
        scorer, config.explore_eps, config.max_steps,
        explore=config.explore, horizon=config.explore_horizon, salt=config.seed,
    )  # fmt: skip
    source = config.behaviour_checkpoint or f"a fresh {config.backbone} scorer"
    run.say(
        f"data: {len(plan)} episodes of the behaviour policy ({source}"
        f", T {config.temperature}, {_explore_words(config)}) in {n_parts} parts; "
        f"{len(done_parts)} already collected"
    )
    t0 = time.perf_counter()
    probe_env = None
    if config.effect_probes and len(done_parts) < n_parts:  # one text env for every fork
        probe_env = make_env("train", tasks, mode=config.collect_mode, max_steps=config.max_steps)
    closing = contextlib.closing(probe_env) if probe_env is not None else contextlib.nullcontext()
    with run.progress(n_parts, len(done_parts), "digiq data") as progress, closing:
        for k in range(n_parts):
            part = parts_dir / f"part-{k:05d}.parquet"
            if part.is_file():
                continue
            ids = plan[k * per : (k + 1) * per]
            seed = int(np.random.default_rng([config.seed, 13, k]).integers(2**31))
            rollouts = collect_rollouts(
                behaviour,
                ids,
                n_envs=config.n_envs,
                seed=seed,
                temperature=config.temperature,
                rng=np.random.default_rng([config.seed, 14, k]),
                max_steps=config.max_steps,
                mode=config.collect_mode,
                snapshots=config.effect_probes > 0,
            )
            gen = np.random.default_rng([config.seed, 15, k])
            probe_rng = np.random.default_rng([config.seed, 16, k])
            rows, probes = [], []
            for j, r in enumerate(rollouts):
                if not r.valid:
                    continue
                rows += transitions_of(r, k * per + j, config, r.task_id in heldout, gen)
                if probe_env is not None:
                    probes += probes_of(
                        r, k * per + j, config, r.task_id in heldout, probe_env, probe_rng
                    )
            stats = rollout_stats(rollouts)
            _atomic_parquet(pd.DataFrame(rows + probes), part)
            run.log(
                f"data part {k + 1}/{n_parts}: {len(rows)} transitions + {len(probes)} label "
                f"probes, score {stats['score']:.1f}, {int(stats['errored'])} errored"
            )
            progress(1, f"score {stats['score']:.1f}")
    frame = pd.concat(
        [pd.read_parquet(parts_dir / f"part-{k:05d}.parquet") for k in range(n_parts)],
        ignore_index=True,
    )
    _atomic_parquet(frame, path)
    digest = sha256_file(path)
    balance = label_balance(frame)
    _atomic_json(folder / "label_balance.json", balance)
    n_probes = len(frame) - len(trajectories(frame))
    frame = trajectories(frame)
    episodes = frame.drop_duplicates("episode")
    _atomic_json(
        meta_path,
        {
            "sha256": digest,
            "facts": facts,
            "transitions": len(frame),
            "label_probes": n_probes,
            "episodes": len(episodes),
            "score": float(episodes["episode_reward"].mean() * 100),
            "success_rate": float((episodes["episode_reward"] == 1.0).mean()),
            "collect_s": time.perf_counter() - t0,
            "behaviour": f"bc scorer at temperature T, {_explore_words(config)}",
        },
    )
    run.say(
        f"data: {len(frame)} transitions of {len(episodes)} episodes + {n_probes} label probes, "
        f"sha256 {digest[:16]}"
    )
    return path, digest


def load_transitions(path: Path):
    """The dataset as a DataFrame with plain-list cells (parquet gives numpy arrays)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    for col in (
        "cand_actions",
        "cand_texts",
        "cand_policy_index",
        "policy_actions",
        "policy_texts",
    ):
        frame[col] = [list(x) for x in frame[col]]
    frame["policy_features"] = [[list(map(float, f)) for f in x] for x in frame["policy_features"]]
    return frame


def say_balance(run: TrainRun, balance: dict[str, Any], config: DigiQConfig) -> None:
    for kind, b in balance.items():
        flag = "" if b["in_20_80"] else "  <- outside [0.2, 0.8]: see effect_probes / explore"
        run.say(
            f"label balance {kind}: {b['positives']}/{b['n']} positive "
            f"({b['positive_share']:.2f}; {b.get('probes', 0)} of them label probes), "
            f"{_explore_words(config)}{flag}"
        )


# ==============================================================================================
# 2. Representation fine-tuning
# ==============================================================================================


class CriticEncoder(nn.Module):
    """phi(s, a) = mean_pool(Enc("[CLS] s [SEP] a [SEP]")), phi(s) = mean_pool(Enc("[CLS] s"))
    on a MiniLM-family encoder, with the fine-tuning heads of the ``aux`` objectives."""

    def __init__(self, backbone, max_length: int = 128):
        super().__init__()
        if backbone.is_causal:
            raise ValueError(f"the critic needs an encoder backbone, not {backbone.name}")
        self.backbone, self.encoder = backbone, backbone.model
        h = self.dim = backbone.hidden_size
        self.max_length = int(max_length)
        self.effect_head = nn.Linear(h, 1)  # logit of P(y = 1 | s, a)
        self.next_head = nn.Linear(h, h)  # next_state: phi(s, a) -> phi(s')
        self.proj_sa, self.proj_s = nn.Linear(h, 128), nn.Linear(h, 128)  # contrastive

    def add_inverse_heads(self) -> None:
        """The inverse-dynamics heads (aux ``inverse``): z(s, s') = W [phi(s); phi(s')] and
        u(a) = U phi(a), phi(a) the encoder on the action's text alone. Made only when asked for,
        so that other runs draw the same random numbers as before."""
        h = self.dim
        self.inverse_head, self.proj_a = nn.Linear(2 * h, 128), nn.Linear(h, 128)
        self.to(self.backbone.device)

    def _pool(self, enc) -> torch.Tensor:
        enc = enc.to(self.backbone.device)
        return mean_pool(self.encoder(**enc).last_hidden_state, enc["attention_mask"])

    def pair_features(self, states: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        tok = self.backbone.tokenizer
        return self._pool(
            tok(
                list(states),
                list(actions),
                truncation=True,
                padding=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def state_features(self, states: Sequence[str]) -> torch.Tensor:
        tok = self.backbone.tokenizer
        return self._pool(
            tok(
                list(states),
                truncation=True,
                padding=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def digest(self) -> str:
        """SHA-256 of the encoder's weights (the cache key's half)."""
        h = hashlib.sha256(self.backbone.name.encode())
        for k, v in sorted(self.encoder.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save_encoder(self, folder: Path, info: dict[str, Any]) -> Path:
        from safetensors.torch import save_model

        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        save_model(self.encoder, str(tmp / "model.safetensors"))
        _atomic_json(
            tmp / "encoder.json",
            {"backbone": self.backbone.name, "max_length": self.max_length, **info},
        )
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder


def load_critic_encoder(config: DigiQConfig, folder: Path | None = None) -> CriticEncoder:
    """The critic's encoder: off-the-shelf ``critic_backbone`` or, from ``folder``, fine-tuned."""
    from webgym_agents.models.backbone import load_backbone

    backbone = load_backbone(config.critic_backbone, seed=config.seed, device=config.device)
    enc = CriticEncoder(backbone, config.critic_max_length).to(config.device)
    if folder is not None:
        from safetensors.torch import load_model

        load_model(enc.encoder, str(Path(folder) / "model.safetensors"), strict=True)
    return enc.eval()


def _aux_names(aux: str) -> list[str]:
    names = [a.strip() for a in aux.split("+") if a.strip()]
    unknown = [a for a in names if a not in AUX_OBJECTIVES]
    if unknown:
        raise ValueError(f"aux: unknown objective(s) {unknown}; known: {AUX_OBJECTIVES}")
    if "effect" not in names:
        raise ValueError("aux must include 'effect' (Digi-Q's objective); add others with '+'")
    return names


def inverse_dynamics_loss(
    enc: CriticEncoder, f_s: torch.Tensor, f_next: torch.Tensor, actions: Sequence[str], t: float
) -> torch.Tensor:
    """Which of the batch's actions took s_i to s'_i (Digi-Q's inverse dynamics objective), InfoNCE:
    -mean_i log exp(z_i . u_i / t) / sum_j exp(z_i . u_j / t) over j = i and every j whose action
    text differs from a_i (a repeated action is not a negative of itself)."""
    z = F.normalize(enc.inverse_head(torch.cat([f_s, f_next], dim=-1)), dim=-1)
    u = F.normalize(enc.proj_a(enc.state_features(actions)), dim=-1)
    logits = z @ u.T / t
    same = torch.tensor([[a == b for b in actions] for a in actions], device=logits.device)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(actions), device=logits.device))


def _cosine_lr(update: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the updates, then cosine decay to 0 (a factor)."""
    w = max(1, int(warmup * total))
    if update < w:
        return (update + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (update - w) / max(1, total - w)))


@torch.no_grad()
def effect_accuracy(enc: CriticEncoder, frame, batch: int = 32) -> dict[str, float]:
    """Accuracy (plain and balanced) of the effect head on ``frame``'s logged transitions."""
    if not len(frame):
        return {"acc": float("nan"), "balanced_acc": float("nan"), "positive_share": float("nan")}
    preds = []
    for i in range(0, len(frame), batch):
        part = frame.iloc[i : i + batch]
        f = enc.pair_features(list(part["state"]), list(part["action_text"]))
        preds.append((enc.effect_head(f).squeeze(-1) > 0).long())
    pred = torch.cat(preds).numpy()
    y = frame["effect_label"].to_numpy()
    recalls = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return {
        "acc": float((pred == y).mean()),
        "balanced_acc": float(np.mean(recalls)),
        "positive_share": float(y.mean()),
    }


def finetune_representation(
    config: DigiQConfig, run: TrainRun, frame, it: int, t_run: float
) -> tuple[CriticEncoder, dict[str, float], int]:
    """Phase 2: supervised fine-tuning of the critic encoder on the effect label (+ aux), on
    every labelled row of ``frame`` (trajectories and label probes)."""
    aux = _aux_names(config.aux)
    enc = load_critic_encoder(config)
    train = frame[~frame["heldout"]]
    held = frame[frame["heldout"]]
    if config.finetune_max_pairs:
        train = train.sample(n=min(len(train), config.finetune_max_pairs), random_state=config.seed)
    y_all = torch.tensor(train["effect_label"].to_numpy(), dtype=torch.float32)
    p = float(y_all.mean()) if len(y_all) else 0.5
    # balanced BCE: each label weighs 1/2 in total, whatever its share
    w_pos, w_neg = (
        (0.5 / max(p, 1e-6), 0.5 / max(1 - p, 1e-6)) if config.balance_classes else (1, 1)
    )
    if "inverse" in aux:
        enc.add_inverse_heads()
    heads = [m for n, m in enc.named_children() if n != "encoder"]
    opt = torch.optim.AdamW(
        [
            {"params": list(enc.encoder.parameters()), "lr": config.finetune_lr},
            {"params": [q for m in heads for q in m.parameters()], "lr": 20 * config.finetune_lr},
        ],
        weight_decay=0.01,
    )
    base = [g["lr"] for g in opt.param_groups]
    per_epoch = math.ceil(len(train) / config.finetune_batch_size)
    total = max(1, config.finetune_epochs * per_epoch)
    run.say(
        f"fine-tune: {len(train)} labelled transitions ({p:.2f} positive), {total} updates, "
        f"aux {'+'.join(aux)}, held out {len(held)}"
    )
    enc.train()
    losses: list[float] = []
    update = 0
    with run.progress(total, 0, "digiq fine-tune") as progress:
        for epoch in range(config.finetune_epochs):
            order = np.random.default_rng([config.seed, 21, epoch]).permutation(len(train))
            for b in range(0, len(order), config.finetune_batch_size):
                part = train.iloc[order[b : b + config.finetune_batch_size]]
                y = torch.tensor(part["effect_label"].to_numpy(), dtype=torch.float32)
                f_sa = enc.pair_features(list(part["state"]), list(part["action_text"]))
                # L_effect = -mean w_y [y log sigma(z) + (1 - y) log(1 - sigma(z))],  z = w . phi
                logit = enc.effect_head(f_sa).squeeze(-1)
                w = torch.where(y > 0.5, torch.tensor(w_pos), torch.tensor(w_neg))
                loss = (w * F.binary_cross_entropy_with_logits(logit, y, reduction="none")).mean()
                if {"next_state", "contrastive", "inverse"} & set(aux):
                    f_next = enc.state_features(list(part["next_state"]))
                if "next_state" in aux:
                    # L_next = mean || W phi(s, a) - sg(phi(s')) ||^2   (forward model in phi)
                    loss = loss + F.mse_loss(enc.next_head(f_sa), f_next.detach())
                if "contrastive" in aux:
                    # InfoNCE: -log exp(z_sa_i . z_s'_i / t) / sum_j exp(z_sa_i . z_s'_j / t)
                    z1 = F.normalize(enc.proj_sa(f_sa), dim=-1)
                    z2 = F.normalize(enc.proj_s(f_next), dim=-1)
                    logits = z1 @ z2.T / config.contrastive_temperature
                    loss = loss + F.cross_entropy(logits, torch.arange(len(part)))
                if "inverse" in aux:  # L_inv: a_i among the batch's actions, from (s_i, s'_i)
                    f_s = enc.state_features(list(part["state"]))
                    loss = loss + inverse_dynamics_loss(
                        enc, f_s, f_next, list(part["action_text"]), config.contrastive_temperature
                    )
                for g, lr in zip(opt.param_groups, base, strict=True):
                    g["lr"] = lr * _cosine_lr(update, total, config.finetune_warmup)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(enc.parameters(), config.grad_clip)
                opt.step()
                losses.append(loss.item())
                update += 1
                progress(1, f"loss {np.mean(losses[-20:]):.3f}")
                if update % config.log_every == 0 and update < total:
                    it += 1
                    _row(
                        run,
                        it,
                        t_run,
                        phase=2,
                        ft_update=update,
                        ft_loss=np.mean(losses[-config.log_every :]),
                        ft_lr=opt.param_groups[0]["lr"],
                    )
    enc.eval()
    acc = effect_accuracy(enc, held)
    it += 1
    _row(
        run,
        it,
        t_run,
        phase=2,
        ft_update=update,
        ft_loss=np.mean(losses[-config.log_every :]) if losses else None,
        ft_lr=opt.param_groups[0]["lr"],
        ft_heldout_acc=acc["acc"],
        ft_heldout_balanced_acc=acc["balanced_acc"],
        ft_heldout_positive_share=acc["positive_share"],
    )
    run.say(
        f"fine-tune: held-out effect accuracy {acc['acc']:.3f} (balanced "
        f"{acc['balanced_acc']:.3f}) on {len(held)} transitions, {acc['positive_share']:.2f} "
        "positive"
    )
    return enc, acc, it


# ==============================================================================================
# 3. Freeze and cache; TD on the cache
# ==============================================================================================


@dataclass
class FeatureCache:
    """phi(s) of each distinct state text and phi(s, a) of each distinct (state, action text),
    with the dataset's rows mapped onto them."""

    states: torch.Tensor  # (S, h)
    pairs: torch.Tensor  # (P, h)
    s_idx: np.ndarray  # row -> phi(s_t)
    s2_idx: np.ndarray  # row -> phi(s_{t+1})
    cand_idx: list[np.ndarray]  # row -> phi(s_t, a_k) of each candidate of its pool
    logged: np.ndarray  # row -> phi(s_t, a_t)
    key: str
    computed: int = 0  # texts encoded by this call (0: everything was read from disk)


def _index_frame(frame) -> tuple[list[str], list[tuple[str, str]], dict, dict]:
    state_ix: dict[str, int] = {}
    pair_ix: dict[tuple[str, str], int] = {}
    for s, s2, texts in zip(frame["state"], frame["next_state"], frame["cand_texts"], strict=True):
        state_ix.setdefault(s, len(state_ix))
        state_ix.setdefault(s2, len(state_ix))
        for a in texts:
            pair_ix.setdefault((s, a), len(pair_ix))
    return list(state_ix), list(pair_ix), state_ix, pair_ix


def _encode_shards(enc, items, folder: Path, prefix: str, batch: int, shard: int, progress) -> int:
    """Encode ``items`` (texts or (s, a) pairs) into ``folder/prefix-NNNNN.npy`` shards (float16),
    skipping the shards on disk; returns how many items were encoded."""
    done = 0
    for k in range(math.ceil(len(items) / shard)):
        path = folder / f"{prefix}-{k:05d}.npy"
        chunk = items[k * shard : (k + 1) * shard]
        if path.is_file():
            progress(len(chunk))
            continue
        out = np.zeros((len(chunk), enc.dim), dtype=np.float16)
        order = sorted(range(len(chunk)), key=lambda i: len(str(chunk[i])))  # less padding
        with torch.no_grad():
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                if prefix == "pairs":
                    f = enc.pair_features([chunk[i][0] for i in idx], [chunk[i][1] for i in idx])
                else:
                    f = enc.state_features([chunk[i] for i in idx])
                out[idx] = f.float().cpu().numpy().astype(np.float16)
                progress(len(idx))
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
        done += len(chunk)
    return done


def cache_features(
    enc: CriticEncoder,
    frame,
    data_hash: str,
    cache_root: Path,
    run: TrainRun | None = None,
    batch: int = 16,
    shard: int = 2048,
) -> FeatureCache:
    """Phase 3a: phi(s) and phi(s, a) of the dataset, each computed once with the frozen
    encoder and kept under ``cache_root/<key>`` (key: data hash + encoder digest + max length);
    what is on disk is read, never recomputed."""
    key = hashlib.sha256(
        f"{FORMAT}|{data_hash}|{enc.digest()}|{enc.max_length}".encode()
    ).hexdigest()[:24]
    folder = cache_root / key
    folder.mkdir(parents=True, exist_ok=True)
    states, pairs, state_ix, pair_ix = _index_frame(frame)
    _atomic_json(
        folder / "meta.json",
        {
            "data_sha256": data_hash,
            "encoder_digest": enc.digest(),
            "max_length": enc.max_length,
            "states": len(states),
            "pairs": len(pairs),
            "dim": enc.dim,
        },
    )
    total = len(states) + len(pairs)
    say = run.say if run is not None else (lambda m: None)
    t0 = time.perf_counter()
    computed = 0
    ctx = run.progress(total, 0, "digiq features") if run is not None else _no_progress()
    was = enc.training
    enc.eval()
    with ctx as progress:
        computed += _encode_shards(enc, states, folder, "states", batch * 2, shard, progress)
        computed += _encode_shards(enc, pairs, folder, "pairs", batch, shard, progress)
    enc.train(was)

    def load(prefix: str, n: int) -> torch.Tensor:
        files = sorted(folder.glob(f"{prefix}-*.npy"))
        arr = np.concatenate([np.load(f) for f in files]) if files else np.zeros((0, enc.dim))
        assert len(arr) == n, f"{folder}: {prefix} shards hold {len(arr)} rows, not {n}"
        return torch.from_numpy(arr.astype(np.float32))

    cache = FeatureCache(
        states=load("states", len(states)),
        pairs=load("pairs", len(pairs)),
        s_idx=np.array([state_ix[s] for s in frame["state"]]),
        s2_idx=np.array([state_ix[s] for s in frame["next_state"]]),
        cand_idx=[
            np.array([pair_ix[(s, a)] for a in texts])
            for s, texts in zip(frame["state"], frame["cand_texts"], strict=True)
        ],
        logged=np.array(
            [pair_ix[(s, a)] for s, a in zip(frame["state"], frame["action_text"], strict=True)]
        ),
        key=key,
        computed=computed,
    )
    say(
        f"features: {len(states)} states + {len(pairs)} (s, a) pairs in {folder} "
        f"({computed} encoded now, {total - computed} read; {time.perf_counter() - t0:.1f} s)"
    )
    return cache


class _no_progress:
    def __enter__(self):
        return lambda advance=1, info="": None

    def __exit__(self, *exc):
        return False


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    )


class CriticHeads(nn.Module):
    """Twin Q heads on phi(s, a) and twin V heads on phi(s): small MLPs, the only TD parameters
    in the frozen modes."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.dim, self.hidden = int(dim), int(hidden)
        self.q = nn.ModuleList([_mlp(dim, hidden) for _ in range(2)])
        self.v = nn.ModuleList([_mlp(dim, hidden) for _ in range(2)])

    def qs(self, f_sa: torch.Tensor) -> torch.Tensor:
        """(2, B): Q_1, Q_2."""
        return torch.stack([q(f_sa).squeeze(-1) for q in self.q])

    def vs(self, f_s: torch.Tensor) -> torch.Tensor:
        """(2, B): V_1, V_2."""
        return torch.stack([v(f_s).squeeze(-1) for v in self.v])


@torch.no_grad()
def td_targets(
    target: CriticHeads,
    f_sa: torch.Tensor,
    f_s2: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    v_target: str = "per_head",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD targets, both from the TARGET heads, each (2, B):

    y_Q_i = r + gamma (1 - done) Vbar_i(s')
    y_V_i = Qbar_i(s, a_data)            (v_target "per_head", Digi-Q's rule)
          = min_j Qbar_j(s, a_data)      (v_target "min")
    """
    y_q = reward + gamma * (1.0 - done) * target.vs(f_s2)
    q_bar = target.qs(f_sa)
    if v_target == "min":
        y_v = q_bar.min(0).values.expand_as(q_bar)
    elif v_target == "per_head":
        y_v = q_bar
    else:
        raise ValueError(f"v_target must be 'per_head' or 'min', not {v_target!r}")
    return y_q, y_v


def expectile_loss(v: torch.Tensor, target: torch.Tensor, expectile: float) -> torch.Tensor:
    """sum_i mean |k - 1[y_i - V_i < 0]| (V_i - y_i)^2 over the twin heads, (2, B) each.

    k = 0.5 is (half) Digi-Q's plain regression onto Qbar(s, a_data): V is the behaviour
    policy's value, and Best-of-N is one step of improvement over it. k > 0.5 is IQL's
    expectile (Kostrikov et al., 2022): V leans towards the best in-sample actions, so Q
    stops paying for the behaviour policy's exploration after the next step."""
    w = torch.abs(expectile - (target - v < 0).to(v.dtype))
    return (2.0 * w * (v - target) ** 2).mean(1).sum()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """thetabar <- (1 - tau) thetabar + tau theta, parameter by parameter."""
    for pt, p in zip(target.parameters(), online.parameters(), strict=True):
        pt.mul_(1.0 - tau).add_(p.detach(), alpha=tau)


def _td_batch(frame_arrays, idx):
    r, d = frame_arrays
    return torch.as_tensor(r[idx], dtype=torch.float32), torch.as_tensor(
        d[idx], dtype=torch.float32
    )


def train_td_on_cache(
    config: DigiQConfig, run: TrainRun, cache: FeatureCache, frame, it: int, t_run: float
) -> tuple[CriticHeads, dict[str, float], int]:
    """Phase 3b: twin Q and V heads by one-step TD on the cached features only (no encoder)."""
    torch.manual_seed(config.seed)
    heads = CriticHeads(cache.states.shape[1], config.head_hidden)
    target = copy.deepcopy(heads).requires_grad_(False)
    opt = torch.optim.Adam(heads.parameters(), lr=config.td_lr)
    rows = np.flatnonzero(~frame["heldout"].to_numpy())
    arrays = (frame["reward"].to_numpy(), frame["done"].to_numpy().astype(np.float32))
    gen = np.random.default_rng([config.seed, 31])
    lq, lv = [], []
    t0 = time.perf_counter()
    with run.progress(config.td_updates, 0, "digiq TD") as progress:
        for update in range(1, config.td_updates + 1):
            idx = rows[gen.integers(len(rows), size=min(config.td_batch_size, len(rows)))]
            f_sa = cache.pairs[cache.logged[idx]]
            f_s, f_s2 = cache.states[cache.s_idx[idx]], cache.states[cache.s2_idx[idx]]
            r, done = _td_batch(arrays, idx)
            y_q, y_v = td_targets(target, f_sa, f_s2, r, done, config.gamma, config.v_target)
            # L = sum_i mean (Q_i(s,a) - y_Q_i)^2 + mean (V_i(s) - y_V_i)^2
            loss_q = ((heads.qs(f_sa) - y_q) ** 2).mean(1).sum()
            loss_v = expectile_loss(heads.vs(f_s), y_v, config.v_expectile)
            opt.zero_grad(set_to_none=True)
            (loss_q + loss_v).backward()
            opt.step()
            polyak_update(target, heads, config.tau)
            lq.append(loss_q.item())
            lv.append(loss_v.item())
            if update % config.log_every == 0:
                progress(config.log_every, f"Q {np.mean(lq[-50:]):.4f} V {np.mean(lv[-50:]):.4f}")
            if update % (config.log_every * 10) == 0 and update < config.td_updates:
                it += 1
                _row(
                    run,
                    it,
                    t_run,
                    phase=3,
                    td_update=update,
                    td_loss_q=np.mean(lq[-50:]),
                    td_loss_v=np.mean(lv[-50:]),
                )
    rate = config.td_updates / max(time.perf_counter() - t0, 1e-9)
    return (
        heads,
        {
            "td_loss_q": float(np.mean(lq[-50:])),
            "td_loss_v": float(np.mean(lv[-50:])),
            "td_updates_per_s": rate,
        },
        it,
    )


def train_td_end_to_end(
    config: DigiQConfig, run: TrainRun, enc: CriticEncoder, frame, it: int, t_run: float
) -> tuple[CriticEncoder, CriticHeads, dict[str, float], int]:
    """critic_mode end_to_end: the same TD losses, the features computed by the trained encoder
    at every update; the target network is a copy of encoder AND heads, Polyak-averaged."""
    torch.manual_seed(config.seed)
    heads = CriticHeads(enc.dim, config.head_hidden)
    online = nn.ModuleDict({"enc": enc, "heads": heads})
    target = copy.deepcopy(online).requires_grad_(False)
    target.eval()
    enc.train()
    opt = torch.optim.Adam(
        [
            {"params": list(enc.encoder.parameters()), "lr": config.e2e_lr},
            {"params": list(heads.parameters()), "lr": config.td_lr},
        ]
    )
    rows = np.flatnonzero(~frame["heldout"].to_numpy())
    arrays = (frame["reward"].to_numpy(), frame["done"].to_numpy().astype(np.float32))
    gen = np.random.default_rng([config.seed, 32])
    lq, lv = [], []
    t0 = time.perf_counter()
    with run.progress(config.e2e_updates, 0, "digiq TD end-to-end") as progress:
        for update in range(1, config.e2e_updates + 1):
            idx = rows[gen.integers(len(rows), size=min(config.e2e_batch_size, len(rows)))]
            part = frame.iloc[idx]
            s, a, s2 = list(part["state"]), list(part["action_text"]), list(part["next_state"])
            f_sa, f_s = enc.pair_features(s, a), enc.state_features(s)
            with torch.no_grad():
                tf_sa = target["enc"].pair_features(s, a)
                tf_s2 = target["enc"].state_features(s2)
            r, done = _td_batch(arrays, idx)
            y_q, y_v = td_targets(
                target["heads"], tf_sa, tf_s2, r, done, config.gamma, config.v_target
            )
            loss_q = ((heads.qs(f_sa) - y_q) ** 2).mean(1).sum()
            loss_v = expectile_loss(heads.vs(f_s), y_v, config.v_expectile)
            opt.zero_grad(set_to_none=True)
            (loss_q + loss_v).backward()
            torch.nn.utils.clip_grad_norm_(online.parameters(), config.grad_clip)
            opt.step()
            polyak_update(target, online, config.tau)
            lq.append(loss_q.item())
            lv.append(loss_v.item())
            progress(1, f"Q {np.mean(lq[-20:]):.4f} V {np.mean(lv[-20:]):.4f}")
            if update % config.log_every == 0 and update < config.e2e_updates:
                it += 1
                _row(
                    run,
                    it,
                    t_run,
                    phase=3,
                    td_update=update,
                    td_loss_q=np.mean(lq[-20:]),
                    td_loss_v=np.mean(lv[-20:]),
                )
    rate = config.e2e_updates / max(time.perf_counter() - t0, 1e-9)
    enc.eval()
    return (
        enc,
        heads,
        {
            "td_loss_q": float(np.mean(lq[-20:])),
            "td_loss_v": float(np.mean(lv[-20:])),
            "td_updates_per_s": rate,
        },
        it,
    )


@torch.no_grad()
def critic_values(heads: CriticHeads, cache: FeatureCache) -> tuple[list[np.ndarray], np.ndarray]:
    """Q(s, a_k) = min_i Q_i for each row's candidates, and V(s) = min_i V_i of each row."""
    q_all = heads.qs(cache.pairs).min(0).values.numpy() if len(cache.pairs) else np.zeros(0)
    v_states = heads.vs(cache.states).min(0).values.numpy()
    return [q_all[ix] for ix in cache.cand_idx], v_states[cache.s_idx]


# ==============================================================================================
# 4. Best-of-N policy extraction
# ==============================================================================================


def best_of_n(
    q: Sequence[float], v: float, playable: Sequence[bool], threshold: float
) -> tuple[int, float, bool]:
    """a* = argmax_k A(s, a_k), A = Q - V, among the playable candidates; kept when
    A(s, a*) > threshold. Returns (k*, A(s, a*), kept); k* = -1 when none is playable."""
    adv = np.asarray(q, dtype=np.float64) - float(v)
    ok = np.asarray(playable, dtype=bool)
    if not ok.any():
        return -1, float("nan"), False
    k = int(np.flatnonzero(ok)[np.argmax(adv[ok])])
    return k, float(adv[k]), bool(adv[k] > threshold)


def extraction_set(frame, q_rows, v_rows, threshold: float) -> list[tuple[int, int, float]]:
    """(row, index of a* among the POLICY's candidates, A(s, a*)) for every kept training state."""
    out = []
    heldout = frame["heldout"].to_numpy()
    for i, (pidx, q, v) in enumerate(zip(frame["cand_policy_index"], q_rows, v_rows, strict=True)):
        if heldout[i]:
            continue
        k, a_star, kept = best_of_n(q, v, [p >= 0 for p in pidx], threshold)
        if kept:
            out.append((i, int(pidx[k]), a_star))
    return out


def _policy_candidates(row) -> Candidates:
    return Candidates(
        list(row["policy_actions"]),
        list(row["policy_texts"]),
        [list(f) for f in row["policy_features"]],
    )


def validate(policy: ScorerPolicy, config: DigiQConfig) -> dict[str, float]:
    """Greedy play of ``policy`` on the first ``val_tasks`` validation tasks."""
    from webgym_agents.toolkit.onpolicy import split_task_ids

    if config.val_tasks <= 0:
        return {}
    t0 = time.perf_counter()
    ids = split_task_ids("validation")[: config.val_tasks]
    ro = collect_rollouts(
        policy,
        ids,
        split="validation",
        n_envs=config.n_envs,
        seed=config.seed,
        temperature=0.0,
        max_steps=config.max_steps,
    )
    stats = rollout_stats(ro)
    return {
        "val_score": stats["score"],
        "val_success_rate": stats["success_rate"],
        "val_s": time.perf_counter() - t0,
    }


def extract_policy(
    config: DigiQConfig, run: TrainRun, frame, chosen, it: int, t_run: float
) -> tuple[ScorerPolicy, int, dict[str, float]]:
    """Phase 4: filtered BC of the scorer on a*: L = -mean_s w_s log pi(a* | s), w_s = 1[A > thr]
    (only the kept states are in the minibatches: w_s = 1 there); with ``extract_anchor`` lambda
    > 0, each minibatch also draws as many states that were NOT kept and adds
    -lambda mean log pi(a_b | s) on the behaviour's own action there (a_b not explored), so that
    the policy stays the behaviour's wherever the critic is not confident. Returns the policy,
    the metrics iteration and its greedy validation figures."""
    from webgym_agents.toolkit.losses import nll

    anchors: list[tuple[int, int]] = []  # (row, index of a_b among the policy's candidates)
    if config.extract_anchor > 0:
        kept_rows = {i for i, _, _ in chosen}
        for i, r in enumerate(frame.itertuples()):
            actions = list(r.policy_actions)
            if not (r.heldout or r.explored or i in kept_rows) and r.action in actions:
                anchors.append((i, actions.index(r.action)))
        run.say(
            f"extraction: behaviour anchor (lambda {config.extract_anchor}) on "
            f"{len(anchors)} states"
        )
    policy = _behaviour(config)
    if not config.train_encoder:
        policy.encoder.requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.extract_lr, weight_decay=0.0)
    gen = np.random.default_rng([config.seed, 41])
    val: dict[str, float] = {}
    total = config.extract_epochs * math.ceil(len(chosen) / config.extract_batch_size)
    with run.progress(max(1, total), 0, "digiq extraction") as progress:
        for epoch in range(1, config.extract_epochs + 1):
            losses = []
            order = gen.permutation(len(chosen))
            for b in range(0, len(order), config.extract_batch_size):
                batch = [chosen[j] for j in order[b : b + config.extract_batch_size]]
                rows = [frame.iloc[i] for i, _, _ in batch]
                logp = policy.logprobs(
                    [r["state"] for r in rows],
                    [_policy_candidates(r) for r in rows],
                    [k for _, k, _ in batch],
                )
                loss = nll(logp)  # -mean log pi(a* | s) over the kept states
                if anchors:  # -lambda mean log pi(a_b | s) over as many states not kept
                    pick = [anchors[j] for j in gen.integers(len(anchors), size=len(batch))]
                    arows = [frame.iloc[i] for i, _ in pick]
                    alogp = policy.logprobs(
                        [r["state"] for r in arows],
                        [_policy_candidates(r) for r in arows],
                        [k for _, k in pick],
                    )
                    loss = loss + config.extract_anchor * nll(alogp)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                losses.append(loss.item())
                progress(1, f"loss {np.mean(losses[-20:]):.3f}")
            it += 1
            row = {"extract_epoch": epoch, "bc_loss": float(np.mean(losses)) if losses else None}
            if epoch == config.extract_epochs:
                val = validate(policy, config)
                row |= {k: v for k, v in val.items() if k != "val_s"}
            _row(run, it, t_run, phase=4, threshold=config.threshold, **row)
            run.say(
                f"extraction epoch {epoch}: filtered-BC loss {row['bc_loss']}"
                + (f", val Score {row['val_score']:.1f}" if "val_score" in row else "")
            )
    policy.eval()
    return policy, it, val


# ==============================================================================================
# Checkpoints of the critic
# ==============================================================================================


def _save_critic(path: Path, heads: CriticHeads, info: dict[str, Any]) -> None:
    torch.save(
        {"heads": heads.state_dict(), "dim": heads.dim, "hidden": heads.hidden, "info": info}, path
    )


def load_critic(checkpoint: str | Path) -> tuple[CriticHeads, dict[str, Any]]:
    """The twin Q/V heads of a digiq checkpoint and what they were trained on (data hash,
    encoder, options)."""
    blob = torch.load(Path(checkpoint) / CRITIC_FILE, weights_only=False)
    heads = CriticHeads(blob["dim"], blob["hidden"])
    heads.load_state_dict(blob["heads"])
    return heads.eval(), blob["info"]


def _row(run: TrainRun, it: int, t_run: float, **values: Any) -> None:
    row = dict.fromkeys(METRICS)
    unknown = set(values) - set(METRICS)
    assert not unknown, f"metrics {unknown} are not columns of metrics.csv"
    row.update(
        {
            k: (float(v) if isinstance(v, (np.floating, np.integer)) else v)
            for k, v in values.items()
        }
    )
    row["iteration"], row["elapsed_s"] = it, time.perf_counter() - t_run
    run.log_metrics(row)


# ==============================================================================================
# The algorithm
# ==============================================================================================


def train_digiq(config: DigiQConfig, run: TrainRun) -> Path:
    from webgym_agents.models.threads import configure_torch_threads

    configure_torch_threads(config.torch_threads or None)
    if config.critic_mode not in CRITIC_MODES:
        raise ValueError(f"critic_mode must be one of {CRITIC_MODES}, not {config.critic_mode!r}")
    if config.critic_mode == "finetune_freeze":
        _aux_names(config.aux)  # fail before collecting, not after
    thresholds = list(config.threshold_sweep) or [config.threshold]
    if len(thresholds) > 1 and config.val_tasks <= 0:
        raise ValueError("threshold_sweep chooses on validation: it needs val_tasks > 0")
    torch.manual_seed(config.seed)
    t_run = time.perf_counter()
    it = run.restore()
    state = run.trainer_state() or {}
    phase_done = int(state.get("phase_done", 0)) if it else 0
    options = {
        k: getattr(config, k)
        for k in (
            "critic_mode",
            "aux",
            "threshold",
            "gamma",
            "tau",
            "v_target",
            "n_candidates",
            "explore_eps",
        )
    }

    def checkpoint(phase: int, extra: dict[str, Any], write=None) -> None:
        state.update(extra, phase_done=phase)
        run.save_checkpoint(
            it,
            write or (lambda folder: None),
            state=dict(state),
            metadata={
                "phase_done": phase,
                "data_sha256": state.get("data_hash"),
                **state,
                "options": options,
            },
        )

    # 1. offline data -------------------------------------------------------------------------
    path, data_hash = collect_offline_data(config, run)
    labelled = load_transitions(path)  # trajectories + label probes: the effect label's data
    frame = trajectories(labelled)  # everything else learns from pi_b's trajectories only
    balance = label_balance(labelled)
    say_balance(run, balance, config)
    if state.get("data_hash") not in (None, data_hash):
        raise RuntimeError(
            f"{run.dir}: the data changed since the checkpoint "
            f"({state['data_hash'][:16]} there, {data_hash[:16]} now)"
        )
    if phase_done < 1:
        episodes = frame.drop_duplicates("episode")
        it += 1
        _row(
            run,
            it,
            t_run,
            phase=1,
            episodes=len(episodes),
            transitions=len(frame),
            data_score=float(episodes["episode_reward"].mean() * 100),
            data_success_rate=float((episodes["episode_reward"] == 1.0).mean()),
            positive_share=balance["all"]["positive_share"],
        )
        checkpoint(1, {"data_hash": data_hash, "data_path": str(path)})
        phase_done = 1

    # 2. representation fine-tuning (finetune_freeze only) -----------------------------------
    encoder_dir = Path(state["encoder_dir"]) if state.get("encoder_dir") else None
    if config.critic_encoder:  # another run's fine-tuned encoder: phase 2 is not redone
        if config.critic_mode != "finetune_freeze":
            raise ValueError("critic_encoder is a fine-tuned encoder: critic_mode finetune_freeze")
        encoder_dir = Path(config.critic_encoder)
        if not encoder_dir.is_dir():
            raise FileNotFoundError(f"critic_encoder {encoder_dir} is not a folder")
    ft_acc: dict[str, float] = {}
    if config.critic_mode == "finetune_freeze" and phase_done < 2 and not config.critic_encoder:
        enc, ft_acc, it = finetune_representation(config, run, labelled, it, t_run)
        digest = enc.digest()
        encoder_dir = enc.save_encoder(
            run.dir / "critic" / f"encoder-{digest[:16]}",
            {"digest": digest, "aux": config.aux, "heldout": ft_acc},
        )
        checkpoint(
            2, {"encoder_dir": str(encoder_dir), "encoder_digest": digest, "finetune": ft_acc}
        )
        phase_done = 2
    else:
        ft_acc = state.get("finetune", {})
    enc = load_critic_encoder(config, encoder_dir)  # off-the-shelf unless fine-tuned

    # 3. freeze (or not) and TD ---------------------------------------------------------------
    t_phase = time.perf_counter()
    if config.critic_mode == "end_to_end":
        if phase_done < 3:
            enc, heads, td, it = train_td_end_to_end(config, run, enc, frame, it, t_run)
            digest = enc.digest()
            encoder_dir = enc.save_encoder(
                run.dir / "critic" / f"encoder-{digest[:16]}",
                {"digest": digest, "trained_by": "end_to_end TD"},
            )
            state["encoder_dir"] = str(encoder_dir)
        enc.requires_grad_(False)
    else:
        enc.requires_grad_(False)  # frozen: no backbone parameter ever gets a gradient below
    cache = cache_features(
        enc, frame, data_hash, run.dir / "cache", run, batch=config.feature_batch_size
    )
    if phase_done < 3:
        it += 1
        _row(
            run,
            it,
            t_run,
            phase=3,
            cache_pairs=len(cache.pairs),
            cache_states=len(cache.states),
            cache_s=time.perf_counter() - t_phase,
        )
        if config.critic_mode != "end_to_end":
            heads, td, it = train_td_on_cache(config, run, cache, frame, it, t_run)
        else:  # the same run times TD on the cache too: the price of training through Enc
            probe = replace(config, td_updates=200, log_every=10**9)
            _, cached_td, _ = train_td_on_cache(probe, run, cache, frame, it, t_run)
            td["cached_td_updates_per_s"] = cached_td["td_updates_per_s"]
            td["cached_speedup"] = cached_td["td_updates_per_s"] / td["td_updates_per_s"]
            run.say(
                f"TD updates/s: {td['td_updates_per_s']:.2f} end to end, "
                f"{cached_td['td_updates_per_s']:.0f} on the cache "
                f"({td['cached_speedup']:.0f}x)"
            )
        report = critic_report(heads, cache, frame, critic_values(heads, cache), probe=True)
        report |= {
            "critic_mode": config.critic_mode,
            **td,
            "finetune": ft_acc,
            "label_balance": balance,
            "data_sha256": data_hash,
            "cache_key": cache.key,
        }
        write_report(run.dir / "diagnostics.json", report)
        it += 1
        _row(
            run,
            it,
            t_run,
            phase=3,
            td_update=config.td_updates
            if config.critic_mode != "end_to_end"
            else config.e2e_updates,
            td_loss_q=td["td_loss_q"],
            td_loss_v=td["td_loss_v"],
            q_mean=report["q_mean"],
            v_mean=report["v_mean"],
            td_updates_per_s=td["td_updates_per_s"],
            v_mc_mse=report["v_mc_mse_heldout"],
            action_sensitivity=report["action_sensitivity"],
            probe_acc=report["probe_acc"],
        )
        run.say(
            f"critic: V MSE vs MC (held out) {report['v_mc_mse_heldout']:.4f}, action "
            f"sensitivity {report['action_sensitivity']:.4f}, effect probe "
            f"{report['probe_acc']:.3f}, {td['td_updates_per_s']:.1f} TD updates/s"
        )
        critic_info = {
            "data_sha256": data_hash,
            "encoder_digest": enc.digest(),
            "encoder_dir": str(encoder_dir) if encoder_dir else None,
            "critic_backbone": config.critic_backbone,
            **options,
        }
        state["critic_info"] = critic_info
        checkpoint(
            3, {"td": td}, lambda folder: _save_critic(folder / CRITIC_FILE, heads, critic_info)
        )
        phase_done = 3
    else:
        heads, _ = load_critic(run.latest_checkpoint())

    # 4. Best-of-N extraction: one policy per threshold of the sweep, the best on validation ----
    if phase_done < 4:
        q_rows, v_rows = critic_values(heads, cache)
        n_train = int((~frame["heldout"]).sum())
        it += 1
        bc_val = validate(_behaviour(config), config)  # the behaviour's: the sweep's yardstick
        _row(
            run,
            it,
            t_run,
            phase=4,
            extract_epoch=0,
            **{k: v for k, v in bc_val.items() if k != "val_s"},
        )
        sweep: list[dict[str, Any]] = []
        best: tuple[dict[str, Any], ScorerPolicy] | None = None
        for threshold in thresholds:
            chosen = extraction_set(frame, q_rows, v_rows, threshold)
            adv = float(np.mean([a for _, _, a in chosen])) if chosen else float("nan")
            logged = [
                frame.iloc[i]["policy_actions"][k] == frame.iloc[i]["action"] for i, k, _ in chosen
            ]
            run.say(
                f"Best-of-N: {len(chosen)}/{n_train} training states kept (A(s, a*) > "
                f"{threshold}), mean A* {adv:.4f}, a* = logged action in "
                f"{np.mean(logged) if logged else float('nan'):.2f} of them"
            )
            entry = {
                "threshold": threshold,
                "kept_states": len(chosen),
                "kept_share": len(chosen) / max(1, n_train),
                "adv_star_mean": adv,
            }
            it += 1
            _row(
                run,
                it,
                t_run,
                phase=4,
                extract_epoch=0,
                **{k: v for k, v in entry.items() if k != "kept_states"},
            )
            cfg = replace(config, threshold=threshold)
            policy, it, val = extract_policy(cfg, run, frame, chosen, it, t_run)
            entry |= {k: v for k, v in val.items() if k != "val_s"}
            sweep.append(entry)
            if best is None or entry.get("val_score", 0.0) > best[0].get("val_score", 0.0):
                best = (entry, policy)
        assert best is not None
        entry, policy = best
        if len(sweep) > 1:
            run.say(
                "threshold sweep (validation Score; bc "
                f"{bc_val.get('val_score', float('nan')):.1f}): "
                + ", ".join(
                    f"{e['threshold']}: {e.get('val_score', float('nan')):.1f}" for e in sweep
                )
                + f"; kept threshold {entry['threshold']}"
            )
        options["threshold"] = entry["threshold"]
        critic_info = state.get("critic_info", {})
        meta = {
            "trained_by": "digiq",
            "data_sha256": data_hash,
            "critic": critic_info,
            "options": options,
            "kept_states": entry["kept_states"],
            "threshold_sweep": sweep,
            "config": config_to_dict(config),
        }

        def write(folder: Path) -> None:
            policy.save(folder, metadata=meta)
            _save_critic(folder / CRITIC_FILE, heads, critic_info)

        checkpoint(
            4,
            {
                "kept_states": entry["kept_states"],
                "kept_share": entry["kept_share"],
                "threshold": entry["threshold"],
                "threshold_sweep": sweep,
                "val_bc": bc_val.get("val_score"),
            },
            write,
        )
    run.say(f"digiq: done in {time.perf_counter() - t_run:.0f} s (this call)")
    return run.latest_path


TRAINER = TrainerInfo(
    "digiq",
    train_digiq,
    PRESETS,
    description="Digi-Q: effect-label fine-tuned critic, frozen features, TD, Best-of-N extraction",
)


def ranking_diagnostics(
    run_dir: str | Path, *, rank_states: int = 40, pool_sizes: Sequence[int] = (2, 4, 8, 16)
) -> dict[str, Any]:
    """A finished digiq run's ``diagnostics.json`` plus its ranking accuracy (the forks' outcomes
    shared through the data folder), written back; the features are read from the run's cache."""
    from webgym_agents.toolkit.training import override_config

    run_dir = Path(run_dir)
    cfg = override_config(
        DigiQConfig(), json.loads((run_dir / "config.json").read_text())["config"]
    )
    latest = run_dir / "checkpoints" / "latest"
    meta = json.loads((latest / "training.json").read_text())
    heads, info = load_critic(latest)
    data_path = Path(meta["data_path"])
    frame = trajectories(load_transitions(data_path))
    enc = load_critic_encoder(cfg, info.get("encoder_dir")).requires_grad_(False)
    cache = cache_features(enc, frame, info["data_sha256"], run_dir / "cache")
    q_rows, _ = critic_values(heads, cache)
    report = json.loads((run_dir / "diagnostics.json").read_text())
    report |= {"cache_recomputed": cache.computed}
    if rank_states > 0:
        report |= ranking_accuracy(
            frame,
            q_rows,
            _behaviour(cfg),
            n_states=rank_states,
            pool_sizes=pool_sizes,
            gamma=cfg.gamma,
            max_steps=cfg.max_steps,
            seed=cfg.seed,
            outcomes_path=data_path.parent / f"fork_outcomes-{rank_states}.json",
        )
    write_report(run_dir / "diagnostics.json", report)
    return report
