"""Diagnostics of a Q/V critic on an offline dataset, the measurements ``webgym-bench ablate
digiq`` compares across the three critic modes of the Digi-Q paper (Bai et al., 2025):

- **effect probe**: a linear probe (logistic regression) of the env's action-effect label on the
  features phi(s, a_data), trained on the training tasks, accuracy on the held-out ones; for the
  off-the-shelf features of ``frozen`` it is the only effect predictor there is;
- **action sensitivity**: mean over states of max_k Q(s, a_k) - min_k Q(s, a_k) over the state's
  candidates (the action-blindness Digi-Q reports: Q collapsing to V gives 0);
- **V against Monte Carlo**: mean (V(s_t) - G_t)^2, G_t = gamma^(T-1-t) R, on held-out tasks
  (V is the behaviour policy's value: in-sample TD estimates exactly that);
- **ranking accuracy** (:func:`ranking_accuracy`): on held-out states rebuilt in the env, each
  candidate's outcome is measured by a fork (snapshot, the candidate, then the greedy rollout
  policy to the end: G = gamma^k R); among random pools of 2/4/8/16 candidates, the share where
  argmax Q has the pool's best outcome (a chance baseline beside it).

Pure functions of the critic's values (Q(s, a) per candidate, V(s), arrays) and the dataset,
whichever critic made them, except the ranking, which plays the env (its rollouts are the
toolkit's). Imports numpy and the toolkit; never an algorithm (Digi-Q's critic included).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from webgym.runs import atomic_write_json

__all__ = [
    "action_sensitivity",
    "calibration",
    "critic_report",
    "explained_variance",
    "effect_probe",
    "play_out",
    "pool_accuracy",
    "ranking_accuracy",
    "v_mc_error",
    "write_report",
]


def action_sensitivity(q_rows: Sequence[np.ndarray]) -> float:
    """mean_s (max_k Q(s, a_k) - min_k Q(s, a_k)) over the states with >= 2 candidates."""
    spreads = [float(q.max() - q.min()) for q in q_rows if len(q) >= 2]
    return float(np.mean(spreads)) if spreads else float("nan")


def v_mc_error(v: np.ndarray, mc: np.ndarray) -> float:
    """mean (V(s_t) - G_t)^2."""
    return float(np.mean((np.asarray(v) - np.asarray(mc)) ** 2)) if len(v) else float("nan")


def effect_probe(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """A logistic-regression probe of the effect label on ``features``: fitted on the rows
    ``train``, scored (accuracy, balanced accuracy) on the others."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    test = ~train
    nan = {"probe_acc": float("nan"), "probe_balanced_acc": float("nan")}
    if train.sum() < 2 or test.sum() < 1 or len(np.unique(labels[train])) < 2:
        return nan
    scaler = StandardScaler().fit(features[train])
    probe = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    probe.fit(scaler.transform(features[train]), labels[train])
    pred = probe.predict(scaler.transform(features[test]))
    y = labels[test]
    recalls = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return {"probe_acc": float((pred == y).mean()), "probe_balanced_acc": float(np.mean(recalls))}


def critic_report(
    frame,
    q_rows: Sequence[np.ndarray],
    v: np.ndarray,
    q_logged: np.ndarray,
    *,
    features: np.ndarray | None = None,
) -> dict[str, Any]:
    """The cheap diagnostics of a trained critic (module docstring), from its values on the
    dataset ``frame`` (one row per state, with ``heldout``, ``mc_return``, ``effect_label``):
    ``q_rows[i]`` = Q(s_i, a_k) over state i's candidates, ``v[i]`` = V(s_i), ``q_logged[i]`` =
    Q(s_i, a_data). ``features`` (phi(s_i, a_data) per row): the effect probe's input; None: no
    probe. The critic itself is none of this module's business: any Q and V will do."""
    v = np.asarray(v)
    q_logged = np.asarray(q_logged)
    held = frame["heldout"].to_numpy()
    mc = frame["mc_return"].to_numpy()
    out: dict[str, Any] = {
        "q_mean": float(q_logged.mean()) if len(q_logged) else float("nan"),
        "v_mean": float(v.mean()) if len(v) else float("nan"),
        "v_mc_mse_heldout": v_mc_error(v[held], mc[held]),
        "v_mc_mse_train": v_mc_error(v[~held], mc[~held]),
        "q_mc_mse_heldout": v_mc_error(q_logged[held], mc[held]),
        "action_sensitivity": action_sensitivity(
            [q for q, h in zip(q_rows, held, strict=True) if h] or q_rows
        ),
        "action_sensitivity_train": action_sensitivity(
            [q for q, h in zip(q_rows, held, strict=True) if not h]
        ),
        "states": int(len(frame)),
        "heldout_states": int(held.sum()),
    }
    if features is not None:
        out |= effect_probe(features, frame["effect_label"].to_numpy(), ~held)
    else:
        out |= {"probe_acc": float("nan"), "probe_balanced_acc": float("nan")}
    return out


def write_report(path: Path, report: dict[str, Any]) -> None:
    atomic_write_json(path, report, default=float)


def play_out(env, policy, obs, max_steps: int) -> tuple[float, int]:
    """Greedy play from ``obs`` to the end: (reward, steps taken)."""
    steps = 0
    while True:
        action = policy.decide_batch([obs], temperature=0.0)[0].action
        obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        if terminated or truncated or steps >= max_steps:
            return float(reward), steps


def ranking_accuracy(
    frame,
    q_rows: Sequence[np.ndarray],
    policy,
    *,
    n_states: int = 40,
    pool_sizes: Sequence[int] = (2, 4, 8, 16),
    gamma: float = 0.95,
    max_steps: int = 15,
    draws: int = 20,
    seed: int = 0,
    outcomes_path: Path | None = None,
) -> dict[str, Any]:
    """Ranking accuracy of argmax Q against forked Monte Carlo outcomes (module docstring).

    For up to ``n_states`` held-out states (those with the most candidates first), the episode
    is re-played to s_t in the text env, snapshotted, and every candidate a_k is played from the
    snapshot followed by ``policy`` at temperature 0: G_k = gamma^(steps - 1) R. For each pool
    size m,
    ``draws`` random pools of m candidates per state (states with >= m); correct when argmax Q
    over the pool has the pool's maximal G. ``chance`` is the same share for a uniform pick.
    The forks' outcomes depend on the data only (a deterministic env and greedy policy): with
    ``outcomes_path`` they are kept there (JSON, by episode and t) and read by the next critic.
    """
    # on use only: the env (and a browser's imports) are no part of the cheap diagnostics
    from webgym_agents.toolkit.rollouts import make_env

    rng = np.random.default_rng([seed, 51])
    held = np.flatnonzero(frame["heldout"].to_numpy())
    held = sorted(held, key=lambda i: (-len(frame.iloc[i]["cand_actions"]), i))[:n_states]
    env = make_env("train", sorted({frame.iloc[i]["task_id"] for i in held}), max_steps=max_steps)
    outcomes: list[tuple[np.ndarray, np.ndarray]] = []
    known: dict[str, list[float]] = {}
    if outcomes_path is not None and Path(outcomes_path).is_file():
        known = json.loads(Path(outcomes_path).read_text())
    try:
        for i in held:
            row = frame.iloc[i]
            key = f"{row['episode']}/{row['t']}"
            if key in known:
                outcomes.append((np.asarray(q_rows[i], dtype=float), np.asarray(known[key])))
                continue
            ep = frame[frame["episode"] == row["episode"]].sort_values("t")
            env.reset(seed=int(row["seed"]), options={"task_id": row["task_id"]})
            for a in ep["action"].iloc[: int(row["t"])]:
                env.step(a)
            core = env.unwrapped  # the forks count their steps themselves (no TimeLimit)
            snap = core.snapshot()
            g = []
            left = max_steps - int(row["t"]) - 1  # steps the episode had after the candidate
            for a in row["cand_actions"]:
                core.restore(snap)
                obs, reward, terminated, truncated, _ = core.step(a)
                steps = 1
                if not (terminated or truncated) and left > 0:
                    reward, more = play_out(core, policy, obs, left)
                    steps += more
                elif not terminated:
                    reward = 0.0
                g.append(float(reward) * gamma ** (steps - 1))
            outcomes.append((np.asarray(q_rows[i], dtype=float), np.asarray(g)))
            known[key] = g
    finally:
        env.close()
    if outcomes_path is not None:
        write_report(Path(outcomes_path), known)
    return {"rank_states": len(outcomes)} | pool_accuracy(outcomes, pool_sizes, draws, rng)


def pool_accuracy(
    outcomes: Sequence[tuple[np.ndarray, np.ndarray]],
    pool_sizes: Sequence[int],
    draws: int,
    rng: np.random.Generator,
    *,
    informative_only: bool = False,
) -> dict[str, Any]:
    """Per pool size m: over ``draws`` random pools of m candidates of each (q, g) state with
    >= m candidates, the share where argmax q has the pool's best outcome g (``rank_acc_m``),
    the same share for a uniform pick (``rank_chance_m``) and the number of pools.
    ``informative_only``: pools whose outcomes are all equal (any pick is best) are skipped."""
    out: dict[str, Any] = {}
    for m in pool_sizes:
        hits, chance, n = 0.0, 0.0, 0
        for q, g in outcomes:
            if len(q) < m:
                continue
            for _ in range(draws):
                pool = rng.choice(len(q), size=m, replace=False)
                best = g[pool].max()
                if informative_only and g[pool].min() == best:
                    continue
                hits += float(g[pool[int(np.argmax(q[pool]))]] == best)
                chance += float((g[pool] == best).mean())
                n += 1
        out[f"rank_acc_{m}"] = hits / n if n else float("nan")
        out[f"rank_chance_{m}"] = chance / n if n else float("nan")
        out[f"rank_pools_{m}"] = n
    return out


def explained_variance(v: Any, mc: Any, undefined: float = float("nan")) -> float:
    """1 - Var(G - V) / Var(G): 1 for a perfect V, 0 for a constant at the mean, < 0 worse;
    ``undefined`` where the returns do not vary. Arrays or tensors."""
    mc, v = np.asarray(mc, dtype=np.float64), np.asarray(v, dtype=np.float64)
    var = float(np.var(mc))
    return 1.0 - float(np.var(mc - v)) / var if var > 0 else undefined


def calibration(v: np.ndarray, mc: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability of V as a probability of the return: V clipped to [0, 1] in ``bins``
    equal-width bins; per bin the mean V, the mean G and the count; ECE = sum_b n_b / N |mean V
    - mean G| over the non-empty bins."""
    v = np.clip(np.asarray(v, dtype=float), 0.0, 1.0)
    mc = np.asarray(mc, dtype=float)
    which = np.minimum((v * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            rows.append((float(v[sel].mean()), float(mc[sel].mean()), int(sel.sum())))
    n = max(1, len(v))
    ece = sum(c * abs(pv - pg) for pv, pg, c in rows) / n if rows else float("nan")
    return {"ece": float(ece), "bins": rows}
