"""Digi-Q's phase 3: the frozen features cached once, twin Q/V heads learnt by TD on the
cache (or end to end through the encoder), their values, and the critic's checkpoint.

Imports this package's config, data and encoder; never the extraction or the trainer.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from webgym.runs import atomic_path
from webgym_agents.algos.digiq.config import (
    CRITIC_FILE,
    FORMAT,
    DigiQConfig,
    atomic_json,
    metrics_row,
)
from webgym_agents.algos.digiq.encoder import CriticEncoder
from webgym_agents.toolkit.training import TrainRun

# ==============================================================================================
# 3. Freeze and cache; TD on the cache
# ==============================================================================================


@dataclass
class FeatureCache:
    """phi(s) of each distinct state text and phi(s, a) of each distinct (state, action text),
    with the dataset's rows mapped onto them."""

    states: torch.Tensor  # (S, h)
    pairs: torch.Tensor  # (P, h)
    s_idx: np.ndarray  # row -> phi(s_t)
    s2_idx: np.ndarray  # row -> phi(s_{t+1})
    cand_idx: list[np.ndarray]  # row -> phi(s_t, a_k) of each candidate of its pool
    logged: np.ndarray  # row -> phi(s_t, a_t)
    key: str
    computed: int = 0  # texts encoded by this call (0: everything was read from disk)


def _index_frame(frame) -> tuple[list[str], list[tuple[str, str]], dict, dict]:
    state_ix: dict[str, int] = {}
    pair_ix: dict[tuple[str, str], int] = {}
    for s, s2, texts in zip(frame["state"], frame["next_state"], frame["cand_texts"], strict=True):
        state_ix.setdefault(s, len(state_ix))
        state_ix.setdefault(s2, len(state_ix))
        for a in texts:
            pair_ix.setdefault((s, a), len(pair_ix))
    return list(state_ix), list(pair_ix), state_ix, pair_ix


def _encode_shards(enc, items, folder: Path, prefix: str, batch: int, shard: int, progress) -> int:
    """Encode ``items`` (texts or (s, a) pairs) into ``folder/prefix-NNNNN.npy`` shards (float16),
    skipping the shards on disk; returns how many items were encoded."""
    done = 0
    for k in range(math.ceil(len(items) / shard)):
        path = folder / f"{prefix}-{k:05d}.npy"
        chunk = items[k * shard : (k + 1) * shard]
        if path.is_file():
            progress(len(chunk))
            continue
        out = np.zeros((len(chunk), enc.dim), dtype=np.float16)
        order = sorted(range(len(chunk)), key=lambda i: len(str(chunk[i])))  # less padding
        with torch.no_grad():
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                if prefix == "pairs":
                    f = enc.pair_features([chunk[i][0] for i in idx], [chunk[i][1] for i in idx])
                else:
                    f = enc.state_features([chunk[i] for i in idx])
                out[idx] = f.float().cpu().numpy().astype(np.float16)
                progress(len(idx))
        with atomic_path(path) as tmp:  # keeps .npy: np.save appends none
            np.save(tmp, out)
        done += len(chunk)
    return done


def cache_features(
    enc: CriticEncoder,
    frame,
    data_hash: str,
    cache_root: Path,
    run: TrainRun | None = None,
    batch: int = 16,
    shard: int = 2048,
) -> FeatureCache:
    """Phase 3a: phi(s) and phi(s, a) of the dataset, each computed once with the frozen
    encoder and kept under ``cache_root/<key>`` (key: data hash + encoder digest + max length);
    what is on disk is read, never recomputed."""
    key = hashlib.sha256(
        f"{FORMAT}|{data_hash}|{enc.digest()}|{enc.max_length}".encode()
    ).hexdigest()[:24]
    folder = cache_root / key
    folder.mkdir(parents=True, exist_ok=True)
    states, pairs, state_ix, pair_ix = _index_frame(frame)
    atomic_json(
        folder / "meta.json",
        {
            "data_sha256": data_hash,
            "encoder_digest": enc.digest(),
            "max_length": enc.max_length,
            "states": len(states),
            "pairs": len(pairs),
            "dim": enc.dim,
        },
    )
    total = len(states) + len(pairs)
    say = run.say if run is not None else (lambda m: None)
    t0 = time.perf_counter()
    computed = 0
    ctx = run.progress(total, 0, "digiq features") if run is not None else _no_progress()
    was = enc.training
    enc.eval()
    with ctx as progress:
        computed += _encode_shards(enc, states, folder, "states", batch * 2, shard, progress)
        computed += _encode_shards(enc, pairs, folder, "pairs", batch, shard, progress)
    enc.train(was)

    def load(prefix: str, n: int) -> torch.Tensor:
        files = sorted(folder.glob(f"{prefix}-*.npy"))
        arr = np.concatenate([np.load(f) for f in files]) if files else np.zeros((0, enc.dim))
        assert len(arr) == n, f"{folder}: {prefix} shards hold {len(arr)} rows, not {n}"
        return torch.from_numpy(arr.astype(np.float32))

    cache = FeatureCache(
        states=load("states", len(states)),
        pairs=load("pairs", len(pairs)),
        s_idx=np.array([state_ix[s] for s in frame["state"]]),
        s2_idx=np.array([state_ix[s] for s in frame["next_state"]]),
        cand_idx=[
            np.array([pair_ix[(s, a)] for a in texts])
            for s, texts in zip(frame["state"], frame["cand_texts"], strict=True)
        ],
        logged=np.array(
            [pair_ix[(s, a)] for s, a in zip(frame["state"], frame["action_text"], strict=True)]
        ),
        key=key,
        computed=computed,
    )
    say(
        f"features: {len(states)} states + {len(pairs)} (s, a) pairs in {folder} "
        f"({computed} encoded now, {total - computed} read; {time.perf_counter() - t0:.1f} s)"
    )
    return cache


def with_candidate_features(cache: FeatureCache, frame) -> FeatureCache:
    """``critic_features``: the cache with the scorer's structural features (FEATURES) appended,
    each pair's [phi(s, a), features(a)] (zeros for a critic-only candidate) and each state's
    [phi(s), max over its candidates' features] (zeros for a state no row starts from: a final
    observation). The heads then read whether a page offers the instruction's options
    (``buy_mismatch``/``back_mismatch``), which mean-pooled text features blur."""
    n_f = max((len(f[0]) for f in frame["policy_features"] if len(f)), default=0)
    pair_f = np.zeros((len(cache.pairs), n_f), dtype=np.float32)
    state_f = np.zeros((len(cache.states), n_f), dtype=np.float32)
    for i, (pidx, feats) in enumerate(
        zip(frame["cand_policy_index"], frame["policy_features"], strict=True)
    ):
        f = np.zeros((len(feats), n_f), dtype=np.float32)
        for j, row in enumerate(feats):
            f[j, : len(row)] = row
        for k, p in enumerate(pidx):
            if p >= 0:
                pair_f[cache.cand_idx[i][k]] = f[p]
        if len(f):
            s = cache.s_idx[i]
            state_f[s] = np.maximum(state_f[s], f.max(0))
    return replace(
        cache,
        states=torch.cat([cache.states, torch.from_numpy(state_f)], 1),
        pairs=torch.cat([cache.pairs, torch.from_numpy(pair_f)], 1),
    )


class _no_progress:
    def __enter__(self):
        return lambda advance=1, info="": None

    def __exit__(self, *exc):
        return False


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    )


class CriticHeads(nn.Module):
    """Twin Q heads on phi(s, a) and twin V heads on phi(s): small MLPs, the only TD parameters
    in the frozen modes. With ``behaviour_v``, twin U heads on phi(s) besides: the behaviour's
    value (plain MSE onto Qbar(s, a_data)), which Best-of-N's advantage is measured against
    when V is an upper expectile (``behaviour_v`` in the config)."""

    def __init__(self, dim: int, hidden: int = 256, behaviour_v: bool = False):
        super().__init__()
        self.dim, self.hidden = int(dim), int(hidden)
        self.q = nn.ModuleList([_mlp(dim, hidden) for _ in range(2)])
        self.v = nn.ModuleList([_mlp(dim, hidden) for _ in range(2)])
        self.u = nn.ModuleList([_mlp(dim, hidden) for _ in range(2)] if behaviour_v else [])

    def us(self, f_s: torch.Tensor) -> torch.Tensor:
        """(2, B): U_1, U_2, the behaviour's value; V's when there are no U heads."""
        if not len(self.u):
            return self.vs(f_s)
        return torch.stack([u(f_s).squeeze(-1) for u in self.u])

    def qs(self, f_sa: torch.Tensor) -> torch.Tensor:
        """(2, B): Q_1, Q_2."""
        return torch.stack([q(f_sa).squeeze(-1) for q in self.q])

    def vs(self, f_s: torch.Tensor) -> torch.Tensor:
        """(2, B): V_1, V_2."""
        return torch.stack([v(f_s).squeeze(-1) for v in self.v])


@torch.no_grad()
def td_targets(
    target: CriticHeads,
    f_sa: torch.Tensor,
    f_s2: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    v_target: str = "per_head",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD targets, both from the TARGET heads, each (2, B):

    y_Q_i = r + gamma (1 - done) Vbar_i(s')
    y_V_i = Qbar_i(s, a_data)            (v_target "per_head", Digi-Q's rule)
          = min_j Qbar_j(s, a_data)      (v_target "min")
    """
    y_q = reward + gamma * (1.0 - done) * target.vs(f_s2)
    q_bar = target.qs(f_sa)
    if v_target == "min":
        y_v = q_bar.min(0).values.expand_as(q_bar)
    elif v_target == "per_head":
        y_v = q_bar
    else:
        raise ValueError(f"v_target must be 'per_head' or 'min', not {v_target!r}")
    return y_q, y_v


def expectile_loss(v: torch.Tensor, target: torch.Tensor, expectile: float) -> torch.Tensor:
    """sum_i mean |k - 1[y_i - V_i < 0]| (V_i - y_i)^2 over the twin heads, (2, B) each.

    k = 0.5 is (half) Digi-Q's plain regression onto Qbar(s, a_data): V is the behaviour
    policy's value, and Best-of-N is one step of improvement over it. k > 0.5 is IQL's
    expectile (Kostrikov et al., 2022): V leans towards the best in-sample actions, so Q
    stops paying for the behaviour policy's exploration after the next step."""
    w = torch.abs(expectile - (target - v < 0).to(v.dtype))
    return (2.0 * w * (v - target) ** 2).mean(1).sum()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """thetabar <- (1 - tau) thetabar + tau theta, parameter by parameter."""
    for pt, p in zip(target.parameters(), online.parameters(), strict=True):
        pt.mul_(1.0 - tau).add_(p.detach(), alpha=tau)


def _td_batch(frame_arrays, idx):
    r, d = frame_arrays
    return torch.as_tensor(r[idx], dtype=torch.float32), torch.as_tensor(
        d[idx], dtype=torch.float32
    )


def train_td_on_cache(
    config: DigiQConfig, run: TrainRun, cache: FeatureCache, frame, it: int, t_run: float
) -> tuple[CriticHeads, dict[str, float], int]:
    """Phase 3b: twin Q and V heads by one-step TD on the cached features only (no encoder)."""
    torch.manual_seed(config.seed)
    heads = CriticHeads(cache.states.shape[1], config.head_hidden, config.behaviour_v)
    target = copy.deepcopy(heads).requires_grad_(False)
    opt = torch.optim.Adam(heads.parameters(), lr=config.td_lr)
    rows = np.flatnonzero(~frame["heldout"].to_numpy())
    arrays = (frame["reward"].to_numpy(), frame["done"].to_numpy().astype(np.float32))
    gen = np.random.default_rng([config.seed, 31])
    lq, lv = [], []
    t0 = time.perf_counter()
    with run.progress(config.td_updates, 0, "digiq TD") as progress:
        for update in range(1, config.td_updates + 1):
            idx = rows[gen.integers(len(rows), size=min(config.td_batch_size, len(rows)))]
            f_sa = cache.pairs[cache.logged[idx]]
            f_s, f_s2 = cache.states[cache.s_idx[idx]], cache.states[cache.s2_idx[idx]]
            r, done = _td_batch(arrays, idx)
            y_q, y_v = td_targets(target, f_sa, f_s2, r, done, config.gamma, config.v_target)
            loss_q, loss_v = td_losses(heads, f_sa, f_s, y_q, y_v, config.v_expectile)
            opt.zero_grad(set_to_none=True)
            (loss_q + loss_v).backward()
            opt.step()
            polyak_update(target, heads, config.tau)
            lq.append(loss_q.item())
            lv.append(loss_v.item())
            if update % config.log_every == 0:
                progress(config.log_every, f"Q {np.mean(lq[-50:]):.4f} V {np.mean(lv[-50:]):.4f}")
            if update % (config.log_every * 10) == 0 and update < config.td_updates:
                it += 1
                metrics_row(run, it, t_run, phase=3, td_update=update, **_td_log(lq, lv, 50))
    rate = config.td_updates / max(time.perf_counter() - t0, 1e-9)
    return heads, {**_td_log(lq, lv, 50), "td_updates_per_s": rate}, it


def td_losses(
    heads: CriticHeads, f_sa: torch.Tensor, f_s: torch.Tensor, y_q: torch.Tensor,
    y_v: torch.Tensor, expectile: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Digi-Q's TD losses over the ensemble's heads i:

    L_Q = sum_i mean_batch (Q_i(s, a) - y_Q_i)^2
    L_V = expectile_loss(V_i(s), y_V_i)   (the plain MSE at expectile 0.5)
        + expectile_loss(U_i(s), y_V_i, 0.5)   (with U heads: the behaviour's value)
    """
    loss_q = ((heads.qs(f_sa) - y_q) ** 2).mean(1).sum()
    loss_v = expectile_loss(heads.vs(f_s), y_v, expectile)
    if len(heads.u):  # + sum_i mean (U_i(s) - y_V_i)^2: the behaviour's value, for Best-of-N
        loss_v = loss_v + expectile_loss(heads.us(f_s), y_v, 0.5)
    return loss_q, loss_v


def _td_log(lq: list[float], lv: list[float], window: int) -> dict[str, float]:
    """The mean TD losses over the last ``window`` updates."""
    return {"td_loss_q": float(np.mean(lq[-window:])), "td_loss_v": float(np.mean(lv[-window:]))}


def train_td_end_to_end(
    config: DigiQConfig, run: TrainRun, enc: CriticEncoder, frame, it: int, t_run: float
) -> tuple[CriticEncoder, CriticHeads, dict[str, float], int]:
    """critic_mode end_to_end: the same TD losses, the features computed by the trained encoder
    at every update; the target network is a copy of encoder AND heads, Polyak-averaged."""
    torch.manual_seed(config.seed)
    heads = CriticHeads(enc.dim, config.head_hidden, config.behaviour_v)
    online = nn.ModuleDict({"enc": enc, "heads": heads})
    target = copy.deepcopy(online).requires_grad_(False)
    target.eval()
    enc.train()
    opt = torch.optim.Adam(
        [
            {"params": list(enc.encoder.parameters()), "lr": config.e2e_lr},
            {"params": list(heads.parameters()), "lr": config.td_lr},
        ]
    )
    rows = np.flatnonzero(~frame["heldout"].to_numpy())
    arrays = (frame["reward"].to_numpy(), frame["done"].to_numpy().astype(np.float32))
    gen = np.random.default_rng([config.seed, 32])
    lq, lv = [], []
    t0 = time.perf_counter()
    with run.progress(config.e2e_updates, 0, "digiq TD end-to-end") as progress:
        for update in range(1, config.e2e_updates + 1):
            idx = rows[gen.integers(len(rows), size=min(config.e2e_batch_size, len(rows)))]
            part = frame.iloc[idx]
            s, a, s2 = list(part["state"]), list(part["action_text"]), list(part["next_state"])
            f_sa, f_s = enc.pair_features(s, a), enc.state_features(s)
            with torch.no_grad():
                tf_sa = target["enc"].pair_features(s, a)
                tf_s2 = target["enc"].state_features(s2)
            r, done = _td_batch(arrays, idx)
            y_q, y_v = td_targets(
                target["heads"], tf_sa, tf_s2, r, done, config.gamma, config.v_target
            )
            loss_q, loss_v = td_losses(heads, f_sa, f_s, y_q, y_v, config.v_expectile)
            opt.zero_grad(set_to_none=True)
            (loss_q + loss_v).backward()
            torch.nn.utils.clip_grad_norm_(online.parameters(), config.grad_clip)
            opt.step()
            polyak_update(target, online, config.tau)
            lq.append(loss_q.item())
            lv.append(loss_v.item())
            progress(1, f"Q {np.mean(lq[-20:]):.4f} V {np.mean(lv[-20:]):.4f}")
            if update % config.log_every == 0 and update < config.e2e_updates:
                it += 1
                metrics_row(run, it, t_run, phase=3, td_update=update, **_td_log(lq, lv, 20))
    rate = config.e2e_updates / max(time.perf_counter() - t0, 1e-9)
    enc.eval()
    return enc, heads, {**_td_log(lq, lv, 20), "td_updates_per_s": rate}, it


@torch.no_grad()
def critic_values(heads: CriticHeads, cache: FeatureCache) -> tuple[list[np.ndarray], np.ndarray]:
    """Q(s, a_k) = min_i Q_i for each row's candidates, and the behaviour's value of each row,
    min_i U_i (min_i V_i without U heads): what Best-of-N's advantage subtracts."""
    q_all = heads.qs(cache.pairs).min(0).values.numpy() if len(cache.pairs) else np.zeros(0)
    v_states = heads.us(cache.states).min(0).values.numpy()
    return [q_all[ix] for ix in cache.cand_idx], v_states[cache.s_idx]


# ==============================================================================================
# Checkpoints of the critic
# ==============================================================================================


def save_critic(path: Path, heads: CriticHeads, info: dict[str, Any]) -> None:
    torch.save(
        {
            "heads": heads.state_dict(),
            "dim": heads.dim,
            "hidden": heads.hidden,
            "behaviour_v": bool(len(heads.u)),
            "info": info,
        },
        path,
    )


def load_critic(checkpoint: str | Path) -> tuple[CriticHeads, dict[str, Any]]:
    """The twin Q/V heads of a digiq checkpoint and what they were trained on (data hash,
    encoder, options)."""
    blob = torch.load(Path(checkpoint) / CRITIC_FILE, weights_only=False)
    heads = CriticHeads(blob["dim"], blob["hidden"], blob.get("behaviour_v", False))
    heads.load_state_dict(blob["heads"])
    return heads.eval(), blob["info"]
