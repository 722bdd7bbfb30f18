"""Losses shared by two or more trainers, each with its equation.

Tensors are (B, L): B response rows (one row per turn of an episode), L tokens, with a 0/1
``mask`` marking the response tokens that count. In choice mode a turn's response is one
"token" (the chosen candidate) unless it carries a generated search query. A loss used by
one algorithm only is written inline in that algorithm's file.

Imports torch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "LOSS_TYPES",
    "SurrogateStats",
    "aggregate",
    "clipped_surrogate",
    "k3_kl",
    "nll",
    "value_mse",
]

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_len: int | None = None
) -> torch.Tensor:
    """Reduce a (B, L) per-token loss to a scalar.

    grpo:    (1/B) sum_i (1/|o_i|) sum_l loss_il        (mean per sequence, then over sequences)
    dapo:    sum_il loss_il / sum_il mask_il            (token sum over token count)
    dr_grpo: sum_il loss_il / (B * max_len)             (Dr. GRPO: a constant normaliser)
    """
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dapo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * (max_len or per_token.size(1)))
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref):  exp(ref - logp) - (ref - logp) - 1  (>= 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


@dataclass(frozen=True)
class SurrogateStats:
    clip_frac: float  # share of counted tokens the clip silenced (ratio out of range on A's side)
    approx_kl: float  # mean over counted tokens of (ratio - 1) - log ratio (k3 of old vs new)
    ratio_mean: float
    kl_ref: float  # mean k3 KL to the reference (0 when beta = 0)


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    loss_type: str = "grpo",
    max_len: int | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, SurrogateStats]:
    """PPO's clipped surrogate with per-token ratios, DAPO's clip-higher and a k3 KL penalty.

    rho_l = exp(logp_l - old_logp_l)
    loss_l = -min(rho_l A, clip(rho_l, 1 - eps_low, 1 + eps_high) A) + beta * KL_k3(pi || pi_ref)_l
    loss = aggregate(loss_l, mask, loss_type)

    ``advantages`` is (B,) (broadcast to every token of row b) or (B, L). ``old_logp`` are the
    log-probabilities frozen at collection, under the distribution that acted.
    """
    eps_high = eps_low if eps_high is None else eps_high
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    kl_ref = torch.zeros_like(per_token)
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference policy's log-probabilities")
        kl_ref = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl_ref
    loss = aggregate(per_token, mask, loss_type, max_len)
    with torch.no_grad():
        m = mask.to(torch.bool)
        r = ratio[m]
        log_r = (logp - old_logp)[m]
        a = advantages.expand_as(ratio)[m]
        out = ((r < 1 - eps_low) & (a < 0)) | ((r > 1 + eps_high) & (a > 0))
        stats = SurrogateStats(
            clip_frac=float(out.float().mean()) if r.numel() else 0.0,
            approx_kl=float(((r - 1) - log_r).mean()) if r.numel() else 0.0,
            ratio_mean=float(r.mean()) if r.numel() else 1.0,
            kl_ref=float(kl_ref[m].mean()) if r.numel() else 0.0,
        )
    return loss, stats


def value_mse(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Critic regression:  0.5 * mean_t (V(s_t) - G_t)^2."""
    return 0.5 * ((values - targets) ** 2).mean()


def nll(
    logp: torch.Tensor, mask: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """BC / filtered BC: -sum_i w_i sum_l logp_il / sum_i w_i |o_i|  (BC: w=1)."""
    if logp.dim() == 1:
        logp = logp.unsqueeze(1)
    mask = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    w = logp.new_ones(logp.size(0)) if weights is None else weights.to(logp)  # logp's device
    return -(w.unsqueeze(1) * logp * mask).sum() / (w.unsqueeze(1) * mask).sum().clamp(min=1e-8)
