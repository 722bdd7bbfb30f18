"""Digi-Q's phase 1, the offline data: the behaviour policy (the bc scorer mixed with
exploration) plays train tasks; each transition (s, a, r, s', done, effect label, candidates)
and each label probe is stored as parquet (webgym_agents/algos/digiq/__init__.py says how).

Imports this package's config only, and the toolkit's rollouts; never the critic, the
extraction or the trainer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym.runs import atomic_path, sha256_file
from webgym_agents.algos.digiq.config import (
    DATA_FILE,
    EXPLORE_MODES,
    FORMAT,
    DigiQConfig,
    atomic_json,
    behaviour_scorer,
)
from webgym_agents.observation import axtree_nodes
from webgym_agents.policies.scorer_policy import (
    Candidates,
    ScorerPolicy,
    candidates,
    state_text,
)
from webgym_agents.toolkit.onpolicy import back_probe_forks, split_task_ids
from webgym_agents.toolkit.rollouts import Rollout, collect_rollouts, make_env, rollout_stats
from webgym_agents.toolkit.training import TrainRun

log = logging.getLogger(__name__)


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


def nodes_by_bid(obs: dict[str, Any]) -> dict[str, tuple[str, str]]:
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
    def decide_batch(self, observations, *, temperature: float = 1.0, rng=None, forced=None):
        """``forced[i]``: an action taken instead of a drawn one (a back probe's ``< Prev``),
        logged as explored (it is not the behaviour's own choice)."""
        rng = rng if rng is not None else np.random.default_rng()
        states = [state_text(o, self.max_steps) for o in observations]
        cands = [candidates(o, self.max_steps) for o in observations]
        scores = self.scorer.scores(states, cands)
        forced = forced if forced is not None else [None] * len(observations)
        out = []
        for obs, s, c, f, force in zip(observations, states, cands, scores, forced, strict=True):
            probs = torch.softmax(f.double() / max(temperature, 1e-6), 0).numpy()
            probs = probs / probs.sum()
            clicks = clickable_actions(obs)
            eps = self.eps_at(obs) if clicks else 0.0
            explored = bool(clicks) and rng.random() < eps
            if force is not None:
                if force not in c.actions:
                    raise ValueError(f"forced action {force!r} is not a candidate of its page")
                k = c.actions.index(force)
                out.append(
                    BehaviourDecision(force, s, c, k, 0.0, float(temperature), True, probs.tolist())
                )
                continue
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
        nodes = nodes_by_bid(turn.obs)
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
                "back_probe": False,
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
        nodes = nodes_by_bid(turn.obs)
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
                    "back_probe": False,
                }
            )
    return rows


def trajectories(frame):
    """The dataset's trajectory rows (TD, extraction, diagnostics), label probes left out, with a
    fresh positional index; a dataset from before the probes is returned as it is."""
    if "probe" not in frame:
        return frame
    return frame[~frame["probe"].to_numpy(bool)].reset_index(drop=True)


def back_probe_rows(frame) -> np.ndarray:
    """A mask of the rows that belong to back probes (all False for data made before them)."""
    if "back_probe" not in frame:
        return np.zeros(len(frame), bool)
    return frame["back_probe"].to_numpy(bool)


def _back_probe_rows(
    config: DigiQConfig,
    behaviour: BehaviourPolicy,
    rollouts: list[Rollout],
    part: int,
    per: int,
    heldout: set[str],
    gen: np.random.Generator,
) -> list[dict[str, Any]]:
    """The back probes of one part's rollouts (``config.back_probes``) as dataset rows: each
    forked at one product page (``onpolicy.back_probe_forks``), ``< Prev`` first and pi_b after,
    its turns rows of their own episode (numbered after the plan's: n_episodes + part * per + j)
    with ``back_probe`` True."""
    if config.back_probes <= 0:
        return []
    rng = np.random.default_rng([config.seed, 17, part])
    index = {id(r): j for j, r in enumerate(rollouts)}
    picks = back_probe_forks(rollouts, config.back_probes, rng)
    if not picks:
        return []
    forks = collect_rollouts(
        behaviour,
        [r.task_id for r, _ in picks],
        n_envs=config.n_envs,
        seed=int(rng.integers(2**31)),
        temperature=config.temperature,
        rng=rng,
        max_steps=config.max_steps,
        mode=config.collect_mode,
        starts=[r.turns[t].snapshot for r, t in picks],
        start_actions=[[x.action for x in r.turns[:t]] for r, t in picks],
        first_actions=["click('prev')"] * len(picks),
    )
    rows = []
    for (origin, _), fork in zip(picks, forks, strict=True):
        if fork.valid:
            episode = config.n_episodes + part * per + index[id(origin)]
            for row in transitions_of(fork, episode, config, fork.task_id in heldout, gen):
                rows.append(row | {"back_probe": True})
    return rows


def _atomic_parquet(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


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
    facts = {"format": FORMAT, **{k: getattr(config, k) for k in keys}}
    if config.back_probes:  # only when used: datasets made before the option stay valid
        facts["back_probes"] = config.back_probes
    return facts


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


def collect_offline_data(
    config: DigiQConfig, run: TrainRun, folder: Path | None = None
) -> tuple[Path, str]:
    """Phase 1: the dataset's parquet and its SHA-256, collected into ``folder`` (default
    ``OUT/data``; resumable: finished parts are kept, a part interrupted is played again from its
    start) or, with ``config.data``, another run's, checked against its ``data.json``."""
    import pandas as pd

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

    folder = folder or run.dir / "data"
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
    atomic_json(facts_path, facts)

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
    scorer = behaviour_scorer(config)
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
                snapshots=config.effect_probes > 0 or config.back_probes > 0,
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
            backs = _back_probe_rows(config, behaviour, rollouts, k, per, heldout, gen)
            stats = rollout_stats(rollouts)
            _atomic_parquet(pd.DataFrame(rows + backs + probes), part)
            run.log(
                f"data part {k + 1}/{n_parts}: {len(rows)} transitions + {len(backs)} of back "
                f"probes + {len(probes)} label probes, score {stats['score']:.1f}, "
                f"{int(stats['errored'])} errored"
            )
            progress(1, f"score {stats['score']:.1f}")
    frame = pd.concat(
        [pd.read_parquet(parts_dir / f"part-{k:05d}.parquet") for k in range(n_parts)],
        ignore_index=True,
    )
    _atomic_parquet(frame, path)
    digest = sha256_file(path)
    balance = label_balance(frame)
    atomic_json(folder / "label_balance.json", balance)
    n_probes = len(frame) - len(trajectories(frame))
    frame = trajectories(frame)
    back = back_probe_rows(frame)
    episodes = frame[~back].drop_duplicates("episode")
    back_episodes = frame[back].drop_duplicates("episode")
    atomic_json(
        meta_path,
        {
            "sha256": digest,
            "facts": facts,
            "transitions": len(frame),
            "label_probes": n_probes,
            "episodes": len(episodes),
            "score": float(episodes["episode_reward"].mean() * 100),
            "success_rate": float((episodes["episode_reward"] == 1.0).mean()),
            "back_probe_episodes": len(back_episodes),
            "back_probe_success_rate": float((back_episodes["episode_reward"] == 1.0).mean())
            if len(back_episodes)
            else None,
            "collect_s": time.perf_counter() - t0,
            "behaviour": f"{config.behaviour_checkpoint or 'a fresh scorer'} at temperature "
            f"{config.temperature}, {_explore_words(config)}",
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
