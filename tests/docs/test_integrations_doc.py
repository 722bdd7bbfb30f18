"""docs/integrations.md: every python snippet runs (except one marked as needing a model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", re.S)


def snippets() -> list[str]:
    return [code for skip, code in BLOCK.findall(DOC.read_text()) if not skip]


def test_the_doc_has_runnable_snippets():
    assert len(snippets()) == 3
    assert len(BLOCK.findall(DOC.read_text())) == 4


@pytest.mark.parametrize("index", range(3))
def test_snippet_runs(index, capsys):
    pytest.importorskip("openenv.core")
    exec(compile(snippets()[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc__"})
    assert capsys.readouterr().out.strip()
