"""The one action grammar of WebGym: parse, validate and describe action strings.

An agent sends one action string per step. Two families are accepted: BrowserGym-style calls
and WebShop-style bracket commands. Both environments (browser and text mode) parse with
:func:`parse_action`; prompts describe the grammar with :func:`describe_action_space`. Both are
driven by the single table :data:`ACTION_SPECS`.

Grammar (after the lenient clean-up described below)::

    action      := call | bracket
    call        := NAME "(" [ args ] ")"             -- one Python call expression, read with
                                                        ast.parse(mode="eval"), never evaluated
    args        := positional { "," positional } [ "," keywords ] | keywords
    positional  := literal
    keywords    := PARAM "=" literal { "," PARAM "=" literal }
    literal     := STRING | NUMBER | "-" NUMBER | "+" NUMBER
    STRING      := a Python string literal: '...' or "..." (also triple-quoted), with Python
                   escapes (\\' \\" \\\\ \\n \\t \\uXXXX ...); any unicode text
    NUMBER      := a Python int or float literal (finite, at most MAX_NUMBER in magnitude;
                   True/False are not numbers)
    bracket     := ("search" | "click") "[" TEXT "]"  -- TEXT is everything between the first
                                                        "[" and the last "]", stripped of
                                                        surrounding whitespace; non-empty, one line

    NAME, PARAM and the mode restrictions come from ACTION_SPECS:

    click(bid)                  element id (str; an int is converted: click(12) == click('12'))
    fill(bid, value)            value: str
    select_option(bid, options) options: one option value or label (str)
    scroll(delta_x, delta_y)    numbers (pixels, may be negative or float)
    go_back()
    noop([wait_ms])             optional number, 0 to MAX_WAIT_MS (milliseconds)
    send_msg_to_user(text)      text: str
    mouse_click(x, y)           numbers >= 0 (pixels); browser mode only
    search[query]               -> Action("search", (query,))
    click[label]                -> Action("click_label", (label,)); label is the visible text
                                   of a button or link, e.g. click[Buy Now], click[< Prev]

    An omitted optional argument is absent from Action.args (noop() -> ("noop", ()));
    Action.params fills in defaults. Action.to_string() is the canonical form: positional
    arguments, repr()-quoted strings, e.g. fill('45', "it's"), search[red shoes].

    Wherever a str is expected an int literal is accepted and converted with str(); element ids
    must not be empty or blank. Text may hold any unicode character but NUL and a lone
    surrogate (U+D800-U+DFFF, which no page can encode), written as is or as an escape.
    Keyword arguments must use the parameter names above; starred arguments, nested calls,
    names, attributes, lists and every other expression are rejected.

Lenient clean-up, applied before parsing, repeated until nothing changes (at most 4 rounds):

1. surrounding whitespace (including a trailing newline) is stripped;
2. a leading "Action:" prefix (any case, optional spaces around the colon) is removed;
3. a code fence is removed: an opening ``` optionally followed by a language tag (letters,
   digits, "_+-") and a newline, and the closing ``` if there is one;
4. otherwise one pair of enclosing single backticks is removed: `click('12')` -> click('12').

Nothing else is forgiven: text before or after the action (other than the above) is an error,
and exactly one action is allowed. The whole input may be at most :data:`MAX_ACTION_LENGTH`
characters.

Modes: ``"browser"`` accepts every action; ``"text"`` (no pixels) rejects ``mouse_click``.
``scroll`` is accepted in both modes; in text mode it changes nothing.

The agent's mistakes, one family (the environment reports ``str(err)`` in
``last_action_error``; the episode goes on)::

    InvalidAction                 the agent's action was invalid
      ActionParseError            not an action of the grammar (or not in this mode)
      ActionError                 a valid action this page cannot carry out (webgym.observe)
        webgym.browser.ActionFailed   ... found out by the browser itself


Stdlib only; imports nothing from webgym.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "ACTION_SPECS",
    "MAX_ACTION_LENGTH",
    "MAX_NUMBER",
    "MAX_WAIT_MS",
    "MODES",
    "Action",
    "ActionError",
    "ActionParseError",
    "ActionSpec",
    "Param",
    "check_mode",
    "InvalidAction",
    "clean_action_text",
    "describe_action_space",
    "is_supported",
    "parse_action",
]

MAX_ACTION_LENGTH = 4000
"""The longest action string accepted (characters, before the lenient clean-up)."""

MODES = ("browser", "text")
"""The environment modes an action can be checked against."""

MAX_NUMBER = 100_000
"""The largest magnitude of a number argument (pixels, milliseconds): larger ones are refused,
not clamped, so both modes report the same error (a page is never 100,000 pixels away)."""

MAX_WAIT_MS = 10_000
"""The longest ``noop`` wait (milliseconds)."""

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class InvalidAction(ValueError):
    """The agent's action was invalid: the one base class of the agent's mistakes.

    ``str(err)`` is a message meant for the agent. An environment catches this class, reports
    the message in ``last_action_error`` and goes on; anything else is the machine's trouble.
    """


class ActionError(InvalidAction):
    """A valid action that cannot be carried out on this page (no such element, no such
    option, nothing to go back to...); ``str(err)`` is for the agent."""


class ActionParseError(InvalidAction):
    """An action string that is not a valid action (or not valid in the given mode).

    ``str(err)`` is a message meant for the agent: what was wrong and the expected forms.
    ``err.text`` is the offending input (as given).
    """

    def __init__(self, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.text = text


# --------------------------------------------------------------------------------------------
# The table: the single source of truth for parser, validator and description.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of an action.

    ``kind``: ``"id"`` (non-empty string; int converted), ``"str"`` (string; int converted) or
    ``"number"`` (finite int or float, at most ``MAX_NUMBER`` in magnitude). ``minimum`` and
    ``maximum`` apply to numbers. An optional parameter
    has ``optional=True`` and, when omitted, is absent from ``Action.args``; ``default`` is
    documentation of what the executor does then.
    """

    name: str
    kind: str
    placeholder: str
    help: str
    optional: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def type_name(self) -> str:
        return "float" if self.kind == "number" else "str"

    def signature(self) -> str:
        text = f"{self.name}: {self.type_name}"
        return f"{text} = {self.default!r}" if self.optional else text


@dataclass(frozen=True)
class ActionSpec:
    """One action: its ``Action.name``, the word an agent writes, its syntax and parameters.

    ``syntax`` is ``"call"`` (``name(args)``) or ``"bracket"`` (``keyword[text]``, one param).
    ``modes`` lists the modes that accept it; ``mode_notes`` adds per-mode text to the
    description shown by :func:`describe_action_space`.
    """

    name: str
    keyword: str
    syntax: str
    params: tuple[Param, ...]
    description: str
    example: str
    modes: frozenset[str] = frozenset(MODES)
    mode_notes: tuple[tuple[str, str], ...] = ()

    def describe(self, mode: str) -> str:
        """The description, with the note for ``mode`` appended if there is one."""
        notes = [note for m, note in self.mode_notes if m == mode]
        return " ".join([self.description, *notes])

    @property
    def form(self) -> str:
        """Short form with placeholders, e.g. ``fill('id', 'text')``, ``noop([ms])``."""
        if self.syntax == "bracket":
            return f"{self.keyword}[{self.params[0].placeholder}]"
        parts = [f"[{p.placeholder}]" if p.optional else p.placeholder for p in self.params]
        return f"{self.keyword}({', '.join(parts)})"

    @property
    def signature(self) -> str:
        """Typed signature, e.g. ``fill(bid: str, value: str)``."""
        if self.syntax == "bracket":
            return f"{self.keyword}[{self.params[0].name}]"
        return f"{self.keyword}({', '.join(p.signature() for p in self.params)})"

    @property
    def n_required(self) -> int:
        return sum(not p.optional for p in self.params)


_BID = Param("bid", "id", "'id'", "the element id")

_SPEC_LIST: tuple[ActionSpec, ...] = (
    ActionSpec(
        "click",
        "click",
        "call",
        (_BID,),
        "Click the element with id bid (a button, link, radio option, ...).",
        "click('12')",
    ),
    ActionSpec(
        "fill",
        "fill",
        "call",
        (_BID, Param("value", "str", "'text'", "the text to type")),
        "Replace the content of the text field bid with value.",
        "fill('45', 'red running shoes')",
    ),
    ActionSpec(
        "select_option",
        "select_option",
        "call",
        (_BID, Param("options", "str", "'value'", "the option to select")),
        "Select the option (its value or visible text) in the drop-down or option group bid.",
        "select_option('7', 'large')",
    ),
    ActionSpec(
        "scroll",
        "scroll",
        "call",
        (
            Param("delta_x", "number", "dx", "horizontal pixels"),
            Param("delta_y", "number", "dy", "vertical pixels"),
        ),
        "Scroll the page by (delta_x, delta_y) pixels; negative values scroll up/left.",
        "scroll(0, 300)",
        mode_notes=(("text", "In text mode the whole page is visible: scroll changes nothing."),),
    ),
    ActionSpec(
        "go_back",
        "go_back",
        "call",
        (),
        "Go back to the previous page.",
        "go_back()",
    ),
    ActionSpec(
        "noop",
        "noop",
        "call",
        (
            Param(
                "wait_ms",
                "number",
                "ms",
                "milliseconds to wait",
                optional=True,
                default=0,
                minimum=0,
                maximum=MAX_WAIT_MS,
            ),
        ),
        "Do nothing (optionally wait wait_ms milliseconds).",
        "noop()",
    ),
    ActionSpec(
        "send_msg_to_user",
        "send_msg_to_user",
        "call",
        (Param("text", "str", "'text'", "the message"),),
        "Send a message to the user (recorded; it does not change the page).",
        "send_msg_to_user('I could not find a matching product.')",
    ),
    ActionSpec(
        "mouse_click",
        "mouse_click",
        "call",
        (
            Param("x", "number", "x", "pixels from the left of the viewport", minimum=0),
            Param("y", "number", "y", "pixels from the top of the viewport", minimum=0),
        ),
        "Click at pixel (x, y) of the screenshot. Browser mode only.",
        "mouse_click(640, 360)",
        modes=frozenset({"browser"}),
    ),
    ActionSpec(
        "search",
        "search",
        "bracket",
        (Param("query", "str", "query", "the search text"),),
        "Type query into the search box and submit it (WebShop style).",
        "search[red running shoes size 9]",
    ),
    ActionSpec(
        "click_label",
        "click",
        "bracket",
        (Param("label", "str", "label", "the visible text of a button or link"),),
        "Click the button or link whose visible text is label (WebShop style), e.g. a "
        "product id, an option value, Next >, < Prev, Back to Search, Buy Now.",
        "click[Buy Now]",
    ),
)

ACTION_SPECS: Mapping[str, ActionSpec] = MappingProxyType({s.name: s for s in _SPEC_LIST})
"""Every action, keyed by ``Action.name``, in the order they are described."""

_CALL_SPECS = {s.keyword: s for s in _SPEC_LIST if s.syntax == "call"}
_BRACKET_SPECS = {s.keyword: s for s in _SPEC_LIST if s.syntax == "bracket"}


def _check_mode_name(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")


def _expected_forms(mode: str | None = None) -> str:
    specs = [s for s in _SPEC_LIST if mode is None or mode in s.modes]
    return ", ".join(s.form for s in specs)


# --------------------------------------------------------------------------------------------
# The parsed action.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A parsed action: ``name`` (a key of ACTION_SPECS), positional ``args`` and ``raw``.

    ``raw`` is the text the agent sent (before clean-up); it does not take part in equality
    or hashing, so ``parse_action(a.to_string()) == a``.

    ``element`` is set by resolution (:meth:`webgym.observe.PageView.resolve`) on the ``click``
    and ``fill`` steps it returns: the page's :class:`~webgym.observe.Element` the step acts on,
    already checked against the page. Executors trust a step that carries its element. It is
    not part of equality either.
    """

    name: str
    args: tuple = ()
    raw: str = field(default="", compare=False)
    element: Any = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> ActionSpec:
        return ACTION_SPECS[self.name]

    @property
    def params(self) -> dict[str, Any]:
        """Arguments by parameter name, omitted optional ones filled with their default."""
        spec = self.spec
        out = {p.name: p.default for p in spec.params}
        out.update(zip((p.name for p in spec.params), self.args, strict=False))
        return out

    def to_string(self) -> str:
        """The canonical text form: repr-quoted call arguments, or ``keyword[text]``."""
        spec = self.spec
        if spec.syntax == "bracket":
            return f"{spec.keyword}[{self.args[0]}]"
        return f"{spec.keyword}({', '.join(repr(a) for a in self.args)})"

    def __str__(self) -> str:
        return self.to_string()


# --------------------------------------------------------------------------------------------
# Parsing.
# --------------------------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"^action\s*:\s*", re.IGNORECASE)
_FENCE_OPEN_RE = re.compile(r"^```[A-Za-z0-9_+\-]*[ \t]*\n")
_BRACKET_RE = re.compile(r"^([A-Za-z_]\w*)\s*\[")
_CALL_NAME_RE = re.compile(r"^([A-Za-z_][\w.]*)\s*\(")


def clean_action_text(text: str) -> str:
    """Apply the lenient clean-up documented in the module docstring (no validation)."""
    for _ in range(4):
        before = text
        text = text.strip()
        text = _PREFIX_RE.sub("", text, count=1)
        if text.startswith("```"):
            match = _FENCE_OPEN_RE.match(text)
            text = text[match.end() :] if match else text[3:]
            text = text.rstrip()
            if text.endswith("```"):
                text = text[:-3]
        elif len(text) >= 2 and text.startswith("`") and text.endswith("`"):
            text = text[1:-1]
        if text == before:
            break
    return text.strip()


def parse_action(text: str, mode: str | None = None) -> Action:
    """Parse one action string into an :class:`Action`; raise :class:`ActionParseError`.

    With ``mode`` (``"browser"`` or ``"text"``) the action must also be supported there
    (see :func:`check_mode`). The input is never evaluated.
    """
    if mode is not None:
        _check_mode_name(mode)
    if not isinstance(text, str):
        raise ActionParseError(f"an action must be a string, got {type(text).__name__}", None)
    if len(text) > MAX_ACTION_LENGTH:
        raise ActionParseError(
            f"action too long ({len(text)} characters; the limit is {MAX_ACTION_LENGTH})", text
        )
    if "\x00" in text:
        raise ActionParseError("action contains a NUL character", text)
    if _SURROGATE_RE.search(text):
        raise ActionParseError(_SURROGATE_MESSAGE, text)
    body = clean_action_text(text)
    if not body:
        raise ActionParseError(f"empty action; expected one of {_expected_forms(mode)}", text)
    if _BRACKET_RE.match(body):
        action = _parse_bracket(body, text)
    else:
        action = _parse_call(body, text)
    if mode is not None:
        check_mode(action, mode)
    return action


_SURROGATE_MESSAGE = (
    "action contains a lone surrogate (a character in U+D800-U+DFFF, which no page can "
    "encode); send valid unicode text"
)


def _unknown(name: str, text: str) -> ActionParseError:
    known = sorted({*_CALL_SPECS, *_BRACKET_SPECS})
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ActionParseError(
        f"unknown action {name!r}{hint}; expected one of {_expected_forms()}", text
    )


def _parse_bracket(body: str, text: str) -> Action:
    keyword = _BRACKET_RE.match(body).group(1)  # type: ignore[union-attr]
    spec = _BRACKET_SPECS.get(keyword)
    if spec is None:
        if keyword in _CALL_SPECS:
            call = _CALL_SPECS[keyword]
            raise ActionParseError(
                f"{keyword} does not take [brackets]; write {call.form}, e.g. {call.example}",
                text,
            )
        raise _unknown(keyword, text)
    open_at = body.index("[")
    close_at = body.rfind("]")
    if close_at < open_at:
        raise ActionParseError(
            f"unbalanced brackets: missing the closing ']'; expected {spec.form}, "
            f"e.g. {spec.example}",
            text,
        )
    trailing = body[close_at + 1 :].strip()
    if trailing:
        raise ActionParseError(
            f"unexpected text after ']': {_snippet(trailing)}; send exactly one action, "
            f"e.g. {spec.example}",
            text,
        )
    arg = body[open_at + 1 : close_at].strip()
    param = spec.params[0]
    if not arg:
        raise ActionParseError(
            f"{spec.form} needs a non-empty {param.name} ({param.help}), e.g. {spec.example}",
            text,
        )
    if "\n" in arg or "\r" in arg:
        raise ActionParseError(
            f"the {param.name} of {spec.form} must be on one line; send exactly one action",
            text,
        )
    return Action(spec.name, (arg,), text)


def _snippet(s: str, limit: int = 40) -> str:
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _syntax_reason(err: SyntaxError, body: str) -> str:
    msg = (err.msg or "").lower()
    if "unterminated" in msg or "eol while scanning" in msg or "eof while scanning" in msg:
        return "unbalanced quotes (a string is not closed)"
    if "was never closed" in msg or "unmatched" in msg or "does not match" in msg:
        return "unbalanced parentheses"
    if "\n" in body:
        return "expected exactly one action on one line"
    return f"not a valid action call ({err.msg})"


def _parse_call(body: str, text: str) -> Action:
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        reason = _syntax_reason(err, body)
        match = _CALL_NAME_RE.match(body)
        spec = _CALL_SPECS.get(match.group(1)) if match else None
        expected = (
            f"expected {spec.form}, e.g. {spec.example}"
            if spec
            else f"expected one of {_expected_forms()}"
        )
        raise ActionParseError(f"{reason}; {expected}", text) from None
    except (ValueError, RecursionError, MemoryError):
        raise ActionParseError(
            f"not a valid action; expected one of {_expected_forms()}", text
        ) from None

    node = tree.body
    if not isinstance(node, ast.Call):
        if isinstance(node, ast.Name):
            known = _CALL_SPECS.get(node.id)
            if known is None:
                raise _unknown(node.id, text)
            raise ActionParseError(
                f"{node.id} needs parentheses: {known.form}, e.g. {known.example}", text
            )
        raise ActionParseError(
            f"expected an action call such as click('12'), got {_snippet(body)}; "
            f"expected one of {_expected_forms()}",
            text,
        )
    func = node.func
    if not isinstance(func, ast.Name):
        what = _describe_node(func)
        raise ActionParseError(
            f"only plain action names can be called, not {what}; "
            f"expected one of {_expected_forms()}",
            text,
        )
    spec = _CALL_SPECS.get(func.id)
    if spec is None:
        bracket = _BRACKET_SPECS.get(func.id)
        if bracket is not None:
            raise ActionParseError(
                f"{func.id} uses brackets, not parentheses: {bracket.form}, e.g. {bracket.example}",
                text,
            )
        raise _unknown(func.id, text)

    params = spec.params
    n_pos = len(node.args)
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise ActionParseError(
            f"{spec.keyword}() does not accept *args or **kwargs; expected {spec.form}", text
        )
    if n_pos > len(params):
        raise ActionParseError(_arity_message(spec, n_pos + len(node.keywords)), text)

    values: dict[str, ast.expr] = {}
    for param, arg in zip(params, node.args, strict=False):
        values[param.name] = arg
    by_name = {p.name: p for p in params}
    for kw in node.keywords:
        if kw.arg not in by_name:
            names = ", ".join(p.name for p in params) or "none"
            raise ActionParseError(
                f"{spec.keyword}() got an unexpected keyword argument {kw.arg!r} "
                f"(its parameters: {names}); expected {spec.form}",
                text,
            )
        if kw.arg in values:
            raise ActionParseError(
                f"{spec.keyword}() got multiple values for argument {kw.arg!r}", text
            )
        values[kw.arg] = kw.value

    args: list[Any] = []
    for i, param in enumerate(params):
        if param.name not in values:
            if param.optional:
                # later optional params cannot be given without this one
                if any(p.name in values for p in params[i + 1 :]):
                    raise ActionParseError(
                        f"{spec.keyword}(): give {param.name} before later arguments", text
                    )
                break
            raise ActionParseError(_arity_message(spec, len(values)), text)
        args.append(_convert(spec, param, values[param.name], text))
    return Action(spec.name, tuple(args), text)


def _arity_message(spec: ActionSpec, got: int) -> str:
    n_min, n_max = spec.n_required, len(spec.params)
    if n_min == n_max:
        count = f"{n_max} argument{'s' if n_max != 1 else ''}"
    elif n_max == n_min + 1:
        count = f"{n_min} or {n_max} arguments"
    else:
        count = f"{n_min} to {n_max} arguments"
    if spec.params:
        what = ", ".join(
            f"{p.name}: {p.help}" + (" (optional)" if p.optional else "") for p in spec.params
        )
        count = f"{count} ({what})"
    return f"{spec.keyword}() takes {count}, got {got}; expected {spec.form}, e.g. {spec.example}"


def _describe_node(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"an attribute such as {ast.unparse(node)}"
    if isinstance(node, ast.Call):
        return "a nested call"
    if isinstance(node, ast.Name):
        return f"the bare name {node.id}"
    if isinstance(node, ast.Constant):
        return f"{node.value!r} ({type(node.value).__name__})"
    if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
        return f"a {type(node).__name__.lower()}"
    return f"an expression ({type(node).__name__})"


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) for a constant or a signed numeric constant; (False, None) otherwise."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    ):
        value = node.operand.value
        return True, (-value if isinstance(node.op, ast.USub) else value)
    return False, None


def _convert(spec: ActionSpec, param: Param, node: ast.expr, text: str) -> Any:
    where = f"{spec.keyword}() argument {param.name!r} ({param.help})"
    ok, value = _literal(node)
    if not ok:
        extra = ""
        if isinstance(node, ast.Name) and param.kind != "number":
            extra = f"; quote it: {node.id!r}"
        elif isinstance(node, ast.Call):
            extra = " (nested calls are not allowed)"
        want = "a number" if param.kind == "number" else "a quoted string"
        raise ActionParseError(
            f"{where} must be {want}, got {_describe_node(node)}{extra}; expected {spec.form}",
            text,
        )
    if param.kind == "number":
        if type(value) not in (int, float):
            raise ActionParseError(
                f"{where} must be a number, got {value!r} ({type(value).__name__}); "
                f"expected {spec.form}, e.g. {spec.example}",
                text,
            )
        if type(value) is float and not math.isfinite(value):
            raise ActionParseError(f"{where} must be a finite number, got {value!r}", text)
        if abs(value) > MAX_NUMBER:  # an int of any size compares without overflow
            shown = _snippet(str(value), 24)
            raise ActionParseError(
                f"{where} must be between {-MAX_NUMBER} and {MAX_NUMBER}, got {shown}", text
            )
        if param.minimum is not None and value < param.minimum:
            raise ActionParseError(f"{where} must be >= {param.minimum:g}, got {value!r}", text)
        if param.maximum is not None and value > param.maximum:
            raise ActionParseError(f"{where} must be <= {param.maximum:g}, got {value!r}", text)
        return value
    # "id" and "str": strings; ints converted
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        raise ActionParseError(
            f"{where} must be a quoted string, got {value!r} ({type(value).__name__}); "
            f"expected {spec.form}, e.g. {spec.example}",
            text,
        )
    if param.kind == "id" and not value.strip():
        raise ActionParseError(f"{where} must not be empty; e.g. {spec.example}", text)
    if _SURROGATE_RE.search(value) or "\x00" in value:
        what = "a NUL character" if "\x00" in value else "a lone surrogate"
        raise ActionParseError(f"{where} contains {what}, which no page can take", text)
    return value


# --------------------------------------------------------------------------------------------
# Modes and description.
# --------------------------------------------------------------------------------------------


def _spec_of(action: Action | str) -> ActionSpec:
    name = action.name if isinstance(action, Action) else action
    try:
        return ACTION_SPECS[name]
    except KeyError:
        raise ActionParseError(
            f"unknown action {name!r}; expected one of {_expected_forms()}"
        ) from None


def is_supported(action: Action | str, mode: str) -> bool:
    """Whether an action (or an ``Action.name``) is available in ``mode``."""
    _check_mode_name(mode)
    name = action.name if isinstance(action, Action) else action
    spec = ACTION_SPECS.get(name)
    return spec is not None and mode in spec.modes


def check_mode(action: Action | str, mode: str) -> None:
    """Raise :class:`ActionParseError` if the action is not available in ``mode``."""
    _check_mode_name(mode)
    spec = _spec_of(action)
    if mode not in spec.modes:
        only = " and ".join(sorted(spec.modes))
        reason = (
            " (text mode has no pixels)" if mode == "text" and spec.name == "mouse_click" else ""
        )
        raise ActionParseError(
            f"{spec.form} is not available in {mode} mode{reason}; it works in {only} mode "
            f"only. In {mode} mode use one of {_expected_forms(mode)}",
            action.raw if isinstance(action, Action) else None,
        )


def describe_action_space(mode: str = "browser") -> str:
    """A text description of the actions available in ``mode``, for LM prompts."""
    _check_mode_name(mode)
    specs = [s for s in _SPEC_LIST if mode in s.modes]
    lines = [
        f"Send exactly one action per step, on one line. Actions available ({mode} mode):",
        "",
    ]
    calls = [s for s in specs if s.syntax == "call"]
    brackets = [s for s in specs if s.syntax == "bracket"]
    for spec in calls:
        lines.append(spec.signature)
        lines.append(f"    {spec.describe(mode)}")
        lines.append(f"    Example: {spec.example}")
    if brackets:
        lines += [
            "",
            "WebShop-style actions (the text between the first '[' and the last ']' is used):",
            "",
        ]
        for spec in brackets:
            lines.append(spec.form)
            lines.append(f"    {spec.describe(mode)}")
            lines.append(f"    Example: {spec.example}")
    lines += [
        "",
        "Element ids (bid) are the ids shown in the observation, as strings: click('12'). "
        "Strings use single or double quotes with Python escapes (\\' \\\" \\\\ \\n). "
        "Numbers may be negative or decimal. Keyword arguments use the parameter names above.",
    ]
    return "\n".join(lines)
