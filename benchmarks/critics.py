"""``webgym-bench critics``: every value estimator the project has, measured on the same episodes.

    1. held-out trajectories: the first ``tasks`` tasks of each split (test, ood), G rollouts a
       task from the identical start, played by one policy (the ``bc`` scorer) at temperature
       T; every turn keeps its env snapshot and, through POISE's FeatureTap, the features of
       the acting forward pass. G_t = gamma^(T-1-t) R is each turn's Monte Carlo return.
    2. ranking states: the first ``rank_states`` turns with >= 2 candidates (most candidates
       first); every candidate a_k is played from the turn's snapshot, then the same policy
       greedily to the end: its outcome g_k = gamma^(steps-1) R, and s'_k, r_k, its snapshot.
    3. each estimator gives V(s_t) on every turn and, where it can rank, a value per candidate
       of each ranking state: its own Q(s, a_k) (digiq: ``native``) or one step of lookahead,
       r_k if a_k ends the episode else V(s'_k) (``lookahead``; gamma 1). The ranking pools
       hold the candidates that continue the episode: a lookahead scores one that ends it by
       the env's own reward, which no critic earns (Buy Now would always rank right).
    4. per (split, estimator): MSE of V against G_t and explained variance, calibration (ECE
       and a reliability plot, V read as P(success)), ranking accuracy of argmax among random
       pools of 2/4/8/16 candidates against the forked outcomes (chance beside it; pools whose
       outcomes are all equal are skipped: any pick would be right), action
       sensitivity (mean spread of the candidate values), and the compute per estimate
       (seconds, and env steps for the estimators that play).

The estimators (an estimator needs its checkpoint, ``--checkpoint KIND=DIR``):

- ``group-mean`` (GRPO's empirical baseline): V = the mean final reward of the task's other
  G - 1 rollouts (leave-one-out, so it never sees the rollout it is scored on). No ranking.
- ``vine-forks`` (VinePPO): V(s_t) = mean final reward of K forks from the turn's snapshot,
  played by the policy at T; lookahead from K forks of each s'_k.
- ``reinforce`` / ``archer`` (a :class:`ScorerCritic` in ``DIR/critic``, reading what its run's
  ``critic_input`` says): V(s) from the state text.
- ``poise`` (the probe in ``DIR/probe``): b = probe(features of the task's OTHER rollout),
  the same for every turn of a rollout, as POISE uses it. No ranking.
- ``digiq`` (the twin Q/V heads and critic encoder of a digiq checkpoint): V = min_i V_i(s),
  native Q = min_i Q_i(s, a_k).
- ``genac`` (a generative critic checkpoint, agents/algos/genac.py): V = its k/10.

Every phase is cached in OUT (trajectories, forks, each estimator's values by its checkpoint),
so a re-run resumes or adds an estimator without redoing the others; ``critics.csv``,
``critics.json`` (calibration bins included), ``reliability-<split>.png`` and ``critics.png``.
Imports webgym_agents and webgym; the ``webgym-bench critics`` command is in benchmarks/cli.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from webgym_agents.toolkit.critic_diagnostics import (
    action_sensitivity,
    calibration,
    explained_variance,
    pool_accuracy,
    v_mc_error,
    write_report,
)

__all__ = [
    "ESTIMATOR_KINDS",
    "Estimate",
    "ReportConfig",
    "collect_trajectories",
    "fork_candidates",
    "leave_one_out_means",
    "make_estimator",
    "report_rows",
    "run_report",
]

POOL_SIZES = (2, 4, 8, 16)
ESTIMATOR_KINDS = ("reinforce", "archer", "poise", "digiq", "genac")
COLUMNS = (
    "split", "estimator", "q_kind", "n", "v_mean", "mc_mean", "mse", "explained_variance",
    "ece", "rank_acc_2", "rank_acc_4", "rank_acc_8", "rank_acc_16", "rank_chance_2",
    "rank_chance_4", "rank_chance_8", "rank_chance_16", "rank_states", "action_sensitivity",
    "seconds_per_estimate", "env_steps_per_estimate",
)  # fmt: skip


@dataclass
class ReportConfig:
    policy: str = "runs/bc-scorer-cpu/checkpoints/latest"  # plays the trajectories and forks
    splits: tuple[str, ...] = ("test", "ood")
    tasks: int = 50  # the first N tasks of each split
    group_size: int = 2  # G rollouts a task (>= 2: group-mean and poise need a sibling)
    temperature: float = 0.5  # the learners' sampling temperature
    k_forks: int = 4  # VinePPO's K (0: no vine-forks estimator)
    rank_states: int = 30  # ranking states per split (0: no ranking)
    gamma: float = 1.0  # of the MC returns and the forked outcomes
    seed: int = 0
    n_envs: int = 8
    max_steps: int = 15
    draws: int = 20  # random pools per state and pool size
    checkpoints: dict[str, str] = field(default_factory=dict)  # kind -> checkpoint dir


@dataclass
class Estimate:
    """What one estimator gives on one split's trajectories."""

    values: np.ndarray  # V(s_t) per turn row (NaN where it has none)
    seconds: float  # compute spent on ``values``
    env_steps: float = 0.0  # env steps spent on ``values`` (forks, sibling episodes)
    q_rows: list[np.ndarray] | None = None  # per ranking state, a value per candidate
    q_kind: str = ""  # "native" (its own Q), "lookahead" (r or V(s')), "" (no ranking)


# --------------------------------------------------------------------------------------------
# 1. Held-out trajectories
# --------------------------------------------------------------------------------------------


def _policy(path: str):
    from webgym_agents.policies.scorer_policy import ScorerPolicy
    from webgym_agents.release import resolve_checkpoint

    policy = ScorerPolicy.load(resolve_checkpoint(path))  # a folder, or released:bc
    return policy.eval()


def collect_trajectories(policy, split: str, config: ReportConfig, path: Path):
    """One row per turn of the first ``config.tasks`` tasks of ``split``, G rollouts each, cached
    at ``path`` (Parquet). Errored rollouts are dropped with their siblings' group intact."""
    import pandas as pd

    if path.is_file():
        return pd.read_parquet(path)
    from webgym_agents.algos.poise import FeatureTap, rollout_features
    from webgym_agents.toolkit.onpolicy import split_task_ids
    from webgym_agents.toolkit.rollouts import collect_rollouts

    tasks = split_task_ids(split)[: config.tasks]
    t0 = time.perf_counter()
    rollouts = collect_rollouts(
        FeatureTap(policy), tasks, split=split, group_size=config.group_size,
        n_envs=config.n_envs, seed=config.seed, temperature=config.temperature,
        rng=np.random.default_rng([config.seed, 71]), max_steps=config.max_steps,
        snapshots=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    steps = sum(len(r.turns) for r in rollouts)
    rows = []
    for episode, r in enumerate(rollouts):
        if not r.valid:
            continue
        x = rollout_features(r)
        n = len(r.turns)
        for t, turn in enumerate(r.turns):
            d = turn.decision
            nxt = r.final_obs if t == n - 1 else r.turns[t + 1].obs
            rows.append({
                "split": split, "task_id": r.task_id, "seed": r.seed, "group": r.group,
                "episode": episode, "t": t, "turns": n, "reward": float(r.reward),
                "mc_return": float(r.reward) * config.gamma ** (n - 1 - t),
                "state": d.state, "action": d.action,
                "cand_actions": list(d.candidates.actions), "cand_texts": list(d.candidates.texts),
                "obs": json.dumps(turn.obs, default=str),
                "next_obs": json.dumps(nxt or {}, default=str),
                "snapshot": json.dumps(turn.snapshot), "poise_x": x.tolist(),
                "step_seconds": seconds / max(1, steps),
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp)
    tmp.replace(path)
    return frame


def ranking_rows(frame, n: int) -> list[int]:
    """The first ``n`` turns with >= 2 candidates, most candidates first (row order breaks ties)."""
    sizes = frame["cand_actions"].map(len).to_numpy() if len(frame) else np.zeros(0)
    order = sorted(np.flatnonzero(sizes >= 2), key=lambda i: (-sizes[i], i))
    return [int(i) for i in order[:n]]


def fork_candidates(frame, policy, split: str, config: ReportConfig, path: Path) -> list[dict]:
    """For each ranking row: every candidate played from the row's snapshot, then ``policy``
    greedily to the end. Per candidate: r (the step's reward), done, s' (observation and
    snapshot) and the outcome g = gamma^(steps-1) R. Cached at ``path`` (JSON)."""
    if path.is_file():
        return json.loads(path.read_text())
    from webgym_agents.toolkit.critic_diagnostics import play_out
    from webgym_agents.toolkit.rollouts import kept_observation, make_env

    picked = ranking_rows(frame, config.rank_states)
    out = []
    if picked:
        env = make_env(split, sorted({frame.iloc[i]["task_id"] for i in picked}),
                       max_steps=config.max_steps)  # fmt: skip
        try:
            for i in picked:
                row = frame.iloc[i]
                env.reset(seed=int(row["seed"]), options={"task_id": row["task_id"]})
                core = env.unwrapped  # forks count their own steps (no TimeLimit)
                snap = json.loads(row["snapshot"])
                left = config.max_steps - int(row["t"]) - 1
                cands = []
                for a in row["cand_actions"]:
                    core.restore(snap)
                    obs, r, terminated, truncated, _ = core.step(a)
                    done = bool(terminated or truncated)
                    after = None if done else core.snapshot()
                    g, steps = float(r), 1
                    if not done and left > 0:
                        g, more = play_out(core, policy, obs, left)
                        steps += more
                    elif not terminated:
                        g = 0.0
                    cands.append({
                        "action": a, "r": float(r), "done": done,
                        "next_obs": kept_observation(obs, False), "next_snapshot": after,
                        "g": g * config.gamma ** (steps - 1),
                    })  # fmt: skip
                out.append({"row": i, "candidates": cands})
        finally:
            env.close()
    write_report(path, out)  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------------------------
# 3. The estimators
# --------------------------------------------------------------------------------------------


def leave_one_out_means(frame) -> np.ndarray:
    """Per row: the mean final reward of the OTHER rollouts of the row's task (NaN alone)."""
    ep = frame.groupby("episode").agg(task=("task_id", "first"), r=("reward", "first"))
    by_task = ep.groupby("task")["r"].agg(["sum", "count"])
    s = by_task.loc[ep["task"], "sum"].to_numpy() - ep["r"].to_numpy()
    c = by_task.loc[ep["task"], "count"].to_numpy() - 1
    loo = dict(zip(ep.index, np.where(c > 0, s / np.maximum(c, 1), np.nan), strict=True))
    return frame["episode"].map(loo).to_numpy(dtype=float)


def _lookahead(ranked: list[dict], value_of: Callable[[list[dict]], np.ndarray]) -> list:
    """Q(s, a_k) = r_k if a_k ends the episode, else V(s'_k) (gamma 1), for each ranking state;
    ``value_of`` maps a list of candidate records to their V(s')."""
    live = [c for st in ranked for c in st["candidates"] if not c["done"]]
    v = iter(value_of(live) if live else [])
    return [np.array([c["r"] if c["done"] else float(next(v)) for c in st["candidates"]])
            for st in ranked]  # fmt: skip


class GroupMean:
    name = "group-mean (grpo)"

    def estimate(self, frame, ranked, ctx) -> Estimate:
        t0 = time.perf_counter()
        values = leave_one_out_means(frame)
        # what the baseline costs is its sibling episodes: G - 1 of them per estimate
        ep = frame.groupby("episode")["turns"].first()
        steps = float(ep.mean()) * (ctx.config.group_size - 1)
        step_s = float(frame["step_seconds"].iloc[0]) if len(frame) else 0.0
        return Estimate(values, time.perf_counter() - t0 + steps * step_s * len(frame), steps)


class VineForks:
    def __init__(self, k: int):
        self.k = k
        self.name = f"vine-forks K={k} (vineppo)"

    def _fork_means(self, snapshots: list[dict], ctx) -> tuple[np.ndarray, int]:
        from webgym_agents.algos.vineppo import fork_values
        from webgym_agents.toolkit.rollouts import collect_rollouts

        if not snapshots:
            return np.zeros(0), 0
        forks = collect_rollouts(
            ctx.policy, [s["task_id"] for s in snapshots], split=ctx.split, group_size=self.k,
            n_envs=ctx.config.n_envs, seed=ctx.config.seed, temperature=ctx.config.temperature,
            rng=np.random.default_rng([ctx.config.seed, 73]), max_steps=ctx.config.max_steps,
            starts=snapshots,
        )  # fmt: skip
        return fork_values(forks, self.k).numpy(), sum(len(f.turns) for f in forks)

    def estimate(self, frame, ranked, ctx) -> Estimate:
        t0 = time.perf_counter()
        values, steps = self._fork_means([json.loads(s) for s in frame["snapshot"]], ctx)
        seconds = time.perf_counter() - t0
        q = _lookahead(
            ranked, lambda cs: self._fork_means([c["next_snapshot"] for c in cs], ctx)[0]
        )
        return Estimate(values, seconds, steps / max(1, len(frame)), q, "lookahead")


class ScorerCriticValues:
    """An archer or reinforce checkpoint's :class:`ScorerCritic`."""

    def __init__(self, kind: str, checkpoint: str):
        from webgym_agents.policies.scorer_policy import ScorerCritic

        self.name = f"{kind} critic"
        self.critic = ScorerCritic.load(Path(checkpoint) / "critic").eval()
        run_config = Path(checkpoint).resolve().parent.parent / "config.json"
        cfg = json.loads(run_config.read_text()).get("config", {}) if run_config.is_file() else {}
        self.facts = cfg.get("critic_input", "state") == "facts"
        self.max_steps = int(cfg.get("max_steps", 15))

    def _texts(self, observations: Sequence[dict]) -> list[str]:
        from webgym_agents.policies.scorer_policy import critic_state_text, state_text

        text = critic_state_text if self.facts else state_text
        return [text(o, self.max_steps) for o in observations]

    def _values(self, observations: Sequence[dict]) -> np.ndarray:
        from webgym_agents.toolkit.onpolicy import critic_values

        return critic_values(self.critic, self._texts(observations)).numpy()

    def estimate(self, frame, ranked, ctx) -> Estimate:
        t0 = time.perf_counter()
        values = self._values([json.loads(o) for o in frame["obs"]])
        seconds = time.perf_counter() - t0
        q = _lookahead(ranked, lambda cs: self._values([c["next_obs"] for c in cs]))
        return Estimate(values, seconds, 0.0, q, "lookahead")


class PoiseProbe:
    """POISE's probe on the OTHER rollout of the same task (its cross-rollout baseline)."""

    def __init__(self, checkpoint: str):
        from webgym_agents.algos.poise import PROBE_DIR, Probe

        path = Path(checkpoint) / PROBE_DIR / "probe.npz"
        if not path.is_file():
            raise ValueError(f"{checkpoint} has no fitted POISE probe ({path})")
        self.name, self.probe = "poise probe", Probe.load(path)

    def estimate(self, frame, ranked, ctx) -> Estimate:
        t0 = time.perf_counter()
        ep = frame.groupby("episode").agg(task=("task_id", "first"), x=("poise_x", "first"))
        x = {e: np.asarray(v, dtype=np.float32) for e, v in ep["x"].items()}
        by_task: dict[str, list[int]] = {}
        for e, task in ep["task"].items():
            by_task.setdefault(task, []).append(e)
        # b_i = probe(x_j), j the next rollout of the same task (the sibling with G = 2)
        sib = {}
        for eps in by_task.values():
            for k, e in enumerate(eps):
                sib[e] = eps[(k + 1) % len(eps)] if len(eps) > 1 else None
        b = {e: float(self.probe.predict(x[j][None])[0]) if j is not None else float("nan")
             for e, j in sib.items()}  # fmt: skip
        values = frame["episode"].map(b).to_numpy(dtype=float)
        return Estimate(values, time.perf_counter() - t0)


class DigiQHeads:
    """A digiq checkpoint: the behaviour's value min_i U_i(phi(s)) (min_i V_i without U heads)
    and native min_i Q_i(phi(s, a_k)); with ``critic_features`` the scorer's features join phi
    as in training."""

    def __init__(self, checkpoint: str):
        from webgym_agents.algos.digiq import DigiQConfig, load_critic, load_critic_encoder
        from webgym_agents.toolkit.training import override_config

        self.name = "digiq heads"
        self.heads, info = load_critic(checkpoint)
        run_config = Path(checkpoint).resolve().parent.parent / "config.json"
        cfg = DigiQConfig()
        if run_config.is_file():
            cfg = override_config(cfg, json.loads(run_config.read_text())["config"])
        self.enc = load_critic_encoder(cfg, info.get("encoder_dir")).requires_grad_(False)
        self.max_steps = cfg.max_steps
        # critic_features: the heads read the scorer's features after phi (critic.py)
        self.n_features = self.heads.dim - self.enc.dim

    def _features(self, obs_json: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Each scorer candidate's features by action, and the state's (their max)."""
        from webgym_agents.policies.scorer_inputs import candidates

        c = candidates(json.loads(obs_json), self.max_steps)
        f = np.zeros((max(1, len(c.actions)), self.n_features), dtype=np.float32)
        for k, row in enumerate(c.features):
            f[k, : len(row)] = row
        return dict(zip(c.actions, f, strict=False)), f.max(0)

    def _v(self, states: Sequence[str], observations: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(states), 64):
                f = self.enc.state_features(states[i : i + 64])
                if self.n_features:
                    extra = [self._features(o)[1] for o in observations[i : i + 64]]
                    f = torch.cat([f, torch.from_numpy(np.stack(extra))], 1)
                out.append(self.heads.us(f).min(0).values)
        return torch.cat(out).numpy() if out else np.zeros(0)

    def estimate(self, frame, ranked, ctx) -> Estimate:
        import torch

        from webgym_agents.algos.digiq import critic_action_text, nodes_by_bid

        t0 = time.perf_counter()
        values = self._v(list(frame["state"]), list(frame["obs"]))
        seconds = time.perf_counter() - t0
        q_rows = []
        with torch.no_grad():
            for st in ranked:
                row = frame.iloc[st["row"]]
                nodes = nodes_by_bid(json.loads(row["obs"]))
                pairs = zip(row["cand_actions"], row["cand_texts"], strict=True)
                acts = [critic_action_text(a, lab, nodes) for a, lab in pairs]
                f = self.enc.pair_features([row["state"]] * len(acts), acts)
                if self.n_features:
                    by_action, _ = self._features(row["obs"])
                    zero = np.zeros(self.n_features, dtype=np.float32)
                    extra = [by_action.get(a, zero) for a in row["cand_actions"]]
                    f = torch.cat([f, torch.from_numpy(np.stack(extra))], 1)
                q_rows.append(self.heads.qs(f).min(0).values.numpy())
        return Estimate(values, seconds, 0.0, q_rows, "native")


class GenerativeCriticValues:
    """GenAC: the critic writes a rationale and an integer k, V = k / 10 (agents/algos/genac.py)."""

    def __init__(self, checkpoint: str):
        from webgym_agents.algos.genac import GenerativeCritic

        self.name = "genac"
        self.critic = GenerativeCritic.load(checkpoint)

    def _values(self, observations: Sequence[dict], ctx) -> np.ndarray:
        return np.asarray(self.critic.values_of_observations(observations), dtype=float)

    def estimate(self, frame, ranked, ctx) -> Estimate:
        t0 = time.perf_counter()
        values = self._values([json.loads(o) for o in frame["obs"]], ctx)
        seconds = time.perf_counter() - t0
        q = _lookahead(ranked, lambda cs: self._values([c["next_obs"] for c in cs], ctx))
        return Estimate(values, seconds, 0.0, q, "lookahead")


def make_estimator(kind: str, checkpoint: str):
    """The estimator of a trained checkpoint of ``kind`` (one of :data:`ESTIMATOR_KINDS`);
    ``kind:label`` names one of several of a kind (``digiq:frozen``: Digi-Q's options)."""
    kind, _, label = kind.partition(":")
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(f"unknown estimator kind {kind!r}; known: {', '.join(ESTIMATOR_KINDS)}")
    if not Path(checkpoint).is_dir():
        raise ValueError(f"{kind} checkpoint {checkpoint} is not a folder")
    if kind in ("reinforce", "archer"):
        est = ScorerCriticValues(kind, checkpoint)
    elif kind == "poise":
        est = PoiseProbe(checkpoint)
    elif kind == "digiq":
        est = DigiQHeads(checkpoint)
    else:
        est = GenerativeCriticValues(checkpoint)
    if label:
        est.name = f"{est.name} ({label})"
    return est


# --------------------------------------------------------------------------------------------
# 4. The measurements
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    config: ReportConfig
    policy: Any
    split: str


def report_rows(frame, ranked: list[dict], name: str, est: Estimate, config: ReportConfig,
                split: str) -> dict[str, Any]:  # fmt: skip
    """The table row of one estimator on one split (module docstring, step 4)."""
    v, mc = np.asarray(est.values, dtype=float), frame["mc_return"].to_numpy(dtype=float)
    ok = np.isfinite(v)
    cal = calibration(v[ok], mc[ok])
    row: dict[str, Any] = {
        "split": split, "estimator": name, "q_kind": est.q_kind or "-", "n": int(ok.sum()),
        "v_mean": float(v[ok].mean()) if ok.any() else float("nan"),
        "mc_mean": float(mc[ok].mean()) if ok.any() else float("nan"),
        "mse": v_mc_error(v[ok], mc[ok]), "explained_variance": explained_variance(v[ok], mc[ok]),
        "ece": cal["ece"], "calibration_bins": cal["bins"],
        "seconds_per_estimate": est.seconds / max(1, len(frame)),
        "env_steps_per_estimate": est.env_steps,
    }  # fmt: skip
    if est.q_rows is not None and ranked:
        outcomes = []
        for q, st in zip(est.q_rows, ranked, strict=True):
            live = np.array([not c["done"] for c in st["candidates"]], dtype=bool)
            g = np.array([c["g"] for c in st["candidates"]], dtype=float)
            outcomes.append((np.asarray(q, dtype=float)[live], g[live]))
        rng = np.random.default_rng([config.seed, 52])
        row |= {"rank_states": len(outcomes), **pool_accuracy(outcomes, POOL_SIZES,
                                                              config.draws, rng,
                                                              informative_only=True)}  # fmt: skip
        row["action_sensitivity"] = action_sensitivity([q for q, _ in outcomes])
    else:
        row |= {f"rank_{k}_{m}": float("nan") for k in ("acc", "chance") for m in POOL_SIZES}
        row |= {"rank_states": 0, "action_sensitivity": float("nan")}
    return row


def _slug(key: str) -> str:
    import hashlib

    head = "".join(c if c.isalnum() else "-" for c in key.split("=")[0])
    return f"{head}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def cached_estimate(path: Path, key: str, compute: Callable[[], Estimate]) -> Estimate:
    """``compute()``, kept at ``path`` (JSON) so a re-run of the report (another
    ``--checkpoint`` added) reuses it: forks and generative critics are minutes of work."""
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("key") == key:
            q = blob["q_rows"]
            return Estimate(
                np.asarray(blob["values"], dtype=float), blob["seconds"], blob["env_steps"],
                None if q is None else [np.asarray(r, dtype=float) for r in q], blob["q_kind"],
            )  # fmt: skip
    est = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_report(path, {
        "key": key, "values": [float(v) for v in est.values], "seconds": est.seconds,
        "env_steps": est.env_steps, "q_kind": est.q_kind,
        "q_rows": None if est.q_rows is None else [list(map(float, r)) for r in est.q_rows],
    })  # fmt: skip
    return est


def run_report(config: ReportConfig, out: Path, say: Callable[[str], None] = print) -> list[dict]:
    """Steps 1-4 for every split and estimator; writes the CSV, JSON and plots into ``out``."""
    from webgym_agents.models.threads import configure_torch_threads

    configure_torch_threads(1)
    if config.group_size < 2:
        raise ValueError("group_size must be >= 2: group-mean and poise score a rollout's sibling")
    out.mkdir(parents=True, exist_ok=True)
    policy = _policy(config.policy)
    # (estimator, what identifies its values: a cached estimate is reused only for the same)
    estimators: list[tuple[Any, str]] = [(GroupMean(), "group-mean")]
    if config.k_forks > 0:
        estimators.append((VineForks(config.k_forks), f"vine-{config.k_forks}"))
    for kind, ckpt in config.checkpoints.items():
        estimators.append((make_estimator(kind, ckpt), f"{kind}={Path(ckpt).resolve()}"))
    rows = []
    for split in config.splits:
        t0 = time.perf_counter()
        frame = collect_trajectories(policy, split, config, out / f"trajectories-{split}.parquet")
        say(f"{split}: {frame['episode'].nunique()} episodes, {len(frame)} turns, mean return "
            f"{frame['mc_return'].mean():.3f} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
        ranked = fork_candidates(frame, policy, split, config, out / f"forks-{split}.json")
        say(f"{split}: {len(ranked)} ranking states forked")
        ctx = _Context(config, policy, split)
        for est, key in estimators:
            path = out / "estimates" / f"{split}-{_slug(key)}.json"
            e = cached_estimate(path, key, partial(est.estimate, frame, ranked, ctx))
            row = report_rows(frame, ranked, est.name, e, config, split)
            rows.append(row)
            say(f"{split}: {est.name}: MSE {row['mse']:.4f}, EV {row['explained_variance']:.3f}, "
                f"rank@4 {row['rank_acc_4']:.2f}, {row['seconds_per_estimate'] * 1e3:.1f} ms "
                "per estimate")  # fmt: skip
    write_outputs(rows, config, out)
    return rows


def write_outputs(rows: list[dict], config: ReportConfig, out: Path) -> list[Path]:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [out / "critics.csv", out / "critics.json"]
    with open(written[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_report(written[1], {"config": config.__dict__, "rows": rows})
    for split in dict.fromkeys(r["split"] for r in rows):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        for r in (r for r in rows if r["split"] == split and r["calibration_bins"]):
            pv, pg, _ = zip(*r["calibration_bins"], strict=True)
            ax.plot(pv, pg, marker="o", label=f"{r['estimator']} (ECE {r['ece']:.2f})")
        ax.set(xlabel="predicted value V", ylabel="mean return in bin", xlim=(0, 1),
               ylim=(0, 1), title=f"Reliability on {split}")  # fmt: skip
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"reliability-{split}.png", dpi=110)
        plt.close(fig)
        written.append(out / f"reliability-{split}.png")
    # sharey: the rows line up across the panels (NaN bars would shift autoscaling otherwise)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 2), sharey=True)
    labels = [f"{r['estimator']} [{r['split']}]" for r in rows]
    axes[0].barh(labels, [r["mse"] for r in rows], color="#4c72b0")
    axes[0].set(xlabel="MSE of V against MC returns")
    axes[1].barh(labels, [r["rank_acc_4"] for r in rows], color="#55a868")
    axes[1].barh(labels, [r["rank_chance_4"] for r in rows], color="none", edgecolor="black")
    axes[1].set(xlabel="ranking accuracy, pools of 4 (outline: chance; none: no ranking)")
    fig.tight_layout()
    fig.savefig(out / "critics.png", dpi=110)
    plt.close(fig)
    written.append(out / "critics.png")
    return written
