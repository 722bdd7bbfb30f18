"""A candidate-scoring policy: a bi-encoder embeds the state and each candidate action, a small
head scores each pair, a softmax over the page's candidates picks one.

    u = pool(Enc("<goal> | <page summary>")),  v_k = pool(Enc(text of candidate k))
    f(s, a_k) = MLP([u * v_k, u - v_k, features_k]) + w . features_k
    pi(a_k | s) = softmax_k(f(s, a_k) / T)
    V(s) = ValueHead(pool(Enc'("<goal> | <page summary>")))       (ScorerCritic, a copy of Enc)

Why this policy kind exists next to the decoder LM (agents/policies/lm_agent.py): on this 2-core CPU
machine SmolLM2-135M costs 1.3-2 s per step to act and 2-3 s per sample to train, about 130
on-policy episodes an hour, too few for a learning curve. all-MiniLM-L6-v2 is a sentence
bi-encoder trained for exactly this kind of matching (instruction against product title);
encoding the state once and each candidate once costs a fraction of cross-encoding every
(state, candidate) pair (measured on this machine, one thread, under load: cross-encoding a
results page's 10 pairs at 96 tokens 0.4-0.6 s forward, 0.8 s backward with every layer
trained). Only the top ``train_layers`` layers are trained (0: all). WebShop's own imitation
baseline chose clicks the same way (BERT scoring each clickable against the state). The decoder
path stays for the ``gpu`` presets.

Candidates are the page's available actions, each described by what a shopper sees (a result
link by the product's title and price, an option by "dimension: value", a button by its name)
and by a few structural features (:data:`FEATURES`: kind, selected, within the budget, rank,
word overlap with the instruction, steps left). On a page with a search box the candidates
are a few queries built from the instruction (:func:`search_queries`); the policy chooses
among them, it does not generate.

What the encoder reads (the state text, the candidates and their features) is
webgym_agents/policies/scorer_inputs.py; this module holds the networks, their checkpoints and
the agent, and hands those names on.

The log-probability a decision carries is that of the distribution that acted:
log softmax(f / T)[chosen], so PPO ratios built on :meth:`ScorerPolicy.logprobs` are exact.

Imports webgym_agents.observation and webgym_agents.models; never benchmarks or leaderboards.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from webgym.envs import MAX_EPISODE_STEPS
from webgym.runs import atomic_write_json
from webgym_agents.base import PolicyAgent, top_candidates
from webgym_agents.models.backbone import Backbone, BackboneMismatch, ValueHead, load_backbone
from webgym_agents.policies.scorer_inputs import (
    FEATURE_SCALE,
    FEATURES,
    N_FEATURES_V1,
    RETRY_STEPS,
    Candidates,
    candidates,
    critic_state_text,
    result_items,
    search_queries,
    state_text,
)
from webgym_agents.shipped import (
    ReleaseError,
    display_path,
    is_release,
    read_release,
    release_config,
)

__all__ = [
    "FEATURES",
    "N_FEATURES_V1",
    "RETRY_STEPS",
    "ScorerAgent",
    "ScorerCritic",
    "ScorerDecision",
    "ScorerPolicy",
    "Candidates",
    "candidates",
    "search_queries",
    "pad_new_features",
    "critic_state_text",
    "result_items",
    "state_text",
]

ENCODER_BACKBONES = ("minilm", "tiny-encoder")  # the backbones this policy kind runs on
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1
KIND = "scorer-policy"
CRITIC_KIND = "scorer-critic"

EMBEDDING_CACHE_SIZE = 200_000
"""Texts whose frozen-encoder embedding :meth:`ScorerPolicy.embed` keeps (~300 MB for MiniLM);
a full cache is emptied and refilled."""

# --------------------------------------------------------------------------------------------
# The policy.
# --------------------------------------------------------------------------------------------


def freeze_lower_layers(encoder: nn.Module, train_layers: int) -> None:
    """Train only the top ``train_layers`` transformer layers (0 or less: train everything).

    On a CPU the backward pass is most of a step's cost; the frozen layers still run forward,
    but autograd records nothing below the first trainable layer.
    """
    layers = encoder.encoder.layer
    if train_layers <= 0 or train_layers >= len(layers):
        encoder.requires_grad_(True)
        return
    encoder.requires_grad_(False)
    for layer in layers[len(layers) - train_layers :]:
        layer.requires_grad_(True)


@dataclass
class ScorerDecision:
    """One act: what was chosen among which candidates, and its log-probability when chosen
    (``logprobs``: every candidate's, log softmax(f / T), when the policy filled them in)."""

    action: str
    state: str
    candidates: Candidates
    index: int
    logprob: float  # log softmax(f / T)[index], T the acting temperature
    temperature: float
    value: float | None = None
    # the action was forced (a probe's "< Prev"), not drawn: the clipped losses train such a
    # turn with the plain policy gradient (webgym_agents.toolkit.onpolicy.old_logprobs)
    forced: bool = False
    logprobs: list[float] | None = None

    def explain(self) -> dict[str, Any]:
        """The five likeliest candidates with their probabilities at the acting temperature
        (the chosen one always among them): what ``PolicyAgent.explain`` records."""
        out: dict[str, Any] = {"value": self.value}
        if self.logprobs is not None:
            out["candidates"] = top_candidates(
                self.candidates.actions, self.logprobs, chosen=self.index
            )
        else:
            out["reason"] = (
                f"chose candidate {self.index + 1} of {len(self.candidates.actions)} "
                f"(probability {np.exp(self.logprob):.3f})"
            )
        return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states under the attention mask (MiniLM's sentence embedding)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class ScorerPolicy(nn.Module):
    """Bi-encoder candidate scorer (module docstring):

    u = pool(Enc(state)), v_k = pool(Enc(text_k)),
    f(s, a_k) = MLP([u * v_k, u - v_k, features_k]) + w . features_k,   pi = softmax(f / T).
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_length: int = 96,
        max_steps: int = MAX_EPISODE_STEPS,
        train_layers: int = 0,
        hidden: int = 128,
    ):
        super().__init__()
        if backbone.is_causal:
            raise ValueError(
                f"ScorerPolicy needs an encoder (minilm, tiny-encoder), not {backbone.name}"
            )
        self.backbone = backbone
        self.encoder = backbone.model
        h = backbone.hidden_size
        self.head = nn.Sequential(
            nn.Linear(2 * h + len(FEATURES), hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        # the features also reach the score directly (rank, budget, named option: a linear
        # preference is learnt in a few updates, not through the embedding products)
        self.feature_weights = nn.Linear(len(FEATURES), 1, bias=False)
        for layer in (self.head[2], self.feature_weights):  # a fresh policy is uniform
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.head[2].bias)
        self.max_length = int(max_length)
        self.max_steps = int(max_steps)
        self.train_layers = int(train_layers)
        self.hidden = int(hidden)
        freeze_lower_layers(self.encoder, self.train_layers)
        self.metadata: dict[str, Any] = {}
        self._embedding_cache: dict[tuple[str, int], torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__().copy()
        state["_embedding_cache"] = {}  # not shipped to Ray workers or copies: rebuilt on use
        return state

    @classmethod
    def from_backbone_name(cls, name: str, *, seed: int = 0, **kwargs: Any) -> ScorerPolicy:
        return cls(load_backbone(name, seed=seed), **kwargs)

    @classmethod
    def from_release(cls, name: str | Path, *, backbone: Backbone | None = None) -> ScorerPolicy:
        """A shipped checkpoint: ``ScorerPolicy.from_release("bc")`` (agents/release.py), its
        weights checked and read by :func:`webgym_agents.shipped.read_release`."""
        found = read_release(name, backbone=backbone)
        config, release = found.config, found.release
        policy = cls(
            found.backbone,
            max_length=int(config.get("max_length", 96)),
            train_layers=int(config.get("train_layers", 0)),
            hidden=int(config.get("hidden", 128)),
        )
        heads = pad_new_features(found.heads, policy.state_dict())
        missing, unexpected = policy.load_state_dict(heads, strict=False)
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ReleaseError(
                f"{display_path(release.path / HEAD_FILE)} does not fit this policy: missing "
                f"{missing}, unexpected {unexpected}; {release.rebuild_hint()}"
            )
        policy.metadata = dict(config.get("metadata") or {})
        policy.metadata["release"] = {"name": release.name, "sha256": found.info["sha256"]}
        return policy.eval()

    def __repr__(self) -> str:
        return f"ScorerPolicy({self.backbone.name}, train_layers={self.train_layers})"

    # ------------------------------------------------------------------ scoring

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """pool(Enc(text)) of each text, through the encoder (with grad where it trains)."""
        enc = self.backbone.tokenizer(
            list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(self.backbone.device)
        return mean_pool(self.encoder(**enc).last_hidden_state, enc["attention_mask"])

    def embed(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """:meth:`encode`, from a cache while the encoder is frozen (heads-only training).

        A frozen encoder's embedding is a function of the text alone, and acting costs mostly
        this forward pass: GRPO's groups share their start, pages and result titles repeat
        across rollouts and iterations, so each text is encoded once (in eval mode: the same
        embedding when acting and when the loss recomputes the log-probabilities)."""
        if any(p.requires_grad for p in self.encoder.parameters()):
            return self.encode(texts, max_length)
        cache = self._embedding_cache
        todo = list(dict.fromkeys(t for t in texts if (t, max_length) not in cache))
        if todo:
            if len(cache) + len(todo) > EMBEDDING_CACHE_SIZE:
                cache.clear()
            was_training = self.encoder.training
            self.encoder.eval()
            with torch.no_grad():
                for i in range(0, len(todo), 64):
                    chunk = todo[i : i + 64]
                    for t, e in zip(chunk, self.encode(chunk, max_length), strict=True):
                        cache[(t, max_length)] = e
            self.encoder.train(was_training)
        if not texts:
            return torch.zeros(0, self.backbone.hidden_size, device=self.backbone.device)
        return torch.stack([cache[(t, max_length)] for t in texts])

    def scores(self, states: Sequence[str], cands: Sequence[Candidates]) -> list[torch.Tensor]:
        """f(s_i, a_ik) for every state and candidate, one tensor per state (with grad)."""
        # each distinct text is encoded once per call (links like "Back to Search" repeat)
        texts = list(dict.fromkeys(t for c in cands for t in c.texts))
        where = {t: i for i, t in enumerate(texts)}
        u = self.embed(states, self.max_length)
        v = self.embed(texts, 32) if texts else torch.zeros(0, self.backbone.hidden_size)
        out = []
        for i, c in enumerate(cands):
            vk = v[[where[t] for t in c.texts]]
            uk = u[i].expand_as(vk)
            feats = torch.tensor(c.features, dtype=vk.dtype, device=vk.device)
            z = torch.cat([uk * vk, uk - vk, feats], dim=-1)
            linear = self.feature_weights(feats * FEATURE_SCALE)
            out.append((self.head(z) + linear).squeeze(-1))
        return out

    def logprobs(
        self,
        states: Sequence[str],
        cands: Sequence[Candidates],
        chosen: Sequence[int],
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """log pi(a_chosen | s) = log softmax_k(f(s, a_k) / T)[chosen], differentiable, (B,)."""
        return torch.stack(
            [
                torch.log_softmax(f / temperature, dim=0)[k]
                for f, k in zip(self.scores(states, cands), chosen, strict=True)
            ]
        )

    def entropies(self, states, cands, temperature: float = 1.0) -> torch.Tensor:
        out = []
        for f in self.scores(states, cands):
            logp = torch.log_softmax(f / temperature, dim=0)
            out.append(-(logp.exp() * logp).sum())
        return torch.stack(out)

    @torch.no_grad()
    def decide_batch(
        self,
        observations: Sequence[dict[str, Any]],
        *,
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
        explore: float = 0.0,
        forced: Sequence[str | None] | None = None,
    ) -> list[ScorerDecision]:
        """One decision per observation; temperature 0 takes the argmax (logprob at T = 1).

        ``explore`` = epsilon > 0: with probability epsilon the candidate is drawn uniformly
        instead (bc puts ~1e-4 on ``< Prev``: sampling alone never tries it). The decision's
        ``logprob`` stays the policy's own, log pi_T(a | s), so PPO's ratio treats an explored
        action as the policy's (biased toward exploration, as epsilon-greedy is; the clipped
        ratio bounds each update as usual).

        ``forced[i]`` (an action among observation i's candidates, or None): taken instead of a
        drawn one, with the policy's own log-probability too (a probe of that action)."""
        rng = rng if rng is not None else np.random.default_rng()
        states = [state_text(o, self.max_steps) for o in observations]
        cands = [candidates(o, self.max_steps) for o in observations]
        was_training = self.training
        self.eval()
        scores = self.scores(states, cands)
        self.train(was_training)
        out = []
        t_act = temperature if temperature > 0 else 1.0
        forced = forced if forced is not None else [None] * len(observations)
        for state, c, f, force in zip(states, cands, scores, forced, strict=True):
            logp = torch.log_softmax(f.double() / t_act, dim=0)
            if force is not None:
                if force not in c.actions:
                    raise ValueError(f"forced action {force!r} is not a candidate of its page")
                k = c.actions.index(force)
            elif explore > 0 and rng.random() < explore:
                k = int(rng.integers(len(c.actions)))
            elif temperature > 0:
                probs = logp.exp().numpy()
                k = int(rng.choice(len(c.actions), p=probs / probs.sum()))
            else:
                k = int(torch.argmax(f))
            out.append(
                ScorerDecision(
                    c.actions[k],
                    state,
                    c,
                    k,
                    float(logp[k]),
                    t_act,
                    logprobs=logp.tolist(),
                    forced=force is not None,
                )  # fmt: skip
            )
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        return _save(
            self, directory, KIND, metadata, max_length=self.max_length,
            train_layers=self.train_layers, hidden=self.hidden,
        )  # fmt: skip

    @classmethod
    def load(cls, directory: str | Path, *, backbone: Backbone | None = None) -> ScorerPolicy:
        if is_release(directory):  # a shipped checkpoint (agents/release.py)
            return cls.from_release(directory, backbone=backbone)
        info, backbone = _load_backbone(directory, KIND, backbone)
        policy = cls(
            backbone,
            max_length=int(info.get("max_length", 96)),
            train_layers=int(info.get("train_layers", 0)),
            hidden=int(info.get("hidden", 128)),
        )
        _load_weights(policy, directory)
        policy.metadata = info.get("metadata") or {}
        return policy


class ScorerCritic(nn.Module):
    """V(s) = ValueHead(pool(Encoder(state text))): a copy of the encoder with a scalar head.

    The state text holds the observation only, never a response: the value is read at the
    prompt boundary by construction."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_length: int = 96,
        max_steps: int = MAX_EPISODE_STEPS,
        train_layers: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.encoder = backbone.model
        self.head = ValueHead(backbone.hidden_size)
        self.max_length = int(max_length)
        self.max_steps = int(max_steps)
        self.train_layers = int(train_layers)
        freeze_lower_layers(self.encoder, self.train_layers)
        self.metadata: dict[str, Any] = {}

    def param_groups(self, lr: float, head_lr: float) -> list[dict[str, Any]]:
        """AdamW groups: the encoder's trainable layers at ``lr``, the value head at ``head_lr``
        (a fresh head must reach the mean return, ~0.7, within a few dozen updates)."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        return [
            {"params": encoder, "lr": lr},
            {"params": list(self.head.parameters()), "lr": head_lr},
        ]

    def values(self, states: Sequence[str]) -> torch.Tensor:
        """V(s) for each state text, (B,), differentiable."""
        enc = self.backbone.tokenizer(
            list(states),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.backbone.device)
        return self.head(
            mean_pool(self.encoder(**enc).last_hidden_state, enc["attention_mask"])
        ).view(-1)

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        return _save(
            self, directory, CRITIC_KIND, metadata, max_length=self.max_length,
            train_layers=self.train_layers,
        )  # fmt: skip

    @classmethod
    def load(cls, directory: str | Path, *, backbone: Backbone | None = None) -> ScorerCritic:
        info, backbone = _load_backbone(directory, CRITIC_KIND, backbone)
        critic = cls(
            backbone,
            max_length=int(info.get("max_length", 96)),
            train_layers=int(info.get("train_layers", 0)),
        )
        _load_weights(critic, directory)
        return critic


# --------------------------------------------------------------------------------------------
# Checkpoints: policy.json (written last) + the encoder's and the head's safetensors.
# --------------------------------------------------------------------------------------------


def _save(module: nn.Module, directory, kind: str, metadata, **fields_: Any) -> Path:
    from safetensors.torch import save_file, save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if metadata:
        module.metadata.update(metadata)
    save_model(module.encoder, str(d / WEIGHTS_FILE))
    heads = {
        k: v.contiguous() for k, v in module.state_dict().items() if not k.startswith("encoder.")
    }
    save_file(heads, str(d / HEAD_FILE))  # everything but the encoder: the scoring head(s)
    info = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "backbone": module.backbone.name,
        "fingerprint": module.backbone.checkpoint_fingerprint(),
        "metadata": module.metadata,
        **fields_,
    }
    atomic_write_json(d / POLICY_FILE, info, sort_keys=True, default=str)
    return d


def read_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / POLICY_FILE
    if not path.is_file():
        if is_release(directory):  # a shipped checkpoint: config.json has the same fields
            return release_config(directory)
        raise FileNotFoundError(f"{directory} is not a checkpoint: it has no {POLICY_FILE}")
    return json.loads(path.read_text())


def _load_backbone(directory, kind: str, backbone: Backbone | None) -> tuple[dict, Backbone]:
    info = read_info(directory)
    if info.get("kind") != kind:
        raise ValueError(f"{directory} holds a {info.get('kind')!r} checkpoint, not a {kind!r}")
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: format_version {info.get('format_version')!r} unsupported")
    name = info["backbone"]
    if backbone is None:
        backbone = load_backbone(name)
    if backbone.name != name:
        raise BackboneMismatch(f"{directory} was trained on {name}, not {backbone.name}")
    backbone.check_fingerprint(info.get("fingerprint") or {})
    return info, backbone


def pad_new_features(heads: dict, own: dict) -> dict:
    """A head trained on the first :data:`N_FEATURES_V1` (or more) features gets zero weights on
    the features added since: it scores every candidate as it did when it was trained."""
    for key, w in heads.items():
        want = own.get(key)
        if (
            want is not None and w.dim() == 2 and want.dim() == 2 and w.shape[0] == want.shape[0]
            and 0 < want.shape[1] - w.shape[1] <= len(FEATURES) - N_FEATURES_V1
        ):  # fmt: skip  # features are the last inputs of both heads: new ones append
            extra = want.shape[1] - w.shape[1]
            heads[key] = torch.cat([w, w.new_zeros(w.shape[0], extra)], dim=1)
    return heads


def _load_weights(module: nn.Module, directory) -> None:
    from safetensors.torch import load_file, load_model

    d = Path(directory)
    load_model(module.encoder, str(d / WEIGHTS_FILE), strict=True)
    heads = pad_new_features(load_file(str(d / HEAD_FILE)), module.state_dict())
    missing, unexpected = module.load_state_dict(heads, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if hasattr(module, "_embedding_cache"):
        module._embedding_cache.clear()  # new encoder weights
    if missing or unexpected:
        raise BackboneMismatch(
            f"{d / HEAD_FILE} does not fit this policy: missing {missing}, unexpected {unexpected}"
        )
    module.eval()


# --------------------------------------------------------------------------------------------
# The agent.
# --------------------------------------------------------------------------------------------


class ScorerAgent(PolicyAgent):
    """Plays a :class:`ScorerPolicy`: ``make_agent("scorer", checkpoint=DIR, temperature=0)``.

    Temperature 0 (the default) takes the best-scored candidate; sampling draws only from the
    generator made in ``reset(seed=...)``. An in-memory policy: ``ScorerAgent(policy=policy)``.
    """

    name = "scorer"
    description = "a candidate-scoring encoder policy (checkpoint from ScorerPolicy.save)"
    needs_checkpoint = True

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        policy: ScorerPolicy | None = None,
        temperature: float = 0.0,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if policy is None:
            if checkpoint is None:
                raise ValueError("ScorerAgent needs a checkpoint directory or a policy")
            policy = ScorerPolicy.load(checkpoint)
            policy.requires_grad_(False)  # it only acts: its embeddings are cached (embed)
        super().__init__(policy, temperature=temperature)
