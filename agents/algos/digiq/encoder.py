"""Digi-Q's phase 2: the critic's encoder phi(s [SEP] a) and its representation fine-tuning
(the effect label, and the auxiliary objectives named in ``aux``).

Imports this package's config and data; never the critic heads, the extraction or the
trainer.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from webgym_agents.algos.digiq.config import AUX_OBJECTIVES, DigiQConfig, atomic_json, metrics_row
from webgym_agents.models.backbone import load_backbone
from webgym_agents.policies.scorer_policy import (
    mean_pool,
)
from webgym_agents.toolkit.training import TrainRun

# ==============================================================================================
# 2. Representation fine-tuning
# ==============================================================================================


class CriticEncoder(nn.Module):
    """phi(s, a) = mean_pool(Enc("[CLS] s [SEP] a [SEP]")), phi(s) = mean_pool(Enc("[CLS] s"))
    on a MiniLM-family encoder, with the fine-tuning heads of the ``aux`` objectives."""

    def __init__(self, backbone, max_length: int = 128):
        super().__init__()
        if backbone.is_causal:
            raise ValueError(f"the critic needs an encoder backbone, not {backbone.name}")
        self.backbone, self.encoder = backbone, backbone.model
        h = self.dim = backbone.hidden_size
        self.max_length = int(max_length)
        self.effect_head = nn.Linear(h, 1)  # logit of P(y = 1 | s, a)
        self.next_head = nn.Linear(h, h)  # next_state: phi(s, a) -> phi(s')
        self.proj_sa, self.proj_s = nn.Linear(h, 128), nn.Linear(h, 128)  # contrastive

    def add_inverse_heads(self) -> None:
        """The inverse-dynamics heads (aux ``inverse``): z(s, s') = W [phi(s); phi(s')] and
        u(a) = U phi(a), phi(a) the encoder on the action's text alone. Made only when asked for,
        so that other runs draw the same random numbers as before."""
        h = self.dim
        self.inverse_head, self.proj_a = nn.Linear(2 * h, 128), nn.Linear(h, 128)
        self.to(self.backbone.device)

    def _pool(self, enc) -> torch.Tensor:
        enc = enc.to(self.backbone.device)
        return mean_pool(self.encoder(**enc).last_hidden_state, enc["attention_mask"])

    def pair_features(self, states: Sequence[str], actions: Sequence[str]) -> torch.Tensor:
        tok = self.backbone.tokenizer
        return self._pool(
            tok(
                list(states),
                list(actions),
                truncation=True,
                padding=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def state_features(self, states: Sequence[str]) -> torch.Tensor:
        tok = self.backbone.tokenizer
        return self._pool(
            tok(
                list(states),
                truncation=True,
                padding=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def digest(self) -> str:
        """SHA-256 of the encoder's weights (the cache key's half)."""
        h = hashlib.sha256(self.backbone.name.encode())
        for k, v in sorted(self.encoder.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save_encoder(self, folder: Path, info: dict[str, Any]) -> Path:
        from safetensors.torch import save_model

        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        save_model(self.encoder, str(tmp / "model.safetensors"))
        atomic_json(
            tmp / "encoder.json",
            {"backbone": self.backbone.name, "max_length": self.max_length, **info},
        )
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder


def load_critic_encoder(config: DigiQConfig, folder: Path | None = None) -> CriticEncoder:
    """The critic's encoder: off-the-shelf ``critic_backbone`` or, from ``folder``, fine-tuned."""
    backbone = load_backbone(config.critic_backbone, seed=config.seed, device=config.device)
    enc = CriticEncoder(backbone, config.critic_max_length).to(config.device)
    if folder is not None:
        from safetensors.torch import load_model

        load_model(enc.encoder, str(Path(folder) / "model.safetensors"), strict=True)
    return enc.eval()


def _aux_names(aux: str) -> list[str]:
    names = [a.strip() for a in aux.split("+") if a.strip()]
    unknown = [a for a in names if a not in AUX_OBJECTIVES]
    if unknown:
        raise ValueError(f"aux: unknown objective(s) {unknown}; known: {AUX_OBJECTIVES}")
    if "effect" not in names:
        raise ValueError("aux must include 'effect' (Digi-Q's objective); add others with '+'")
    return names


def inverse_dynamics_loss(
    enc: CriticEncoder, f_s: torch.Tensor, f_next: torch.Tensor, actions: Sequence[str], t: float
) -> torch.Tensor:
    """Which of the batch's actions took s_i to s'_i (Digi-Q's inverse dynamics objective), InfoNCE:
    -mean_i log exp(z_i . u_i / t) / sum_j exp(z_i . u_j / t) over j = i and every j whose action
    text differs from a_i (a repeated action is not a negative of itself)."""
    z = F.normalize(enc.inverse_head(torch.cat([f_s, f_next], dim=-1)), dim=-1)
    u = F.normalize(enc.proj_a(enc.state_features(actions)), dim=-1)
    logits = z @ u.T / t
    same = torch.tensor([[a == b for b in actions] for a in actions], device=logits.device)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(actions), device=logits.device))


def _cosine_lr(update: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the updates, then cosine decay to 0 (a factor)."""
    w = max(1, int(warmup * total))
    if update < w:
        return (update + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (update - w) / max(1, total - w)))


@torch.no_grad()
def effect_accuracy(enc: CriticEncoder, frame, batch: int = 32) -> dict[str, float]:
    """Accuracy (plain and balanced) of the effect head on ``frame``'s logged transitions."""
    if not len(frame):
        return {"acc": float("nan"), "balanced_acc": float("nan"), "positive_share": float("nan")}
    preds = []
    for i in range(0, len(frame), batch):
        part = frame.iloc[i : i + batch]
        f = enc.pair_features(list(part["state"]), list(part["action_text"]))
        preds.append((enc.effect_head(f).squeeze(-1) > 0).long())
    pred = torch.cat(preds).numpy()
    y = frame["effect_label"].to_numpy()
    recalls = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return {
        "acc": float((pred == y).mean()),
        "balanced_acc": float(np.mean(recalls)),
        "positive_share": float(y.mean()),
    }


def finetune_representation(
    config: DigiQConfig, run: TrainRun, frame, it: int, t_run: float
) -> tuple[CriticEncoder, dict[str, float], int]:
    """Phase 2: supervised fine-tuning of the critic encoder on the effect label (+ aux), on
    every labelled row of ``frame`` (trajectories and label probes)."""
    aux = _aux_names(config.aux)
    enc = load_critic_encoder(config)
    train = frame[~frame["heldout"]]
    held = frame[frame["heldout"]]
    if config.finetune_max_pairs:
        train = train.sample(n=min(len(train), config.finetune_max_pairs), random_state=config.seed)
    y_all = torch.tensor(train["effect_label"].to_numpy(), dtype=torch.float32)
    p = float(y_all.mean()) if len(y_all) else 0.5
    # balanced BCE: each label weighs 1/2 in total, whatever its share
    w_pos, w_neg = (
        (0.5 / max(p, 1e-6), 0.5 / max(1 - p, 1e-6)) if config.balance_classes else (1, 1)
    )
    if "inverse" in aux:
        enc.add_inverse_heads()
    heads = [m for n, m in enc.named_children() if n != "encoder"]
    opt = torch.optim.AdamW(
        [
            {"params": list(enc.encoder.parameters()), "lr": config.finetune_lr},
            {"params": [q for m in heads for q in m.parameters()], "lr": 20 * config.finetune_lr},
        ],
        weight_decay=0.01,
    )
    base = [g["lr"] for g in opt.param_groups]
    per_epoch = math.ceil(len(train) / config.finetune_batch_size)
    total = max(1, config.finetune_epochs * per_epoch)
    run.say(
        f"fine-tune: {len(train)} labelled transitions ({p:.2f} positive), {total} updates, "
        f"aux {'+'.join(aux)}, held out {len(held)}"
    )
    enc.train()
    losses: list[float] = []
    update = 0
    with run.progress(total, 0, "digiq fine-tune") as progress:
        for epoch in range(config.finetune_epochs):
            order = np.random.default_rng([config.seed, 21, epoch]).permutation(len(train))
            for b in range(0, len(order), config.finetune_batch_size):
                part = train.iloc[order[b : b + config.finetune_batch_size]]
                y = torch.tensor(part["effect_label"].to_numpy(), dtype=torch.float32)
                f_sa = enc.pair_features(list(part["state"]), list(part["action_text"]))
                # L_effect = -mean w_y [y log sigma(z) + (1 - y) log(1 - sigma(z))],  z = w . phi
                logit = enc.effect_head(f_sa).squeeze(-1)
                w = torch.where(y > 0.5, torch.tensor(w_pos), torch.tensor(w_neg))
                loss = (w * F.binary_cross_entropy_with_logits(logit, y, reduction="none")).mean()
                if {"next_state", "contrastive", "inverse"} & set(aux):
                    f_next = enc.state_features(list(part["next_state"]))
                if "next_state" in aux:
                    # L_next = mean || W phi(s, a) - sg(phi(s')) ||^2   (forward model in phi)
                    loss = loss + F.mse_loss(enc.next_head(f_sa), f_next.detach())
                if "contrastive" in aux:
                    # InfoNCE: -log exp(z_sa_i . z_s'_i / t) / sum_j exp(z_sa_i . z_s'_j / t)
                    z1 = F.normalize(enc.proj_sa(f_sa), dim=-1)
                    z2 = F.normalize(enc.proj_s(f_next), dim=-1)
                    logits = z1 @ z2.T / config.contrastive_temperature
                    loss = loss + F.cross_entropy(logits, torch.arange(len(part)))
                if "inverse" in aux:  # L_inv: a_i among the batch's actions, from (s_i, s'_i)
                    f_s = enc.state_features(list(part["state"]))
                    loss = loss + inverse_dynamics_loss(
                        enc, f_s, f_next, list(part["action_text"]), config.contrastive_temperature
                    )
                for g, lr in zip(opt.param_groups, base, strict=True):
                    g["lr"] = lr * _cosine_lr(update, total, config.finetune_warmup)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(enc.parameters(), config.grad_clip)
                opt.step()
                losses.append(loss.item())
                update += 1
                progress(1, f"loss {np.mean(losses[-20:]):.3f}")
                if update % config.log_every == 0 and update < total:
                    it += 1
                    metrics_row(
                        run,
                        it,
                        t_run,
                        phase=2,
                        ft_update=update,
                        ft_loss=np.mean(losses[-config.log_every :]),
                        ft_lr=opt.param_groups[0]["lr"],
                    )
    enc.eval()
    acc = effect_accuracy(enc, held)
    it += 1
    metrics_row(
        run,
        it,
        t_run,
        phase=2,
        ft_update=update,
        ft_loss=np.mean(losses[-config.log_every :]) if losses else None,
        ft_lr=opt.param_groups[0]["lr"],
        ft_heldout_acc=acc["acc"],
        ft_heldout_balanced_acc=acc["balanced_acc"],
        ft_heldout_positive_share=acc["positive_share"],
    )
    run.say(
        f"fine-tune: held-out effect accuracy {acc['acc']:.3f} (balanced "
        f"{acc['balanced_acc']:.3f}) on {len(held)} transitions, {acc['positive_share']:.2f} "
        "positive"
    )
    return enc, acc, it
