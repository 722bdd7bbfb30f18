"""Digi-Q's config, presets and metrics, and the helpers every phase shares (the behaviour
scorer, a metrics row): the bottom of the package.

Imports ``webgym_agents.policies``, ``webgym_agents.shipped`` and the toolkit's training
config; never another module of this package (they all import it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from webgym.runs import atomic_write_json
from webgym_agents.policies.scorer_policy import (
    ScorerPolicy,
    read_info,
)
from webgym_agents.shipped import resolve_checkpoint
from webgym_agents.toolkit.training import CommonConfig, TrainRun

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
    # back probes: for this share of the episodes, one of its product pages (where it did not go
    # back) played again from a fork with "< Prev" first and the behaviour after; unlike the
    # label probes these are trajectories (TD, extraction): the data then hold both "buy here"
    # and "go back from here" on the same pages, which greedy bc never does
    back_probes: float = 0.0
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
    # the objective Q and V learn: r' = score_weight * r + success_bonus * 1[r = 1] (the
    # on-policy learners' objective; with r alone, buying a product that lacks a named option
    # still earns 0.6-0.8, so going back rarely pays)
    score_weight: float = 1.0
    success_bonus: float = 0.0
    # the critic reads the scorer's structural features next to phi: Q's input is
    # [phi(s, a), features(a)] and V's [phi(s), max over the state's candidates of features]
    # (``buy_mismatch``/``back_mismatch`` say whether the page offers the instruction's options)
    critic_features: bool = False
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
    # twin U heads, the behaviour's value (U -> Qbar(s, a_data), plain MSE), that Best-of-N's
    # A = Q - U subtracts, so that V can be an upper expectile for Q's backup (multi-step
    # improvement: going back pays only if the policy after it goes back again) while the
    # filter still measures the improvement over the behaviour
    behaviour_v: bool = False
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
    # > 0: a* only among candidates of a kind (item, option, buy_now, search, navigation,
    # detail_tab) the data took in at least this share of the turns on the same page type
    # (BCQ's support constraint; extract.extraction_set): 0 = every playable candidate
    support_share: float = 0.0
    extract_epochs: int = 2
    extract_batch_size: int = 32
    extract_lr: float = 3e-3
    extract_feature_lr: float | None = None  # the scorer's linear feature path; None: extract_lr
    train_encoder: bool = False  # False: only the scorer's heads learn (the cheap option)
    grad_clip: float = 1.0
    val_tasks: int = 50  # greedy validation episodes before and after extraction
    # policy iteration: round k + 1 plays phases 1, 3 and 4 again with round k's extracted policy
    # as the behaviour (its data in OUT/round-(k+1)/; the encoder stays round 1's) and extracts
    # from that policy. One round is Digi-Q's one step of improvement over the data's
    # continuation: going back is worth only what the behaviour does after it, and bc after
    # "< Prev" buys the next result whatever it offers; round 2's behaviour goes back itself
    rounds: int = 1
    # V's expectile in the rounds after the first (None: v_expectile). Round 1's behaviour (bc)
    # never goes back, so its V needs an upper expectile for going back to pay; a later round's
    # behaviour goes back itself. Measured: 0.5 and 0.6 in round 2 extracted worse policies
    # than the preset's 0.7 (docs/results.md, "What did not work")
    later_v_expectile: float | None = None
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
    # 2-core CPU, one thread, ~25 min alone (docs/results.md, "Digi-Q on the probe recipe"):
    # greedy bc with one uniform click per episode (explore one_step: the data's continuations
    # are bc's) and, in half the episodes, a "< Prev" back probe forked at one of their product
    # pages, so the data hold both "buy here" and "go back from here"; Q learns the success
    # indicator on [phi, the scorer's features] (buy_mismatch tells a page that lacks a named
    # option); V is the 0.7 expectile (going back pays only if the policy after it goes back
    # again: the plain in-sample V valued it at 0.013 over buying), U the behaviour's value that
    # Best-of-N subtracts; a* only among the kinds the data took in >= 5 % of a page type's
    # turns (the detail tabs, clicked only by the exploration, were the argmax at 1,156 of 1,222
    # mismatching pages); the threshold chosen on 100 validation tasks, in SR. Two rounds
    # (~60 min): round 1's policy clicks the options of a page that lacks one before it goes
    # back, and values going back by bc's continuation; round 2, on its data, goes back at once
    # (test SR 24.8 -> 30.8 %, docs/results.md)
    "cpu": DigiQConfig(
        torch_threads=1, eval_episodes=100, val_tasks=100, explore="one_step", n_episodes=1000,
        temperature=0.0, back_probes=0.5, score_weight=0.0, success_bonus=1.0,
        critic_features=True, n_candidates=8, v_expectile=0.7, behaviour_v=True,
        support_share=0.05, threshold=0.1, threshold_sweep=(0.1, 0.05, 0.02),
        extract_feature_lr=3e-2, extract_epochs=4, rounds=2,
        # 2 label probes per state triple the labelled rows: fine-tune on 3,000 of them (the
        # greedy-data run's 5,716 logged transitions took 20 min)
        finetune_max_pairs=3000,
    ),
    "gpu": DigiQConfig(
        device="cuda", behaviour_checkpoint="trained:bc/scorer-gpu",
        n_episodes=6000, n_envs=32, finetune_epochs=3, finetune_batch_size=64,
        feature_batch_size=256, td_updates=20000, e2e_updates=2000, e2e_batch_size=32,
        extract_epochs=4, train_encoder=True, extract_lr=5e-5, val_tasks=250, eval_episodes=250,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "scorer-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer),
the same across trainers."""

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
# Shared by the phases
# ==============================================================================================


def behaviour_scorer(config: DigiQConfig) -> ScorerPolicy:
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


def with_objective(frame, config: DigiQConfig):
    """The trajectories with ``reward`` and ``mc_return`` in the config's objective,
    r' = score_weight * r + success_bonus * 1[r = 1] (the env's r kept as ``env_reward``):
    what TD and the critic's diagnostics read. The identity at the defaults (1, 0)."""
    if (config.score_weight, config.success_bonus) == (1.0, 0.0):
        return frame
    frame = frame.copy()

    def objective(r):
        r = np.asarray(r, dtype=np.float64)
        return config.score_weight * r + config.success_bonus * (r == 1.0)

    frame["env_reward"] = frame["reward"]
    frame["reward"] = objective(frame["reward"])
    steps_after = frame["episode_len"].to_numpy() - 1 - frame["t"].to_numpy()
    frame["mc_return"] = objective(frame["episode_reward"]) * config.gamma**steps_after
    return frame


def metrics_row(run: TrainRun, it: int, t_run: float, **values: Any) -> None:
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


def atomic_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data, default=str)
