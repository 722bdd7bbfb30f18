"""Rollouts: playing policies in the environment and keeping what they did. One home for them.

Two collectors, one set of env helpers (:func:`make_env`, :func:`rollout_seed`):

* :func:`collect_episodes` plays any :class:`webgym_agents.base.Agent` one episode after another and
  returns plain :class:`Episode` / :class:`Step` records (observation, action, reward, done,
  effect label): BC's demonstrations, and later Digi-Q's offline data.
  :func:`replay_episode` re-plays recorded actions to rebuild the observations a run directory
  does not store (checked against the recorded digests, :class:`ReplayMismatch` otherwise).
* :func:`collect_rollouts` steps several environments in lockstep through one batched policy,
  for the on-policy trainers. Every step keeps the policy's decision (state text or prompt,
  candidates, the chosen action and its log-probability under the distribution that acted), so
  trainers recompute ratios against exactly what acted. ``group_size = G`` plays each task G
  times from the identical start (same task, same env seed: the first observations are equal),
  for GRPO and POISE; the G rollouts of a task are adjacent in the output.

  Forks (VinePPO): ``snapshots=True`` keeps each turn's env state s_t in ``Turn.snapshot``;
  ``starts`` plays the jobs from such snapshots instead of the tasks' starts.

  An episode that ends in an infrastructure failure (the env reports ``info["error"]``, e.g. a
  crashed browser, or ``env.step`` raises) is kept with ``error`` set: trainers leave it out of
  losses and group statistics instead of counting it as reward 0.

  The policy is anything with ``decide_batch(observations, *, temperature, rng) -> decisions``
  where each decision has ``.action`` (and, for trainers, ``.logprob``): :class:`ScorerPolicy`
  (agents/policies/scorer_policy.py).

  Under data-parallel training (toolkit/data_parallel.py: several processes) each process plays
  every ``world_size``-th episode of the list with its own sampling stream, and the rollouts are
  gathered so that every process returns the whole list, in the order one process would.

Training rollouts use :func:`rollout_seed`, never the seed an evaluation run plays a task from.

Imports webgym (the env) and webgym_agents.toolkit.data_parallel; never webgym_benchmarks or
webgym_leaderboards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from webgym.replay import ReplayMismatch, replay_actions
from webgym.runs import TRAIN_SEED_SALT, episode_seed
from webgym_agents.observation import with_history
from webgym_agents.toolkit import data_parallel

__all__ = [
    "Episode",
    "kept_observation",
    "ReplayMismatch",
    "Rollout",
    "Step",
    "Turn",
    "collect_episodes",
    "collect_rollouts",
    "make_env",
    "replay_episode",
    "rollout_seed",
    "rollout_stats",
]

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# The environment and the seeds


def rollout_seed(seed: int, task_id: str) -> int:
    """A training rollout's env and agent seed: :func:`webgym.runs.episode_seed` of (seed, task
    id) with the trainers' salt (never the seed an evaluation run plays the task from)."""
    return episode_seed(seed, task_id, salt=TRAIN_SEED_SALT)


def make_env(
    split: str,
    task_ids: Sequence[str] | None = None,
    *,
    mode: str = "text",
    max_steps: int | None = None,
    **kwargs: Any,
) -> Any:
    """A WebGym shopping env (text mode by default) over ``split`` (and ``task_ids``)."""
    import gymnasium as gym

    from webgym.envs import MAX_EPISODE_STEPS, env_id_for_mode  # importing registers the ids

    return gym.make(
        env_id_for_mode(mode),
        split=split,
        task_ids=list(task_ids) if task_ids is not None else None,
        max_episode_steps=max_steps or MAX_EPISODE_STEPS,
        disable_env_checker=True,
        **kwargs,
    )


def kept_observation(obs: dict[str, Any], keep_html: bool) -> dict[str, Any]:
    """The observation as a rollout keeps it: without ``html`` and ``screenshot`` (unless
    ``keep_html``), its action lists copied."""
    out = {k: v for k, v in obs.items() if keep_html or k not in ("html", "screenshot")}
    for key in ("available_actions", "clickable_actions"):
        if key in out:
            out[key] = list(out[key])
    return out


# ----------------------------------------------------------------------------------------------
# One agent, one episode at a time: Episode / Step


@dataclass
class Step:
    """One transition: the observation the action was taken in, and what followed."""

    obs: dict[str, Any]  # the env's observation dict (``html`` dropped unless keep_html)
    action: str
    reward: float
    terminated: bool
    truncated: bool
    effect_label: int | None  # 1: the action changed the page (webgym.effects), 0: it did not
    action_error: str = ""  # the next observation's last_action_error ("" when valid)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class Episode:
    """One played episode; ``steps[t].obs`` is s_t, s_{t+1} is ``next_obs(t)``."""

    task_id: str
    split: str
    split_hash: str | None
    seed: int
    goal: str
    steps: list[Step] = field(default_factory=list)
    final_obs: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        """The episode's reward (WebShop rewards only the last step)."""
        return float(self.steps[-1].reward) if self.steps else 0.0

    @property
    def success(self) -> bool:
        return self.reward == 1.0

    def next_obs(self, t: int) -> dict[str, Any]:
        return self.steps[t + 1].obs if t + 1 < len(self.steps) else self.final_obs


def collect_episodes(
    agent: Any,
    task_ids: Sequence[str],
    *,
    split: str = "train",
    mode: str = "text",
    seed: int = 0,
    max_steps: int | None = None,
    env: Any = None,
    keep_html: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Play ``agent`` once on each task of ``task_ids`` and return the episodes, in order.

    Episode seeds are :func:`rollout_seed` (``seed``, task id), given to both ``env.reset`` and
    ``agent.reset``. ``env`` may be passed in (it must cover ``task_ids``) and is then left open;
    otherwise one is made (:func:`make_env`) and closed. ``on_episode`` is called after each.
    """
    own = env is None
    if own:
        env = make_env(split, task_ids, mode=mode, max_steps=max_steps)
    episodes = []
    try:
        for task_id in task_ids:
            s = rollout_seed(seed, task_id)
            obs, info = env.reset(seed=s, options={"task_id": task_id})
            agent.reset(obs["goal"], seed=s)
            ep = Episode(task_id, split, info.get("split_hash"), s, obs["goal"])
            done = False
            while not done:
                obs = with_history(obs, [step.action for step in ep.steps])  # its memory
                action = agent.act(obs)
                next_obs, reward, terminated, truncated, info = env.step(action)
                effect = info.get("action_effect") or {}
                ep.steps.append(
                    Step(
                        obs=kept_observation(obs, keep_html),
                        action=action,
                        reward=float(reward),
                        terminated=bool(terminated),
                        truncated=bool(truncated),
                        effect_label=effect.get("label"),
                        action_error=next_obs.get("last_action_error") or "",
                    )
                )
                obs, done = next_obs, terminated or truncated
            ep.final_obs = kept_observation(obs, keep_html)
            episodes.append(ep)
            if on_episode is not None:
                on_episode(ep)
    finally:
        if own:
            env.close()
    return episodes


def replay_episode(
    env: Any,
    task_id: str,
    seed: int,
    actions: Sequence[str],
    *,
    digests: Sequence[str | None] | None = None,
    split: str = "train",
    keep_html: bool = False,
) -> Episode:
    """Re-play ``actions`` on ``task_id`` from ``env.reset(seed=seed)`` and return the episode.

    Run directories record actions, not observations; replaying (``webgym.replay``, the one
    replay primitive, shared with the leaderboard's verification) rebuilds the observation each
    action was taken in. When ``digests`` (each step's ``obs_digest`` after the action) are
    given, every rebuilt observation is checked against them and :class:`ReplayMismatch` is
    raised on the first difference (or when the episode ends early).
    """
    first, replayed = replay_actions(env, task_id, seed, actions, digests=digests)
    ep = Episode(task_id, split, getattr(env.unwrapped, "split_hash", None), seed, first["goal"])
    for st in replayed:
        effect = st.info.get("action_effect") or {}
        ep.steps.append(
            Step(
                obs=kept_observation(st.obs_before, keep_html),
                action=st.action,
                reward=st.reward,
                terminated=st.terminated,
                truncated=st.truncated,
                effect_label=effect.get("label"),
                action_error=st.obs.get("last_action_error") or "",
            )
        )
    ep.final_obs = kept_observation(replayed[-1].obs if replayed else first, keep_html)
    return ep


# ----------------------------------------------------------------------------------------------
# A batched policy in lockstep: Rollout / Turn


@dataclass
class Turn:
    """One decision and what followed it."""

    obs: dict[str, Any]  # s_t, without html/screenshot
    decision: Any  # the policy's decision object (action, candidates, logprob, ...)
    reward: float
    effect_label: int | None
    action_error: str = ""
    effect: dict[str, Any] | None = None  # the whole info["action_effect"] (label, distances)
    snapshot: dict[str, Any] | None = None  # the env state s_t (collect_rollouts(snapshots=True))

    @property
    def action(self) -> str:
        return str(self.decision.action)


@dataclass
class Rollout:
    """One episode of one task; ``group`` is its index within its task's G rollouts."""

    task_id: str
    seed: int
    group: int
    goal: str
    turns: list[Turn] = field(default_factory=list)
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    error: str | None = None  # an infrastructure failure: excluded from losses
    final_obs: dict[str, Any] | None = None  # the observation after the last turn (s_T)

    @property
    def success(self) -> bool:
        return self.error is None and self.reward == 1.0

    @property
    def valid(self) -> bool:
        return self.error is None and bool(self.turns)


@dataclass
class _Slot:
    env: Any
    job: int | None = None
    obs: dict[str, Any] | None = None
    rollout: Rollout | None = None


def collect_rollouts(
    policy: Any,
    task_ids: Sequence[str],
    *,
    split: str = "train",
    group_size: int = 1,
    n_envs: int = 8,
    seed: int = 0,
    temperature: float = 1.0,
    rng: np.random.Generator | None = None,
    mode: str = "text",
    max_steps: int | None = None,
    env_factory: Callable[[], Any] | None = None,
    on_rollout: Callable[[Rollout], None] | None = None,
    shard: bool = True,
    part: tuple[int, int] | None = None,
    snapshots: bool = False,
    starts: Sequence[dict[str, Any]] | None = None,
    explore: float = 0.0,
    start_actions: Sequence[Sequence[str]] | None = None,
    first_actions: Sequence[str | None] | None = None,
) -> list[Rollout]:
    """Play each task ``group_size`` times, ``n_envs`` episodes at a time in lockstep.

    ``explore`` > 0 is passed to ``policy.decide_batch`` (the scorer's epsilon-uniform
    exploration); 0 calls it as any policy takes it.

    Episode seeds are :func:`rollout_seed` (``seed``, task id): the G rollouts of a task share
    it (identical starts) and differ only in the actions sampled from ``rng``. Returns the
    rollouts in job order (task by task, group index within).

    With several data-parallel processes and ``shard`` (the default), every process must call
    this with the same arguments: process r plays jobs r, r + world_size, ... sampling from its
    own generator (drawn from ``rng``, which then advances alike in every process), and every
    process returns all the rollouts. ``on_rollout`` is called in the process that played it.

    ``part=(k, n)`` plays part k of n the same way (jobs k, k + n, ..., generator stream k) and
    returns only those rollouts: a Ray worker's share (agents/toolkit/ray_rollouts.py).

    ``snapshots``: every turn keeps its env state (``Turn.snapshot``). ``starts[i]`` (a snapshot
    of a state of task ``task_ids[i]``): the ``group_size`` jobs of task i continue from it (a
    reset, for the wrappers' bookkeeping, then ``env.unwrapped.restore``) and stop at
    ``max_steps`` steps counted from the episode's start, as the episode would have.
    ``start_actions[i]``: the actions the episode took before ``starts[i]`` (the fork's episode
    memory, :func:`webgym_agents.observation.with_history`, so it knows what it already opened).
    ``first_actions[i]``: the fork's first action, taken instead of a sampled one (None: sample),
    with the policy's own log-probability (a probe of that action from that state).
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    if starts is not None:
        if [s["task_id"] for s in starts] != list(task_ids):
            raise ValueError("starts must hold one snapshot per task id, of that task")
        for name, given in (("start_actions", start_actions), ("first_actions", first_actions)):
            if given is not None and len(given) != len(starts):
                raise ValueError(f"{name} must hold one entry per start")
        from webgym.envs import MAX_EPISODE_STEPS  # as make_env: the env on use only

        limit = max_steps or MAX_EPISODE_STEPS
    elif start_actions is not None or first_actions is not None:
        raise ValueError("start_actions and first_actions go with starts (forks)")
    jobs = [(tid, g) for tid in task_ids for g in range(group_size)]
    results: list[Rollout | None] = [None] * len(jobs)
    world = data_parallel.world_size() if shard and part is None else 1
    index, count = part if part is not None else (data_parallel.rank(), world)
    mine = list(range(len(jobs)))
    if count > 1:
        streams = rng.integers(0, 2**63, size=count)
        rng = np.random.default_rng(int(streams[index]))
        mine = mine[index::count]

    def new_env() -> Any:
        if env_factory is not None:
            return env_factory()
        return make_env(split, list(dict.fromkeys(task_ids)), mode=mode, max_steps=max_steps)

    n_slots = max(1, min(n_envs, len(mine))) if mine or count == 1 else 0
    slots = [_Slot(new_env()) for _ in range(n_slots)]
    next_job = 0

    def start(slot: _Slot) -> None:
        nonlocal next_job
        while next_job < len(mine):
            j = mine[next_job]
            next_job += 1
            tid, g = jobs[j]
            s = rollout_seed(seed, tid)
            try:
                obs, _info = slot.env.reset(seed=s, options={"task_id": tid})
                if starts is not None:  # a fork: continue from the snapshot, in a new session
                    obs, _info = slot.env.unwrapped.restore(starts[j // group_size])
            except Exception as err:  # noqa: BLE001 - an env that cannot reset is an infra error
                log.warning("reset of %s failed (%s); the episode is marked errored", tid, err)
                results[j] = Rollout(tid, s, g, "", error=f"reset failed: {err}")
                slot.env = _replace_env(slot.env, new_env)
                continue
            slot.job, slot.obs = j, obs
            slot.rollout = Rollout(tid, s, g, str(obs.get("goal") or ""))
            return
        slot.job = slot.obs = slot.rollout = None

    def finish(slot: _Slot) -> None:
        assert slot.job is not None and slot.rollout is not None
        results[slot.job] = slot.rollout
        if on_rollout is not None:
            on_rollout(slot.rollout)
        start(slot)

    for slot in slots:
        start(slot)
    try:
        while True:
            active = [s for s in slots if s.job is not None]
            if not active:
                break
            for slot in active:  # the policy's episode memory: its own earlier actions
                before = list(start_actions[slot.job // group_size]) if start_actions else []
                slot.obs = with_history(slot.obs, before + [t.action for t in slot.rollout.turns])
            extra: dict[str, Any] = {"explore": explore} if explore else {}
            if first_actions is not None:
                extra["forced"] = [
                    None if s.rollout.turns else first_actions[s.job // group_size] for s in active
                ]
            decisions = policy.decide_batch(
                [s.obs for s in active], temperature=temperature, rng=rng, **extra
            )
            for slot, decision in zip(active, decisions, strict=True):
                ro = slot.rollout
                assert ro is not None and slot.obs is not None
                try:
                    snap = slot.env.unwrapped.snapshot() if snapshots else None
                    nxt, reward, terminated, truncated, info = slot.env.step(decision.action)
                except Exception as err:  # noqa: BLE001 - see the module docstring
                    log.warning(
                        "step of %s raised %s; the episode is marked errored", ro.task_id, err
                    )
                    ro.error = f"step raised: {err}"
                    slot.env = _replace_env(slot.env, new_env)
                    finish(slot)
                    continue
                effect = info.get("action_effect") or {}
                ro.turns.append(
                    Turn(
                        obs=kept_observation(slot.obs, False),
                        decision=decision,
                        reward=float(reward),
                        effect_label=effect.get("label"),
                        action_error=str(nxt.get("last_action_error") or ""),
                        effect=dict(effect),
                        snapshot=snap,
                    )
                )
                if starts is not None and int(nxt.get("step") or 0) >= limit:
                    truncated = True  # the wrappers count from the fork; the episode from 0
                slot.obs = nxt
                if info.get("error"):
                    ro.error = str(info["error"])
                if terminated or truncated or ro.error:
                    ro.final_obs = kept_observation(nxt, False)
                    ro.reward = float(reward)
                    ro.terminated, ro.truncated = bool(terminated), bool(truncated)
                    finish(slot)
    finally:
        for slot in slots:
            slot.env.close()
    if world > 1:  # every process gets every rollout, in job order
        for played in data_parallel.all_gather({j: results[j] for j in mine}):
            for j, r in played.items():
                results[j] = r
    return [r for r in results if r is not None]


def _replace_env(env: Any, new_env: Callable[[], Any]) -> Any:
    try:
        env.close()
    except Exception as err:  # noqa: BLE001 - a broken env may fail to close; say so
        log.warning("closing a failed env raised %s", err)
    return new_env()


def rollout_stats(rollouts: Sequence[Rollout]) -> dict[str, float]:
    """Score (mean reward x 100), success rate, mean steps and errored count of valid rollouts."""
    valid = [r for r in rollouts if r.valid]
    n = len(valid)
    rewards = np.array([r.reward for r in valid], dtype=float)
    return {
        "episodes": float(n),
        "errored": float(len(rollouts) - n),
        "score": float(rewards.mean() * 100) if n else float("nan"),
        "success_rate": float((rewards == 1.0).mean()) if n else float("nan"),
        "avg_steps": float(np.mean([len(r.turns) for r in valid])) if n else float("nan"),
    }
