"""Text a run or a user wrote reaches the terminal without control sequences or rich markup:
an agent name holding an OSC 52 clipboard write, a screen clear and ``[bold]`` markup, put
through every command that prints it (``verify``, ``submit``, ``leaderboard``, ``show``, and
their refusals)."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from tests.fakerun import read_json, write_json
from webgym.terminal import SafeConsole, markup_safe, terminal_safe

CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: put "rm -rf ~" on the clipboard
HOSTILE = f"evil{CLIPBOARD}\x1b[2J\x1b[31m\x9b1m\x1bc[bold red]X[/]\r\nrank 1\u202e"
CONTROL = ("\x1b", "\x07", "\x9b", "\r", "\u202e")


def clean(text: str) -> bool:
    return not any(c in text for c in CONTROL)


@pytest.mark.parametrize(
    "raw, want",
    [
        ("rule", "rule"),
        ("a\x1b[31mred\x1b[0m", "ared"),
        (f"x{CLIPBOARD}y", "xy"),
        ("x\x1b]8;;http://e.example\x1b\\link\x1b]8;;\x1b\\", "xlink"),  # OSC 8 hyperlink
        ("\x9b2Jok", "ok"),
        ("a\nb\tc\rd", "a b cd"),
        ("tail \x1b]0;title never ends", "tail "),
        ("\x1bP1$r\x1b\\after", "after"),
        ("caf\u00e9 \u202eevil \u00a0", "caf\u00e9 evil \u00a0"),
        (12, "12"),
    ],
)
def test_terminal_safe(raw, want):
    assert terminal_safe(raw) == want


def test_newlines_kept_where_asked_and_markup_escaped():
    assert terminal_safe("a\nb\x1b[2J", newlines=True) == "a\nb"
    assert markup_safe("[bold]x[/]\x1b[1m") == "\\[bold]x\\[/]"
    buf = io.StringIO()
    SafeConsole(file=buf, width=80).print(f"[bold]ok[/] {markup_safe(HOSTILE)}")
    assert clean(buf.getvalue()) and "[bold red]X[/]" in buf.getvalue()


@pytest.fixture
def hostile_run(rule_run):
    """The real rule run, its agent renamed (a name no registry knows: checked for form only)
    and one episode's category made hostile too."""
    path = rule_run / "manifest.json"
    write_json(path, {**read_json(path), "agent": HOSTILE})
    summary = rule_run / "episodes" / "test-0004" / "summary.json"
    write_json(summary, {**read_json(summary), "category": f"clothing{CLIPBOARD}[blink]"})
    return rule_run


def test_hostile_text_never_reaches_the_terminal(hostile_run, db_path):
    from webgym_bench import app

    runner = CliRunner(env={"COLUMNS": "200"})
    outputs = {}
    for name, args in {
        "verify": ["verify", str(hostile_run)],
        "submit": ["submit", str(hostile_run), "--db", str(db_path)],
        "again": ["submit", str(hostile_run), "--db", str(db_path)],
        "if-new": ["submit", str(hostile_run), "--db", str(db_path), "--if-new"],
        "leaderboard": ["leaderboard", "--db", str(db_path)],
        "show": ["show", str(hostile_run)],
    }.items():
        result = runner.invoke(app, args)
        outputs[name] = result.output
        assert result.exit_code == (1 if name == "again" else 0), (name, result.output)
    for name, text in outputs.items():
        assert clean(text), (name, text)
    assert "evil" in outputs["submit"] and "[bold red]X[/]" in outputs["submit"]
    assert "[bold red]X[/]" in outputs["leaderboard"].replace("\n", "")
    assert "clothing[blink]" in outputs["show"]
    assert "already on the leaderboard" in outputs["if-new"]


def test_a_refusal_quoting_hostile_text_is_clean(rule_run):
    from webgym_bench import app

    path = rule_run / "manifest.json"
    write_json(path, {**read_json(path), "git_hash": f"[red]{CLIPBOARD}\x1b[2J"})
    result = CliRunner().invoke(app, ["verify", str(rule_run)])
    assert result.exit_code == 1 and "not verified" in result.output
    assert clean(result.output) and "[red]" in result.output
