"""Data flows one way, and no two files import each other (docs/architecture.md).

Every ``.py`` file of the layers is parsed with ``ast``; its imports (at module level and inside
functions, ``importlib.import_module("...")`` with a literal name included) are resolved to the
files they load. The test fails on

(a) an upward import: the layers are, bottom to top, ``webgym < webgym_agents <
    webgym_benchmarks < webgym_leaderboards < webgym_bench`` (the ``webgym-bench`` command;
    the folders agents/, benchmarks/, leaderboards/ install under the ``webgym_`` names), and a
    file may import its own layer and the ones below only;
(b) an import cycle between files: the graph of the imports a file runs when it is imported
    (module level, not those deferred into a function) has no strongly connected component of
    more than one file.

The messages name the files and lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bottom to top: import name -> its folder (or module file, without .py) at the repository root
# (pyproject.toml's package-dir)
FOLDERS = {
    "webgym": "webgym",
    "webgym_agents": "agents",
    "webgym_benchmarks": "benchmarks",
    "webgym_leaderboards": "leaderboards",
    "webgym_bench": "webgym_bench",
}
LAYERS = tuple(FOLDERS)
RANK = {name: i for i, name in enumerate(LAYERS)}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (resolved to a file of the layers)
    line: int
    module_level: bool  # runs when the importing module is imported


def layer_files() -> dict[str, Path]:
    """Dotted module name -> file, for every file of the layers."""
    files: dict[str, Path] = {}
    for top, folder in FOLDERS.items():
        single = ROOT / f"{folder}.py"
        if single.is_file():
            files[top] = single
        package = ROOT / folder
        if package.is_dir():
            for path in sorted(package.rglob("*.py")):
                parts = [top, *path.relative_to(package).with_suffix("").parts]
                if parts[-1] == "__init__":
                    parts.pop()
                files[".".join(parts)] = path
    return files


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(name: str, files: dict[str, Path]) -> str | None:
    """The most specific module of the layers that importing ``name`` loads (or None: a name
    outside the layers)."""
    parts = name.split(".")
    while parts:
        dotted = ".".join(parts)
        if dotted in files:
            return dotted
        parts.pop()
    return None


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        nested = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        yield child, in_function
        yield from _walk(child, nested)


def _import_module_literal(node: ast.Call) -> str | None:
    """``importlib.import_module("x")``, ``import_module("x")`` or ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def imports_of(module: str, path: Path, files: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: list[Import] = []

    def add(name: str, line: int, module_level: bool) -> None:
        target = _resolve(name, files)
        if target is not None and target != module:
            found.append(Import(module, target, line, module_level))

    for node, in_function in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, not in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            for alias in node.names:  # ``from a import b``: the module a.b when there is one
                add(
                    f"{stem}.{alias.name}" if alias.name != "*" else stem,
                    node.lineno,
                    not in_function,
                )
        elif isinstance(node, ast.Call):
            name = _import_module_literal(node)
            if name is not None:
                add(name, node.lineno, not in_function)
    return found


def all_imports() -> tuple[dict[str, Path], list[Import]]:
    files = layer_files()
    out: list[Import] = []
    for module, path in files.items():
        out.extend(imports_of(module, path, files))
    return files, out


def _rel(files: dict[str, Path], module: str) -> str:
    return str(files[module].relative_to(ROOT))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_the_layers_are_all_there():
    files = layer_files()
    for top in LAYERS:
        assert top in files, f"no {top} in {ROOT}"
    assert len(files) > 30


def test_no_upward_imports():
    files, imports = all_imports()
    upward = [
        f"{_rel(files, i.source)}:{i.line} imports {i.target} "
        f"({i.source.split('.')[0]} may not import {i.target.split('.')[0]})"
        for i in imports
        if RANK[i.target.split(".")[0]] > RANK[i.source.split(".")[0]]
    ]
    assert not upward, (
        "upward imports (layers, bottom to top: "
        + " < ".join(LAYERS)
        + "):\n  "
        + "\n  ".join(upward)
    )


def test_no_import_cycles_between_files():
    files, imports = all_imports()
    graph: dict[str, set[str]] = {m: set() for m in files}
    lines: dict[tuple[str, str], int] = {}
    for i in imports:
        if i.module_level:
            graph[i.source].add(i.target)
            lines.setdefault((i.source, i.target), i.line)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    described = []
    for component in cycles:
        members = set(component)
        edges = [
            f"{_rel(files, a)}:{lines[a, b]} imports {b}"
            for a in component
            for b in sorted(graph[a] & members)
        ]
        described.append(
            ", ".join(_rel(files, m) for m in component) + "\n    " + "\n    ".join(edges)
        )
    assert not cycles, "files that import each other (module level):\n  " + "\n  ".join(described)


def test_the_checker_sees_what_it_must(tmp_path):
    """The parser on a made-up file: every kind of import, relative ones, deferred ones."""
    files = {
        "webgym_agents": tmp_path / "agents" / "__init__.py",
        "webgym_agents.x": tmp_path / "agents" / "x.py",
        "webgym_agents.y": tmp_path / "agents" / "y.py",
        "webgym_benchmarks": tmp_path / "benchmarks" / "__init__.py",
        "webgym_benchmarks.cli": tmp_path / "benchmarks" / "cli.py",
    }
    files["webgym_agents.x"].parent.mkdir()
    files["webgym_agents.x"].write_text(
        "import os\n"
        "from . import y\n"
        "from .y import thing\n"
        "def f():\n"
        "    import webgym_benchmarks.cli\n"
        "    importlib.import_module('webgym_benchmarks')\n"
    )
    found = {
        (i.target, i.line, i.module_level)
        for i in imports_of("webgym_agents.x", files["webgym_agents.x"], files)
    }
    assert found == {
        ("webgym_agents.y", 2, True),
        ("webgym_agents.y", 3, True),
        ("webgym_benchmarks.cli", 5, False),
        ("webgym_benchmarks", 6, False),
    }
    assert strongly_connected({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["c"], ["a", "b"]]
