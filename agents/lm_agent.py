"""``lm``: a language-model policy over WebGym's action strings, and the agent that plays it.

:class:`LMPolicy` wraps one causal-LM :class:`~agents.models.backbone.Backbone` (``tiny-lm``,
``smollm2-135m``) with a prompt format and two ways of acting; it is also the object the
trainers (behaviour cloning, PPO, GRPO, Best-of-N filtered BC) optimise, through
:meth:`LMPolicy.action_logprobs` and :meth:`LMPolicy.token_logprobs`.

The prompt
----------
:func:`build_prompt` writes one user message (the goal, the page, the available actions) under a
system message, rendered with the backbone's chat template and cut to a token budget
(:class:`PromptConfig`: ``max_prompt_tokens`` = 1024 by default, never more than the model's
``max_position_embeddings`` minus room for the answer). The goal and the list of actions are
always kept whole; only the page is cut, in the middle by default (``truncate="middle"``: its
head and tail are kept around a ``[... N tokens cut ...]`` marker) or at the end. The page's own
``Instruction: [SEP] <goal> [SEP]`` prefix is dropped, since the goal is shown above it. Each
``click('bid')`` action is annotated with what the element is (from the accessibility tree), so
that a text-mode page still says which radio is which colour. On a results page of SmolLM2's
template the prompt reads (``<page>`` shortened here)::

    <|im_start|>system
    You are a shopping agent on a web shop. Read the instruction, the page and the available
    actions, then reply with exactly one action from the list, on one line, and nothing else.
    <|im_end|>
    <|im_start|>user
    Instruction: find me leave in conditioner, with scent: lavender and size: 4 fl oz, and
    price lower than 60.00 dollars

    Page:
    Back to Search [SEP] Results for leave in conditioner · Page 1 (Total results: 50) [SEP]
    Next > [SEP] B0BDEHF27N [SEP] Briwick Select Conditioner, Detangling, Leave In [SEP] $22.99
    [SEP] ...

    Available actions:
    click('back_to_search')  # link 'Back to Search'
    click('next_page')  # link 'Next >'
    click('item_b0bdehf27n')  # link 'Briwick Select Conditioner, Detangling, Leave In'
    ...

    Reply with one action.<|im_end|>
    <|im_start|>assistant

(the system text wraps on one line in the real prompt). On an item page the radios read
``click('opt_0_0')  # scent: vanilla``; on a page with a search bar the list gains the line
``search[<query>]  # type <query> into the search box and search``. The answer the model is
trained on, and scored on, is the bare action string followed by the end-of-turn token
(``<|im_end|>``): ``click('item_b0bdehf27n')<|im_end|>``.

Two ways of acting
------------------
* ``mode="generate"``: free generation (``max_new_tokens`` = 32, greedy at temperature 0, else
  sampled) parsed with :func:`webgym.actions.parse_action` (the whole text, else its first
  line). A valid action is returned in canonical form; an unparsable one is returned as-is, so
  that the environment counts it as an invalid action (``last_action_error``) -- never a crash;
  ``policy.stats["invalid"]`` counts them.
* ``mode="choice"`` (default): constrained choice. The candidates (:meth:`LMPolicy.candidates`)
  are the listed available actions plus, on a page with a search bar, ``search[<query>]`` whose
  query the LM itself writes by continuing the prompt after ``search[`` (greedy, or sampled when
  a generator is given; the goal up to ``", and price"`` when it writes nothing). Each
  candidate's log-likelihood given the prompt is scored in one pass
  (:meth:`~agents.models.backbone.Backbone.score_candidates`, the prompt's key/value cache
  shared) and one is drawn from ``softmax(logprob / temperature)`` (argmax at temperature 0).
  Always a valid action.

Checkpoints
-----------
:meth:`LMPolicy.save` writes ``policy.json`` (format version, backbone name and fingerprint,
prompt config, scoring settings, a free ``metadata`` dict) and ``model.safetensors`` (the
backbone model's state dict); :meth:`LMPolicy.load` refuses, with
:class:`~agents.models.backbone.BackboneMismatch` and the reason, a checkpoint made on another
backbone. An untrained checkpoint for smoke tests::

    from agents.lm_agent import LMPolicy
    LMPolicy.from_backbone_name("tiny-lm").save("/tmp/lm-tiny")
    agent = make_agent("lm", checkpoint="/tmp/lm-tiny", mode="choice", temperature=0.0)

Imports only ``agents.*`` and ``webgym.*`` (plus torch, numpy, safetensors); never
``benchmarks`` or ``leaderboards``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import Agent
from agents.models.backbone import (
    Backbone,
    BackboneMismatch,
    NotACausalLM,
    load_backbone,
)
from agents.observation import AxNode, axtree_nodes, goal_without_price, has_search_bar
from webgym.actions import ActionParseError, parse_action

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "FORMAT_VERSION",
    "Decision",
    "LMAgent",
    "LMPolicy",
    "PromptConfig",
    "build_prompt",
]

FORMAT_VERSION = 1
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
SEARCH_PREFIX = "search["
ANSWER_RESERVE = 64  # tokens kept free after the prompt for the answer (max positions)

DEFAULT_SYSTEM_PROMPT = (
    "You are a shopping agent on a web shop. Read the instruction, the page and the available "
    "actions, then reply with exactly one action from the list, on one line, and nothing else."
)

DESCRIPTION = (
    "a language-model policy (checkpoint from LMPolicy.save): constrained choice over the "
    "available actions or free generation"
)
"""The registry line of ``lm`` (``agents/__init__.py`` registers it lazily, without torch)."""


# --------------------------------------------------------------------------------------------
# The prompt.
# --------------------------------------------------------------------------------------------


@dataclass
class PromptConfig:
    """How an observation becomes a prompt (saved in every checkpoint's ``policy.json``).

    ``max_prompt_tokens``: the prompt's token budget (capped by the model's max positions minus
    64); ``page_field``: ``"text"`` (WebShop's ``[SEP]`` text) or ``"axtree"``;
    ``max_actions``: how many available actions are listed (and are choice candidates);
    ``truncate``: where the page is cut, ``"middle"`` or ``"end"``; ``label_actions``: annotate
    each ``click('bid')`` with its element; ``system_prompt``: the system message.
    """

    max_prompt_tokens: int = 1024
    page_field: str = "text"
    max_actions: int = 64
    truncate: str = "middle"
    label_actions: bool = True
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    def __post_init__(self) -> None:
        if self.page_field not in ("text", "axtree"):
            raise ValueError(f"page_field must be 'text' or 'axtree', not {self.page_field!r}")
        if self.truncate not in ("middle", "end"):
            raise ValueError(f"truncate must be 'middle' or 'end', not {self.truncate!r}")
        if self.max_prompt_tokens < 16 or self.max_actions < 1:
            raise ValueError("max_prompt_tokens must be >= 16 and max_actions >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _goal(obs: dict[str, Any]) -> str:
    return " ".join(str(obs.get("goal") or "").split())


def _page(obs: dict[str, Any], config: PromptConfig) -> str:
    if config.page_field == "axtree":
        return str(obs.get("axtree") or "")
    text = str(obs.get("text") or "")
    goal = str(obs.get("goal") or "")
    for prefix in (f"Instruction: [SEP] {goal} [SEP] ", f"Instruction: [SEP] {goal}"):
        if goal and text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _nodes(obs: dict[str, Any]) -> list[AxNode]:
    try:
        return axtree_nodes(obs)
    except ValueError:  # neither axtree nor html in the observation
        return []


def listed_actions(obs: dict[str, Any], config: PromptConfig) -> list[str]:
    """The available actions the prompt lists (the first ``max_actions``), in page order."""
    return [str(a) for a in obs.get("available_actions", ())][: config.max_actions]


def _action_labels(obs: dict[str, Any]) -> dict[str, str]:
    """``bid -> "role 'name'"`` (radios: ``"group: value"``) from the accessibility tree."""
    labels: dict[str, str] = {}
    group: AxNode | None = None
    for node in _nodes(obs):
        if group is not None and node.depth <= group.depth:
            group = None
        if node.role == "radiogroup":
            group = node
        if node.bid is None:
            continue
        if node.role == "radio" and group is not None:
            labels[node.bid] = f"{group.name}: {node.name}"
        elif node.name:
            labels[node.bid] = f"{node.role} {node.name!r}"
        else:
            labels[node.bid] = node.role
    return labels


def _action_lines(obs: dict[str, Any], config: PromptConfig, search: bool) -> list[str]:
    labels = _action_labels(obs) if config.label_actions else {}
    lines = []
    for action in listed_actions(obs, config):
        label = None
        if labels and action.startswith("click(") and action.endswith(")"):
            try:
                parsed = parse_action(action)
                if parsed.name == "click":
                    label = labels.get(str(parsed.args[0]))
            except ActionParseError:
                label = None
        lines.append(f"{action}  # {label}" if label else action)
    if search:
        lines.append("search[<query>]  # type <query> into the search box and search")
    n_more = len(obs.get("available_actions", ())) - config.max_actions
    if n_more > 0:
        lines.append(f"({n_more} more actions not listed)")
    return lines


def _user_message(goal: str, page: str, action_lines: list[str]) -> str:
    return (
        f"Instruction: {goal}\n\n"
        f"Page:\n{page}\n\n"
        "Available actions:\n" + "\n".join(action_lines) + "\n\nReply with one action."
    )


def prompt_budget(backbone: Backbone, config: PromptConfig) -> int:
    """The effective token budget: ``max_prompt_tokens``, capped by the model's positions."""
    return max(16, min(config.max_prompt_tokens, backbone.max_length - ANSWER_RESERVE))


def build_prompt(
    obs: dict[str, Any], backbone: Backbone, config: PromptConfig | None = None
) -> str:
    """The prompt for ``obs`` (see the module docstring), within the token budget.

    The goal and the action list are always kept whole; the page is cut (middle or end) so that
    the rendered prompt fits ``prompt_budget(backbone, config)`` tokens, measured with the
    backbone's tokenizer. Should the goal and actions alone exceed the budget, the page is left
    out entirely and the prompt is longer than the budget.
    """
    config = config or PromptConfig()
    goal = _goal(obs)
    lines = _action_lines(obs, config, has_search_bar(obs) if _nodes(obs) else False)
    page = _page(obs, config)
    system = config.system_prompt or None

    def render(page_text: str) -> str:
        return backbone.render_prompt(system=system, user=_user_message(goal, page_text, lines))

    budget = prompt_budget(backbone, config)
    full = render(page)
    n_full = len(backbone.encode_text(full))
    if n_full <= budget:
        return full
    tok = backbone.tokenizer
    page_ids = list(tok(page, add_special_tokens=False)["input_ids"])
    overhead = len(backbone.encode_text(render("")))
    keep = budget - overhead - 12  # room for the cut marker
    while keep > 0:
        n_cut = len(page_ids) - keep
        marker = f"[... {n_cut} tokens cut ...]"
        if config.truncate == "end":
            cut = tok.decode(page_ids[:keep]).rstrip() + " " + marker
        else:
            head = (keep + 1) // 2
            tail = keep - head
            cut = (
                tok.decode(page_ids[:head]).rstrip()
                + " "
                + marker
                + " "
                + (tok.decode(page_ids[len(page_ids) - tail :]).lstrip() if tail else "")
            ).rstrip()
        prompt = render(cut)
        excess = len(backbone.encode_text(prompt)) - budget
        if excess <= 0:
            return prompt
        keep -= excess + 2  # decoding and re-encoding may merge tokens differently
    return render(f"[... {len(page_ids)} tokens cut ...]")


# --------------------------------------------------------------------------------------------
# The policy.
# --------------------------------------------------------------------------------------------


RngLike = np.random.Generator | random.Random | int | None


def _generator(rng: RngLike = None, seed: int | None = None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, random.Random):
        return np.random.default_rng(rng.getrandbits(63))
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    return np.random.default_rng(seed)


def _draw_seed(gen: np.random.Generator) -> int:
    return int(gen.integers(0, 2**31 - 1))


@dataclass
class Decision:
    """One act: the action, and what produced it (trainers keep ``prompt`` with ``action``).

    ``candidates``/``logprobs``/``index`` are set in choice mode (``logprobs``: each candidate's
    summed log-likelihood, detached); ``raw`` and ``valid`` in generate mode.
    """

    action: str
    mode: str
    prompt: str
    candidates: list[str] = field(default_factory=list)
    logprobs: torch.Tensor | None = None
    index: int | None = None
    raw: str | None = None
    valid: bool = True


class LMPolicy:
    """A causal LM acting on WebGym observations (see the module docstring).

    ``add_eos``: the end-of-turn token ends every scored/trained action (so that a trained
    model stops after the action); ``max_new_tokens``: the generation length (actions and
    search queries). ``metadata``: a free dict saved with the checkpoint (training config,
    step, scores). ``stats`` counts ``acts``, ``invalid`` generations and
    ``fallback_queries``.
    """

    def __init__(
        self,
        backbone: Backbone,
        config: PromptConfig | None = None,
        *,
        add_eos: bool = True,
        max_new_tokens: int = 32,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not backbone.is_causal:
            raise NotACausalLM(
                f"LMPolicy needs a causal language model; {backbone.name} is an encoder "
                "(use it for critics: Backbone.hidden_states / values)"
            )
        self.backbone = backbone
        self.config = config or PromptConfig()
        self.add_eos = add_eos
        self.max_new_tokens = max_new_tokens
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.stats: dict[str, int] = {"acts": 0, "invalid": 0, "fallback_queries": 0}

    def __repr__(self) -> str:
        return f"LMPolicy({self.backbone!r}, {self.config!r})"

    @classmethod
    def from_backbone_name(
        cls,
        name: str,
        config: PromptConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> LMPolicy:
        """An untrained policy on ``load_backbone(name)`` (e.g. ``"tiny-lm"``)."""
        return cls(load_backbone(name, device=device, dtype=dtype), config, **kwargs)

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model

    def parameters(self):
        return self.backbone.model.parameters()

    # ------------------------------------------------------------------ prompts, candidates

    def prompt(self, obs: dict[str, Any]) -> str:
        """The prompt for ``obs`` (:func:`build_prompt` with this policy's config)."""
        return build_prompt(obs, self.backbone, self.config)

    def has_search(self, obs: dict[str, Any]) -> bool:
        return bool(_nodes(obs)) and has_search_bar(obs)

    @staticmethod
    def clean_query(text: str) -> str:
        """A generated continuation of ``search[`` as a query: up to the first ``]`` or line
        end, brackets stripped, spaces collapsed, at most 200 characters."""
        q = text.split("]", 1)[0].split("\n", 1)[0].replace("[", " ")
        return " ".join(q.split())[:200].strip()

    def fallback_query(self, obs: dict[str, Any]) -> str:
        """The goal up to its price clause, on one line (the rule agent's query)."""
        return " ".join(goal_without_price(str(obs.get("goal") or "")).split()) or "search"

    def generate_queries(
        self,
        prompts: Sequence[str],
        observations: Sequence[dict[str, Any]],
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """The LM's search query per prompt: its continuation of ``prompt + "search["``."""
        if not prompts:
            return []
        texts = self.backbone.generate(
            [p + SEARCH_PREFIX for p in prompts],
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=seed,
        )
        queries = []
        for text, obs in zip(texts, observations, strict=True):
            q = self.clean_query(text)
            if not q:
                self.stats["fallback_queries"] += 1
                q = self.fallback_query(obs)
            queries.append(q)
        return queries

    def _candidates_batch(
        self,
        observations: Sequence[dict[str, Any]],
        prompts: Sequence[str],
        temperature: float,
        gen: np.random.Generator | None,
    ) -> list[list[str]]:
        cands = [listed_actions(o, self.config) for o in observations]
        search = [i for i, o in enumerate(observations) if self.has_search(o)]
        if search:
            seed = _draw_seed(gen) if gen is not None and temperature > 0 else None
            queries = self.generate_queries(
                [prompts[i] for i in search],
                [observations[i] for i in search],
                temperature=temperature if gen is not None else 0.0,
                seed=seed,
            )
            for i, q in zip(search, queries, strict=True):
                action = f"search[{q}]"
                if action not in cands[i]:
                    cands[i].append(action)
        return cands

    def candidates(
        self,
        obs: dict[str, Any],
        *,
        rng: RngLike = None,
        temperature: float | None = None,
        prompt: str | None = None,
    ) -> list[str]:
        """The choice candidates of ``obs``: the listed available actions, plus
        ``search[<query>]`` on a page with a search bar.

        The query is greedy when ``rng`` is None, else sampled at ``temperature`` (default 1.0)
        from a seed drawn from ``rng`` (so Best-of-N draws different queries per call).
        """
        gen = None if rng is None else _generator(rng)
        t = 0.0 if gen is None else (1.0 if temperature is None else float(temperature))
        p = prompt if prompt is not None else self.prompt(obs)
        return self._candidates_batch([obs], [p], t, gen)[0]

    # ------------------------------------------------------------------ acting

    @torch.no_grad()
    def decide_batch(
        self,
        observations: Sequence[dict[str, Any]],
        *,
        mode: str = "choice",
        temperature: float = 1.0,
        rng: RngLike = None,
        seed: int | None = None,
    ) -> list[Decision]:
        """One :class:`Decision` per observation.

        Generate mode generates every prompt in one left-padded batch; choice mode generates
        the search queries in one batch, then scores each observation's candidates with one
        key/value-shared pass (cheaper than a padded batch of every prompt x candidate pair).
        """
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if not observations:
            return []
        gen = _generator(rng, seed) if temperature > 0 else None
        prompts = [self.prompt(o) for o in observations]
        self.stats["acts"] += len(observations)
        if mode == "generate":
            texts = self.backbone.generate(
                prompts,
                max_new_tokens=self.max_new_tokens,
                temperature=temperature,
                seed=_draw_seed(gen) if gen is not None and temperature > 0 else None,
            )
            out = []
            for p, text in zip(prompts, texts, strict=True):
                action, valid = self.parse_generation(text)
                if not valid:
                    self.stats["invalid"] += 1
                out.append(Decision(action, mode, p, raw=text, valid=valid))
            return out
        cands = self._candidates_batch(observations, prompts, temperature, gen)
        out = []
        for p, cs in zip(prompts, cands, strict=True):
            if not cs:  # no available action at all: an explicit no-op
                out.append(Decision("noop()", mode, p, candidates=[]))
                continue
            scores = self.backbone.score_candidates(p, cs, add_eos=self.add_eos).float().cpu()
            if temperature == 0:
                idx = int(torch.argmax(scores))
            else:
                probs = torch.softmax(scores / temperature, dim=0).double().numpy()
                probs = probs / probs.sum()
                idx = int(gen.choice(len(cs), p=probs))
            out.append(Decision(cs[idx], mode, p, candidates=cs, logprobs=scores, index=idx))
        return out

    def decide(self, obs: dict[str, Any], **kwargs: Any) -> Decision:
        """:meth:`decide_batch` of one observation."""
        return self.decide_batch([obs], **kwargs)[0]

    def act(
        self,
        obs: dict[str, Any],
        *,
        mode: str = "choice",
        temperature: float = 1.0,
        rng: RngLike = None,
        seed: int | None = None,
    ) -> str:
        """One action string for ``obs`` (see "Two ways of acting" in the module docstring).

        Temperature 0 is greedy/argmax and deterministic; otherwise draws come from ``rng``
        (a numpy Generator, a ``random.Random`` or an int seed) or ``seed``.
        """
        return self.decide(obs, mode=mode, temperature=temperature, rng=rng, seed=seed).action

    @staticmethod
    def parse_generation(text: str) -> tuple[str, bool]:
        """``(action, valid)``: the canonical action parsed from a generation (whole text,
        else its first non-empty line), or the text as-is and ``False``."""
        tries = [text]
        first = next((line for line in text.splitlines() if line.strip()), "")
        if first and first != text:
            tries.append(first)
        for t in tries:
            try:
                return parse_action(t).to_string(), True
            except ActionParseError:
                continue
        return text, False

    # ------------------------------------------------------------------ training

    def token_logprobs(
        self, prompts: Sequence[str], actions: Sequence[str | Sequence[int]]
    ) -> list[torch.Tensor]:
        """Per-token log pi of each action given its prompt (a list of 1-D tensors, the
        end-of-turn token last when ``add_eos``); one right-padded batch; differentiable."""
        return self.backbone.sequence_logprobs(prompts, actions, add_eos=self.add_eos)[0]

    def action_logprobs(
        self,
        prompts: Sequence[str],
        actions: Sequence[str | Sequence[int]],
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """log pi(action | prompt) per pair, shape (n,): the sum of :meth:`token_logprobs`.

        The loss function of every trainer. One right-padded batch (padding masked, so a pair
        scores the same alone or batched), or chunks of ``batch_size``. Differentiable unless
        called under ``torch.no_grad()``.
        """
        if len(prompts) != len(actions):
            raise ValueError(f"{len(prompts)} prompts but {len(actions)} actions")
        if batch_size is None or len(prompts) <= batch_size:
            return self.backbone.sequence_logprobs(prompts, actions, add_eos=self.add_eos)[1]
        parts = [
            self.backbone.sequence_logprobs(
                prompts[a : a + batch_size], actions[a : a + batch_size], add_eos=self.add_eos
            )[1]
            for a in range(0, len(prompts), batch_size)
        ]
        return torch.cat(parts)

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``policy.json`` and ``model.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if metadata:
            self.metadata.update(metadata)
        save_model(self.backbone.model, str(d / WEIGHTS_FILE))
        info = {
            "format_version": FORMAT_VERSION,
            "kind": "lm-policy",
            "backbone": self.backbone.name,
            "fingerprint": self.backbone.checkpoint_fingerprint(),
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "prompt_config": asdict(self.config),
            "add_eos": self.add_eos,
            "max_new_tokens": self.max_new_tokens,
            "metadata": self.metadata,
        }
        tmp = d / (POLICY_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(d / POLICY_FILE)  # written last: a half-saved checkpoint has none
        return d

    @staticmethod
    def read_info(directory: str | Path) -> dict[str, Any]:
        """The checkpoint's ``policy.json``; a clear error when it is not an LM checkpoint."""
        d = Path(directory)
        path = d / POLICY_FILE
        if not path.is_file():
            what = "does not exist" if not d.exists() else f"has no {POLICY_FILE}"
            raise FileNotFoundError(
                f"{d} is not an LM policy checkpoint: it {what}. Make one with "
                f"LMPolicy.save(dir) (an untrained one: "
                f"LMPolicy.from_backbone_name('tiny-lm').save(dir))"
            )
        info = json.loads(path.read_text())
        version = info.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format_version {version!r} is not supported (this code reads "
                f"{FORMAT_VERSION})"
            )
        return info

    @classmethod
    def load(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        *,
        dtype: torch.dtype | None = None,
        backbone: Backbone | None = None,
    ) -> LMPolicy:
        """The policy saved in ``directory``.

        Loads the backbone the checkpoint names (or checks the given ``backbone``) and raises
        :class:`BackboneMismatch`, with the reason, when the checkpoint's fingerprint is not
        that backbone's. ``dtype`` defaults to the saved one.
        """
        from safetensors.torch import load_model

        d = Path(directory)
        info = cls.read_info(d)
        fp = info.get("fingerprint") or {}
        name = info.get("backbone")
        if fp.get("backbone") != name:
            raise BackboneMismatch(
                f"{d / POLICY_FILE}: the checkpoint names backbone {name!r} but its fingerprint "
                f"says it was trained on {fp.get('backbone')!r}"
            )
        if backbone is None:
            if dtype is None:
                dtype = getattr(torch, str(info.get("dtype", "float32")), torch.float32)
            backbone = load_backbone(name, device=device, dtype=dtype)
        backbone.check_fingerprint(fp)
        weights = d / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{d} has {POLICY_FILE} but no {WEIGHTS_FILE}")
        try:
            load_model(backbone.model, str(weights), strict=True, device=str(backbone.device))
        except RuntimeError as err:
            raise BackboneMismatch(
                f"{weights} does not fit backbone {backbone.name}: {err}"
            ) from err
        backbone.model.eval()
        return cls(
            backbone,
            PromptConfig.from_dict(info.get("prompt_config") or {}),
            add_eos=bool(info.get("add_eos", True)),
            max_new_tokens=int(info.get("max_new_tokens", 32)),
            metadata=info.get("metadata") or {},
        )


# --------------------------------------------------------------------------------------------
# The agent.
# --------------------------------------------------------------------------------------------


class LMAgent(Agent):
    """Plays an :class:`LMPolicy`: ``make_agent("lm", checkpoint=DIR, mode=, temperature=)``.

    ``mode``: ``"choice"`` (default) or ``"generate"``; ``temperature`` 0 (default) is
    deterministic. Samples only from the generator made in ``reset(seed=...)``. An in-memory
    policy (a trainer's evaluation) is played with ``LMAgent(policy=policy)``.
    """

    name = "lm"
    description = DESCRIPTION
    needs_checkpoint = True
    deterministic = True

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        policy: LMPolicy | None = None,
        mode: str = "choice",
        temperature: float = 0.0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if policy is None:
            if checkpoint is None:
                raise ValueError("LMAgent needs a checkpoint directory or a policy")
            policy = LMPolicy.load(checkpoint, device=device)
        self.policy = policy
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.mode = mode
        self.temperature = float(temperature)
        self.deterministic = self.temperature == 0
        self._rng = np.random.default_rng()

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self._rng = np.random.default_rng(seed)

    def _with_goal(self, obs: dict[str, Any]) -> dict[str, Any]:
        return obs if obs.get("goal") else {**obs, "goal": self.goal}

    def act(self, observation: dict[str, Any]) -> str:
        return self.act_batch([observation])[0]

    def act_batch(self, observations: list[dict[str, Any]]) -> list[str]:
        decisions = self.policy.decide_batch(
            [self._with_goal(o) for o in observations],
            mode=self.mode,
            temperature=self.temperature,
            rng=self._rng,
        )
        return [d.action for d in decisions]
