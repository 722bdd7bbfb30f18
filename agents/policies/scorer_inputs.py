"""What the candidate scorer reads (webgym_agents/policies/scorer_policy.py): the state text
(:func:`state_text`, :func:`critic_state_text`), the candidate actions of a page with their
texts and structural :data:`FEATURES` (:func:`candidates`), the search queries built from the
instruction (:func:`search_queries`). Pure functions of an observation: no torch, no weights.

Imports ``webgym`` and ``webgym_agents.observation`` only; never the policy (which imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.observation import (
    AxNode,
    axtree_nodes,
    goal_without_price,
    has_search_bar,
    instruction_budget,
    listed_prices,
    lookalike_items,
    missing_goal_options,
    option_groups,
    visited_items,
)

_SEP = " [SEP] "
_ASIN_RE = re.compile(r"^B0[0-9A-Z]{8}$")
_PRICE_RE = re.compile(r"^\$[\d,.]+( to \$[\d,.]+)?$")
_ITEM_RE = re.compile(r"^click\('item_(?P<asin>[a-z0-9]+)'\)$")
_CLICK_RE = re.compile(r"^click\('(?P<bid>[^']+)'\)$")
# an instruction's request words ("i need", "find me a"), which the short query leaves out
QUERY_PREFIX_RE = re.compile(
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


def critic_state_text(obs: dict[str, Any], max_steps: int | None = None) -> str:
    """:func:`state_text` plus the page facts a return depends on, spelled out for a critic.

    A critic that must learn "price <= budget" or "this title matches the goal" from raw text
    on ~1,000 states a batch memorises returns instead (docs/results.md, ArCHer). So: on an
    item page whether the price is within budget, the title's overlap with the goal and how many
    option values the goal names are chosen; on a results page how many listed products are
    within budget and the best overlap, then the first three titles with prices."""
    base = state_text(obs, max_steps)
    goal = _norm(obs.get("goal"))
    budget = instruction_budget(goal)
    core = goal_without_price(goal).lower()
    goal_words = set(_WORD_RE.findall(core))

    def within(price: str) -> str:
        prices = listed_prices(price)
        if not prices or budget is None:
            return "unknown"
        return "yes" if min(prices) <= budget else "no"

    kind = _page_kind(obs, _nodes(obs))
    if kind == "item page":
        segs = _page_segments(obs)
        at = next((i for i, seg in enumerate(segs) if seg.startswith("Price:")), None)
        title = segs[at - 1] if at else ""
        price = segs[at] if at is not None else ""
        groups = option_groups(obs)
        named = [g for g in groups if any(_mentions(core, o.label.lower()) for o in g.options)]
        chosen = [g for g in named if g.checked and _mentions(core, g.checked.label.lower())]
        facts = (
            f"within budget: {within(price)}; title match {_overlap(title, goal_words):.1f}; "
            f"goal options chosen {len(chosen)} of {len(named)}"
        )
    elif kind == "results page":
        items = list(result_items(obs).values())
        ok = sum(within(p) == "yes" for _, p in items)
        best = max((_overlap(t, goal_words) for t, _ in items), default=0.0)
        top = "; ".join(f"{t} {p}".strip() for t, p in items[:3])
        facts = f"{len(items)} listed, {ok} within budget, best title match {best:.1f}: {top}"
    else:
        return base
    return f"{base} | {facts}"


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
    short = QUERY_PREFIX_RE.sub("", core.split(", with ")[0].split(" with ")[0]).strip()
    out: list[str] = []
    for q in (core, full, short):
        q = q.replace("[", " ").replace("]", " ").strip()
        if q and q not in out:
            out.append(" ".join(q.split()))
    return out


FEATURES = (
    "item", "option", "buy_now", "search", "navigation", "detail_tab", "selected",
    "price_ok", "rank", "goal_overlap", "steps_left", "options_pending",
    "visited", "buy_mismatch", "back_mismatch", "buy_pending", "page_exhausted",
)  # fmt: skip
"""The structural features of a candidate (:func:`candidates`), next to its text embedding.

The last three let a policy express "this item is not it": ``visited`` marks a result the
agent opened earlier in the episode (its memory, :func:`webgym_agents.observation.visited_items`;
such a result is offered only once every listed result has been opened);
on an item page, ``buy_mismatch`` (on Buy Now) and ``back_mismatch`` (on ``< Prev`` and Back to
Search) are 1 when the page does not offer an option value the instruction names or its price
is over the instruction's budget, and a retry still fits in the steps left
(:data:`RETRY_STEPS`). Each sits on its own kind of candidate, so a linear weight
on it moves mass between buying and going back (a feature shared by every candidate cancels in
the softmax). Checkpoints trained before they existed load with zero weights on them.

A result whose title is that of one opened and left on the same page (a lookalike,
:func:`webgym_agents.observation.lookalike_items`: the shop's variants of one product offer the
same options) is not offered while a result unlike any left is listed; once none is,
``page_exhausted`` is 1 on Next >, where new products are. An agent that never goes back
(``bc``) opens nothing twice and sees neither.

Options are offered only where choosing one changes something: not the value already chosen
(clicking it is a no-op) and, in a dimension with a chosen value, only values the instruction
names (swapping one unnamed value for another gains nothing; a policy that could loops there
until the episode is cut off). So ``selected`` is 0 on every candidate; it stays a feature so
that every head loads. ``buy_pending`` is 0 on the last step, where buying is all that pays."""

RETRY_STEPS = 5
"""The steps a retry needs from an item page: ``< Prev``, open another result, up to two
option clicks, Buy Now. With fewer left, the ``*_mismatch`` features are 0: buying the
imperfect item beats a truncated episode (which pays nothing)."""

N_FEATURES_V1 = 12
"""The feature count of checkpoints trained before ``visited``/``*_mismatch`` (padded on load)."""

FEATURE_SCALE = 10.0
"""The features enter the linear path scaled: Adam moves a weight by about lr per update, so
at lr 3e-4 an unscaled rank step of 0.1 would need thousands of updates to matter."""

_STEPS_LEFT, _PENDING = FEATURES.index("steps_left"), FEATURES.index("options_pending")
_BACK_BIDS = frozenset({"prev", "back_to_search"})
_WORD_RE = re.compile(r"[a-z0-9]+")


def _overlap(text: str, goal_words: set[str]) -> float:
    words = set(_WORD_RE.findall(text.lower()))
    return len(words & goal_words) / len(words) if words else 0.0


@dataclass(frozen=True)
class Candidates:
    """The candidate actions of one state, the text the encoder reads for each, and features."""

    actions: list[str]
    texts: list[str]
    features: list[list[float]]


def candidates(obs: dict[str, Any], max_steps: int = MAX_EPISODE_STEPS) -> Candidates:
    """The page's available actions (the search button replaced by query candidates), each
    described by what a shopper sees, with :data:`FEATURES`."""
    actions = [str(a) for a in obs.get("available_actions") or ()]
    goal = _norm(obs.get("goal"))
    wanted = goal_without_price(goal).lower()  # the instruction the options are matched against
    goal_words = set(_WORD_RE.findall(wanted))
    budget = instruction_budget(goal)
    steps_left = max(0, max_steps - int(obs.get("step", 0) or 0)) / max(1, max_steps)
    nodes = _nodes(obs)
    items = result_items(obs)
    labels: dict[str, str] = {}
    option_of: dict[str, tuple[str, bool]] = {}
    groups = option_groups(obs)
    decided: set[str] = set()  # the options of a dimension that has a chosen value
    for group in groups:
        for opt in group.options:
            labels[opt.bid] = f"{group.name}: {opt.label}"
            option_of[opt.bid] = (opt.label, opt.checked)
        if any(opt.checked for opt in group.options):
            decided.update(opt.bid for opt in group.options)
    for node in nodes:
        if node.bid and node.bid not in labels and node.name:
            labels[node.bid] = node.name
    out = Candidates([], [], [])
    searchable = has_search_bar(obs) if nodes else False

    # the instruction names a value of an option dimension that is not selected yet: whether
    # to buy now depends on every option of the page, so every candidate sees it
    pending = float(
        any(
            any(_mentions(wanted, o.label.lower()) for o in g.options)
            and not any(o.checked and _mentions(wanted, o.label.lower()) for o in g.options)
            for g in groups
        )
    )

    # on an item page: does it lack an option value the instruction names, or cost too much?
    mismatch = 0.0
    if "click('buy_now')" in actions:
        price = next((n.name for n in nodes if n.name.startswith("Price:")), "")
        prices = listed_prices(price)
        over = bool(prices) and budget is not None and min(prices) > budget
        # going back pays only if another result can still be opened and bought in time
        fits = max_steps - int(obs.get("step", 0) or 0) >= RETRY_STEPS
        mismatch = float(fits and (over or bool(missing_goal_options(goal, groups))))
    visited = visited_items(obs)
    # a result opened earlier in the episode is not offered again while others are left: a
    # shopper does not reopen what it just left (after "< Prev" the page looks as before)
    listed = [m.group("asin") for m in map(_ITEM_RE.match, actions) if m]
    skip_visited = any(asin not in visited for asin in listed)
    # nor, while a result unlike any left is listed, a lookalike of one left (the same title:
    # the shop's variants of one product offer the same options); once none is, the next page
    # is where new products are (page_exhausted on it)
    alike = lookalike_items(obs, budget) if visited else set()
    unlike = [asin for asin in listed if asin not in visited and asin not in alike]
    exhausted = float(bool(listed) and not unlike)

    def add(action: str, text: str, **f: float) -> None:
        out.actions.append(action)
        out.texts.append(text)
        row = [float(f.get(k, 0.0)) for k in FEATURES]
        row[_STEPS_LEFT], row[_PENDING] = steps_left, pending
        out.features.append(row)

    rank = 0
    for action in actions:
        m_item, m_click = _ITEM_RE.match(action), _CLICK_RE.match(action)
        bid = m_click.group("bid") if m_click else ""
        if searchable and "search" in bid:
            continue  # the search button is reached through the query candidates below
        asin = m_item.group("asin") if m_item else ""
        if m_item and ((skip_visited and asin in visited) or (unlike and asin in alike)):
            rank += 1  # the rank stays the page position
        elif m_item:
            title, price = items.get(m_item.group("asin"), ("", ""))
            prices = listed_prices(price)
            ok = float(bool(prices) and budget is not None and min(prices) <= budget)
            add(action, f"{title} {price}".strip(), item=1, price_ok=ok, rank=rank / 10,
                goal_overlap=_overlap(title, goal_words),
                visited=float(m_item.group("asin") in visited))  # fmt: skip
            rank += 1
        elif bid in option_of:
            value, checked = option_of[bid]
            named = _mentions(wanted, value.lower())
            if checked or (bid in decided and not named):
                # the chosen value again changes nothing, and swapping one value the
                # instruction does not name for another gains nothing: neither is offered
                continue
            add(action, labels[bid], option=1, selected=float(checked), goal_overlap=float(named))
        elif bid == "buy_now":
            # on the last step buying is all that pays, chosen options or not
            last = max_steps - int(obs.get("step", 0) or 0) <= 1
            add(action, "buy now", buy_now=1, buy_mismatch=mismatch,
                buy_pending=0.0 if last else pending)  # fmt: skip
        elif bid.startswith("tab_"):
            add(action, labels.get(bid, bid), detail_tab=1)
        elif m_click:
            back = mismatch if bid in _BACK_BIDS else 0.0
            add(action, labels.get(bid, bid.replace("_", " ")), navigation=1, back_mismatch=back,
                page_exhausted=exhausted if bid == "next_page" else 0.0)  # fmt: skip
        else:
            add(action, action)
    if searchable:
        for q in search_queries(goal):
            add(f"search[{q}]", q, search=1, goal_overlap=_overlap(q, goal_words))
    if not out.actions:  # nothing listed: a no-op keeps the episode well-formed
        add("noop()", "do nothing")
    return out


def _mentions(text: str, phrase: str) -> bool:
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
