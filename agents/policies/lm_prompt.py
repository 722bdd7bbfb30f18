"""The language-model policy's prompt: :class:`PromptConfig` and :func:`build_prompt`, the two
layouts (``shopper``, ``page-first``) fitted to a token budget (webgym_agents/policies/lm_agent.py's
docstring shows them), and the action strings a prompt lists.

Imports ``webgym`` and ``webgym_agents.observation`` / ``webgym_agents.models``; never the
policy (which imports it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from webgym.actions import ActionParseError, parse_action
from webgym_agents.models.backbone import (
    Backbone,
)
from webgym_agents.observation import (
    AxNode,
    axtree_nodes,
    has_search_bar,
    product_header,
    result_products,
)

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
