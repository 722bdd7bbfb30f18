"""On-policy rollouts: several environments stepped in lockstep through one batched policy.

Every step keeps the policy's decision (state text or prompt, candidates, the chosen action and
its log-probability under the distribution that acted), so trainers recompute ratios against
exactly what acted. ``group_size = G`` plays each task G times from the identical start (same
task, same env seed: the first observations are equal), for GRPO and POISE; the G rollouts of a
task are adjacent in the output.

An episode that ends in an infrastructure failure (the env reports ``info["error"]``, e.g. a
crashed browser, or ``env.step`` raises) is kept with ``error`` set: trainers leave it out of
losses and group statistics instead of counting it as reward 0.

The policy is anything with ``decide_batch(observations, *, temperature, rng) -> decisions``
where each decision has ``.action`` (and, for trainers, ``.logprob``): :class:`ScorerPolicy`
(agents/scorer_policy.py).

Imports webgym (the env) and agents.training (env construction, episode seeds); never
benchmarks or leaderboards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.training import make_env, rollout_seed

__all__ = ["Rollout", "Turn", "collect_rollouts", "rollout_stats"]

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """One decision and what followed it."""

    obs: dict[str, Any]  # s_t, without html/screenshot
    decision: Any  # the policy's decision object (action, candidates, logprob, ...)
    reward: float
    effect_label: int | None
    action_error: str = ""

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

    @property
    def success(self) -> bool:
        return self.error is None and self.reward == 1.0

    @property
    def valid(self) -> bool:
        return self.error is None and bool(self.turns)


def _trim(obs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obs.items() if k not in ("html", "screenshot")}
    if "available_actions" in out:
        out["available_actions"] = list(out["available_actions"])
    return out


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
) -> list[Rollout]:
    """Play each task ``group_size`` times, ``n_envs`` episodes at a time in lockstep.

    Episode seeds are :func:`agents.training.rollout_seed` (``seed``, task id): the G rollouts
    of a task share it (identical starts) and differ only in the actions sampled from ``rng``.
    Returns the rollouts in job order (task by task, group index within).
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    jobs = [(tid, g) for tid in task_ids for g in range(group_size)]
    results: list[Rollout | None] = [None] * len(jobs)

    def new_env() -> Any:
        if env_factory is not None:
            return env_factory()
        return make_env(split, list(dict.fromkeys(task_ids)), mode=mode, max_steps=max_steps)

    slots = [_Slot(new_env()) for _ in range(max(1, min(n_envs, len(jobs))))]
    next_job = 0

    def start(slot: _Slot) -> None:
        nonlocal next_job
        while next_job < len(jobs):
            j = next_job
            next_job += 1
            tid, g = jobs[j]
            s = rollout_seed(seed, tid)
            try:
                obs, _info = slot.env.reset(seed=s, options={"task_id": tid})
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
            decisions = policy.decide_batch(
                [s.obs for s in active], temperature=temperature, rng=rng
            )
            for slot, decision in zip(active, decisions, strict=True):
                ro = slot.rollout
                assert ro is not None and slot.obs is not None
                try:
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
                        obs=_trim(slot.obs),
                        decision=decision,
                        reward=float(reward),
                        effect_label=effect.get("label"),
                        action_error=str(nxt.get("last_action_error") or ""),
                    )
                )
                slot.obs = nxt
                if info.get("error"):
                    ro.error = str(info["error"])
                if terminated or truncated or ro.error:
                    ro.reward = float(reward)
                    ro.terminated, ro.truncated = bool(terminated), bool(truncated)
                    finish(slot)
    finally:
        for slot in slots:
            slot.env.close()
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
