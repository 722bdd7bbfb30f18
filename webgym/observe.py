"""Served HTML -> what the agent sees: the one observation function of both modes.

:func:`observe_page` turns the HTML the shop served (byte-identical in the browser and in the
browserless text mode) into a :class:`PageView`:

- ``elements``: the elements by their server-written ``bid``, in document order: the
  interactive ones (links, buttons, radios, text fields, option groups) and the inert targets
  (``Element.inert``: a heading, an image, a text block the shop gave an id, as BrowserGym
  gives every visible element one);
- ``text``: WebShop's "simple" text observation, the visible text chunks joined with
  ``" [SEP] "`` (``Instruction: [SEP] <instruction> [SEP] Back to Search [SEP] ...``);
- ``axtree``: a BrowserGym-like accessibility tree, one ``role 'name'`` line per node, led by
  ``[bid]`` for every element with an id (an inert one included: ``[product_title] heading
  '...'``, ``[price_b0...] StaticText '$19.99'``);
- ``html_pruned``: the body without scripts, styles and the session header, whitespace
  collapsed, the session id replaced by ``SESSION``;
- ``available_actions``: every concrete ``click('<bid>')`` on an interactive element (a link, a
  button, a radio): what does something;
- ``clickable_actions``: ``click('<bid>')`` for every click target of the page, interactive
  or inert, in document order: ``available_actions`` and the inert targets (a click on one is
  legal and changes nothing). Text fields and option groups are not click targets (``fill`` /
  ``select_option`` act on them);
- ``label_index`` / :meth:`PageView.resolve_label`: WebShop ``click[label]`` labels -> bids;
- :meth:`PageView.resolve`: an :class:`~webgym.actions.Action` -> the element-level steps a
  page (:mod:`webgym.page`: the browser tab or the in-process page) executes, or
  :class:`~webgym.actions.ActionError`. This is the one place an action is checked against
  the page: each ``click`` / ``fill`` step carries its :class:`Element`, and the executors
  trust it.

An inert target is written like the same element without an id (the same text chunks, the same
axtree line) but for the ``[bid]`` that leads its line: ids on inert elements change nothing of
``text``. The shop puts them only on leaves (an element holding a link or a button is not a
target: a click on it would land on the control).

The text, axtree and available actions never contain the session id, so two sessions (and the
two modes) showing the same page give equal observations. Pure and deterministic: the same
HTML always gives an equal ``PageView``. Stdlib only (``html.parser``); imports only
``webgym.actions``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from html import unescape

from webgym.actions import Action, ActionError

__all__ = [
    "SEP",
    "SESSION_PLACEHOLDER",
    "ActionError",
    "Element",
    "FormSpec",
    "PageView",
    "normalize_label",
    "observe_page",
]

SEP = " [SEP] "
SESSION_PLACEHOLDER = "SESSION"  # what observations show instead of the session id

CLICKABLE_ROLES = frozenset({"link", "button", "radio", "checkbox", "tab", "menuitem", "option"})
TEXT_ROLES = frozenset({"textbox", "searchbox", "combobox"})

_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_SKIP = frozenset({"head", "script", "style", "template", "noscript"})
# Inline elements: one made only of text and other such elements reads as one text chunk.
_INLINE = frozenset(
    "span b i em strong small code label abbr u s sub sup mark time bdi kbd q".split()
)
# Non-interactive tags kept as nodes of the accessibility tree (others are transparent).
_TAG_ROLES = {
    **dict.fromkeys(("h1", "h2", "h3", "h4", "h5", "h6"), "heading"),
    **dict.fromkeys(("ul", "ol"), "list"),
    **{"li": "listitem", "nav": "navigation", "header": "banner", "main": "main"},
    **{"table": "table", "tr": "row", "th": "columnheader", "td": "cell", "img": "img"},
}
# Roles whose accessible name is their text content (a leaf line ``role 'text'``).
_NAME_FROM_CONTENT = frozenset({"heading", "columnheader", "cell"})
_TEXT_INPUT_TYPES = frozenset({"text", "search", "email", "url", "tel", "password", "number"})
_SESSION_RE = re.compile(r"/s/([^/?#\s]+)")


def normalize_label(text: str) -> str:
    """Whitespace-normalised, case-folded text: the key of :attr:`PageView.label_index`."""
    return " ".join(text.split()).casefold()


def _norm(text: str) -> str:
    return " ".join(text.split())


def _quote(name: str) -> str:
    """``'name'`` as BrowserGym writes it; Python-quoted when it holds a single quote."""
    return f"'{name}'" if "'" not in name else repr(name)


@dataclass(frozen=True)
class FormSpec:
    """The form a control belongs to: what submitting it sends.

    ``fields``: ``(name, value, bid)`` of its text inputs (and hidden inputs, ``bid`` None) in
    document order, ``value`` being the value written in the HTML. ``index`` is the form's
    ordinal on the page, telling apart two forms that look alike.
    """

    method: str
    action: str
    fields: tuple[tuple[str, str, str | None], ...] = ()
    index: int = 0


@dataclass(frozen=True)
class Element:
    """One element with a ``bid``: interactive, or an inert target (``inert``: a heading, an
    image, a text block; ``role`` is its axtree role, ``label`` its text) that a click lands on
    and nothing happens."""

    bid: str
    tag: str
    role: str
    label: str
    href: str | None = None
    checked: bool | None = None
    name: str | None = None
    value: str | None = None
    type: str | None = None
    form: FormSpec | None = None
    group: str | None = None
    asin: str | None = None
    inert: bool = False

    @property
    def clickable(self) -> bool:
        """An interactive element a click acts on (one of ``available_actions``)."""
        return self.role in CLICKABLE_ROLES and not self.inert

    @property
    def click_target(self) -> bool:
        """Whether ``click`` accepts it: clickable, or inert (one of ``clickable_actions``)."""
        return self.inert or self.clickable

    @property
    def is_submit(self) -> bool:
        """A control that submits its form when clicked."""
        if self.form is None:
            return False
        if self.tag == "button":
            return (self.type or "submit") == "submit"
        return self.tag == "input" and self.type in ("submit", "image")

    @property
    def navigates(self) -> bool:
        """Whether a click loads a new document: a link to somewhere, or a submit control."""
        if self.href is not None:
            href = self.href.strip().lower()
            return href != "" and not href.startswith(("#", "javascript:"))
        return self.is_submit


@dataclass(frozen=True)
class PageView:
    """What an agent sees of one served page (see the module docstring)."""

    title: str
    instruction: str
    text: str
    axtree: str
    html_pruned: str
    elements: dict[str, Element]
    available_actions: tuple[str, ...]
    clickable_actions: tuple[str, ...]
    has_search_bar: bool
    label_index: dict[str, str]
    search_box: str | None = None
    search_button: str | None = None
    session_id: str | None = field(default=None, compare=False, repr=False)

    # ---- labels --------------------------------------------------------------------------
    def resolve_label(self, label: str) -> str | None:
        """The bid a WebShop ``click[label]`` means (case- and whitespace-insensitive)."""
        return self.label_index.get(normalize_label(label))

    def clickable_labels(self) -> list[str]:
        """The labels ``click[...]`` accepts here (a result by its asin), in document order."""
        out = []
        for el in self.elements.values():
            if el.clickable:
                out.append(el.asin if el.asin else el.label)
        return out

    # ---- resolution ----------------------------------------------------------------------
    def _element(self, bid: str) -> Element:
        el = self.elements.get(bid)
        if el is None:
            ids = [b for b, e in self.elements.items() if not e.inert]  # the interactive ones
            raise ActionError(
                f"no element with id {bid!r} on this page; ids: {', '.join(ids)}"
                if ids
                else f"no element with id {bid!r} on this page (it has no interactive elements)"
            )
        return el

    def resolve(self, action: Action) -> list[Action]:
        """Translate ``action`` into element-level steps; raise :class:`ActionError`.

        ``click[label]`` -> ``click(bid)``; ``search[q]`` -> ``fill(box, q)`` + ``click(button)``;
        ``select_option(group_or_radio, value)`` -> ``click(radio)``; ``click``/``fill`` are
        checked against the page (a ``click`` on an inert target is legal: the executors run
        it, and nothing happens); every other action passes through unchanged. Each ``click``
        and ``fill`` step carries its element (``Action.element``): executors trust it.
        """
        name, args = action.name, action.args
        if name == "click_label":
            label = args[0]
            bid = self.resolve_label(label)
            if bid is None:
                labels = self.clickable_labels()
                listing = ", ".join(labels) if labels else "none"
                raise ActionError(f"no clickable {label!r} on this page; clickables: {listing}")
            return [self._step("click", (bid,), action)]
        if name == "search":
            if not self.has_search_bar:
                raise ActionError("there is no search bar on this page")
            return [
                self._step("fill", (self.search_box, args[0]), action),
                self._step("click", (self.search_button,), action),
            ]
        if name == "click":
            el = self._element(args[0])
            if not el.click_target:
                hint = ""
                if el.role in TEXT_ROLES:
                    hint = f" (it is a {el.role}: use fill({el.bid!r}, 'text'))"
                elif el.role == "radiogroup":
                    hint = (
                        f" (it is an option group: click one of its options or use "
                        f"select_option({el.bid!r}, 'value'))"
                    )
                raise ActionError(f"element {el.bid!r} is not clickable{hint}")
            return [replace(action, element=el)]
        if name == "fill":
            el = self._element(args[0])
            if el.role not in TEXT_ROLES:
                raise ActionError(
                    f"element {el.bid!r} is not a text field (it is a {el.role}); "
                    "fill works on text fields only"
                )
            return [replace(action, element=el)]
        if name == "select_option":
            return [self._select_option(action)]
        return [action]

    def _step(self, name: str, args: tuple, action: Action) -> Action:
        """A resolved step on the element ``args[0]`` of this page."""
        return Action(name, args, action.raw, self.elements[args[0]])

    def _select_option(self, action: Action) -> Action:
        bid, wanted = action.args[0], action.args[1]
        el = self._element(bid)
        if el.role == "radio" and el.group is not None:
            el = self.elements[el.group]
        if el.role != "radiogroup":
            raise ActionError(
                f"element {el.bid!r} is not an option group (it is a {el.role}); "
                "select_option needs the id of an option group or of one of its options"
            )
        radios = [e for e in self.elements.values() if e.group == el.bid]
        key = normalize_label(wanted)
        for radio in radios:
            if normalize_label(radio.value or "") == key or normalize_label(radio.label) == key:
                return Action("click", (radio.bid,), action.raw, radio)
        choices = ", ".join(r.value or r.label for r in radios) or "none"
        raise ActionError(
            f"option {wanted!r} is not on this page for {el.label or el.bid!r}; choices: {choices}"
        )


# --------------------------------------------------------------------------------------------
# Parsing into a small tree.
# --------------------------------------------------------------------------------------------


class _Node:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []


_TOKEN_RE = re.compile(
    r"<(?:"
    r"!--.*?(?:-->|$)"  # comment
    r"|[!?][^>]*>"  # doctype, processing instruction
    r"|/([a-zA-Z][^\s/>]*)[^>]*>"  # end tag
    r"|([a-zA-Z][^\s/>]*)((?:\s+[^\s/>=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))?|\s*/(?!>))*)"
    r"\s*(/?)>"  # start tag
    r")",
    re.S,
)
_ATTR_RE = re.compile(r"""([^\s/>=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_RAW_TEXT = frozenset({"script", "style", "textarea", "title"})


def _attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _ATTR_RE.finditer(text):
        name = m.group(1).lower()
        if name in out:
            continue  # the first of duplicated attributes wins, as in browsers
        value = m.group(2)
        if value is None:
            value = m.group(3)
            if value is None:
                value = m.group(4) or ""
        out[name] = unescape(value) if "&" in value else value
    return out


def _parse(html: str) -> tuple[_Node, str]:
    """A small, forgiving tokenizer into a tree (the shop's HTML is well formed).

    Faster than ``html.parser`` by a factor of several; decodes character references like it.
    Skips head, script, style and template content; returns the tree and the document title.
    """
    root = _Node("#root", {})
    stack = [root]
    skip = 0
    title = ""
    pos = 0
    n = len(html)
    search = _TOKEN_RE.search
    while pos < n:
        m = search(html, pos)
        if m is None:
            if not skip:
                text = html[pos:]
                stack[-1].children.append(unescape(text) if "&" in text else text)
            break
        if m.start() > pos and not skip:
            text = html[pos : m.start()]
            stack[-1].children.append(unescape(text) if "&" in text else text)
        pos = m.end()
        end_tag, tag = m.group(1), m.group(2)
        if end_tag is not None:
            end_tag = end_tag.lower()
            if end_tag in _SKIP:
                skip = max(0, skip - 1)
                continue
            if skip:
                continue
            for i in range(len(stack) - 1, 0, -1):
                if stack[i].tag == end_tag:
                    del stack[i:]
                    break
            continue
        if tag is None:
            continue  # comment, doctype
        tag = tag.lower()
        if tag in _RAW_TEXT:
            close = re.compile(rf"</{tag}\s*>", re.I).search(html, pos)
            content = html[pos : close.start()] if close else html[pos:]
            pos = close.end() if close else n
            if tag == "title":
                title = unescape(content)
                continue
            if skip or tag != "textarea":
                continue
            node = _Node(tag, _attrs(m.group(3)))
            node.children.append(unescape(content))
            stack[-1].children.append(node)
            continue
        if tag in _SKIP:
            if not (m.group(4) or tag in _VOID):
                skip += 1
            continue
        if skip:
            continue
        node = _Node(tag, _attrs(m.group(3)) if m.group(3) else {})
        stack[-1].children.append(node)
        if tag not in _VOID and not m.group(4):
            stack.append(node)
    return root, title


def _raw_text(node: _Node) -> str:
    parts: list[str] = []

    def collect(n: _Node) -> None:
        for c in n.children:
            if isinstance(c, str):
                parts.append(c)
            elif c.tag not in _SKIP and not _hidden(c):
                collect(c)

    collect(node)
    return "".join(parts)


def _hidden(node: _Node) -> bool:
    a = node.attrs
    return "hidden" in a or a.get("aria-hidden") == "true"


def _is_session_span(node: _Node) -> bool:
    return node.tag == "span" and "session" in node.attrs.get("class", "").split()


def _only_inline(node: _Node) -> bool:
    for c in node.children:
        if isinstance(c, str):
            continue
        if c.tag not in _INLINE or "bid" in c.attrs or "role" in c.attrs or not _only_inline(c):
            return False
    return True


# Tags and roles of interactive elements: a ``bid`` on one of these makes an Element that acts.
_INTERACTIVE_TAGS = frozenset({"a", "button", "input", "textarea", "select", "fieldset"})
_INTERACTIVE_ROLES = CLICKABLE_ROLES | TEXT_ROLES | {"radiogroup"}


def _interactive(node: _Node) -> bool:
    role = node.attrs.get("role")
    return node.tag in _INTERACTIVE_TAGS or (role is not None and role in _INTERACTIVE_ROLES)


def _holds_interactive(node: _Node) -> bool:
    """Whether an element with an id or a control lies inside ``node`` (a click at its centre
    could land on it: such a node is no inert target)."""
    for c in node.children:
        if isinstance(c, _Node) and ("bid" in c.attrs or _interactive(c) or _holds_interactive(c)):
            return True
    return False


def _has_class(node: _Node, cls: str) -> bool:
    return cls in node.attrs.get("class", "").split()


def _role(node: _Node) -> str:
    a = node.attrs
    role = a.get("role")
    if role:
        return role.split()[0]
    tag = node.tag
    if tag == "a":
        return "link" if "href" in a else "generic"
    if tag == "button":
        return "button"
    if tag == "input":
        t = a.get("type", "text").lower()
        if t in ("submit", "button", "reset", "image"):
            return "button"
        if t in ("radio", "checkbox"):
            return t
        if t == "search":
            return "searchbox"
        if t == "hidden":
            return "none"
        return "textbox"
    if tag == "textarea":
        return "textbox"
    if tag == "select":
        return "combobox"
    if tag == "fieldset":
        return "group"
    return _TAG_ROLES.get(tag, "generic")


# --------------------------------------------------------------------------------------------
# The walk: elements, text chunks and axtree lines in one pass.
# --------------------------------------------------------------------------------------------


class _Walker:
    def __init__(self, root: _Node) -> None:
        self.root = root
        self.elements: dict[str, Element] = {}
        self.chunks: list[str] = []
        self.lines: list[str] = []
        self.instruction = ""
        self.session_id: str | None = None
        self.labels_for: dict[str, str] = {}
        self.form: FormSpec | None = None
        self.form_count = 0
        self.group: str | None = None
        self.asins_shown: set[str] = set()
        self.in_header = 0

    # text chunk (the WebShop text skips the page header) and StaticText line
    def static(self, text: str, depth: int, target: _Node | None = None) -> None:
        text = _norm(text)
        if not text:
            return
        self.line(depth, "StaticText", text, self.inert(target, "StaticText", text))
        if not self.in_header and text not in self.asins_shown:
            self.chunks.append(text)

    def inert(self, node: _Node | None, role: str, name: str) -> str | None:
        """Register ``node`` (an element with a ``bid``, or None) as an inert target written
        as ``role 'name'``; its bid, for its axtree line."""
        if node is None:
            return None
        bid = node.attrs["bid"]
        self.elements[bid] = Element(bid, node.tag, role, name, inert=True)
        return bid

    def line(
        self, depth: int, role: str, name: str = "", bid: str | None = None, states: str = ""
    ) -> None:
        head = f"[{bid}] {role}" if bid is not None else role
        if name:
            head += " " + _quote(name)
        self.lines.append("\t" * depth + head + states)

    def run(self) -> None:
        self.collect_labels(self.root)
        self.walk(self.root, 1)

    def collect_labels(self, node: _Node) -> None:
        for c in node.children:
            if isinstance(c, _Node):
                if c.tag == "label" and c.attrs.get("for"):
                    self.labels_for[c.attrs["for"]] = _norm(_raw_text(c))
                self.collect_labels(c)

    def form_spec(self, node: _Node) -> FormSpec:
        fields: list[tuple[str, str, str | None]] = []

        def collect(n: _Node) -> None:
            for c in n.children:
                if isinstance(c, str):
                    continue
                a = c.attrs
                if c.tag == "input" and "name" in a and "disabled" not in a:
                    t = a.get("type", "text").lower()
                    if t in _TEXT_INPUT_TYPES or t == "hidden":
                        fields.append((a["name"], a.get("value", ""), a.get("bid")))
                elif c.tag == "textarea" and "name" in a and "disabled" not in a:
                    fields.append((a["name"], _raw_text(c), a.get("bid")))
                collect(c)

        collect(node)
        spec = FormSpec(
            method=node.attrs.get("method", "get").lower() or "get",
            action=node.attrs.get("action", ""),
            fields=tuple(fields),
            index=self.form_count,
        )
        self.form_count += 1
        return spec

    def walk(self, node: _Node, depth: int) -> None:
        for c in node.children:
            if isinstance(c, str):
                self.static(c, depth)
            else:
                self.visit(c, depth)

    def visit(self, node: _Node, depth: int) -> None:
        if _hidden(node):
            return
        tag, a = node.tag, node.attrs
        if _is_session_span(node):
            sid = _norm(_raw_text(node)).removeprefix("session").strip()
            if sid:
                self.session_id = sid
            return
        if tag == "form":
            outer = self.form
            self.form = self.form_spec(node)
            self.walk(node, depth)
            self.form = outer
            return
        if tag == "legend" and self.group is not None:
            return  # the group's name, already written with the group
        bid = a.get("bid")
        if bid is not None and _interactive(node):
            self.interactive(node, bid, depth)
            return
        # An inert target: written as the same element without an id, its line led by [bid].
        # A bid on an element that holds others with ids or controls marks no target.
        target = node if bid is not None and not _holds_interactive(node) else None
        if _has_class(node, "instruction-text"):
            self.instruction = _norm(_raw_text(node))
        if tag == "header":
            self.in_header += 1
            self.line(depth, "banner", "", self.inert(target, "banner", ""))
            self.walk(node, depth + 1)
            self.in_header -= 1
            return
        role = a.get("role") or _TAG_ROLES.get(tag)
        if role is None:
            if (tag in _INLINE or target is not None) and _only_inline(node):
                self.static(_raw_text(node), depth, target)
            else:
                self.walk(node, depth)
            return
        if role == "img":
            alt = _norm(a.get("alt", ""))
            self.line(depth, "img", alt, self.inert(target, "img", alt))
            return
        if role in _NAME_FROM_CONTENT and _only_inline(node):
            text = _norm(_raw_text(node))
            self.line(depth, role, text, self.inert(target, role, text))
            if text and not self.in_header:
                self.chunks.append(text)
            return
        label = _norm(a.get("aria-label", ""))
        self.line(depth, role, label, self.inert(target, role, label))
        self.walk(node, depth + 1)

    def interactive(self, node: _Node, bid: str, depth: int) -> None:
        tag, a = node.tag, node.attrs
        role = _role(node)
        states = ""
        checked: bool | None = None
        if role == "radiogroup" or tag == "fieldset":
            label = _norm(a.get("aria-label", ""))
            if not label:
                for c in node.children:
                    if isinstance(c, _Node) and c.tag == "legend":
                        label = _norm(_raw_text(c))
                        break
            self.elements[bid] = Element(bid, tag, role, label, form=self.form)
            self.line(depth, role, label, bid)
            if label and not self.in_header:
                self.chunks.append(label)
            outer = self.group
            self.group = bid
            self.walk(node, depth + 1)
            self.group = outer
            return
        if role in TEXT_ROLES or tag in ("input", "textarea", "select"):
            label = _norm(
                a.get("aria-label")
                or self.labels_for.get(a.get("id", ""), "")
                or a.get("placeholder", "")
                or a.get("title", "")
            )
            if role == "textbox" and tag == "textarea":
                value = _raw_text(node)
            else:
                value = a.get("value")
            if role in ("radio", "checkbox"):
                checked = "checked" in a
                states = f", checked={str(checked).lower()}"
            elif value:
                states = f", value={_norm(value)!r}"
            self.elements[bid] = Element(
                bid,
                tag,
                role,
                label,
                name=a.get("name"),
                value=value,
                type=a.get("type", "text").lower() if tag == "input" else None,
                form=self.form,
                group=self.group if role == "radio" else None,
                checked=checked,
            )
            self.line(depth, role, label, bid, states)
            return
        # links, buttons, radios and the like: named by their content
        label = _norm(_raw_text(node)) or _norm(a.get("aria-label", "") or a.get("value", ""))
        if role in ("radio", "checkbox"):
            checked = a.get("aria-checked", "false") == "true" or "checked" in a
            states = f", checked={str(checked).lower()}"
        asin = a.get("data-asin") or None
        self.elements[bid] = Element(
            bid,
            tag,
            role,
            label,
            href=a.get("href") if tag == "a" else None,
            checked=checked,
            name=a.get("name"),
            value=a.get("value"),
            type=a.get("type", "submit").lower() if tag == "button" else a.get("type"),
            form=self.form,
            group=self.group if role == "radio" else None,
            asin=asin,
        )
        self.line(depth, role, label, bid, states)
        if self.in_header:
            return
        if asin:
            self.chunks.append(asin)
            self.asins_shown.add(asin)
        if label:
            self.chunks.append(label)


# --------------------------------------------------------------------------------------------
# Pruned HTML.
# --------------------------------------------------------------------------------------------

_PRUNE_RE = re.compile(
    r"<!DOCTYPE[^>]*>|<!--.*?-->|<head\b.*?</head\s*>|<script\b.*?</script\s*>"
    r"|<style\b.*?</style\s*>|<span class=\"session\">[^<]*</span>",
    re.S | re.I,
)
_BETWEEN_TAGS_RE = re.compile(r">\s+<")
_SPACE_RE = re.compile(r"\s+")


def _pruned_html(html: str) -> str:
    """The served HTML less head, scripts, styles, comments and the session header, with
    whitespace collapsed (whitespace-only text between tags removed)."""
    html = _PRUNE_RE.sub("", html)
    html = _BETWEEN_TAGS_RE.sub("><", html)
    return _SPACE_RE.sub(" ", html).strip()


# --------------------------------------------------------------------------------------------
# The function.
# --------------------------------------------------------------------------------------------


def observe_page(html: str, url: str = "") -> PageView:
    """Observe the served ``html`` of the page at ``url`` (see the module docstring)."""
    root, title = _parse(html)
    title = _norm(title)

    w = _Walker(root)
    w.lines.append("RootWebArea " + _quote(title))
    w.run()

    sid = w.session_id
    if sid is None and url:
        m = _SESSION_RE.search(url)
        sid = m.group(1) if m else None

    text = SEP.join(w.chunks)
    axtree = "\n".join(w.lines)
    pruned = _pruned_html(html)
    if sid and len(sid) >= 8:  # a real session id (never a short word the page might show)
        text = text.replace(sid, SESSION_PLACEHOLDER)
        axtree = axtree.replace(sid, SESSION_PLACEHOLDER)
        pruned = pruned.replace(sid, SESSION_PLACEHOLDER)

    elements = w.elements
    actions = tuple(Action("click", (b,)).to_string() for b, e in elements.items() if e.clickable)
    targets = tuple(
        Action("click", (b,)).to_string() for b, e in elements.items() if e.click_target
    )
    label_index: dict[str, str] = {}
    for b, e in elements.items():
        if not e.clickable:
            continue
        for key in (e.label, e.asin, e.value if e.role == "radio" else None):
            if key:
                label_index.setdefault(normalize_label(key), b)

    search_box = search_button = None
    for e in elements.values():
        if e.role in ("textbox", "searchbox") and e.form is not None and e.form.method == "get":
            button = next((s for s in elements.values() if s.is_submit and s.form == e.form), None)
            if button is not None:
                search_box, search_button = e.bid, button.bid
                break

    return PageView(
        title=title,
        instruction=w.instruction,
        text=text,
        axtree=axtree,
        html_pruned=pruned,
        elements=elements,
        available_actions=actions,
        clickable_actions=targets,
        has_search_bar=search_box is not None,
        label_index=label_index,
        search_box=search_box,
        search_button=search_button,
        session_id=sid,
    )
