"""``lm``: a language-model policy over WebGym's action strings, and the agent that plays it.

:class:`LMPolicy` wraps one causal-LM :class:`~webgym_agents.models.backbone.Backbone` (``tiny-lm``,
``smollm2-135m``) with a prompt format, two ways of acting and an optional value head; it is
also the object the trainers (behaviour cloning, PPO, GRPO, Best-of-N filtered BC) optimise.

The prompt
----------
:func:`build_prompt` writes one user message under a system message, rendered with the
backbone's chat template and fitted to a token budget (:class:`PromptConfig`:
``max_prompt_tokens`` = 1024 by default, never more than the model's ``max_position_embeddings``
minus room for the answer). Two layouts (``PromptConfig.layout``):

* ``"shopper"`` (the default): what a shopper needs first, the page text last. The goal; on an
  item page (and its Description / Features / ... sub-pages) a ``Product:`` / ``Price:`` header;
  then the available actions, each labelled with what it is: a result link with its product's
  title and price, a radio with ``group: value`` and ``(selected)`` once chosen, another element
  with its name unless the element id already says it (``click('buy_now')`` needs no
  ``Buy Now``); then the page text (``PromptConfig.page_field``), cut to the room left (middle or
  end, a ``[... N tokens cut ...]`` marker) or left out. When even the labelled actions do not
  fit, the page is left out and the longest label texts (product titles) are shortened to their
  last words within N tokens, N the largest that fits (``# … Cable, Right Angle | $13.95``: a
  title's tail holds its distinguishing attributes; shorter texts stay whole, prices and
  ``(selected)`` always stay); when not even the prices fit, the bare action strings are listed.
  The goal and every action string are always kept whole (the prompt is then longer than the
  budget). A results page of SmolLM2's template reads::

    <|im_start|>system
    You are a shopping agent on a web shop. Reply with exactly one action from the list, on one
    line, and nothing else.<|im_end|>
    <|im_start|>user
    Instruction: i would like cruelty free and silicone free conditioner for fine hair, with
    scent: eucalyptus and size: 33.8 fl oz, and price lower than 40.00 dollars

    Available actions:
    click('back_to_search')
    click('next_page')
    click('item_b04x9sbgpj') # Fenvia Essential Conditioner, Silicone Free | $19.49
    click('item_b0ixbkm359') # Galex Signature Conditioner, Deep Conditioning | $13.49
    ...

    Page:
    Back to Search [SEP] Results for i would like ... [... 301 tokens cut ...] $14.99

    Reply with one action.<|im_end|>
    <|im_start|>assistant

  (the system text is one line in the real prompt). An item page adds ``Product: <title>`` and
  ``Price: $19.49`` above the actions and labels its radios ``click('opt_0_1') # scent:
  citrus (selected)``; a page with a search bar lists ``search[<query>] # type <query> into
  the search box and search``. Measured by ``benchmarks/perf/prompt_coverage.py`` (the share
  of prompts showing every candidate product's title and price; 40 train tasks x rule and
  random): results pages 9 / 10 / 98 % at 256 / 384 / 512 tokens (every price at 384: 100 %;
  the page-first layout: 7 / 7 / 9 %), item pages 100 % at all three (page-first 0 / 76 /
  100 %), sub-pages 100 %. A results page of ten products needs about 440 tokens.
* ``"page-first"``: the layout of format-1 checkpoints (which load with it): the page first
  (cut to fit), then the actions labelled ``role 'name'``; on a results page at 384 tokens the
  page's product lines and prices are all cut away.

Both drop the page text's own ``Instruction: [SEP] <goal> [SEP]`` prefix (the goal is shown
above it). The answer the model is trained on, and scored on, is the bare action string
followed by the end-of-turn token (``<|im_end|>``): ``click('item_b04x9sbgpj')<|im_end|>``.

Two ways of acting, and the probability of what was done
--------------------------------------------------------
:meth:`LMPolicy.decide_batch` returns one :class:`Decision` per observation, carrying
``logprob``: the log-probability of the chosen action under the distribution that actually
acted (0.0 at temperature 0, which is a point mass), and ``value`` when the policy has a value
head.

* ``mode="choice"`` (default): constrained choice. The candidates (:meth:`LMPolicy.candidates`)
  are the listed available actions plus, on a page with a search bar, ``search[<query>]`` whose
  query the LM itself writes by continuing ``prompt + "search["`` (greedy at temperature 0, else
  sampled at the same temperature T; generation stops at the first ``]`` or line end; a
  copy of the ``<query>`` placeholder or an empty query falls back to the goal up to
  ``", and price"``). Each candidate's score s_k is its summed token log-likelihood given the
  prompt (:meth:`~webgym_agents.models.backbone.Backbone.score_candidates`, the prompt's key/value
  cache shared) and one is drawn from ``softmax(s / T)`` (argmax at T = 0). The factorisation::

      log P(a_k | s) = log softmax(s / T)_k                                  a_k a listed action
      log P(search[q] | s) = log softmax(s / T)_search + sum_j log p_T(q_j | prompt, search[, q_<j)

  where q is the generated query's tokens (``Decision.query_ids``, up to and including the
  token holding ``]``) and p_T = softmax(logits / T) the distribution they were sampled from.
  That is the joint probability of writing q and then choosing it. For a listed action the
  proposed query is part of the context the choice was made in (it sets the softmax's
  normaliser through s_search) and its own probability is not counted: the query is not the
  action taken. Always a valid action.
* ``mode="generate"``: free generation (``max_new_tokens`` = 32, greedy at temperature 0, else
  sampled) parsed with :func:`webgym.actions.parse_action` (the whole text, else its first
  line). A valid action is returned in canonical form; an unparsable one as-is, so that the
  environment counts it as an invalid action (``last_action_error``), never a crash;
  ``policy.stats["invalid"]`` counts them. ``logprob`` is the sum of log p_T over the sampled
  ``Decision.token_ids`` (the end-of-turn token only when it was sampled).

Trainers recompute the same quantities with gradients: :meth:`LMPolicy.decision_logprobs`
(choice mode; equal to ``Decision.logprob`` to float precision at the same T),
:meth:`LMPolicy.evaluate_decisions` (log-probabilities, values and entropies of stored
decisions of either mode). :meth:`LMPolicy.action_logprobs` stays what behaviour cloning
maximises: the unnormalised sequence likelihood of an action string (never a PPO ratio's term).
A PPO-style trainer::

    policy.add_value_head()                      # once, when policy.value_head is None
    decisions = policy.decide_batch(observations, mode="choice", temperature=1.0, rng=gen)
    old = torch.tensor([d.logprob for d in decisions])        # frozen at collection
    ev = policy.evaluate_decisions(decisions)    # differentiable: .logprobs .values .entropies
    ratio = torch.exp(ev.logprobs - old)         # exactly 1 before the first update

(a Decision keeps ``prompt``, ``candidates``, ``index``, ``query_ids``, ``temperature``,
``token_ids``: everything :meth:`LMPolicy.evaluate_decisions` reads). The match is exact with
the model in ``eval()`` mode, as acting uses it; dropout in ``train()`` mode would differ.

The value head
--------------
``LMPolicy(..., value_head=ValueHead(hidden))`` or :meth:`LMPolicy.add_value_head` gives a scalar
V(s) read from the last layer at the prompt's last token (the prompt boundary), taken from the
same forward pass that scores the candidates (:meth:`~webgym_agents.models.backbone.Backbone.
score_candidates_and_state`) or the generation (``SequenceScores.prompt_states``): no second
pass.

Checkpoints
-----------
:meth:`LMPolicy.save` writes ``policy.json`` (format version 2, backbone name and fingerprint,
prompt config with its layout, scoring settings, a free ``metadata`` dict, and, with a value
head, its config and fingerprint), ``model.safetensors`` (the backbone model's state dict) and
``value_head.safetensors`` when there is a head. :meth:`LMPolicy.load` reads formats 1 and 2 (a
format-1 checkpoint has no head and the ``page-first`` layout) and refuses, with
:class:`~webgym_agents.models.backbone.BackboneMismatch` and the reason, a checkpoint (or a value
head) made on another backbone. An untrained checkpoint for smoke tests::

    from webgym_agents.policies.lm_agent import LMPolicy
    LMPolicy.from_backbone_name("tiny-lm").save("/tmp/lm-tiny")
    agent = make_agent("lm", checkpoint="/tmp/lm-tiny", mode="choice", temperature=0.0)

Imports only ``agents.*`` and ``webgym.*`` (plus torch, numpy, safetensors); never
``webgym_benchmarks`` or ``webgym_leaderboards``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym.actions import ActionParseError, parse_action
from webgym_agents.base import PolicyAgent, top_candidates
from webgym_agents.models.backbone import (
    Backbone,
    BackboneMismatch,
    NotACausalLM,
    ValueHead,
    load_backbone,
)
from webgym_agents.observation import (
    AxNode,
    axtree_nodes,
    goal_without_price,
    has_search_bar,
    product_header,
    result_products,
)

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "FORMAT_VERSION",
    "LAYOUTS",
    "LEGACY_SYSTEM_PROMPT",
    "Decision",
    "DecisionEval",
    "LMAgent",
    "LMPolicy",
    "PromptConfig",
    "build_prompt",
]

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: no value head, page-first layout
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
VALUE_HEAD_FILE = "value_head.safetensors"
SEARCH_PREFIX = "search["
QUERY_STOPS = ("]", "\n")  # a generated query ends at the first of these
QUERY_PLACEHOLDER = "<query>"
ANSWER_RESERVE = 64  # tokens kept free after the prompt for the answer (max positions)
MIN_PAGE_TOKENS = 16  # shopper layout: less room than this for the page leaves it out
LAYOUTS = ("shopper", "page-first")

DEFAULT_SYSTEM_PROMPT = (
    "You are a shopping agent on a web shop. Reply with exactly one action from the list, on "
    "one line, and nothing else."
)
LEGACY_SYSTEM_PROMPT = (
    "You are a shopping agent on a web shop. Read the instruction, the page and the available "
    "actions, then reply with exactly one action from the list, on one line, and nothing else."
)
"""The default system message before the shopper layout (format-1 checkpoints store it)."""

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
    each ``click('bid')`` with its element; ``system_prompt``: the system message; ``layout``:
    ``"shopper"`` or ``"page-first"`` (see the module docstring; a saved config without one is
    ``"page-first"``, the layout it was trained with).
    """

    max_prompt_tokens: int = 1024
    page_field: str = "text"
    max_actions: int = 64
    truncate: str = "middle"
    label_actions: bool = True
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    layout: str = "shopper"

    def __post_init__(self) -> None:
        if self.page_field not in ("text", "axtree"):
            raise ValueError(f"page_field must be 'text' or 'axtree', not {self.page_field!r}")
        if self.truncate not in ("middle", "end"):
            raise ValueError(f"truncate must be 'middle' or 'end', not {self.truncate!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.max_prompt_tokens < 16 or self.max_actions < 1:
            raise ValueError("max_prompt_tokens must be >= 16 and max_actions >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptConfig:
        """A saved config; one saved before layouts existed gets ``layout="page-first"``."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs.setdefault("layout", "page-first")
        return cls(**kwargs)


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


def _click_bid(action: str) -> str | None:
    if not (action.startswith("click(") and action.endswith(")")):
        return None
    try:
        parsed = parse_action(action)
    except ActionParseError:
        return None
    return str(parsed.args[0]) if parsed.name == "click" else None


def _search_line(sep: str = "  # ") -> str:
    q = QUERY_PLACEHOLDER
    return f"{SEARCH_PREFIX}{q}]{sep}type {q} into the search box and search"


def _more_line(obs: dict[str, Any], config: PromptConfig) -> str | None:
    n_more = len(obs.get("available_actions", ())) - config.max_actions
    return f"({n_more} more actions not listed)" if n_more > 0 else None


def _fit_page(
    render: Callable[[str], str],
    page: str,
    budget: int,
    backbone: Backbone,
    truncate: str,
    min_keep: int,
) -> str | None:
    """``render(cut page)`` within ``budget`` tokens, the page cut in the middle or at its end
    around a ``[... N tokens cut ...]`` marker; None when less than ``min_keep`` page tokens
    would be left."""
    tok = backbone.tokenizer
    page_ids = list(tok(page, add_special_tokens=False)["input_ids"])
    overhead = len(backbone.encode_text(render("")))
    keep = budget - overhead - 12  # room for the cut marker
    while keep >= max(1, min_keep):
        n_cut = len(page_ids) - keep
        marker = f"[... {n_cut} tokens cut ...]"
        if truncate == "end":
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
    return None


def prompt_budget(backbone: Backbone, config: PromptConfig) -> int:
    """The effective token budget: ``max_prompt_tokens``, capped by the model's positions."""
    return max(16, min(config.max_prompt_tokens, backbone.max_length - ANSWER_RESERVE))


def build_prompt(
    obs: dict[str, Any], backbone: Backbone, config: PromptConfig | None = None
) -> str:
    """The prompt for ``obs`` (see the module docstring), within the token budget.

    The goal and every listed action string are always kept whole. ``layout="shopper"``: the
    page text goes first, then the label texts are shortened; ``"page-first"``: only the page
    is cut. Should the goal and the bare actions alone exceed the budget, the prompt is longer
    than the budget.
    """
    config = config or PromptConfig()
    if config.layout == "page-first":
        return _build_page_first(obs, backbone, config)
    return _build_shopper(obs, backbone, config)


# ----------------------------------------------------------------- the shopper layout

_WORD = re.compile(r"[a-z0-9]+")


def _says_the_same(name: str, bid: str) -> bool:
    """Whether an element's name adds nothing to its id (``Buy Now`` / ``buy_now``)."""
    words = _WORD.findall(name.casefold())
    return bool(words) and set(words) <= set(_WORD.findall(bid.casefold()))


@dataclass
class _Line:
    """One action line: ``action # text extra``; ``text`` may be shortened, ``extra`` not.

    ``tails[k]``: the token count of the text's last k words (``tails[-1]``: the whole text).
    """

    action: str
    text: str = ""
    extra: str = ""  # " | $19.49" (a product's price) or " (selected)"
    tails: list[int] = field(default_factory=lambda: [0])

    @property
    def n_tokens(self) -> int:
        return self.tails[-1]

    def render(self, cap: int | None) -> str:
        """With the text cut to its longest tail of whole words within ``cap`` tokens (None:
        whole; -1: no label at all).

        The END of a text is kept: a product title's tail holds its distinguishing attributes
        (``… USB-C Cable, Right Angle``), a radio's its value (``color: black`` -> ``… black``).
        """
        if cap is not None and cap < 0:
            return self.action
        text = self.text
        if cap is not None and self.n_tokens > cap:
            k = max((k for k, n in enumerate(self.tails) if n <= cap), default=0)
            text = "… " + " ".join(text.split()[len(text.split()) - k :]) if k else ""
        label = (text + self.extra) if text else self.extra.lstrip(" |")
        return f"{self.action} # {label}" if label else self.action


def _word_tails(text: str, backbone: Backbone) -> list[int]:
    words = text.split()
    tok = backbone.tokenizer
    return [0] + [
        len(tok(" ".join(words[len(words) - k :]), add_special_tokens=False)["input_ids"])
        for k in range(1, len(words) + 1)
    ]


def _shopper_labels(obs: dict[str, Any], nodes: list[AxNode]) -> dict[str, tuple[str, str]]:
    """``bid -> (text, extra)``: a result link's product title and price, a radio's
    ``group: value`` and ``(selected)``, another element's name unless its id says it."""
    labels: dict[str, tuple[str, str]] = {}
    group: AxNode | None = None
    for node in nodes:
        if group is not None and node.depth <= group.depth:
            group = None
        if node.role == "radiogroup":
            group = node
        if node.bid is None:
            continue
        if node.role == "radio" and group is not None:
            labels[node.bid] = (f"{group.name}: {node.name}", " (selected)" if node.checked else "")
        elif node.name and not _says_the_same(node.name, node.bid):
            labels[node.bid] = (node.name, "")
    for product in result_products(obs):
        labels[product.bid] = (product.title, f" | {product.price}" if product.price else "")
    return labels


def _shopper_message(goal: str, header: list[str], lines: list[str], page: str | None) -> str:
    parts = [f"Instruction: {goal}"]
    if header:
        parts.append("\n".join(header))
    parts.append("Available actions:\n" + "\n".join(lines))
    if page is not None:
        parts.append(f"Page:\n{page}")
    parts.append("Reply with one action.")
    return "\n\n".join(parts)


def _build_shopper(obs: dict[str, Any], backbone: Backbone, config: PromptConfig) -> str:
    goal = _goal(obs)
    nodes = _nodes(obs)
    header: list[str] = []
    lines: list[_Line] = []
    labels = _shopper_labels(obs, nodes) if nodes and config.label_actions else {}
    if nodes:
        product = product_header(obs)
        if product is not None:
            header.append(f"Product: {product.title}")
            if product.price:
                header.append(f"Price: {product.price}")
    for action in listed_actions(obs, config):
        bid = _click_bid(action) if labels else None
        text, extra = labels.get(bid, ("", "")) if bid is not None else ("", "")
        lines.append(_Line(action, text, extra, _word_tails(text, backbone)))
    if nodes and has_search_bar(obs):
        lines.append(_Line(_search_line(" # ")))
    more = _more_line(obs, config)
    if more:
        lines.append(_Line(more))
    page = _page(obs, config)
    system = config.system_prompt or None

    def render(cap: int | None, page_text: str | None) -> str:
        shown = [line.render(cap) for line in lines]
        return backbone.render_prompt(
            system=system, user=_shopper_message(goal, header, shown, page_text)
        )

    def fits(prompt: str) -> bool:
        return len(backbone.encode_text(prompt)) <= budget

    budget = prompt_budget(backbone, config)
    full = render(None, page if page else None)
    if fits(full):
        return full
    base = render(None, None)
    if fits(base):
        cut = _fit_page(
            lambda t: render(None, t), page, budget, backbone, config.truncate, MIN_PAGE_TOKENS
        )
        return cut if cut is not None else base
    # Not even the labelled actions fit: no page, and the longest label texts are shortened
    # to the largest common length that fits (shorter ones stay whole).
    longest = max((line.n_tokens for line in lines), default=0)
    if longest and fits(render(0, None)):
        lo, hi = 0, longest  # render(lo) fits, render(hi) (= base) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(render(mid, None)):
                lo = mid
            else:
                hi = mid
        return render(lo, None)
    return render(-1, None)


# ----------------------------------------------------------------- the page-first layout


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
        if labels:
            bid = _click_bid(action)
            label = labels.get(bid) if bid is not None else None
        lines.append(f"{action}  # {label}" if label else action)
    if search:
        lines.append(_search_line())
    more = _more_line(obs, config)
    if more:
        lines.append(more)
    return lines


def _user_message(goal: str, page: str, action_lines: list[str]) -> str:
    return (
        f"Instruction: {goal}\n\n"
        f"Page:\n{page}\n\n"
        "Available actions:\n" + "\n".join(action_lines) + "\n\nReply with one action."
    )


def _build_page_first(obs: dict[str, Any], backbone: Backbone, config: PromptConfig) -> str:
    goal = _goal(obs)
    lines = _action_lines(obs, config, has_search_bar(obs) if _nodes(obs) else False)
    page = _page(obs, config)
    system = config.system_prompt or None

    def render(page_text: str) -> str:
        return backbone.render_prompt(system=system, user=_user_message(goal, page_text, lines))

    budget = prompt_budget(backbone, config)
    full = render(page)
    if len(backbone.encode_text(full)) <= budget:
        return full
    cut = _fit_page(render, page, budget, backbone, config.truncate, 1)
    if cut is not None:
        return cut
    n_page = len(backbone.tokenizer(page, add_special_tokens=False)["input_ids"])
    return render(f"[... {n_page} tokens cut ...]")


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
    """One act: the action, and what produced it (trainers keep all of it per step).

    ``logprob``: log P(action | prompt) under the distribution that acted (the module
    docstring's factorisation; 0.0 at temperature 0); ``temperature``: the T it acted at;
    ``value``: V(prompt) when the policy has a value head (same forward pass). Choice mode:
    ``candidates``, ``index`` (the chosen one), ``scores`` (each candidate's summed token
    log-likelihood, detached: the logits of the choice, ``softmax(scores / T)``), and on a page
    with a search bar ``query_ids`` (the generated query's tokens; ``query_logprob``, their
    log p_T sum, is filled when that search was chosen at T > 0). Generate mode: ``raw``,
    ``valid`` and ``token_ids`` (what was sampled).
    """

    action: str
    mode: str
    prompt: str
    candidates: list[str] = field(default_factory=list)
    scores: torch.Tensor | None = None
    index: int | None = None
    logprob: float | None = None
    temperature: float = 0.0
    value: float | None = None
    query_ids: list[int] | None = None
    query_logprob: float | None = None
    raw: str | None = None
    valid: bool = True
    token_ids: list[int] | None = None

    @property
    def logprobs(self) -> torch.Tensor | None:
        """The candidates' scores (an older name of :attr:`scores`: NOT normalised
        probabilities; :attr:`logprob` is the chosen action's)."""
        return self.scores

    def explain(self) -> dict[str, Any]:
        """What ``PolicyAgent.explain`` records. Choice mode: the five likeliest candidates,
        ``softmax(scores / T)`` (T = 1 where it acted greedily), the chosen one among them.
        Generate mode: the generated text, and a reason when it was no valid action."""
        out: dict[str, Any] = {"value": self.value}
        if self.mode == "generate":
            out["text"] = self.raw
            if not self.valid:
                out["reason"] = f"the generated text is no valid action: played {self.action}"
        elif self.scores is not None and self.candidates:
            t = self.temperature if self.temperature > 0 else 1.0
            logp = torch.log_softmax(self.scores.double() / t, dim=0).tolist()
            out["candidates"] = top_candidates(self.candidates, logp, chosen=self.index)
        else:
            out["reason"] = "no action available on the page"
        return out


@dataclass
class DecisionEval:
    """What :meth:`LMPolicy.evaluate_decisions` recomputes, differentiable, per decision.

    ``logprobs`` (n,): log P(chosen | prompt) under the acting distribution at the decision's
    temperature (equal to ``Decision.logprob``); ``values`` (n,) when the policy has a value
    head, else None; ``entropies`` (n,): choice mode, the entropy of ``softmax(scores / T)``
    (differentiable); generate mode, the summed token entropies (detached).
    """

    logprobs: torch.Tensor
    values: torch.Tensor | None
    entropies: torch.Tensor


@dataclass
class _Query:
    text: str
    ids: list[int]


class LMPolicy:
    """A causal LM acting on WebGym observations (see the module docstring).

    ``KIND`` is what ``policy.json`` says the checkpoint is (``"lm-policy"``; the LM critic,
    agents/policies/lm_critic.py, a subclass, writes ``"lm-critic"``).

    ``add_eos``: the end-of-turn token ends every scored/trained action string (so that a
    trained model stops after the action); ``max_new_tokens``: the generation length (actions
    and search queries); ``value_head``: an optional :class:`ValueHead` over the prompt
    boundary (:meth:`add_value_head` makes one). ``metadata``: a free dict saved with the
    checkpoint (training config, step, scores). ``stats`` counts ``acts``, ``invalid``
    generations and ``fallback_queries``.
    """

    KIND = "lm-policy"

    def __init__(
        self,
        backbone: Backbone,
        config: PromptConfig | None = None,
        *,
        add_eos: bool = True,
        max_new_tokens: int = 32,
        metadata: dict[str, Any] | None = None,
        value_head: ValueHead | None = None,
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
        self.value_head: ValueHead | None = None
        if value_head is not None:
            self.set_value_head(value_head)

    def __repr__(self) -> str:
        head = ", value_head" if self.value_head is not None else ""
        return f"LMPolicy({self.backbone!r}, {self.config!r}{head})"

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
        """The backbone's parameters, then the value head's (when there is one)."""
        for m in self._modules():
            yield from m.parameters()

    # nn.Module's train/eval/state_dict, so the on-policy trainers, data parallelism and the
    # checkpoint digests treat this policy as they treat the scorer (an nn.Module)
    def _modules(self) -> list[torch.nn.Module]:
        return [self.backbone.model] + ([self.value_head] if self.value_head is not None else [])

    @property
    def training(self) -> bool:
        return self.backbone.model.training

    def train(self, mode: bool = True) -> LMPolicy:
        for m in self._modules():
            m.train(mode)
        return self

    def eval(self) -> LMPolicy:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> LMPolicy:
        for m in self._modules():
            m.requires_grad_(requires_grad)
        return self

    def buffers(self):
        for m in self._modules():
            yield from m.buffers()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The LM's state (``model.*``) and the value head's (``value_head.*``)."""
        out = {f"model.{k}": v for k, v in self.backbone.model.state_dict().items()}
        if self.value_head is not None:
            out |= {f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}
        return out

    # ------------------------------------------------------------------ the value head

    def set_value_head(self, head: ValueHead | None) -> None:
        """Use ``head`` (float32, moved to the backbone's device) as V(s); None removes it."""
        if head is not None and head.hidden_size != self.backbone.hidden_size:
            raise BackboneMismatch(
                f"a value head over {head.hidden_size} features does not fit "
                f"{self.backbone.name} (hidden size {self.backbone.hidden_size})"
            )
        self.value_head = None if head is None else head.to(self.backbone.device, torch.float32)

    def add_value_head(self, mlp_hidden: int | None = None, dropout: float = 0.0) -> ValueHead:
        """A new value head, its output layer zero-initialised (V = 0 before training)."""
        head = ValueHead(self.backbone.hidden_size, mlp_hidden, dropout)
        last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        self.set_value_head(head)
        return self.value_head

    def _head(self, states: torch.Tensor) -> torch.Tensor:
        assert self.value_head is not None
        return self.value_head(states.float())

    def values(self, prompts: Sequence[str]) -> torch.Tensor:
        """V(prompt) per prompt, shape (n,), by a forward pass of its own (a decision's value
        comes from its scoring pass instead); differentiable. Needs a value head."""
        if self.value_head is None:
            raise ValueError("this policy has no value head (LMPolicy.add_value_head makes one)")
        if not prompts:
            return torch.zeros(0, device=self.backbone.device)
        return self._head(self.backbone.hidden_states(list(prompts), [-1], "last")[:, 0])

    # ------------------------------------------------------------------ prompts, candidates

    def prompt(self, obs: dict[str, Any]) -> str:
        """The prompt for ``obs`` (:func:`build_prompt` with this policy's config)."""
        return build_prompt(obs, self.backbone, self.config)

    def has_search(self, obs: dict[str, Any]) -> bool:
        return bool(_nodes(obs)) and has_search_bar(obs)

    @staticmethod
    def clean_query(text: str) -> str:
        """A generated continuation of ``search[`` as a query: up to the first ``]`` or line
        end, the ``<query>`` placeholder and brackets removed, spaces collapsed, at most 200
        characters; ``""`` when no letter or digit is left."""
        q = text.split("]", 1)[0].split("\n", 1)[0]
        q = q.replace(QUERY_PLACEHOLDER, " ").replace("[", " ")
        q = " ".join(q.split())[:200].strip()
        return q if any(ch.isalnum() for ch in q) else ""

    def fallback_query(self, obs: dict[str, Any]) -> str:
        """The goal up to its price clause, on one line (the rule agent's query)."""
        return " ".join(goal_without_price(str(obs.get("goal") or "")).split()) or "search"

    def _queries(
        self,
        prompts: Sequence[str],
        observations: Sequence[dict[str, Any]],
        temperature: float,
        seed: int | None,
    ) -> list[_Query]:
        if not prompts:
            return []
        gens = self.backbone.generate_with_ids(
            [p + SEARCH_PREFIX for p in prompts],
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=seed,
            stop_strings=QUERY_STOPS,
        )
        queries = []
        for g, obs in zip(gens, observations, strict=True):
            q = self.clean_query(g.text)
            if not q:
                self.stats["fallback_queries"] += 1
                q = self.fallback_query(obs)
            queries.append(_Query(q, list(g.token_ids)))
        return queries

    def generate_queries(
        self,
        prompts: Sequence[str],
        observations: Sequence[dict[str, Any]],
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """The LM's search query per prompt: its continuation of ``prompt + "search["``,
        stopped at ``]`` or a line end (see :meth:`clean_query`, :meth:`fallback_query`)."""
        return [q.text for q in self._queries(prompts, observations, temperature, seed)]

    def query_logprobs(
        self, prompts: Sequence[str], query_ids: Sequence[Sequence[int]], temperature: float
    ) -> torch.Tensor:
        """sum_j log p_T(q_j | prompt + "search[", q_<j) per query, shape (n,): the
        probability of writing the query at temperature T (> 0). Differentiable."""
        if not prompts:
            return torch.zeros(0, device=self.backbone.device)
        return self.backbone.score_sequences(
            [p + SEARCH_PREFIX for p in prompts],
            [list(q) for q in query_ids],
            temperature=float(temperature),
        ).sums

    def _candidates_batch(
        self,
        observations: Sequence[dict[str, Any]],
        prompts: Sequence[str],
        temperature: float,
        gen: np.random.Generator | None,
    ) -> tuple[list[list[str]], list[_Query | None]]:
        cands = [listed_actions(o, self.config) for o in observations]
        found: list[_Query | None] = [None] * len(observations)
        search = [i for i, o in enumerate(observations) if self.has_search(o)]
        if search:
            seed = _draw_seed(gen) if gen is not None and temperature > 0 else None
            queries = self._queries(
                [prompts[i] for i in search],
                [observations[i] for i in search],
                temperature if gen is not None else 0.0,
                seed,
            )
            for i, q in zip(search, queries, strict=True):
                action = f"search[{q.text}]"
                if action not in cands[i]:
                    cands[i].append(action)
                    found[i] = q
        return cands, found

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
        return self._candidates_batch([obs], [p], t, gen)[0][0]

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
        """One :class:`Decision` per observation, with ``logprob`` (and ``value`` when the policy
        has a value head).

        Generate mode generates every prompt in one left-padded batch, then scores what was
        sampled in one right-padded pass (for ``logprob`` at T > 0 and the value; skipped at
        T = 0 without a head); choice mode generates the search queries in one batch, then
        scores each observation's candidates with one key/value-shared pass (the value read
        from it), and the chosen generated queries in one more batch.
        """
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if not observations:
            return []
        temperature = float(temperature)
        gen = _generator(rng, seed) if temperature > 0 else None
        prompts = [self.prompt(o) for o in observations]
        self.stats["acts"] += len(observations)
        if mode == "generate":
            return self._decide_generate(prompts, temperature, gen)
        cands, queries = self._candidates_batch(observations, prompts, temperature, gen)
        out: list[Decision] = []
        chose_query: list[Decision] = []
        for p, cs, q in zip(prompts, cands, queries, strict=True):
            if not cs:  # no available action at all: an explicit no-op
                d = Decision("noop()", mode, p, logprob=0.0, temperature=temperature)
                if self.value_head is not None:
                    d.value = float(self.values([p])[0])
                out.append(d)
                continue
            scores, state = self.backbone.score_candidates_and_state(p, cs, add_eos=self.add_eos)
            scores = scores.float()
            if temperature == 0:
                idx, logprob = int(torch.argmax(scores)), 0.0
            else:
                probs = torch.softmax(scores / temperature, dim=0).double().cpu().numpy()
                probs = probs / probs.sum()
                idx = int(gen.choice(len(cs), p=probs))
                logprob = float(torch.log_softmax(scores / temperature, dim=0)[idx])
            d = Decision(
                cs[idx],
                mode,
                p,
                candidates=cs,
                scores=scores.cpu(),
                index=idx,
                logprob=logprob,
                temperature=temperature,
                query_ids=None if q is None else q.ids,
            )
            if self.value_head is not None:
                d.value = float(self._head(state))
            if q is not None and temperature > 0 and cs[idx].startswith(SEARCH_PREFIX):
                chose_query.append(d)
            out.append(d)
        if chose_query:
            sums = self.query_logprobs(
                [d.prompt for d in chose_query], [d.query_ids for d in chose_query], temperature
            )
            for d, s in zip(chose_query, sums.tolist(), strict=True):
                d.query_logprob = float(s)
                d.logprob = float(d.logprob) + float(s)
        return out

    def _decide_generate(
        self, prompts: list[str], temperature: float, gen: np.random.Generator | None
    ) -> list[Decision]:
        gens = self.backbone.generate_with_ids(
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            seed=_draw_seed(gen) if gen is not None else None,
        )
        scored = None
        if temperature > 0 or self.value_head is not None:
            scored = self.backbone.score_sequences(
                prompts,
                [g.token_ids for g in gens],
                temperature=temperature if temperature > 0 else 1.0,
            )
        out = []
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            action, valid = self.parse_generation(g.text)
            if not valid:
                self.stats["invalid"] += 1
            d = Decision(
                action,
                "generate",
                p,
                raw=g.text,
                valid=valid,
                token_ids=list(g.token_ids),
                temperature=temperature,
                logprob=float(scored.sums[i]) if temperature > 0 else 0.0,
            )
            if self.value_head is not None:
                d.value = float(self._head(scored.prompt_states[i]))
            out.append(d)
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

    def evaluate_choices(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        chosen: Sequence[int | str],
        temperature: float,
        *,
        query_ids: Sequence[Sequence[int] | None] | None = None,
        with_values: bool = True,
    ) -> DecisionEval:
        """Choice-mode log P(chosen | prompt) at ``temperature`` (> 0), the value and the
        choice's entropy, per decision, differentiable: the quantities
        :meth:`decide_batch` acted with, recomputed by the same code.

        ``chosen``: an index into the decision's candidates, or the action string;
        ``query_ids``: per decision the generated query's tokens (``Decision.query_ids``; None
        where there was none). When the chosen candidate is the generated search, its query's
        log p_T sum is added (the module docstring's factorisation). One key/value-shared
        scoring pass per decision (its value read from it), plus one batch for the queries.
        """
        n = len(prompts)
        if not (len(candidates) == len(chosen) == n):
            raise ValueError(
                f"{n} prompts, {len(candidates)} candidate lists, {len(chosen)} chosen"
            )
        if query_ids is not None and len(query_ids) != n:
            raise ValueError(f"{len(query_ids)} query_ids for {n} decisions")
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, not {temperature}: greedy acting is a point mass "
                "(Decision.logprob 0.0) with no gradient"
            )
        dev = self.backbone.device
        want_values = with_values and self.value_head is not None
        lps: list[torch.Tensor] = []
        ents: list[torch.Tensor] = []
        states: list[torch.Tensor | None] = []
        with_query: list[int] = []
        for i, (p, cs, c) in enumerate(zip(prompts, candidates, chosen, strict=True)):
            cs = list(cs)
            if not cs:
                lps.append(torch.zeros((), device=dev))
                ents.append(torch.zeros((), device=dev))
                states.append(None)
                continue
            idx = cs.index(c) if isinstance(c, str) else int(c)
            if not 0 <= idx < len(cs):
                raise IndexError(f"decision {i}: chosen index {idx} outside {len(cs)} candidates")
            scores, state = self.backbone.score_candidates_and_state(p, cs, add_eos=self.add_eos)
            logp = torch.log_softmax(scores.float() / temperature, dim=0)
            lps.append(logp[idx])
            ents.append(-(logp.exp() * logp).sum())
            states.append(state)
            q = None if query_ids is None else query_ids[i]
            if q is not None and cs[idx].startswith(SEARCH_PREFIX):
                with_query.append(i)
        if with_query:
            sums = self.query_logprobs(
                [prompts[i] for i in with_query], [query_ids[i] for i in with_query], temperature
            )
            for j, i in enumerate(with_query):
                lps[i] = lps[i] + sums[j]
        values = None
        if want_values:
            missing = [i for i, s in enumerate(states) if s is None]
            extra = self.values([prompts[i] for i in missing]) if missing else None
            vals = []
            for i, s in enumerate(states):
                vals.append(self._head(s) if s is not None else extra[missing.index(i)])
            values = torch.stack(vals) if vals else torch.zeros(0, device=dev)
        return DecisionEval(
            torch.stack(lps) if lps else torch.zeros(0, device=dev),
            values,
            torch.stack(ents) if ents else torch.zeros(0, device=dev),
        )

    def decision_logprobs(
        self,
        prompts: Sequence[str],
        candidates: Sequence[Sequence[str]],
        chosen: Sequence[int | str],
        temperature: float,
        *,
        query_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> torch.Tensor:
        """log P(chosen | prompt) of choice-mode decisions under the distribution that acted,
        shape (n,), differentiable (:meth:`evaluate_choices` without values): the PPO ratio's
        term. Equals ``Decision.logprob`` at the same temperature."""
        return self.evaluate_choices(
            prompts, candidates, chosen, temperature, query_ids=query_ids, with_values=False
        ).logprobs

    def evaluate_generations(
        self,
        prompts: Sequence[str],
        token_ids: Sequence[Sequence[int]],
        temperature: float,
        *,
        with_values: bool = True,
    ) -> tuple[list[torch.Tensor], DecisionEval]:
        """Generate-mode decisions: ``(per-token log p_T of the sampled ids, DecisionEval)``,
        one right-padded pass, differentiable; the per-token terms are PPO's per-token ratios'.
        The ids are scored as sampled (no end-of-turn token added)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        s = self.backbone.score_sequences(
            list(prompts),
            [list(t) for t in token_ids],
            temperature=float(temperature),
            entropies=True,
        )
        values = None
        if with_values and self.value_head is not None:
            values = self._head(s.prompt_states)
        ents = torch.stack([e.sum() for e in s.token_entropies]) if prompts else s.sums
        return s.token_logprobs, DecisionEval(s.sums, values, ents)

    def evaluate_decisions(
        self,
        decisions: Sequence[Decision],
        *,
        temperature: float | None = None,
        with_values: bool = True,
    ) -> DecisionEval:
        """:meth:`evaluate_choices` / :meth:`evaluate_generations` of stored decisions (either
        mode, in their order) at their own temperature, or ``temperature`` when given."""
        n = len(decisions)
        dev = self.backbone.device
        temps = [float(d.temperature if temperature is None else temperature) for d in decisions]
        groups: dict[tuple[str, float], list[int]] = {}
        for i, d in enumerate(decisions):
            groups.setdefault((d.mode, temps[i]), []).append(i)
        lps: list[torch.Tensor | None] = [None] * n
        vals: list[torch.Tensor | None] = [None] * n
        ents: list[torch.Tensor | None] = [None] * n
        for (mode, t), idx in groups.items():
            ds = [decisions[i] for i in idx]
            if mode == "choice":
                ev = self.evaluate_choices(
                    [d.prompt for d in ds],
                    [d.candidates for d in ds],
                    [d.index if d.index is not None else 0 for d in ds],
                    t,
                    query_ids=[d.query_ids for d in ds],
                    with_values=with_values,
                )
            else:
                if any(d.token_ids is None for d in ds):
                    raise ValueError("a generate-mode decision without token_ids cannot be scored")
                _, ev = self.evaluate_generations(
                    [d.prompt for d in ds], [d.token_ids for d in ds], t, with_values=with_values
                )
            for j, i in enumerate(idx):
                lps[i], ents[i] = ev.logprobs[j], ev.entropies[j]
                vals[i] = None if ev.values is None else ev.values[j]
        if n == 0:
            empty = torch.zeros(0, device=dev)
            return DecisionEval(empty, empty if self.value_head is not None else None, empty)
        values = None
        if with_values and self.value_head is not None:
            values = torch.stack(vals)
        return DecisionEval(torch.stack(lps), values, torch.stack(ents))

    def token_logprobs(
        self, prompts: Sequence[str], actions: Sequence[str | Sequence[int]]
    ) -> list[torch.Tensor]:
        """Per-token log pi of each action given its prompt (a list of 1-D tensors; an action
        string gets the end-of-turn token last when ``add_eos``, token ids are scored as given);
        one right-padded batch; differentiable."""
        return self.backbone.sequence_logprobs(prompts, actions, add_eos=self.add_eos)[0]

    def action_logprobs(
        self,
        prompts: Sequence[str],
        actions: Sequence[str | Sequence[int]],
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """log pi(action | prompt) per pair, shape (n,): the sum of :meth:`token_logprobs`.

        The sequence likelihood behaviour cloning maximises; NOT the acting distribution of
        choice mode (use :meth:`decision_logprobs` for PPO ratios). One right-padded batch
        (padding masked, so a pair scores the same alone or batched), or chunks of
        ``batch_size``. Differentiable unless called under ``torch.no_grad()``.
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
        """Write ``policy.json``, ``model.safetensors`` and, with a value head,
        ``value_head.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if metadata:
            self.metadata.update(metadata)
        save_model(self.backbone.model, str(d / WEIGHTS_FILE))
        fingerprint = self.backbone.checkpoint_fingerprint()
        info = {
            "format_version": FORMAT_VERSION,
            "kind": self.KIND,
            "backbone": self.backbone.name,
            "fingerprint": fingerprint,
            "dtype": str(self.backbone.dtype).removeprefix("torch."),
            "prompt_config": asdict(self.config),
            "add_eos": self.add_eos,
            "max_new_tokens": self.max_new_tokens,
            "metadata": self.metadata,
        }
        if self.value_head is not None:
            save_model(self.value_head, str(d / VALUE_HEAD_FILE))
            info["value_head"] = {
                "file": VALUE_HEAD_FILE,
                "config": self.value_head.config(),
                "reads": "last layer, last prompt token",
                "fingerprint": fingerprint,
            }
        else:
            (d / VALUE_HEAD_FILE).unlink(missing_ok=True)
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
            from webgym_agents.toolkit.checkpoints import read_checkpoint

            found = read_checkpoint(d)
            if found.kind is not None or found.trainer:  # another checkpoint: say what it is
                player = found.player()
                raise FileNotFoundError(
                    f"{d} is {found.what()}, not an LM policy checkpoint"
                    + (f": play it with --agent {player}" if player else "")
                )
            what = "does not exist" if not d.exists() else f"has no {POLICY_FILE}"
            raise FileNotFoundError(
                f"{d} is not an LM policy checkpoint: it {what}. Make one with "
                f"LMPolicy.save(dir) (an untrained one: "
                f"LMPolicy.from_backbone_name('tiny-lm').save(dir))"
            )
        info = json.loads(path.read_text())
        version = info.get("format_version")
        if version not in READABLE_FORMATS:
            raise ValueError(
                f"{path}: format_version {version!r} is not supported (this code reads "
                f"{', '.join(map(str, READABLE_FORMATS))})"
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
        """The policy saved in ``directory``, with its value head when it has one.

        Loads the backbone the checkpoint names (or checks the given ``backbone``) and raises
        :class:`BackboneMismatch`, with the reason, when the checkpoint's fingerprint (or its
        value head's) is not that backbone's. ``dtype`` defaults to the saved one.
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
        head = cls._load_value_head(d, info.get("value_head"), backbone)
        return cls(
            backbone,
            PromptConfig.from_dict(info.get("prompt_config") or {}),
            add_eos=bool(info.get("add_eos", True)),
            max_new_tokens=int(info.get("max_new_tokens", 32)),
            metadata=info.get("metadata") or {},
            value_head=head,
        )

    @staticmethod
    def _load_value_head(
        d: Path, entry: dict[str, Any] | None, backbone: Backbone
    ) -> ValueHead | None:
        if not entry:
            return None
        from safetensors.torch import load_model

        try:
            backbone.check_fingerprint(entry.get("fingerprint") or {})
        except BackboneMismatch as err:
            raise BackboneMismatch(f"{d / POLICY_FILE}: the value head: {err}") from err
        config = dict(entry.get("config") or {})
        if int(config.get("hidden_size", -1)) != backbone.hidden_size:
            raise BackboneMismatch(
                f"{d / POLICY_FILE}: the value head reads {config.get('hidden_size')} features; "
                f"{backbone.name} has {backbone.hidden_size}"
            )
        path = d / str(entry.get("file") or VALUE_HEAD_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{d / POLICY_FILE} names a value head but {path} is missing")
        head = ValueHead.from_config(config)
        try:
            load_model(head, str(path), strict=True, device=str(backbone.device))
        except RuntimeError as err:
            raise BackboneMismatch(f"{path} does not fit its value head config: {err}") from err
        head.eval()
        return head


# --------------------------------------------------------------------------------------------
# The agent.
# --------------------------------------------------------------------------------------------


class LMAgent(PolicyAgent):
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
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if policy is None:
            if checkpoint is None:
                raise ValueError("LMAgent needs a checkpoint directory or a policy")
            policy = LMPolicy.load(checkpoint, device=device)
        super().__init__(policy, temperature=temperature)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.mode = mode

    def decide_kwargs(self) -> dict[str, Any]:
        return {"mode": self.mode}
