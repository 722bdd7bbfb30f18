"""docs/architecture.md: every ``file.py:name`` (or ``file.py:Class.method``) it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
REF = re.compile(r"([\w/]+\.py):([\w.]+)")


def _top_level(path: Path) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _exists(file: str, name: str) -> bool:
    path = ROOT / file
    if not path.is_file():
        return False
    head, _, member = name.partition(".")
    node = _top_level(path).get(head)
    if node is None:
        return False
    if not member:
        return True
    return isinstance(node, ast.ClassDef) and any(
        getattr(item, "name", None) == member for item in node.body
    )


def test_the_doc_names_code():
    assert len(set(REF.findall(DOC.read_text()))) > 20


def test_every_named_function_exists():
    refs = sorted(set(REF.findall(DOC.read_text())))
    missing = [f"{f}:{n}" for f, n in refs if not _exists(f, n)]
    assert not missing, f"docs/architecture.md names what the code does not have: {missing}"
