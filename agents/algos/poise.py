"""``poise``: POISE (Choi et al., 2026) - the actor is its own critic.

    for each iteration:
        for each of tasks_per_iteration train tasks: 2 rollouts i, j from the identical start,
        played by pi_theta (temperature T) through a FeatureTap: the acting forward pass itself
        leaves each turn's features (no extra pass)
        x_i = [prompt state, response state, entropy statistics] of rollout i (below)
        b_i = clip(probe(x_j), 0, 1)            the OTHER rollout's features, never x_i
            = r_j                               (RLOO) until the probe is fitted
        A_i = r_i - b_i                         no std normalisation; every turn of i gets A_i
        probes (back_probes): a share of the rollouts forked at a product page with "< Prev"
               taken there; probe k of task (i, j): A_k = r_k - (r_i + r_j) / 2, both
               continuations sampled independently of the probe's from its fork
        actor: PPO clip on the turn advantages (onpolicy.ppo_turn_update), ppo_epochs passes
        probe: rows (x_j, r_i) and (x_i, r_j) join a FIFO buffer of probe_buffer rows; refit
               PCA (32 prompt / 64 response dims, fewer with fewer rows) + standardise + ridge
               (alpha 100) on the buffer once it holds probe_min_rows rows

b_i is unbiased: it depends on the task and on rollout j, which was sampled independently of
rollout i. The probe is refitted *after* the iteration's advantages, so this batch's baselines
come from a probe that never saw this batch's rewards (fitting on the row (x_j, r_i) first
would let r_i leak into b_i); the probe R^2 / MSE logged for a batch is measured before the
refit that adds it, an honest generalisation score. ``rloo_mse`` beside it is the error of the
sibling's reward as the predictor, RLOO's baseline.

**The scorer adaptation** (policies/scorer_policy.py; the ``cpu`` presets). The scorer encodes
the state text once (u) and each candidate's text once (v_k) and softmaxes
f(s, a_k) / T over the candidates: that forward pass produces the decision's log-probability.
A :class:`FeatureTap` plays the policy with forward hooks on the encoder for the duration of
``decide_batch``: they keep the attention mask of each encoder call and the output of its
middle layer (layer n // 2 of n: 3 of MiniLM's 6, 1 of tiny-encoder's 2), and the scores the
softmax ran on. Per turn t:

- prompt p_t: the middle layer's mean over the last ``last_k`` (10) real tokens of the state
  text (its encoding ends with [SEP]);
- response q_t: the same over the last 10 real tokens of the chosen candidate's text;
- "token entropy" e_t: the entropy of the acting softmax over the candidates and its largest
  probability (one choice per turn: the candidates are the vocabulary).

An episode has several turns; rollout i's feature row is
x_i = [p_0, mean_t q_t, mean_t e_t (entropy), max_t entropy, mean_t max-prob, min_t max-prob,
number of turns]: p_0 is the prompt (the task's first page, the same for both siblings), the
response is the trajectory of chosen actions, averaged. Every turn of rollout i gets A_i, as
in GRPO. A task one of whose two rollouts errored is left out of the loss and the probe.

**The decoder path** (``tiny-lm``, ``smollm2-135m``) is refused: an LM policy scores its
candidates with :meth:`Backbone.score_candidates_and_state`, whose hidden states would need a
tap of their own; this trainer does not have one yet. ``ray`` collection works (the tap is a
picklable wrapper; its hooks live only inside ``decide_batch``), untested.

Saved with each checkpoint, in ``probe/``: ``probe.npz`` (the PCA means and components, the
scaler's mean and scale, the ridge coefficients and intercept) and ``buffer.npz`` (the FIFO
rows and targets), so a killed run resumes with the probe and buffer it had. Imports webgym_agents
only; sklearn fits the probe, numpy applies it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym_agents.policies.scorer_policy import ScorerDecision, ScorerPolicy
from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.onpolicy import (
    OnPolicyConfig,
    TurnBatch,
    back_probes,
    collect,
    iteration_tasks,
    objective,
    ppo_turn_update,
    probe_stats,
    start_learner,
)
from webgym_agents.toolkit.rollouts import Rollout, rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun

PROBE_DIR = "probe"


@dataclass
class PoiseConfig(OnPolicyConfig):
    group_size: int = 2  # two rollouts per task: each one's baseline comes from the other
    ppo_epochs: int = 2
    clip_eps: float = 0.2
    last_k: int = 10  # tokens averaged at the end of the prompt and of the response
    probe_prompt_dims: int = 32  # PCA components of the prompt block
    probe_response_dims: int = 64  # PCA components of the response block
    probe_alpha: float = 100.0  # ridge regularisation
    probe_buffer: int = 512  # FIFO rows the probe is refitted on
    probe_min_rows: int = 64  # RLOO baselines until the buffer holds this many rows


PRESETS = {
    "smoke": PoiseConfig(
        backbone="tiny-encoder", iterations=3, tasks_per_iteration=3, n_envs=6, max_steps=6,
        val_tasks=3, lr=1e-3, minibatch_size=16, probe_min_rows=4, back_probes=1.0,
    ),
    # grpo's cpu recipe ("< Prev" probes, success objective, the feature path at 10x lr,
    # T = 1, heads only, from bc) with POISE's 2 rollouts a task: 45 iterations x 48 tasks x 2,
    # + ~0.5 probe a rollout (~1 min an iteration on a shared core). 96 rows an iteration: the
    # probe is fitted from iteration 2, on <= 5 iterations' rows
    "cpu": PoiseConfig(
        init_checkpoint="released:bc", iterations=45, tasks_per_iteration=48, n_envs=16,
        temperature=1.0, back_probes=0.5, score_weight=0.0, success_bonus=1.0, lr=3e-3,
        feature_lr=3e-2, train_encoder=False, val_tasks=200, eval_every=15,
        checkpoint_every=15, torch_threads=1,
    ),
    # the candidate scorer on a large GPU (from bc --preset scorer-gpu); decoders are refused
    "gpu": PoiseConfig(
        device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
        tasks_per_iteration=128, n_envs=32, val_tasks=250, minibatch_size=128,
        probe_buffer=2048, probe_min_rows=128,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "scorer-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


# --------------------------------------------------------------------------------------------
# Features from the acting forward pass
# --------------------------------------------------------------------------------------------


@dataclass
class TurnFeatures:
    """What one acting forward pass leaves for POISE (module docstring)."""

    prompt: np.ndarray  # (H,) middle layer, mean of the state's last last_k tokens
    response: np.ndarray  # (H,) middle layer, mean of the chosen candidate's last last_k tokens
    entropy: float  # of the acting softmax over the candidates
    max_prob: float


@dataclass
class PoiseDecision(ScorerDecision):
    """A :class:`ScorerDecision` with the features its forward pass produced."""

    features: TurnFeatures | None = None


def middle_layer(policy: ScorerPolicy) -> torch.nn.Module:
    """Layer n // 2 (1-based) of the encoder's n: its output is ``hidden_states[n // 2]``."""
    layers = policy.encoder.encoder.layer
    return layers[max(1, len(layers) // 2) - 1]


def last_k_mean(hidden: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over each row's last ``k`` real tokens (right padding): (B, T, H) -> (B, H)."""
    n = mask.sum(1, keepdim=True)
    t = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    w = ((t < n) & (t >= n - k)).to(hidden.dtype)
    return (hidden * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp(min=1)


@contextlib.contextmanager
def _tapped(policy: ScorerPolicy, k: int) -> Iterator[dict[str, list]]:
    """Hooks on ``policy`` while the block runs: per encoder call, the middle layer's last-k
    means; per ``scores`` call, the scores (the softmax's inputs)."""
    rec: dict[str, list] = {"masks": [], "means": [], "scores": []}

    def keep_mask(_module, _args, kwargs):
        rec["masks"].append(kwargs["attention_mask"])

    def keep_layer(_module, _args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        rec["means"].append(last_k_mean(hidden.detach(), rec["masks"][len(rec["means"])], k))

    scores = policy.scores

    def keep_scores(*args, **kwargs):
        out = scores(*args, **kwargs)
        rec["scores"].append([f.detach() for f in out])
        return out

    hooks = [
        policy.encoder.register_forward_pre_hook(keep_mask, with_kwargs=True),
        middle_layer(policy).register_forward_hook(keep_layer),
    ]
    policy.scores = keep_scores  # an instance attribute shadows the method for this block
    # every text through the encoder: a frozen encoder's embedding cache (ScorerPolicy.embed)
    # would skip the texts it holds, and their middle layer with them
    policy.embed = policy.encode
    try:
        yield rec
    finally:
        del policy.scores, policy.embed
        for h in hooks:
            h.remove()


class FeatureTap:
    """``policy`` as ``collect_rollouts`` plays it, each decision a :class:`PoiseDecision`
    carrying the features of the very forward pass that chose it (no second pass)."""

    def __init__(self, policy: ScorerPolicy, last_k: int = 10):
        self.policy, self.last_k = policy, int(last_k)

    def eval(self) -> FeatureTap:
        self.policy.eval()
        return self

    def decide_batch(
        self, observations: Sequence[dict[str, Any]], *, temperature: float = 1.0, rng=None
    ) -> list[PoiseDecision]:
        with _tapped(self.policy, self.last_k) as rec:
            decisions = self.policy.decide_batch(observations, temperature=temperature, rng=rng)
        # ScorerPolicy.scores encodes the states (call 0), then each distinct candidate text
        # once, in order of first appearance (call 1)
        states, texts = rec["means"]
        (scores,) = rec["scores"]
        distinct = dict.fromkeys(t for d in decisions for t in d.candidates.texts)
        order = {t: i for i, t in enumerate(distinct)}
        out = []
        for i, (d, f) in enumerate(zip(decisions, scores, strict=True)):
            logp = torch.log_softmax(f.double() / d.temperature, dim=0)
            feats = TurnFeatures(
                prompt=states[i].double().numpy(),
                response=texts[order[d.candidates.texts[d.index]]].double().numpy(),
                entropy=float(-(logp.exp() * logp).sum()),
                max_prob=float(logp.max().exp()),
            )
            fields = {k.name: getattr(d, k.name) for k in dataclasses.fields(d)}
            out.append(PoiseDecision(**fields, features=feats))
        return out


def rollout_features(rollout: Rollout) -> np.ndarray:
    """x = [p_0, mean_t q_t, entropy mean, entropy max, max-prob mean, max-prob min, turns]."""
    feats = [t.decision.features for t in rollout.turns]
    ent = np.array([f.entropy for f in feats])
    top = np.array([f.max_prob for f in feats])
    stats = [ent.mean(), ent.max(), top.mean(), top.min(), float(len(feats))]
    return np.concatenate([feats[0].prompt, np.mean([f.response for f in feats], 0), stats])


# --------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------


@dataclass
class Probe:
    """clip(ridge(standardise([PCA_p(prompt), PCA_r(response), stats])), 0, 1), applied with
    numpy from its saved parameters; :meth:`fit` fits them with sklearn."""

    hidden: int  # H: x = [prompt (H), response (H), the entropy statistics and turns]
    params: dict[str, np.ndarray]

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, *, hidden: int, prompt_dims: int = 32,
        response_dims: int = 64, alpha: float = 100.0,
    ) -> Probe:  # fmt: skip
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        params: dict[str, np.ndarray] = {}
        blocks = []
        parts = [("prompt", slice(0, hidden), prompt_dims),
                 ("response", slice(hidden, 2 * hidden), response_dims)]  # fmt: skip
        for name, cols, dims in parts:
            pca = PCA(n_components=max(1, min(dims, len(x), hidden)), svd_solver="full")
            blocks.append(pca.fit_transform(x[:, cols]))
            params[f"{name}_mean"], params[f"{name}_components"] = pca.mean_, pca.components_
        z = np.concatenate([*blocks, x[:, 2 * hidden :]], axis=1)
        scaler = StandardScaler().fit(z)
        ridge = Ridge(alpha=alpha).fit(scaler.transform(z), y)
        params |= {"scale_mean": scaler.mean_, "scale": scaler.scale_, "coef": ridge.coef_,
                   "intercept": np.asarray(ridge.intercept_, dtype=float)}  # fmt: skip
        return cls(hidden, params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted expected reward of each row, clipped to [0, 1]."""
        p, h = self.params, self.hidden
        z = np.concatenate(
            [(x[:, :h] - p["prompt_mean"]) @ p["prompt_components"].T,
             (x[:, h : 2 * h] - p["response_mean"]) @ p["response_components"].T,
             x[:, 2 * h :]], axis=1,
        )  # fmt: skip
        raw = ((z - p["scale_mean"]) / p["scale"]) @ p["coef"] + p["intercept"]
        return np.clip(raw, 0.0, 1.0)

    def save(self, path: Path) -> None:
        np.savez(path, hidden=np.asarray(self.hidden), **self.params)

    @classmethod
    def load(cls, path: Path) -> Probe:
        with np.load(path) as f:
            return cls(int(f["hidden"]), {k: f[k] for k in f.files if k != "hidden"})


def sibling(n: int) -> np.ndarray:
    """The index of each rollout's sibling in adjacent pairs: 1, 0, 3, 2, ..."""
    return np.arange(n) ^ 1


def cross_rollout_baselines(
    features: np.ndarray, rewards: np.ndarray, probe: Probe | None
) -> np.ndarray:
    """b_i = probe(x_j), j = i's sibling (pairs adjacent), or r_j (RLOO) without a probe."""
    j = sibling(len(rewards))
    return probe.predict(features[j]) if probe is not None else rewards[j]


def poise_advantages(rewards: np.ndarray, baselines: np.ndarray) -> np.ndarray:
    """A_i = r_i - b_i (no std normalisation)."""
    return rewards - baselines


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


def train_poise(config: PoiseConfig, run: TrainRun):
    if config.group_size != 2:
        raise ValueError(f"poise plays 2 rollouts per task (group_size 2), not {config.group_size}")
    if config.backbone in ("tiny-lm", "smollm2-135m"):
        raise ValueError(
            f"poise taps the candidate scorer's encoder; the decoder path ({config.backbone}) "
            "has no feature tap yet (agents/algos/poise.py): use an encoder backbone"
        )
    learner = start_learner(config, run)
    policy, optimizer = learner.policy, learner.optimizer
    tap = FeatureTap(policy, config.last_k)
    buffer_x, buffer_y, probe = _restore_probe(run)

    def save(it: int) -> None:
        def save_probe(folder: Path) -> None:
            (folder / PROBE_DIR).mkdir()
            np.savez(folder / PROBE_DIR / "buffer.npz", x=buffer_x, y=buffer_y)
            if probe is not None:
                probe.save(folder / PROBE_DIR / "probe.npz")

        learner.save(run, it, extra=save_probe)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 5])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        probing = config.back_probes > 0
        rollouts = collect(
            config, tap, tasks, seed=config.seed + it, rng=gen, group_size=2, snapshots=probing
        )  # fmt: skip
        probes = back_probes(config, policy, rollouts, gen, config.seed + it) if probing else []
        t_collect = time.perf_counter() - t0
        # the tasks both of whose rollouts are valid, siblings adjacent
        kept = [r for a, b in zip(rollouts[::2], rollouts[1::2], strict=True)
                if a.valid and b.valid for r in (a, b)]  # fmt: skip
        rewards = np.array([objective(r, config) for r in kept], dtype=float)
        x = np.stack([rollout_features(r) for r in kept]).astype(np.float32) if kept else None
        fitted = probe is not None
        metrics = {"probe_fitted": int(fitted), "probe_rows": len(buffer_y)}
        # b_i from the probe fitted on past iterations (or RLOO), before it sees this batch
        baselines = cross_rollout_baselines(x, rewards, probe) if kept else rewards
        targets = rewards[sibling(len(kept))]  # row j's target: its sibling's reward
        metrics |= _probe_scores(baselines, rewards if fitted else None)  # b_i predicts r_i
        metrics["rloo_mse"] = float(np.mean((rewards - targets) ** 2)) if kept else float("nan")
        metrics["rloo_frac"] = 0.0 if fitted else 1.0
        advantages = poise_advantages(rewards, baselines)
        # a probe's baseline: the mean objective of its task's two rollouts
        pair_mean = {
            r.task_id: float(rewards[i : i + 2].mean()) for i, r in enumerate(kept) if i % 2 == 0
        }
        probes = [p for p in probes if p.valid and p.task_id in pair_mean]
        probe_adv = np.array([objective(p, config) - pair_mean[p.task_id] for p in probes])
        # every turn of rollout i gets A_i; PPO clip on the turn advantages
        batch = TurnBatch.of(kept + probes)
        turn_adv = torch.tensor(
            np.repeat(
                np.concatenate([advantages, probe_adv]), [len(r.turns) for r in batch.rollouts]
            ),
            dtype=torch.float32,
        )
        t2 = time.perf_counter()
        losses, st_log, norms = ppo_turn_update(
            policy, optimizer, batch, turn_adv, gen, epochs=config.ppo_epochs,
            minibatch_size=config.minibatch_size, clip_eps=config.clip_eps,
            grad_clip=config.grad_clip,
        )  # fmt: skip
        t_update = time.perf_counter() - t2
        # the probe: this batch's rows join the FIFO buffer, refit for the next iteration
        if kept:
            buffer_x = np.concatenate([buffer_x, x]) if len(buffer_y) else x
            buffer_y = np.concatenate([buffer_y, targets])
            buffer_x, buffer_y = buffer_x[-config.probe_buffer :], buffer_y[-config.probe_buffer :]
        if len(buffer_y) >= config.probe_min_rows:
            probe = Probe.fit(
                buffer_x, buffer_y, hidden=policy.backbone.hidden_size,
                prompt_dims=config.probe_prompt_dims, response_dims=config.probe_response_dims,
                alpha=config.probe_alpha,
            )  # fmt: skip
        stats = rollout_stats(rollouts)
        mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": sum(len(r.turns) for r in rollouts if r.valid),
            "errored": stats["errored"], "dropped_rollouts": len(rollouts) - len(kept),
            **probe_stats(probes),
            **metrics, "baseline_mean": mean(baselines),
            "adv_mean": mean(advantages),
            "adv_std": float(advantages.std(ddof=1)) if len(kept) > 1 else float("nan"),
            "actor_loss": mean(losses), "clip_frac": mean([s.clip_frac for s in st_log]),
            "approx_kl": mean([s.approx_kl for s in st_log]), "grad_norm": mean(norms),
            "collect_s": t_collect, "update_s": t_update,
        })  # fmt: skip
    return run.latest_path


def _probe_scores(predicted: np.ndarray, actual: np.ndarray | None) -> dict[str, float]:
    """The probe's MSE and R^2 on a batch it has not been fitted on (NaN without a probe)."""
    if actual is None or not len(actual):
        return {"probe_mse": float("nan"), "probe_r2": float("nan")}
    sse = float(np.sum((actual - predicted) ** 2))
    sst = float(np.sum((actual - actual.mean()) ** 2))
    return {"probe_mse": sse / len(actual), "probe_r2": 1 - sse / sst if sst else float("nan")}


def _restore_probe(run: TrainRun) -> tuple[np.ndarray, np.ndarray, Probe | None]:
    """The FIFO buffer and probe of the run's latest checkpoint (empty and None if none)."""
    latest = run.latest_checkpoint()
    folder = latest / PROBE_DIR if latest is not None else None
    if folder is None or not (folder / "buffer.npz").is_file():
        return np.zeros((0, 0), np.float32), np.zeros(0), None
    with np.load(folder / "buffer.npz") as f:
        x, y = f["x"], f["y"]
    probe = Probe.load(folder / "probe.npz") if (folder / "probe.npz").is_file() else None
    return x, y, probe


TRAINER = TrainerInfo(
    "poise",
    train_poise,
    PRESETS,
    description="POISE: PPO clip on A_i = r_i - probe(the sibling rollout's own hidden states)",
    preset_aliases=PRESET_ALIASES,
)

__all__ = [
    "PRESETS",
    "FeatureTap",
    "PoiseConfig",
    "PoiseDecision",
    "Probe",
    "TurnFeatures",
    "cross_rollout_baselines",
    "poise_advantages",
    "rollout_features",
    "sibling",
    "train_poise",
]
