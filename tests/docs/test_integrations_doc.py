"""docs/integrations.md: every python snippet runs (except one marked as needing a model), prints,
and logs no traceback; the capacity snippet prints the refusal and then plays once a slot frees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", re.S)


def snippets() -> list[str]:
    return [code for skip, code in BLOCK.findall(DOC.read_text()) if not skip]


def run(code: str, name: str) -> None:
    exec(compile(code, name, "exec"), {"__name__": "__doc__"})


def test_the_doc_has_runnable_snippets():
    assert len(snippets()) == 4
    assert len(BLOCK.findall(DOC.read_text())) == 5


@pytest.mark.parametrize("index", range(4))
def test_snippet_runs(index, capsys):
    pytest.importorskip("openenv.core")
    run(snippets()[index], f"{DOC.name}[{index}]")
    out, err = capsys.readouterr()  # the servers' log handlers write to the captured stderr
    assert out.strip()
    assert "Traceback" not in err and "Exception in ASGI" not in err, err


def test_the_capacity_snippet_prints_the_refusal_then_plays(capsys):
    pytest.importorskip("openenv.core")
    (code,) = [c for c in snippets() if "WebGymCapacityError" in c]
    run(code, f"{DOC.name}[capacity]")
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "CAPACITY_REACHED: 1 sessions in use (max 1); retry later or raise --max-sessions",
        "test-0002",
    ]
    refusals = err.splitlines()  # the server logs at warning: one line per refused connection
    assert refusals and all(
        line.endswith(" - WebSocket /ws refused: " + out.splitlines()[0]) for line in refusals
    ), err
