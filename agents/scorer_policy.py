"""A candidate-scoring policy: an encoder reads (state, action) pairs, a softmax picks one.

    f(s, a_k) = w . h_CLS(Encoder("<goal> | <page summary>" [SEP] "<action label>")) + b
    pi(a_k | s) = softmax_k(f(s, a_k) / T)          over the page's candidate actions
    V(s)       = ValueHead(h_CLS(Encoder'("<goal> | <page summary>")))   (ScorerCritic, a copy)

Why this policy kind exists next to the decoder LM (agents/lm_agent.py): on this 2-core CPU
machine SmolLM2-135M costs 1.3-2 s per step to act and 2-3 s per sample to train, about 130
on-policy episodes an hour; MiniLM-L6 scores the 12-17 candidates of a page in 0.15-0.2 s and
trains at ~0.6 s per state, about 1,000 episodes an hour, enough for a learning curve in the
2-hour ``cpu`` presets. WebShop's own imitation baseline chose clicks the same way (BERT
scoring each clickable against the state). The decoder path stays for the ``gpu`` presets.

Candidates are the page's available actions, each described by what a shopper sees: a result
link by the product's title and price, an option by "dimension: value (selected)", a button by
its name. On a page with a search box the candidates are a few queries built from the
instruction (:func:`search_queries`); the policy chooses among them, it does not generate.

The log-probability a decision carries is that of the distribution that acted:
log softmax(f / T)[chosen], so PPO ratios built on :meth:`ScorerPolicy.logprobs` are exact.

Imports agents.observation and agents.models; never benchmarks or leaderboards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.models.backbone import Backbone, BackboneMismatch, ValueHead, load_backbone
from agents.observation import (
    AxNode,
    axtree_nodes,
    goal_without_price,
    has_search_bar,
    option_groups,
)

__all__ = [
    "ScorerCritic",
    "ScorerDecision",
    "ScorerPolicy",
    "action_texts",
    "search_queries",
    "state_text",
]

POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1
KIND = "scorer-policy"
CRITIC_KIND = "scorer-critic"

_SEP = " [SEP] "
_ASIN_RE = re.compile(r"^B0[0-9A-Z]{8}$")
_PRICE_RE = re.compile(r"^\$[\d,.]+( to \$[\d,.]+)?$")
_ITEM_RE = re.compile(r"^click\('item_(?P<asin>[a-z0-9]+)'\)$")
_CLICK_RE = re.compile(r"^click\('(?P<bid>[^']+)'\)$")
_QUERY_PREFIX_RE = re.compile(
    r"^(i am looking for|i'm looking for|i would like|i want|i need|looking for|find me|"
    r"get me|buy me|i'd like)\s+(an?\s+|some\s+|the\s+)?",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# What the encoder reads.
# --------------------------------------------------------------------------------------------


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split())


def _page_segments(obs: dict[str, Any]) -> list[str]:
    """The observation's text without its instruction, split at WebShop's [SEP] markers."""
    text = _norm(obs.get("text"))
    goal = _norm(obs.get("goal"))
    prefix = f"Instruction: [SEP] {goal}"
    if goal and text.startswith(prefix):
        text = text[len(prefix) :]
    return [s.strip() for s in text.split("[SEP]") if s.strip()]


def result_items(obs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``asin (lower case) -> (title, price)`` of the products a results page lists."""
    segs = _page_segments(obs)
    items: dict[str, tuple[str, str]] = {}
    for i, seg in enumerate(segs):
        if _ASIN_RE.match(seg):
            title = segs[i + 1] if i + 1 < len(segs) else ""
            price = segs[i + 2] if i + 2 < len(segs) and _PRICE_RE.match(segs[i + 2]) else ""
            items[seg.lower()] = (title, price)
    return items


def _page_kind(obs: dict[str, Any], nodes: list[AxNode]) -> str:
    actions = obs.get("available_actions") or ()
    if "click('buy_now')" in actions:
        return "item page"
    if any(a.startswith("click('item_") for a in actions):
        return "results page"
    if any(n.role in ("textbox", "searchbox", "combobox") and n.bid for n in nodes):
        return "search page"
    if "click('prev')" in actions:
        return "item detail page"
    return "page"


def state_text(obs: dict[str, Any], max_steps: int | None = None) -> str:
    """The state as the encoder reads it: goal first (truncation cuts the end, never the goal)."""
    nodes = _nodes(obs)
    kind = _page_kind(obs, nodes)
    segs = _page_segments(obs)
    step = int(obs.get("step", 0) or 0)
    left = f", {max_steps - step} steps left" if max_steps else ""
    if kind == "item page":
        # title, price and the options already chosen: what the next click depends on
        chosen = [f"{g.name}: {g.checked.label}" for g in option_groups(obs) if g.checked]
        at = next((i for i, s in enumerate(segs) if s.startswith("Price:")), None)
        title = segs[at - 1] if at else ""  # the item page shows the title just above the price
        price = segs[at] if at is not None else ""
        brief = f"{title}; {price}; chosen {', '.join(chosen) or 'none'}"
    elif kind == "results page":
        brief = next((s for s in segs if s.startswith("Results for")), "")
    else:
        brief = " ".join(segs[:6])
    return f"{_norm(obs.get('goal'))} | {kind}{left} | {brief}"


def _nodes(obs: dict[str, Any]) -> list[AxNode]:
    try:
        return axtree_nodes(obs)
    except ValueError:  # neither axtree nor html in the observation
        return []


def search_queries(goal: str) -> list[str]:
    """The queries the policy may choose between on a search page (distinct, in this order).

    The instruction without its price clause (the rule agent's query), the whole instruction,
    and the instruction without its attribute clause ("..., with color: x") and request words.
    """
    core = _norm(goal_without_price(goal)).lower()
    full = _norm(goal).lower()
    short = _QUERY_PREFIX_RE.sub("", core.split(", with ")[0].split(" with ")[0]).strip()
    out: list[str] = []
    for q in (core, full, short):
        q = q.replace("[", " ").replace("]", " ").strip()
        if q and q not in out:
            out.append(" ".join(q.split()))
    return out


def action_texts(obs: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The candidate actions of ``obs`` and, for each, the text the encoder reads."""
    actions = [str(a) for a in obs.get("available_actions") or ()]
    nodes = _nodes(obs)
    items = result_items(obs)
    labels: dict[str, str] = {}
    for group in option_groups(obs):
        for opt in group.options:
            labels[opt.bid] = f"option {group.name}: {opt.label}" + (
                " (selected)" if opt.checked else ""
            )
    for node in nodes:
        if node.bid and node.bid not in labels and node.name:
            labels[node.bid] = f"{node.role} {node.name}"
    candidates: list[str] = []
    texts: list[str] = []
    searchable = has_search_bar(obs) if nodes else False
    for action in actions:
        m_item = _ITEM_RE.match(action)
        m_click = _CLICK_RE.match(action)
        if searchable and m_click and "search" in m_click.group("bid"):
            continue  # the search button is reached through the query candidates below
        if m_item:
            title, price = items.get(m_item.group("asin"), ("", ""))
            text = f"product {title} price {price}".strip()
        elif m_click:
            text = labels.get(m_click.group("bid"), m_click.group("bid").replace("_", " "))
        else:
            text = action
        candidates.append(action)
        texts.append(text)
    if searchable:
        for q in search_queries(str(obs.get("goal") or "")):
            candidates.append(f"search[{q}]")
            texts.append(f"search {q}")
    return candidates, texts


# --------------------------------------------------------------------------------------------
# The policy.
# --------------------------------------------------------------------------------------------


@dataclass
class ScorerDecision:
    """One act: what was chosen among which candidates, and its log-probability when chosen."""

    action: str
    state: str
    candidates: list[str]
    texts: list[str]
    index: int
    logprob: float  # log softmax(f / T)[index], T the acting temperature
    temperature: float
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ScorerPolicy(nn.Module):
    """Encoder + linear scoring head over (state, candidate) pairs (module docstring)."""

    def __init__(self, backbone: Backbone, *, max_length: int = 96, max_steps: int = 15):
        super().__init__()
        if backbone.is_causal:
            raise ValueError(
                f"ScorerPolicy needs an encoder (minilm, tiny-encoder), not {backbone.name}"
            )
        self.backbone = backbone
        self.encoder = backbone.model
        self.head = nn.Linear(backbone.hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # a fresh head starts uniform over the candidates
        nn.init.zeros_(self.head.bias)
        self.max_length = int(max_length)
        self.max_steps = int(max_steps)
        self.metadata: dict[str, Any] = {}

    @classmethod
    def from_backbone_name(cls, name: str, *, seed: int = 0, **kwargs: Any) -> ScorerPolicy:
        return cls(load_backbone(name, seed=seed), **kwargs)

    def __repr__(self) -> str:
        return f"ScorerPolicy({self.backbone.name}, max_length={self.max_length})"

    # ------------------------------------------------------------------ scoring

    def _pair_scores(
        self, states: Sequence[str], texts: Sequence[Sequence[str]]
    ) -> list[torch.Tensor]:
        """f(s_i, a_ik) for every state and candidate, one tensor per state (with grad)."""
        left = [s for s, ts in zip(states, texts, strict=True) for _ in ts]
        right = [t for ts in texts for t in ts]
        if not right:
            return [torch.zeros(0) for _ in states]
        enc = self.backbone.tokenizer(
            left,
            right,
            truncation="only_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.backbone.device)
        hidden = self.encoder(**enc).last_hidden_state[:, 0]  # [CLS]
        flat = self.head(hidden).squeeze(-1)
        return list(torch.split(flat, [len(ts) for ts in texts]))

    def logprobs(
        self,
        states: Sequence[str],
        texts: Sequence[Sequence[str]],
        chosen: Sequence[int],
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """log pi(a_chosen | s) = log softmax_k(f(s, a_k) / T)[chosen], differentiable, (B,)."""
        scores = self._pair_scores(states, texts)
        return torch.stack(
            [
                torch.log_softmax(s / temperature, dim=0)[k]
                for s, k in zip(scores, chosen, strict=True)
            ]
        )

    def entropies(self, states, texts, temperature: float = 1.0) -> torch.Tensor:
        scores = self._pair_scores(states, texts)
        out = []
        for s in scores:
            logp = torch.log_softmax(s / temperature, dim=0)
            out.append(-(logp.exp() * logp).sum())
        return torch.stack(out)

    @torch.no_grad()
    def decide_batch(
        self,
        observations: Sequence[dict[str, Any]],
        *,
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> list[ScorerDecision]:
        """One decision per observation; temperature 0 takes the argmax (logprob at T = 1)."""
        rng = rng if rng is not None else np.random.default_rng()
        states, cands, texts = [], [], []
        for obs in observations:
            c, t = action_texts(obs)
            if not c:  # nothing listed: a no-op keeps the episode well-formed
                c, t = ["noop()"], ["do nothing"]
            states.append(state_text(obs, self.max_steps))
            cands.append(c)
            texts.append(t)
        was_training = self.training
        self.eval()
        scores = self._pair_scores(states, texts)
        self.train(was_training)
        out = []
        for state, c, t, s in zip(states, cands, texts, scores, strict=True):
            t_act = temperature if temperature > 0 else 1.0
            logp = torch.log_softmax(s.float() / t_act, dim=0)
            if temperature > 0:
                probs = logp.double().exp().numpy()
                k = int(rng.choice(len(c), p=probs / probs.sum()))
            else:
                k = int(torch.argmax(s))
            out.append(ScorerDecision(c[k], state, c, t, k, float(logp[k]), t_act))
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        return _save(self, directory, KIND, metadata, max_length=self.max_length)

    @classmethod
    def load(cls, directory: str | Path, *, backbone: Backbone | None = None) -> ScorerPolicy:
        info, backbone = _load_backbone(directory, KIND, backbone)
        policy = cls(backbone, max_length=int(info.get("max_length", 96)))
        _load_weights(policy, directory)
        policy.metadata = info.get("metadata") or {}
        return policy


class ScorerCritic(nn.Module):
    """V(s) = ValueHead(h_CLS(Encoder(state text))): a copy of the encoder with a scalar head."""

    def __init__(self, backbone: Backbone, *, max_length: int = 96, max_steps: int = 15):
        super().__init__()
        self.backbone = backbone
        self.encoder = backbone.model
        self.head = ValueHead(backbone.hidden_size)
        self.max_length = int(max_length)
        self.max_steps = int(max_steps)
        self.metadata: dict[str, Any] = {}

    def values(self, states: Sequence[str]) -> torch.Tensor:
        """V(s) for each state text, (B,), differentiable."""
        enc = self.backbone.tokenizer(
            list(states),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.backbone.device)
        return self.head(self.encoder(**enc).last_hidden_state[:, 0]).view(-1)

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        return _save(self, directory, CRITIC_KIND, metadata, max_length=self.max_length)

    @classmethod
    def load(cls, directory: str | Path, *, backbone: Backbone | None = None) -> ScorerCritic:
        info, backbone = _load_backbone(directory, CRITIC_KIND, backbone)
        critic = cls(backbone, max_length=int(info.get("max_length", 96)))
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
    save_file({k: v.contiguous() for k, v in module.head.state_dict().items()}, str(d / HEAD_FILE))
    info = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "backbone": module.backbone.name,
        "fingerprint": module.backbone.checkpoint_fingerprint(),
        "metadata": module.metadata,
        **fields_,
    }
    tmp = d / (POLICY_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(d / POLICY_FILE)
    return d


def read_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / POLICY_FILE
    if not path.is_file():
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


def _load_weights(module: nn.Module, directory) -> None:
    from safetensors.torch import load_file, load_model

    d = Path(directory)
    load_model(module.encoder, str(d / WEIGHTS_FILE), strict=True)
    module.head.load_state_dict(load_file(str(d / HEAD_FILE)))
    module.eval()
