"""Returns and advantages: pure functions on tensors, one equation each.

Shared by every on-policy trainer (``agents/algos/archer.py``, ``agents/algos/grpo.py``,
``agents/algos/reinforce.py``). Turns are indexed t = 0 .. T-1 within an episode; the episode's
reward R arrives after its last turn (WebShop pays once, at Buy Now; a truncated episode pays 0).
Errored episodes (browser crash, timeout) are *not* reward 0: callers pass them as NaN (group
statistics) or leave them out (everything else), see :mod:`webgym_agents.toolkit.rollouts`.

The batch-level helpers (:func:`turn_returns`, :func:`archer_advantages`) read a
``TurnBatch``'s fields and import nothing of it. Imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

__all__ = [
    "anchor_step_advantages",
    "archer_advantages",
    "discounted_returns",
    "group_advantages",
    "turn_returns",
    "turn_td_advantages",
]


def discounted_returns(reward: float, n_turns: int, gamma: float) -> torch.Tensor:
    """Monte Carlo returns of an episode with one terminal reward.

    G_t = sum_{t'>=t} gamma^(t'-t) r_t' = gamma^(T-1-t) R   (r_t = 0 before the last turn)
    """
    if n_turns < 1:
        raise ValueError("an episode has at least one turn")
    exponents = torch.arange(n_turns - 1, -1, -1, dtype=torch.float64)
    return (float(reward) * gamma**exponents).to(torch.float32)


def turn_td_advantages(values: torch.Tensor, reward: float, lam: float = 0.0) -> torch.Tensor:
    """ArCHer's turn-level advantages (Zhou et al., 2024), one per turn of one episode.

    delta(t) = V(s_{t+1}) - V(s_t)   for t < T-1
    delta(T-1) = R - V(s_{T-1})       (the last turn: the outcome replaces the next value)
    A(t) = sum_{k>=0} lam^k delta(t+k)     (GAE, Schulman et al., 2016; gamma 1 inside)

    ``lam`` 0 is ArCHer's one-step TD advantage A(t) = delta(t); 1 is the Monte Carlo
    return minus the baseline, R - V(s_t). ``values`` are V(s_0) .. V(s_{T-1}) read at each
    turn's prompt boundary; the caller broadcasts A(t) to every token of turn t's response.
    """
    if values.dim() != 1 or values.numel() < 1:
        raise ValueError("values must be a non-empty 1-D tensor, one per turn")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], not {lam}")
    next_values = torch.cat([values[1:], values.new_tensor([float(reward)])])
    deltas = next_values - values
    if lam == 0.0:
        return deltas
    out, running = torch.empty_like(deltas), deltas.new_zeros(())
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + lam * running
        out[t] = running
    return out


def _nanstd(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Standard deviation along ``dim`` ignoring NaN, with Bessel's correction (NaN below 2)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim)
    var = torch.nanmean((x - mean) ** 2, dim=dim) * count / (count - 1).clamp(min=1)
    return torch.where(count > 1, var, torch.full_like(var, float("nan"))).sqrt()


def group_advantages(
    rewards: torch.Tensor | Sequence[float], group_size: int, scale_rewards: str = "group"
) -> torch.Tensor:
    """GRPO's group-normalised advantages, one per rollout (rollouts of a group are adjacent).

    A_i = (r_i - mean_g(r)) / (std_g(r) + 1e-4)     scale_rewards="group"
    A_i = (r_i - mean_g(r)) / (std(r) + 1e-4)       scale_rewards="batch" (std over all rollouts)
    A_i =  r_i - mean_g(r)                          scale_rewards="none"

    std is the unbiased (Bessel) standard deviation, as in TRL. A NaN reward (an errored
    rollout) is left out of its group's statistics and gets advantage 0; a group whose
    rewards are all equal gets advantages 0 (never NaN).
    """
    r = torch.as_tensor(rewards, dtype=torch.float32)
    if group_size < 1 or r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', not {scale_rewards!r}")
    grouped = r.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    advantages = r - mean
    if scale_rewards == "group":
        std = _nanstd(grouped, dim=1) if group_size > 1 else torch.zeros(grouped.shape[0])
        std = std.repeat_interleave(group_size)
    elif scale_rewards == "batch":
        std = _nanstd(r.view(1, -1)).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def anchor_step_advantages(
    keys: Sequence[Sequence[Hashable]],
    rewards: Sequence[float],
    gamma: float,
    scale: str = "std",
) -> list[torch.Tensor]:
    """GiGPO's step-level advantages over one group of rollouts of a task (Feng et al., 2025).

    Every turn t of rollout i is keyed by its state (``keys[i][t]``: an "anchor state"); its
    discounted return is R_t^i = gamma^(T_i - 1 - t) R_i (the reward comes at the last turn).
    Within the turns that share a key:
        A^S(a_t^i) = (R_t^i - mean_anchor R) / (std_anchor R + 1e-4)     scale="std"
        A^S(a_t^i) =  R_t^i - mean_anchor R                              scale="none"
    A key met once gets 0; a NaN reward (an errored rollout) leaves its turns out (0).
    """
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', not {scale!r}")
    returns: dict[Hashable, list[float]] = {}
    for turn_keys, r in zip(keys, rewards, strict=True):
        if r == r:  # not NaN
            n = len(turn_keys)
            for t, k in enumerate(turn_keys):
                returns.setdefault(k, []).append(gamma ** (n - 1 - t) * r)
    stats = {}
    for k, xs in returns.items():
        x = torch.tensor(xs, dtype=torch.float64)
        std = float(x.std()) if len(xs) > 1 else 0.0
        stats[k] = (float(x.mean()), std + 1e-4 if scale == "std" else 1.0, len(xs))
    out = []
    for turn_keys, r in zip(keys, rewards, strict=True):
        n = len(turn_keys)
        adv = torch.zeros(n)
        if r == r:
            for t, k in enumerate(turn_keys):
                mean, norm, count = stats[k]
                if count > 1:
                    adv[t] = (gamma ** (n - 1 - t) * r - mean) / norm
        out.append(adv)
    return out


def archer_advantages(
    batch, values: torch.Tensor, lam: float = 0.0, objective: Callable[[Any], float] | None = None
) -> torch.Tensor:
    """A(t) per turn of ``batch`` (a ``webgym_agents.toolkit.onpolicy.TurnBatch``: its
    ``rollouts``, and ``episode``, the rollout of each turn) from V(s_t) (flat, in batch
    order), episode by episode: :func:`turn_td_advantages` of each episode, its outcome R
    ``objective(rollout)`` (default: the env's reward)."""
    out = torch.empty(len(batch))
    ep = torch.tensor(batch.episode)
    for i, r in enumerate(batch.rollouts):
        where = (ep == i).nonzero().view(-1)
        outcome = r.reward if objective is None else objective(r)
        out[where] = turn_td_advantages(values[where], outcome, lam)
    return out


def turn_returns(
    batch, gamma: float, objective: Callable[[Any], float] | None = None
) -> torch.Tensor:
    """G_t = gamma^(T-1-t) R of every turn of ``batch`` (a ``TurnBatch``: its ``rollouts``;
    flat, in batch order), R ``objective(rollout)`` (default: the env's reward)."""
    outcome = (lambda r: r.reward) if objective is None else objective
    return torch.cat([discounted_returns(outcome(r), len(r.turns), gamma) for r in batch.rollouts])
