"""The action grammar: parsing, validation, modes, round trips and the prompt description."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from webgym import actions
from webgym.actions import (
    ACTION_SPECS,
    MAX_ACTION_LENGTH,
    MODES,
    Action,
    ActionParseError,
    check_mode,
    clean_action_text,
    describe_action_space,
    is_supported,
    parse_action,
)


def parsed(text: str) -> tuple[str, tuple]:
    a = parse_action(text)
    return a.name, a.args


# ---------------------------------------------------------------- every form parses


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("click('12')", "click", ("12",)),
        ('click("12")', "click", ("12",)),
        ("click(12)", "click", ("12",)),
        ("click(bid='a7')", "click", ("a7",)),
        ("fill('45', 'red shoes')", "fill", ("45", "red shoes")),
        ("fill('45', value='x')", "fill", ("45", "x")),
        ("fill(bid='45', value='')", "fill", ("45", "")),
        ("fill(45, 10001)", "fill", ("45", "10001")),
        ("select_option('7', 'large')", "select_option", ("7", "large")),
        ("select_option('7', options='x-large')", "select_option", ("7", "x-large")),
        ("scroll(0, 200)", "scroll", (0, 200)),
        ("scroll(0, -200)", "scroll", (0, -200)),
        ("scroll(-1.5, +2.25)", "scroll", (-1.5, 2.25)),
        ("scroll(delta_x=0, delta_y=-300)", "scroll", (0, -300)),
        ("go_back()", "go_back", ()),
        ("noop()", "noop", ()),
        ("noop(500)", "noop", (500,)),
        ("noop(wait_ms=12.5)", "noop", (12.5,)),
        ("send_msg_to_user('done')", "send_msg_to_user", ("done",)),
        ("mouse_click(640, 360)", "mouse_click", (640, 360)),
        ("mouse_click(10.5, 0)", "mouse_click", (10.5, 0)),
        ("search[red running shoes]", "search", ("red running shoes",)),
        ("search[  padded query  ]", "search", ("padded query",)),
        ("click[Buy Now]", "click_label", ("Buy Now",)),
        ("click[< Prev]", "click_label", ("< Prev",)),
        ("click[Next >]", "click_label", ("Next >",)),
        ("click[b0abc12345]", "click_label", ("b0abc12345",)),
        ("click[red]", "click_label", ("red",)),
        ("click[Back to Search]", "click_label", ("Back to Search",)),
    ],
)
def test_every_form_parses(text, name, args):
    assert parsed(text) == (name, args)


def test_parsed_types():
    assert type(parse_action("scroll(0, 200)").args[1]) is int
    assert type(parse_action("scroll(0, 2.0)").args[1]) is float
    assert parse_action("click(12)").args == ("12",)


def test_raw_is_kept_but_not_compared():
    a = parse_action("  click('1')\n")
    assert a.raw == "  click('1')\n"
    assert a == Action("click", ("1",))
    assert hash(a) == hash(Action("click", ("1",), "other"))


def test_params_fills_defaults():
    assert parse_action("noop()").params == {"wait_ms": 0}
    assert parse_action("noop(5)").params == {"wait_ms": 5}
    assert parse_action("fill('1', 'x')").params == {"bid": "1", "value": "x"}


# ---------------------------------------------------------------- quoting and escapes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"fill('1', 'it\'s')", "it's"),
        ("fill('1', \"it's\")", "it's"),
        (r'fill("1", "say \"hi\"")', 'say "hi"'),
        (r"fill('1', 'back\\slash')", "back\\slash"),
        (r"fill('1', 'two\nlines')", "two\nlines"),
        (r"fill('1', 'tab\there')", "tab\there"),
        (r"fill('1', '\u00e9t\u00e9')", "été"),
        ("fill('1', 'café 東京 😀')", "café 東京 😀"),
        ("fill('1', '''tri'ple''')", "tri'ple"),
        ("fill('1', 'a' 'b')", "ab"),
        ("fill('1', '[brackets] and (parens), commas')", "[brackets] and (parens), commas"),
    ],
)
def test_quoting_and_escapes(text, value):
    assert parse_action(text).args == ("1", value)


def test_webshop_labels_with_brackets_take_first_open_last_close():
    assert parsed("click[[a] b]") == ("click_label", ("[a] b",))
    assert parsed("search[shoes [size 9]]") == ("search", ("shoes [size 9]",))
    assert parsed("click[x]y]") == ("click_label", ("x]y",))
    assert parsed('search[it\'s "quoted" (ok)]') == ("search", ('it\'s "quoted" (ok)',))
    assert parsed("search[ünïcödé]") == ("search", ("ünïcödé",))


# ---------------------------------------------------------------- leniency


@pytest.mark.parametrize(
    "text",
    [
        "click('12')",
        "  click('12')  ",
        "click('12')\n",
        "\n\tclick('12')\r\n",
        "`click('12')`",
        "``click('12')``",
        "```\nclick('12')\n```",
        "```python\nclick('12')\n```",
        "```py\nclick('12')\n```\n",
        "```click('12')```",
        "```\nclick('12')",  # closing fence cut off by a stop sequence
        "Action: click('12')",
        "action:click('12')",
        "ACTION :  click('12')",
        "Action: `click('12')`",
        "Action:\n```\nclick('12')\n```",
        "```\nAction: click('12')\n```",
    ],
)
def test_leniency(text):
    assert parse_action(text) == Action("click", ("12",))


def test_leniency_webshop():
    assert parsed("Action: `click[Buy Now]`") == ("click_label", ("Buy Now",))
    assert parsed("```\nsearch[red shoes]\n```") == ("search", ("red shoes",))


def test_clean_action_text_is_exactly_documented():
    assert clean_action_text("  Action: `x`  ") == "x"
    # nothing else is removed
    assert clean_action_text("I will click('1')") == "I will click('1')"
    assert clean_action_text("click('1');") == "click('1');"


@pytest.mark.parametrize(
    "text",
    [
        "I will click('12')",
        "click('12') because it is the button",
        "click('12');",
        "`click('12')",
        "click('12')\nclick('13')",
        "click('1'); click('2')",
    ],
)
def test_no_other_leniency(text):
    with pytest.raises(ActionParseError):
        parse_action(text)


# ---------------------------------------------------------------- malformed input


def error_of(text) -> str:
    with pytest.raises(ActionParseError) as info:
        parse_action(text)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_name_lists_expected_forms():
    msg = error_of("clik('12')")
    assert "unknown action 'clik'" in msg
    assert "did you mean click" in msg
    for form in ("click('id')", "fill('id', 'text')", "scroll(dx, dy)", "search[query]"):
        assert form in msg
    assert "unknown action 'goto'" in error_of("goto('http://x')")
    assert "unknown action 'Click'" in error_of("Click[Buy Now]")
    assert "unknown action 'buy'" in error_of("buy[now]")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("click('1', '2')", "click() takes 1 argument (bid: the element id), got 2"),
        ("click()", "click() takes 1 argument"),
        ("fill('1')", "fill() takes 2 arguments"),
        ("go_back(1)", "go_back() takes 0 arguments, got 1"),
        ("noop(1, 2)", "noop() takes 0 or 1 arguments"),
        ("scroll(1)", "scroll() takes 2 arguments"),
        ("mouse_click(1, 2, 3)", "mouse_click() takes 2 arguments"),
    ],
)
def test_wrong_arity(text, fragment):
    msg = error_of(text)
    assert fragment in msg
    assert "expected" in msg


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("click(abc)", "quote it: 'abc'"),
        ("click(1.5)", "must be a quoted string"),
        ("click(True)", "must be a quoted string"),
        ("click(None)", "must be a quoted string"),
        ("click(b'1')", "must be a quoted string"),
        ("click('')", "must not be empty"),
        ("click('   ')", "must not be empty"),
        ("fill('1', ['a'])", "must be a quoted string, got a list"),
        ("select_option('1', ['a', 'b'])", "must be a quoted string"),
        ("scroll('a', 1)", "must be a number"),
        ("scroll(0, True)", "must be a number"),
        ("scroll(0, x)", "must be a number"),
        ("scroll(1e999, 0)", "finite"),
        ("noop(-1)", "must be >= 0"),
        ("noop('500')", "must be a number"),
        ("mouse_click(-1, 5)", "must be >= 0"),
        ("click(f'{1}')", "must be a quoted string"),
        ("scroll(1+1, 0)", "must be a number"),
        ("scroll(--1, 0)", "must be a number"),
    ],
)
def test_wrong_types(text, fragment):
    assert fragment in error_of(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("click('12)", "unbalanced quotes"),
        ('click("12)', "unbalanced quotes"),
        ("click(\"12')", "unbalanced quotes"),
        ("fill('1', 'it's')", "unbalanced quotes"),
        ("click('12'", "unbalanced parentheses"),
        ("click('12'))", "unbalanced parentheses"),
        ("click[Buy Now", "unbalanced brackets"),
        ("search[x] and more", "unexpected text after ']'"),
    ],
)
def test_unbalanced(text, fragment):
    assert fragment in error_of(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("click('1', foo='2')", "unexpected keyword argument 'foo'"),
        ("click('1', bid='2')", "multiple values for argument 'bid'"),
        ("click(*ids)", "*args"),
        ("click(**kw)", "**kwargs"),
        ("search('shoes')", "search[query]"),
        ("fill[1]", "fill('id', 'text')"),
        ("go_back", "needs parentheses"),
        ("'click'", "expected an action call"),
        ("12", "expected an action call"),
        ("search[]", "non-empty query"),
        ("click[   ]", "non-empty label"),
        ("search[a\nb]", "one line"),
    ],
)
def test_other_malformed(text, fragment):
    assert fragment in error_of(text)


@pytest.mark.parametrize("text", ["", "   ", "\n", "``", "```\n```", "Action:", "Action: ``"])
def test_empty(text):
    assert "empty action" in error_of(text)


def test_too_long():
    msg = error_of("fill('1', '" + "x" * MAX_ACTION_LENGTH + "')")
    assert "too long" in msg and str(MAX_ACTION_LENGTH) in msg
    ok = "fill('1', '" + "x" * (MAX_ACTION_LENGTH - 20) + "')"
    assert len(parse_action(ok).args[1]) == MAX_ACTION_LENGTH - 20


def test_not_a_string():
    assert "must be a string" in error_of(None)
    assert "must be a string" in error_of(b"click('1')")


def test_nul_rejected():
    assert "NUL" in error_of("click('1\x00')")


def test_deep_nesting_is_an_error_not_a_crash():
    error_of("click(" + "(" * 1900 + "'1'" + ")" * 1900 + ")")
    error_of("click(" + "[" * 1900 + "'1'" + "]" * 1900 + ")")
    error_of("scroll(" + "-" * 1900 + "1, 0)")


# ---------------------------------------------------------------- code is never run


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os').system('x')", "only plain action names"),
        ("os.system('x')", "attribute such as os.system"),
        ("click(__import__('os').system('x'))", "nested call"),
        ("click(str(1))", "nested call"),
        ("click('1')('2')", "only plain action names"),
        ("__import__('os')", "unknown action '__import__'"),
        ("eval('1')", "unknown action 'eval'"),
        ("exec('x')", "unknown action 'exec'"),
        ("click(open('/etc/passwd').read())", "nested call"),
        ("lambda: click('1')", "expected an action call"),
        ("[click('1') for _ in range(9)]", "expected an action call"),
        ("click(x := 1)", "must be a quoted string"),
    ],
)
def test_code_is_rejected(text, fragment):
    assert fragment in error_of(text)


def test_rejected_code_is_not_executed(tmp_path):
    """Feed payloads that would create a file if evaluated; in a subprocess, nothing appears."""
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"click(__import__('pathlib').Path({str(marker)!r}).touch())",
        f"fill('1', __import__('pathlib').Path({str(marker)!r}).touch())",
        f"click[{{__import__('pathlib').Path({str(marker)!r}).touch()}}]",
    ]
    code = (
        "import sys\nfrom webgym.actions import parse_action, ActionParseError\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n        parse_action(p)\n    except ActionParseError:\n        pass\n"
    )
    subprocess.run([sys.executable, "-c", code, *payloads], check=True, timeout=60)
    assert not marker.exists()


def test_parser_never_calls_eval(monkeypatch):
    # (ast.parse itself uses compile() with PyCF_ONLY_AST, which builds a tree and runs nothing)
    def boom(*a, **k):
        raise AssertionError("eval/exec must not be used")

    import builtins

    for name in ("eval", "exec"):
        monkeypatch.setattr(builtins, name, boom)
    assert parse_action("click('1')") == Action("click", ("1",))
    error_of("__import__('os').system('x')")


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "text",
    [
        "click('12')",
        "click(12)",
        'fill(\'45\', "it\'s \\"here\\"")',
        "fill('1', 'two\\nlines\\\\')",
        "fill('1', 'café 東京 😀')",
        "fill('1', '')",
        "select_option('7', 'x-large')",
        "scroll(0, -200)",
        "scroll(-1.5, 1e-05)",
        "scroll(1e5, 0)",
        "go_back()",
        "noop()",
        "noop(500)",
        "send_msg_to_user('no match; sorry')",
        "mouse_click(640.5, 0)",
        "search[red shoes [size 9]]",
        "click[< Prev]",
        "click[[a] b]",
        "click(bid='3')",
    ],
)
def test_round_trip(text):
    a = parse_action(text)
    s = a.to_string()
    assert parse_action(s) == a
    assert parse_action(s).to_string() == s
    assert str(a) == s


def test_canonical_forms():
    assert parse_action('click("12")').to_string() == "click('12')"
    assert parse_action("click(12)").to_string() == "click('12')"
    assert parse_action("fill(bid='1', value=\"x\")").to_string() == "fill('1', 'x')"
    assert parse_action("fill('1', \"it's\")").to_string() == "fill('1', \"it's\")"
    assert parse_action("  search[  a b ]").to_string() == "search[a b]"
    assert parse_action("scroll(+3, -0.5)").to_string() == "scroll(3, -0.5)"


def test_canonical_call_is_valid_python_literal_call():
    a = parse_action("fill('1', 'a\\'b\"c')")
    node = ast.parse(a.to_string(), mode="eval").body
    assert [ast.literal_eval(x) for x in node.args] == list(a.args)


# ---------------------------------------------------------------- modes


def test_modes():
    assert MODES == ("browser", "text")
    mc = parse_action("mouse_click(1, 2)")
    assert is_supported(mc, "browser")
    assert not is_supported(mc, "text")
    assert not is_supported("no_such_action", "browser")
    check_mode(mc, "browser")
    with pytest.raises(ActionParseError) as info:
        check_mode(mc, "text")
    msg = str(info.value)
    assert "not available in text mode" in msg and "click('id')" in msg
    assert "mouse_click" not in msg.split("use one of", 1)[1]
    with pytest.raises(ActionParseError, match="not available in text mode"):
        parse_action("mouse_click(1, 2)", mode="text")
    assert parse_action("mouse_click(1, 2)", mode="browser") == mc


@pytest.mark.parametrize("mode", MODES)
def test_scroll_and_the_rest_work_in_both_modes(mode):
    for name in ACTION_SPECS:
        if name != "mouse_click":
            assert is_supported(name, mode), name
    assert parse_action("scroll(0, 100)", mode=mode).name == "scroll"
    assert parse_action("click[Buy Now]", mode=mode).name == "click_label"


def test_unknown_mode_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown mode"):
        is_supported("click", "desktop")
    with pytest.raises(ValueError, match="unknown mode"):
        describe_action_space("desktop")
    with pytest.raises(ValueError, match="unknown mode"):
        parse_action("click('1')", mode="desktop")


# ---------------------------------------------------------------- the table and description


def test_spec_table_is_the_single_source():
    assert list(ACTION_SPECS) == [
        "click",
        "fill",
        "select_option",
        "scroll",
        "go_back",
        "noop",
        "send_msg_to_user",
        "mouse_click",
        "search",
        "click_label",
    ]
    with pytest.raises(TypeError):
        ACTION_SPECS["x"] = ACTION_SPECS["click"]  # read-only
    for name, spec in ACTION_SPECS.items():
        assert spec.name == name
        assert set(spec.modes) <= set(MODES)
        # every spec's example parses to that very action
        assert parse_action(spec.example).name == name, spec.example


@pytest.mark.parametrize("mode", MODES)
def test_describe_lists_every_supported_action(mode):
    text = describe_action_space(mode)
    for spec in ACTION_SPECS.values():
        if mode in spec.modes:
            assert spec.signature in text
            assert spec.example in text
        else:
            assert spec.keyword not in text
    assert "search[query]" in text and "click[label]" in text


def test_describe_text_mode_omits_mouse_click():
    assert "mouse_click" in describe_action_space("browser")
    assert "mouse_click" in describe_action_space()
    assert "mouse_click" not in describe_action_space("text")
    assert "scroll(" in describe_action_space("text")
    assert "changes nothing" in describe_action_space("text")
    assert "changes nothing" not in describe_action_space("browser")


def test_module_is_stdlib_only():
    tree = ast.parse(open(actions.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_every_agent_mistake_is_an_invalid_action():
    """One base class for "the agent's action was invalid"; machine trouble is not one."""
    from webgym.actions import ActionError, InvalidAction
    from webgym.browser import ActionFailed, BrowserCrashed, BrowserError, PageTimeout
    from webgym.observe import ActionError as ObserveActionError

    assert ObserveActionError is ActionError
    for cls in (ActionParseError, ActionError, ActionFailed):
        assert issubclass(cls, InvalidAction) and issubclass(cls, ValueError), cls
    assert issubclass(ActionFailed, ActionError) and issubclass(ActionFailed, BrowserError)
    for cls in (BrowserCrashed, PageTimeout):
        assert not issubclass(cls, InvalidAction), cls
    with pytest.raises(InvalidAction):
        parse_action("clik('x')")


@pytest.mark.parametrize(
    "text",
    [
        "noop(" + "9" * 3000 + ")",  # an int too large for a float: was an OverflowError
        "scroll(0, " + "9" * 400 + ")",
        "scroll(0, 1e308)",  # finite, but broke the next browser action
        "scroll(-100001, 0)",
        "mouse_click(1e9, 10)",
        "noop(10001)",
        "noop(wait_ms=1e6)",
    ],
)
def test_numbers_are_bounded(text):
    with pytest.raises(ActionParseError, match="must be"):
        parse_action(text)


def test_numbers_at_the_bounds_are_accepted():
    from webgym.actions import MAX_NUMBER, MAX_WAIT_MS

    assert parse_action(f"scroll(-{MAX_NUMBER}, {MAX_NUMBER})").args == (-MAX_NUMBER, MAX_NUMBER)
    assert parse_action(f"noop({MAX_WAIT_MS})").args == (MAX_WAIT_MS,)


@pytest.mark.parametrize(
    "text",
    [
        "search[a\ud800b]",  # the bracket path took it as is: crashed the URL encoder
        "click[\udfff]",
        "fill('1', '\ud83d')",
        "fill('1', '\\ud800')",  # written as an escape: the call path
        "send_msg_to_user('\\udc00')",
        "fill('1', 'a\\x00b')",
    ],
)
def test_text_no_page_can_encode_is_refused_by_every_path(text):
    with pytest.raises(ActionParseError, match="surrogate|NUL"):
        parse_action(text, "text")
    with pytest.raises(ActionParseError, match="surrogate|NUL"):
        parse_action(text, "browser")


def test_emoji_and_other_astral_text_is_accepted():
    assert parse_action("search[dog 🐶 leash]").args == ("dog 🐶 leash",)
    assert parse_action("fill('1', '\\U0001F600')").args == ("1", "😀")
