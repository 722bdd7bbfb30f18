"""``digiq``: Digi-Q (Bai et al., 2025): fine-tune a critic's representation, freeze it, learn
Q and V by TD on cached features, then extract a policy by Best-of-N (the Digi-Q paper).

    1. offline data   D = {(s, a, r, s', done, y, candidates)}: the behaviour policy plays train
                      tasks; pi_b(a|s) = (1 - eps) softmax_k(f_bc(s, a_k) / T)
                                         + eps Uniform(clickable_actions(s))
                      (+ back_probes: a share of episodes forked at a product page with
                      "< Prev" first and pi_b after, as trajectories of their own)
                      y = 1[d(s, s') >= eps_d]   (the env's info["action_effect"]["label"])
    2. fine-tune      phi = Enc(s [SEP] a), mean-pooled;  min_phi BCE(sigma(w . phi(s, a)), y)
                      (+ the aux objectives named in ``aux``), AdamW, cosine schedule
    3. freeze, cache  phi(s, a) for every candidate of every state and phi(s) for every state,
                      computed ONCE; then on the cache only (twin heads, targets by Polyak):
                      Q_i(s, a) -> r + gamma (1 - done) Vbar_i(s')
                      V_i(s)    -> Qbar_i(s, a_data)            (in-sample: no max over actions;
                                   an upper expectile with v_expectile > 0.5, as IQL)
                      U_i(s)    -> Qbar_i(s, a_data), plain MSE  (behaviour_v: the behaviour's
                                   value, what step 4 subtracts)
                      thetabar <- (1 - tau) thetabar + tau theta      (every update)
                      r = score_weight r + success_bonus 1[r = 1]; critic_features appends the
                      scorer's features to phi(s, a) (and their max over candidates to phi(s))
    4. Best-of-N      A(s, a_k) = min_i Q_i(s, a_k) - min_i U_i(s) over the state's N candidates
                      (U = V without behaviour_v); a* = argmax_k A among the kinds of action the
                      data took in >= support_share of the page type's turns (BCQ's support);
                      L(pi) = -mean_s 1[A(s, a*) > threshold] log pi(a* | s)
                      (extract_anchor lambda > 0: - lambda mean log pi(a_b | s), s not kept)
                      threshold_sweep: one extraction per threshold, the best on validation
    rounds            rounds > 1, policy iteration: round k + 1 repeats 1, 3 and 4 with
                      pi_b = round k's extracted policy (the same exploration and back probes)
                      and extracts from it; the encoder stays round 1's (V's expectile:
                      later_v_expectile when set)

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
    OUT/extracted-policy/               with rounds > 1: round 1's policy, round 2's behaviour
    OUT/round-K/                        round K's data/, cache/ (and extracted-policy/ but the last)
    checkpoints/step-N/                 after each phase; the last holds the extracted policy (a
                                        scorer-policy checkpoint) and ``digiq_critic.pt`` (heads)

A run resumes phase by phase (a phase interrupted is redone, except collection, which keeps its
finished parts). ``data`` points a run at another run's data (``OUT/data``): the three
``critic_mode`` runs of ``webgym-bench ablate digiq`` share one dataset.

The package, bottom to top (each module imports only those above it in this list):
``config`` (config, presets, metrics, shared helpers), ``data`` (phase 1), ``encoder``
(phase 2), ``critic`` (phase 3), ``extract`` (phase 4), ``train`` (``PHASES``, the list of
the four, and ``TRAINER``). This face hands their public names on.

Imports webgym_agents and webgym; never webgym_benchmarks or webgym_leaderboards, nor another
algorithm.
"""

from webgym_agents.algos.digiq.config import (
    AUX_OBJECTIVES,
    CRITIC_FILE,
    CRITIC_MODES,
    DATA_FILE,
    PRESETS,
    DigiQConfig,
    behaviour_scorer,
)
from webgym_agents.algos.digiq.critic import (
    CriticHeads,
    FeatureCache,
    cache_features,
    critic_values,
    expectile_loss,
    load_critic,
    polyak_update,
    save_critic,
    td_targets,
    train_td_end_to_end,
    train_td_on_cache,
)
from webgym_agents.algos.digiq.data import (
    BehaviourPolicy,
    clickable_actions,
    collect_offline_data,
    critic_action_text,
    label_balance,
    load_transitions,
    nodes_by_bid,
    page_type,
    probes_of,
    trajectories,
    transitions_of,
)
from webgym_agents.algos.digiq.encoder import (
    CriticEncoder,
    effect_accuracy,
    finetune_representation,
    inverse_dynamics_loss,
    load_critic_encoder,
)
from webgym_agents.algos.digiq.extract import best_of_n, extract_policy, extraction_set, validate
from webgym_agents.algos.digiq.train import PHASES, TRAINER, ranking_diagnostics, train_digiq

__all__ = [
    "AUX_OBJECTIVES",
    "CRITIC_FILE",
    "CRITIC_MODES",
    "DATA_FILE",
    "PHASES",
    "PRESETS",
    "TRAINER",
    "BehaviourPolicy",
    "CriticEncoder",
    "CriticHeads",
    "DigiQConfig",
    "FeatureCache",
    "behaviour_scorer",
    "best_of_n",
    "cache_features",
    "clickable_actions",
    "collect_offline_data",
    "critic_action_text",
    "critic_values",
    "effect_accuracy",
    "expectile_loss",
    "extract_policy",
    "extraction_set",
    "finetune_representation",
    "inverse_dynamics_loss",
    "label_balance",
    "load_critic",
    "load_critic_encoder",
    "load_transitions",
    "nodes_by_bid",
    "page_type",
    "polyak_update",
    "probes_of",
    "ranking_diagnostics",
    "save_critic",
    "td_targets",
    "train_digiq",
    "train_td_end_to_end",
    "train_td_on_cache",
    "trajectories",
    "transitions_of",
    "validate",
]
