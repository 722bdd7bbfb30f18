"""How a backbone decodes and scores text: generation (with stop strings, an optional logits
processor), the log-probabilities of completions, candidates and sequences, read in one
forward pass where a prompt is shared (:class:`Decoding`, a part of
:class:`~webgym_agents.models.backbone.Backbone`), and the tensor helpers both use.

A mixin over the backbone's ``model``, ``tokenizer`` and prompt helpers: never imports
webgym_agents/models/backbone.py (which imports it). Imports torch only (and transformers'
stopping criteria when generating).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


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


def pad_ids(
    seqs: list[list[int]], pad_id: int, side: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as one (B, width) tensor padded with ``pad_id`` on ``side`` ("left" or
    "right"), and its attention mask."""
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


def gather_pos(hs: torch.Tensor, pos: list[int]) -> torch.Tensor:
    """hs (B, L, T, H), one time index per row -> (B, L, H)."""
    idx = torch.tensor(pos, device=hs.device)
    return hs[torch.arange(hs.shape[0], device=hs.device), :, idx]


def mean_span(hs: torch.Tensor, starts: list[int], ends: list[int]) -> torch.Tensor:
    """Mean over time positions [start, end) per row: (B, L, T, H) -> (B, L, H)."""
    t = torch.arange(hs.shape[2], device=hs.device)
    s = torch.tensor(starts, device=hs.device).unsqueeze(1)
    e = torch.tensor(ends, device=hs.device).unsqueeze(1)
    w = ((t >= s) & (t < e)).to(hs.dtype)  # (B, T)
    w = w / w.sum(1, keepdim=True).clamp_min(1)
    return torch.einsum("blth,bt->blh", hs, w)


class Decoding:
    """Generation and log-probabilities: the decoding half of
    :class:`~webgym_agents.models.backbone.Backbone`."""

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
        ids, mask = pad_ids(seqs, self.pad_id, "left", self.device)
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
        ids, mask = pad_ids(
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
        scores.prompt_states = gather_pos(
            out.last_hidden_state.unsqueeze(1), [len(p) - 1 for p in p_ids]
        )[:, 0]
        if want_hidden:
            hs = torch.stack([out.hidden_states[k] for k in feature_layers], dim=1)  # B,L,T,H
            plen = [len(p) for p in p_ids]
            tlen = [len(p) + len(c) for p, c in zip(p_ids, c_ids, strict=True)]
            scores.prompt_features = mean_span(hs, [max(0, n - last_k) for n in plen], plen)
            scores.completion_features = mean_span(
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
            ids, cmask = pad_ids(c_ids, self.pad_id, "right", self.device)
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
