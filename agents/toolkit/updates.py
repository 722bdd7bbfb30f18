"""The optimizer side of on-policy training: minibatches of turns, the ratio's denominators,
one optimizer step (data-parallel aware: the gradient all-reduce, weighted by each process's
share of the step), AdamW with its own learning rate for the linear feature weights, and the
PPO actor update on turn advantages (webgym_agents/toolkit/onpolicy.py's docstring says how
data parallelism splits the minibatches).

``batch`` is a :class:`~webgym_agents.toolkit.onpolicy.TurnBatch` and ``config`` an
:class:`~webgym_agents.toolkit.onpolicy.OnPolicyConfig`, read by their fields: this module
imports neither (onpolicy imports it and hands its names on). Imports torch, numpy and the
toolkit's data_parallel and losses; never an algorithm.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from webgym_agents.toolkit import data_parallel
from webgym_agents.toolkit.losses import clipped_surrogate

__all__ = [
    "adamw",
    "as_rows",
    "clip_and_step",
    "minibatches",
    "forced_turns",
    "old_logprobs",
    "ppo_turn_update",
]


def forced_turns(batch: Any, turns: Sequence[int]) -> torch.Tensor:
    """One bool per turn of ``turns``: its action was forced (``decision.forced``: a probe's
    ``< Prev``), not drawn from the policy."""
    return torch.tensor([bool(getattr(batch.decisions[j], "forced", False)) for j in turns])


def old_logprobs(
    batch: Any,
    turns: Sequence[int],
    logp: torch.Tensor,
    advantage: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ratio's denominators of ``turns`` (their current ``logp`` and ``advantage`` given in
    that order): the acting log-probability, or for a turn whose action was forced
    (``decision.forced``: a probe's ``< Prev``) with A > 0 ``logp`` itself, detached. Such a
    turn's ratio is then 1 at every update and the clipped loss gives it the plain policy
    gradient A grad log pi(a | s): with the acting log-probability, an action bc gives ~1e-9
    could gain at most 28 % of that per update before the clip cuts its gradient, and would
    never be learned. A forced turn with A <= 0 keeps the clip: the plain gradient would push
    an action the policy already all but never takes further down without end (grad log pi
    does not vanish as pi -> 0), and a few failed probes would bury it. (Exploration draws keep
    their acting log-probability: unclipped, their many noisy advantages upset the policy.)"""
    acted = batch.old_logp[torch.as_tensor(list(turns), dtype=torch.long)]
    forced = forced_turns(batch, turns)
    if advantage is not None:
        forced &= advantage.reshape(acted.shape) > 0
    return torch.where(forced, logp.detach().reshape(acted.shape).to(acted.dtype), acted)


def as_rows(idx, rows, turns, logp_flat, batch: Any, ref_flat, turn_advantage=None):
    """Scatter flat per-turn values into (B, L) rows padded with mask 0: rollout ``idx[b]``'s
    turns ``rows[idx[b]]`` (indices into ``batch``), whose log-probabilities ``logp_flat`` (and
    the reference's ``ref_flat``) were computed in the order of ``turns``. Returns
    (logp, old_logp, ref_logp or None, mask), the layout of ``losses.clipped_surrogate``.
    old_logp: :func:`old_logprobs`, given ``turn_advantage``, every turn's advantage in
    ``batch`` order."""
    width = max(len(rows[e]) for e in idx)
    pos = {j: k for k, j in enumerate(turns)}
    index = torch.tensor([[pos[j] for j in rows[e]] + [0] * (width - len(rows[e])) for e in idx])
    logp = logp_flat[index]
    adv = None if turn_advantage is None else turn_advantage[torch.tensor(turns)]
    old = old_logprobs(batch, turns, logp_flat, adv)[index]
    ref = ref_flat[index] if ref_flat is not None else None
    mask = torch.zeros(len(idx), width)
    for b, e in enumerate(idx):
        mask[b, : len(rows[e])] = 1
    return logp, old, ref, mask


def minibatches(n: int, size: int, gen: np.random.Generator) -> Iterable[np.ndarray]:
    """A random partition of range(n) into chunks of ``size`` (the last may be smaller).

    Data-parallel: every process draws the same partition, and iterating yields this process's
    share of it, one chunk per optimizer step (module docstring)."""
    order = gen.permutation(n)
    chunks = [order[i : i + size] for i in range(0, n, max(1, size))]
    if not data_parallel.enabled():
        return chunks
    return _shared_chunks(n, order, chunks)


_STEP_SHARE: float | None = None
"""Data-parallel: this process's weight in the gradient all-reduce of the current step."""


def _shared_chunks(n: int, order: np.ndarray, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Steps of ``world`` chunks: process r takes chunk r of each; in a last step of m < world
    chunks, process r takes chunk r % m and weighs it 1 / (m * processes sharing it)."""
    global _STEP_SHARE
    world, rank = data_parallel.world_size(), data_parallel.rank()
    mine = (n, zlib.crc32(np.ascontiguousarray(order).tobytes()))
    every = data_parallel.all_gather(mine)
    if any(x != mine for x in every):
        raise RuntimeError(
            "data-parallel processes would take different minibatches (batch size, permutation "
            f"checksum per process: {every}); their batches or random generators diverged"
        )
    try:
        for first in range(0, len(chunks), world):
            step = chunks[first : first + world]
            m = len(step)
            sharing = len(range(rank % m, world, m))
            _STEP_SHARE = 1.0 / (m * sharing)
            yield step[rank % m]
    finally:
        _STEP_SHARE = None


def adamw(module: torch.nn.Module, config: Any) -> torch.optim.AdamW:
    linear = getattr(module, "feature_weights", None)
    own = (
        {id(p) for p in linear.parameters()} if linear is not None and config.feature_lr else set()
    )
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in own]
    groups = [{"params": rest}]
    if own:
        groups.append({"params": [p for p in linear.parameters() if p.requires_grad],
                       "lr": config.feature_lr})  # fmt: skip
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def clip_and_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip the global gradient norm to ``clip``, step, zero; returns the norm before clipping.

    Data-parallel: the gradients are all-reduced first (weighted by :func:`minibatches`' share,
    else averaged), so every process takes the same step."""
    if data_parallel.enabled():
        share = _STEP_SHARE if _STEP_SHARE is not None else 1.0 / data_parallel.world_size()
        data_parallel.all_reduce_grads((p for p in module.parameters() if p.requires_grad), share)
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def ppo_turn_update(
    policy: Any,
    optimizer: torch.optim.Optimizer,
    batch: Any,
    advantages: torch.Tensor,
    gen: np.random.Generator,
    *,
    epochs: int,
    minibatch_size: int,
    clip_eps: float,
    grad_clip: float,
) -> tuple[list[float], list[Any], list[float]]:
    """The PPO actor step on turn advantages (archer, poise, vineppo): ``epochs`` passes over
    minibatches of turns, rho = exp(logp_theta - logp_old) (one token per turn),
    L = -mean min(rho A, clip(rho, 1 - eps, 1 + eps) A). Returns (losses, stats, grad norms)."""
    losses, stats, norms = [], [], []
    for _ in range(epochs if len(batch) else 0):
        for idx in minibatches(len(batch), minibatch_size, gen):
            logp = batch.logprobs(policy, idx).unsqueeze(1)
            loss, st = clipped_surrogate(
                logp, old_logprobs(batch, idx, logp, advantages[idx]).unsqueeze(1), advantages[idx],
                torch.ones_like(logp), eps_low=clip_eps, loss_type="dapo",
            )  # fmt: skip
            loss.backward()
            norms.append(clip_and_step(policy, optimizer, grad_clip))
            losses.append(float(loss.detach()))
            stats.append(st)
    return losses, stats, norms
