"""Reading an environment observation as a scripted agent needs to: page kind, options, query.

The facts come from the observation's accessibility tree (``obs["axtree"]``: one
``[bid] role 'name'`` line per node, children indented by one tab more, radios written
``[opt_0_1] radio 'pink', checked=false``). When the env was made with ``axtree=False`` the
tree is rebuilt from ``obs["html"]`` by :func:`webgym.observe.observe_page`, the env's own
observation function, so both paths read the same lines.

Imports only ``webgym.observe``; never imports ``webgym_benchmarks`` or ``webgym_leaderboards``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from webgym.observe import observe_page

__all__ = [
    "AxNode",
    "OptionGroup",
    "ProductLine",
    "RadioOption",
    "axtree_nodes",
    "goal_options",
    "goal_without_price",
    "has_search_bar",
    "instruction_budget",
    "listed_prices",
    "missing_goal_options",
    "visited_items",
    "with_history",
    "item_actions",
    "option_groups",
    "product_header",
    "result_products",
]

PRICE_CLAUSE = ", and price lower than"
OPTIONS_CLAUSE = ", with "
"""Where a WebShop instruction names its options (``", with color: white and size: king"``)."""
PREVIOUS_ACTIONS = "previous_actions"
"""The observation key an agent adds for its own episode memory (:func:`with_history`)."""
PRICE_PREFIX = "Price:"
"""How an item page writes its price (``StaticText 'Price: $19.49'``)."""
"""Where a WebShop instruction's price constraint starts."""

_LINE_RE = re.compile(
    r"^(?P<depth>\t*)(?:\[(?P<bid>[^\]]+)\] )?(?P<role>\S+)"
    r"(?: (?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"))?(?P<rest>.*)$"
)
_CHECKED_RE = re.compile(r"\bchecked=(true|false)\b")
_TEXT_ROLES = frozenset({"textbox", "searchbox", "combobox"})


@dataclass(frozen=True)
class AxNode:
    """One line of the accessibility tree."""

    depth: int
    role: str
    name: str = ""
    bid: str | None = None
    checked: bool | None = None


@dataclass(frozen=True)
class RadioOption:
    """One value of a product option (a radio): its element id, text and state."""

    bid: str
    label: str
    checked: bool


@dataclass(frozen=True)
class OptionGroup:
    """One option dimension of an item page (a radiogroup): ``name`` is e.g. ``'color'``."""

    bid: str
    name: str
    options: tuple[RadioOption, ...]

    @property
    def checked(self) -> RadioOption | None:
        return next((o for o in self.options if o.checked), None)


def _axtree(obs: dict[str, Any]) -> str:
    tree = obs.get("axtree")
    if tree:
        return tree
    html = obs.get("html")
    if html:
        return observe_page(html, obs.get("url", "")).axtree
    raise ValueError("the observation has neither 'axtree' nor 'html': make the env with one")


def _unquote(name: str | None) -> str:
    if not name:
        return ""
    if name.startswith("'") and "\\" not in name:
        return name[1:-1]  # BrowserGym's plain quoting: the common case
    try:
        return str(ast.literal_eval(name))
    except (ValueError, SyntaxError):
        return name[1:-1]


def axtree_nodes(obs: dict[str, Any]) -> list[AxNode]:
    """The accessibility tree of ``obs`` as nodes, in document order."""
    nodes = []
    for line in _axtree(obs).splitlines():
        m = _LINE_RE.match(line)
        if m is None:
            continue
        checked = _CHECKED_RE.search(m.group("rest"))
        nodes.append(
            AxNode(
                depth=len(m.group("depth")),
                role=m.group("role"),
                name=_unquote(m.group("name")),
                bid=m.group("bid"),
                checked=None if checked is None else checked.group(1) == "true",
            )
        )
    return nodes


def has_search_bar(obs: dict[str, Any]) -> bool:
    """Whether the page has a text field to type a query into (the search page)."""
    return any(n.role in _TEXT_ROLES and n.bid is not None for n in axtree_nodes(obs))


def item_actions(obs: dict[str, Any]) -> list[str]:
    """The ``click('item_...')`` actions of a results page, in the order the page lists them."""
    return [a for a in obs["available_actions"] if a.startswith("click('item_")]


def option_groups(obs: dict[str, Any]) -> list[OptionGroup]:
    """The option dimensions of an item page (none on other pages), in page order."""
    groups: list[OptionGroup] = []
    current: tuple[AxNode, list[RadioOption]] | None = None
    for node in axtree_nodes(obs):
        if current is not None and node.depth <= current[0].depth:
            groups.append(OptionGroup(current[0].bid, current[0].name, tuple(current[1])))
            current = None
        if node.role == "radiogroup" and node.bid is not None:
            current = (node, [])
        elif node.role == "radio" and node.bid is not None and current is not None:
            current[1].append(RadioOption(node.bid, node.name, bool(node.checked)))
    if current is not None:
        groups.append(OptionGroup(current[0].bid, current[0].name, tuple(current[1])))
    return groups


_BUDGET_RE = re.compile(r"price lower than ([\d,.]+) dollars")
_DOLLARS_RE = re.compile(r"\$([\d,]+(?:\.\d+)?)")


def instruction_budget(goal: str) -> float | None:
    """The price ceiling an instruction names (``"..., and price lower than 40.00 dollars"``
    gives 40.0), None when it names none."""
    m = _BUDGET_RE.search(goal)
    try:
        return float(m.group(1).replace(",", "").rstrip(".")) if m else None
    except ValueError:
        return None


def listed_prices(text: str) -> list[float]:
    """The dollar amounts a price text shows, in order (``"$3.00 to $9.50"``: [3.0, 9.5])."""
    return [float(x.replace(",", "")) for x in _DOLLARS_RE.findall(text)]


def goal_without_price(goal: str) -> str:
    """The instruction up to its price clause (``", and price lower than ..."``), if any."""
    i = goal.find(PRICE_CLAUSE)
    return goal[:i] if i >= 0 else goal


@dataclass(frozen=True)
class ProductLine:
    """A product as a page shows it: ``title`` and ``price`` (``"$19.49"``, ``"$3.00 to
    $9.50"``; None when the page shows none, as on an item's sub-pages). ``bid`` is the element
    id of the result link (``item_b04x9sbgpj``) on a results page, None on an item page."""

    title: str
    price: str | None = None
    bid: str | None = None


def result_products(obs: dict[str, Any]) -> list[ProductLine]:
    """The products listed on a results page, in page order (none on other pages).

    Each ``listitem`` of the tree that holds an ``item_...`` link is one product: the link's
    name is its title, the first text of the item starting with ``$`` its price.
    """
    products: list[ProductLine] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is not None and current["bid"] is not None:
            products.append(ProductLine(current["title"], current["price"], current["bid"]))

    for node in axtree_nodes(obs):
        if current is not None and node.depth <= current["depth"]:
            close()
            current = None
        if node.role == "listitem":
            current = {"depth": node.depth, "bid": None, "title": "", "price": None}
        elif current is not None:
            if node.bid is not None and node.bid.startswith("item_") and current["bid"] is None:
                current["bid"], current["title"] = node.bid, node.name
            elif node.role == "StaticText" and node.name.startswith("$") and not current["price"]:
                current["price"] = node.name
    close()
    return products


def product_header(obs: dict[str, Any]) -> ProductLine | None:
    """The product of an item page or of one of its sub-pages (Description, Features, ...):
    its heading and its ``Price:`` text (None on sub-pages, which show no price). None on pages
    without a product heading (search, results)."""
    nodes = axtree_nodes(obs)
    if any(n.bid is not None and n.bid.startswith("item_") for n in nodes):
        return None
    title = next((n.name for n in nodes if n.role == "heading" and n.name), None)
    if title is None:
        return None
    price = next(
        (
            n.name[len(PRICE_PREFIX) :].strip()
            for n in nodes
            if n.role == "StaticText" and n.name.startswith(PRICE_PREFIX)
        ),
        None,
    )
    return ProductLine(title, price or None)


_OPTION_PAIR_RE = re.compile(
    r"(?:, | and )?([a-z][a-z0-9 ]*?): (.+?)(?=(?:, | and )[a-z][a-z0-9 ]*?: |$)"
)


def goal_options(goal: str) -> list[tuple[str, str]]:
    """The ``(dimension, value)`` pairs an instruction names in its options clause, in order:
    ``"..., with color: white and size: king, and price lower than ..."`` gives
    ``[("color", "white"), ("size", "king")]``. Read from the instruction text the page shows,
    as a shopper reads it; none when the instruction names no options."""
    core = " ".join(goal_without_price(goal).lower().split())
    at = core.rfind(OPTIONS_CLAUSE)
    if at < 0:
        return []
    clause = core[at + len(OPTIONS_CLAUSE) :]
    return [(d.strip(), v.strip()) for d, v in _OPTION_PAIR_RE.findall(clause)]


def missing_goal_options(goal: str, groups: list[OptionGroup]) -> list[tuple[str, str]]:
    """The instruction's option values that an item page does not offer: a value is offered
    when the page's group of that dimension (or, if the page names no such dimension, any
    group) lists it. Empty on pages without option groups only when the goal names none."""
    missing = []
    for dim, value in goal_options(goal):
        same = [g for g in groups if g.name.lower().strip() == dim]
        pool = same or groups
        if not any(o.label.lower().strip() == value for g in pool for o in g.options):
            missing.append((dim, value))
    return missing


def with_history(obs: dict[str, Any], actions: list[str]) -> dict[str, Any]:
    """``obs`` with the agent's own earlier actions of this episode under
    :data:`PREVIOUS_ACTIONS`: an agent's episode memory, as LM agents keep their action
    history in the prompt (after ``< Prev`` a results page looks exactly as before)."""
    return {**obs, PREVIOUS_ACTIONS: list(actions)}


_ITEM_CLICK_RE = re.compile(r"^click\('item_(?P<asin>[a-z0-9]+)'\)$")


def visited_items(obs: dict[str, Any]) -> set[str]:
    """The products (asin, lower case) the agent opened earlier in this episode, read from the
    observation's :data:`PREVIOUS_ACTIONS` (empty when the observation carries none)."""
    out = set()
    for action in obs.get(PREVIOUS_ACTIONS) or ():
        m = _ITEM_CLICK_RE.match(str(action).strip().lower())
        if m:
            out.add(m.group("asin"))
    return out


def lookalike_items(obs: dict[str, Any], budget: float | None = None) -> set[str]:
    """The listed products (asin, lower case) not opened yet whose title is that of a product
    opened earlier and left on this page: the shop's lookalikes (one family's variants) offer
    the same options, so the one left answers for them. Not when the one left cost more than
    ``budget`` and this one's listed price is within it (it may have been left for its price)."""
    opened = visited_items(obs)
    listed = [(p.bid[len("item_") :].lower(), p) for p in result_products(obs)]

    def within(price: str | None) -> bool:
        prices = listed_prices(price or "")
        return budget is None or (bool(prices) and min(prices) <= budget)

    left = {}
    for asin, product in listed:
        if asin in opened:
            left.setdefault(product.title.strip().lower(), []).append(within(product.price))
    return {
        asin
        for asin, product in listed
        if asin not in opened
        and (fits := left.get(product.title.strip().lower())) is not None
        and (any(fits) or not within(product.price))
    }
