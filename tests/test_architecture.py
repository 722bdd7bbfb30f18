"""Data flows one way, and no two files import each other (docs/architecture.md).

Every ``.py`` file of the layers is parsed with ``ast``; its imports (at module level and inside
functions, ``importlib.import_module("...")`` with a literal name included) are resolved to the
files they load. The test fails on

(a) an upward import: the layers are, bottom to top, ``webgym < webgym_agents <
    webgym_benchmarks < webgym_leaderboards < webgym_bench`` (the ``webgym-bench`` command;
    the folders agents/, benchmarks/, leaderboards/ install under the ``webgym_`` names), and a
    file may import its own layer and the ones below only;
(b) an import cycle between files, hidden or not: the graph of every import, those a file runs
    when it is imported (module level) and those deferred into a function body alike, has no
    strongly connected component of more than one file. A deferred import still ties the two
    files together: it only moves the moment the circle closes from import time to call time;
(c) in ``webgym_agents`` (agents/), an import deferred into a function without a comment on
    its line, or on the lines just above it, saying why it is deferred (torch on first use, a
    heavy optional dependency...). The deferred imports are counted: the test prints how many.

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
    explained: bool = True  # deferred into a function: a comment says why (line or just above)


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


def _explained(lines: list[str], node: ast.AST) -> bool:
    """A comment on the import's own lines, or on the line right above it (through the other
    imports of the same group: one comment may explain a group)."""
    end = getattr(node, "end_lineno", node.lineno)
    if any("#" in lines[i - 1] for i in range(node.lineno, end + 1)):
        return True
    i = node.lineno - 1
    while i >= 1:
        text = lines[i - 1].strip()
        if "#" in text:
            return True
        if not (text.startswith(("import ", "from ")) or text in ("", ")") or text.endswith(",")):
            return False
        i -= 1
    return False


def imports_of(module: str, path: Path, files: dict[str, Path]) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    lines = text.splitlines()
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: list[Import] = []
    node: ast.AST

    def add(name: str, line: int, module_level: bool) -> None:
        target = _resolve(name, files)
        if target is not None and target != module:
            explained = module_level or _explained(lines, node)
            found.append(Import(module, target, line, module_level, explained))

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


def _rel(files: dict[str, Path], module: str, root: Path = ROOT) -> str:
    return str(files[module].relative_to(root))


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


def import_cycles(files: dict[str, Path], imports: list[Import], root: Path = ROOT) -> list[str]:
    """Every circle of files in ``imports`` (module level and deferred alike), described with
    its edges (file:line imports module, and whether the import is deferred)."""
    graph: dict[str, set[str]] = {m: set() for m in files}
    edges: dict[tuple[str, str], Import] = {}
    for i in imports:
        graph[i.source].add(i.target)
        known = edges.get((i.source, i.target))
        if known is None or (i.module_level and not known.module_level):
            edges[i.source, i.target] = i  # the module-level one, when there are both
    described = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        lines = []
        for a in component:
            for b in sorted(graph[a] & members):
                i = edges[a, b]
                where = "" if i.module_level else " (inside a function)"
                lines.append(f"{_rel(files, a, root)}:{i.line} imports {b}{where}")
        described.append(
            ", ".join(_rel(files, m, root) for m in component) + "\n    " + "\n    ".join(lines)
        )
    return described


def test_no_import_cycles_between_files():
    files, imports = all_imports()
    cycles = import_cycles(files, imports)
    assert not cycles, (
        "files that import each other (module level or inside functions):\n  " + "\n  ".join(cycles)
    )


def test_deferred_imports_are_counted_and_say_why(capsys):
    files, imports = all_imports()
    deferred = sorted({(i.source, i.line, i.explained) for i in imports if not i.module_level})
    per_layer: dict[str, int] = {}
    for source, _, _ in deferred:
        per_layer[source.split(".")[0]] = per_layer.get(source.split(".")[0], 0) + 1
    with capsys.disabled():
        print(f"\nimports inside functions: {len(deferred)} ({per_layer})")
    bare = [
        f"{_rel(files, source)}:{line}"
        for source, line, explained in deferred
        if source.split(".")[0] == "webgym_agents" and not explained
    ]
    assert not bare, (
        "imports of project modules inside a function of agents/ with no comment saying why "
        "(on the line or just above it):\n  " + "\n  ".join(bare)
    )


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


def _algorithm(module: str) -> str | None:
    """The algorithm a module of ``webgym_agents.algos`` belongs to (``algos/genac_critic.py``
    is genac's, ``algos/digiq/critic.py`` digiq's), or None outside it."""
    parts = module.split(".")
    if parts[:2] != ["webgym_agents", "algos"] or len(parts) < 3:
        return None
    return parts[2].split("_")[0]


def test_the_agents_rooms_import_downwards():
    """In agents/: no algorithm imports another (what two share lives in the toolkit), and
    nothing below the algorithms (toolkit, policies, scripted agents, models, the agent
    protocol) imports one; inside functions too."""
    files, imports = all_imports()
    below = ("toolkit", "policies", "scripted", "models", "base", "observation", "shipped")
    wrong = []
    for i in imports:
        source, target = _algorithm(i.source), _algorithm(i.target)
        if target is None:
            continue
        room = i.source.split(".")[1] if i.source.count(".") else ""
        if (source is not None and source != target) or room in below:
            wrong.append(f"{_rel(files, i.source)}:{i.line} imports {i.target}")
    assert not wrong, "imports of an algorithm from outside it:\n  " + "\n  ".join(wrong)


def _plant(root: Path, sources: dict[str, str]) -> dict[str, Path]:
    """Write ``sources`` (dotted module -> code) under ``root`` as the layers' folders do."""
    files = {}
    for module, code in sources.items():
        top, *rest = module.split(".")
        folder = root / FOLDERS[top]
        path = folder.joinpath(*rest).with_suffix(".py") if rest else folder / "__init__.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        files[module] = path
    return files


def test_a_circle_through_a_function_level_import_is_caught(tmp_path):
    """A circle that closes only inside a function (a hidden one) fails the check, and so
    does an upward import made inside a function; the message names the deferred import."""
    files = _plant(
        tmp_path,
        {
            "webgym_agents": "",
            "webgym_agents.a": "from webgym_agents import b\n",
            "webgym_agents.b": "def f():\n    # on first use\n    from webgym_agents.a import g\n",
            "webgym_agents.c": "def h():\n    import webgym_benchmarks.cli\n",
            "webgym_benchmarks": "",
            "webgym_benchmarks.cli": "",
        },
    )
    imports = [i for m, p in files.items() for i in imports_of(m, p, files)]
    module_level = [i for i in imports if i.module_level]
    assert import_cycles(files, module_level, tmp_path) == []  # the old check saw nothing
    (cycle,) = import_cycles(files, imports, tmp_path)
    assert "agents/a.py, agents/b.py" in cycle
    assert "agents/b.py:3 imports webgym_agents.a (inside a function)" in cycle
    assert "agents/a.py:1 imports webgym_agents.b" in cycle
    deferred = {(i.source, i.target): i for i in imports if not i.module_level}
    assert deferred["webgym_agents.b", "webgym_agents.a"].explained
    assert not deferred["webgym_agents.c", "webgym_benchmarks.cli"].explained
    upward = [i for i in imports if RANK[i.target.split(".")[0]] > RANK[i.source.split(".")[0]]]
    assert [(i.source, i.line, i.module_level) for i in upward] == [("webgym_agents.c", 2, False)]
