"""Digi-Q's phase 4: Best-of-N policy extraction, A(s, a_k) = min_i Q_i - min_i V_i over a
state's candidates, and filtered behaviour cloning of the scorer on the states that clear the
threshold; greedy validation.

Imports this package's config and data; never the critic module (it takes the critic's
values as arrays) or the trainer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from webgym_agents.algos.digiq.config import DigiQConfig, behaviour_scorer, metrics_row
from webgym_agents.policies.scorer_inputs import FEATURES
from webgym_agents.policies.scorer_policy import (
    Candidates,
    ScorerPolicy,
)
from webgym_agents.toolkit.losses import nll
from webgym_agents.toolkit.onpolicy import split_task_ids
from webgym_agents.toolkit.rollouts import collect_rollouts, rollout_stats
from webgym_agents.toolkit.training import TrainRun
from webgym_agents.toolkit.updates import adamw

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


ACTION_KINDS = FEATURES[: FEATURES.index("detail_tab") + 1]
"""The kinds of a scorer candidate: its one-hot structural features, the first of FEATURES
(item, option, buy_now, search, navigation, detail_tab); "other" for none."""


def _kinds(row) -> list[str]:
    """The kind of each of a row's policy candidates (ACTION_KINDS, from its features); a
    navigation candidate is its own kind (``< Prev``, Back to Search and ``Next >`` lead to
    different pages)."""
    kinds = [
        next((k for k, x in zip(ACTION_KINDS, f, strict=False) if x), "other")
        for f in row["policy_features"]
    ]
    return [
        a if k == "navigation" else k for a, k in zip(row["policy_actions"], kinds, strict=True)
    ]


def action_support(frame) -> dict[tuple[str, str], float]:
    """The share of the training turns on each page type whose logged action is of each kind:
    the behaviour's (bc's, the probes' and the explorations') action distribution per page
    type, at the granularity of action kinds."""
    counts: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for _, row in frame[~frame["heldout"].to_numpy(bool)].iterrows():
        actions = list(row["policy_actions"])
        kind = _kinds(row)[actions.index(row["action"])] if row["action"] in actions else "other"
        counts[row["page_type"], kind] = counts.get((row["page_type"], kind), 0) + 1
        totals[row["page_type"]] = totals.get(row["page_type"], 0) + 1
    return {key: n / totals[key[0]] for key, n in counts.items()}


def extraction_set(
    frame, q_rows, v_rows, threshold: float, support_share: float = 0.0
) -> list[tuple[int, int, float]]:
    """(row, index of a* among the POLICY's candidates, A(s, a*)) for every kept training state.

    ``support_share`` > 0: a* only among the candidates whose kind the data took in at least
    that share of the turns on the same page type (:func:`action_support`; BCQ's support
    constraint, Fujimoto et al., 2019): Q of a kind the behaviour almost never takes (a detail
    tab, which only the uniform exploration clicks) is extrapolated, and an argmax over it
    picks the critic's errors."""
    support = action_support(frame) if support_share > 0 else {}
    out = []
    heldout = frame["heldout"].to_numpy()
    for i, (pidx, q, v) in enumerate(zip(frame["cand_policy_index"], q_rows, v_rows, strict=True)):
        if heldout[i]:
            continue
        playable = [p >= 0 for p in pidx]
        if support:
            row = frame.iloc[i]
            kinds = _kinds(row)
            playable = [
                p >= 0 and support.get((row["page_type"], kinds[p]), 0.0) >= support_share
                for p in pidx
            ]
        k, a_star, kept = best_of_n(q, v, playable, threshold)
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
    policy = behaviour_scorer(config)
    if not config.train_encoder:
        policy.encoder.requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = adamw(
        policy, SimpleNamespace(lr=config.extract_lr, feature_lr=config.extract_feature_lr,
                                weight_decay=0.0),
    )  # fmt: skip
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
            metrics_row(run, it, t_run, phase=4, threshold=config.threshold, **row)
            run.say(
                f"extraction epoch {epoch}: filtered-BC loss {row['bc_loss']}"
                + (f", val Score {row['val_score']:.1f}" if "val_score" in row else "")
            )
    policy.eval()
    return policy, it, val
