"""WebGym inside other people's projects: its import names are its own.

The folders agents/, benchmarks/ and leaderboards/ install as ``webgym_agents``,
``webgym_benchmarks`` and ``webgym_leaderboards`` (pyproject.toml's package-dir), so a project
with its own ``agents`` package, or with openai-agents installed (a top-level ``agents`` too),
keeps it. Checked here: the installed distribution's metadata, pyproject's package list against
the folders, no code or doc naming a module by an old name, and a project of its own with an
``agents`` package that imports both and plays its agent through ``webgym-bench run``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import webgym_benchmarks.cli
import webgym_leaderboards.cli
from webgym.runs import DISTRIBUTION

REPO = Path(__file__).resolve().parent.parent
GENERIC = {"agents", "benchmarks", "leaderboards"}
IMPORT_NAMES = {"webgym", "webgym_agents", "webgym_benchmarks", "webgym_leaderboards"}
TOP_LEVEL = IMPORT_NAMES | {"webgym_bench"}  # and the webgym-bench command's module
FOLDER = {"webgym": "webgym", "webgym_agents": "agents", "webgym_benchmarks": "benchmarks",
          "webgym_leaderboards": "leaderboards"}  # fmt: skip


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_installed_distribution_has_webgyms_own_top_level_names():
    assert DISTRIBUTION == _pyproject()["project"]["name"]
    found = list(importlib.metadata.distributions(name=DISTRIBUTION))
    assert found, f"{DISTRIBUTION} is not installed"
    for dist in found:  # every copy of its metadata on sys.path (a build's egg-info too)
        assert dist.metadata["Name"] == DISTRIBUTION
        top_level = set((dist.read_text("top_level.txt") or "").split())
        assert top_level == TOP_LEVEL, f"{DISTRIBUTION} installs the top-level names {top_level}"
    owners = importlib.metadata.packages_distributions()
    for name in GENERIC:
        assert DISTRIBUTION not in owners.get(name, []), f"{DISTRIBUTION} installs {name!r}"
    for name in TOP_LEVEL:
        assert DISTRIBUTION in owners.get(name, []), f"{name!r} is not {DISTRIBUTION}'s"


def test_pyproject_lists_every_package_folder_under_its_import_name():
    tool = _pyproject()["tool"]["setuptools"]
    package_dir = tool["package-dir"]
    assert package_dir == {f"webgym_{name}": name for name in GENERIC}
    assert tool["py-modules"] == ["webgym_bench"]
    expected = set()
    for name, folder in FOLDER.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join([name, *parts]))
    listed = set(tool["packages"])
    assert listed == expected, (
        f"packages in pyproject.toml but not folders: {sorted(listed - expected)}; "
        f"folders with an __init__.py missing from pyproject.toml: {sorted(expected - listed)}"
    )
    assert not {p.split(".")[0] for p in listed} & GENERIC
    data = tool["package-data"]
    assert set(data) <= IMPORT_NAMES, f"package-data under an unknown package: {set(data)}"


def _old_name_imports(path: Path) -> list[str]:
    """``file:line name`` for each import of a generic name in a Python file (statements,
    ``import_module``/``__import__``/``find_spec`` with a literal name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                called in ("import_module", "__import__", "find_spec")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names = [first.value]
        for name in names:
            if name.split(".")[0] in GENERIC:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    return found


def _tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *patterns], cwd=REPO, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / p for p in listed.stdout.split("\0") if p]


def test_no_python_file_imports_a_generic_name():
    files = _tracked("*.py")
    assert len(files) > 100
    found = [hit for path in files for hit in _old_name_imports(path)]
    assert not found, "imports of the old generic names:\n  " + "\n  ".join(found)


# A module named by a generic name in text: ``agents.x`` as a module path (not
# ``tests.agents.x``, ``webgym.agents``, ``agents/x``, a file name), in commands (``python -m``),
# docs and strings; and ``from agents import``.
OLD_MODULE = re.compile(
    r"(?<![\w./\-\\$])(agents|benchmarks|leaderboards)\.(?!(?:py|md|json|txt|csv|html)\b)[a-z_]"
    r"|\bfrom (agents|benchmarks|leaderboards) import\b"
)


def test_no_command_doc_or_string_names_a_module_by_a_generic_name():
    files = _tracked("*.py", "*.md", "*.toml", "*.sh", "*.yml", "*.yaml", "Makefile",
                     "docker/*", ".ci/*")  # fmt: skip
    this = Path(__file__).resolve()  # its made-up project has an ``agents`` package of its own
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        if path.resolve() != this
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OLD_MODULE.search(line)
    ]
    assert len(files) > 150
    assert not found, "module paths under the old generic names:\n  " + "\n  ".join(found)


# ---- a project of its own with an ``agents`` package ----------------------------------------

THEIR_AGENTS = '''
"""The project's own agents package (nothing to do with WebGym)."""

mine = "the project's own agents package"
'''

THEIR_SHOPPER = '''
class Shopper:
    """Search the instruction, open the first result, buy it."""

    def reset(self, goal, seed=None):
        self.goal = goal

    def act(self, observation):
        actions = observation["available_actions"]
        if "click('buy_now')" in actions:
            return "click('buy_now')"
        items = [a for a in actions if a.startswith("click('item_")]
        if items:
            return items[0]
        if "click('search_button')" in actions:
            return f"search[{self.goal.split(', and price')[0]}]"
        return "click('back_to_search')"
'''


@pytest.fixture
def project(tmp_path) -> tuple[Path, dict[str, str]]:
    """A folder with its own ``agents`` package (``agents/shopper.py``: an agent), and the
    environment to run in it: WebGym as installed, nothing of this checkout on PYTHONPATH."""
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text(THEIR_AGENTS)
    (tmp_path / "agents" / "shopper.py").write_text(THEIR_SHOPPER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return tmp_path, env


def test_a_project_with_its_own_agents_package_imports_both(project):
    folder, env = project
    code = textwrap.dedent("""
        import json, sys
        from agents import mine
        import agents
        from webgym_agents import make_agent
        import webgym_benchmarks.cli
        import webgym_leaderboards.cli
        import webgym_bench
        print(json.dumps({
            "mine": mine,
            "agents": agents.__file__,
            "rule": type(make_agent("rule")).__name__,
            "cli": webgym_benchmarks.cli.__file__,
            "leaderboard": webgym_leaderboards.cli.__file__,
            "generic": sorted(set(sys.modules) & {"benchmarks", "leaderboards"}),
        }))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["mine"] == "the project's own agents package"
    assert Path(seen["agents"]) == folder / "agents" / "__init__.py"
    assert seen["rule"] == "RuleAgent"
    assert seen["cli"] == webgym_benchmarks.cli.__file__  # the same install as this process's
    assert seen["leaderboard"] == webgym_leaderboards.cli.__file__
    assert seen["generic"] == []


def test_webgym_bench_runs_the_projects_agents_package(project):
    """``--agent agents.shopper:Shopper`` from the project's folder plays the project's agent:
    the name ``agents`` is the project's, not WebGym's. (``--agent`` takes an installed module
    before the current folder's, so where another distribution installs ``agents``, e.g.
    openai-agents, the project's package cannot be played under that name: skipped there.)"""
    folder, env = project
    owners = importlib.metadata.packages_distributions().get("agents", [])
    assert DISTRIBUTION not in owners
    if owners:
        pytest.skip(f"an installed distribution takes the name agents: {owners}")
    code = "import sys; from webgym_bench import app; sys.argv[0] = 'webgym-bench'; app()"
    args = ["run", "--agent", "agents.shopper:Shopper", "--split", "test", "--episodes", "2",
            "--mode", "text", "--out", "runs/shopper"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, *args], cwd=folder, env={**env, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((folder / "runs" / "shopper" / "manifest.json").read_text())
    assert manifest["agent"] == "agents.shopper:Shopper"
    assert manifest["agent_source"]["module"] == "agents.shopper"
    assert manifest["agent_source"]["distribution"] is None  # the project's file, not a package
    assert manifest["agent_description"] == "Search the instruction, open the first result, buy it."
    assert manifest["package_versions"]["webgym"] == importlib.metadata.version(DISTRIBUTION)


# ---- openai-agents installs a top-level ``agents`` too ----------------------------------------


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed("openai-agents"),
    reason="openai-agents is not installed here (README, Import names: how to check it)",
)
def test_openai_agents_and_webgym_in_one_environment():
    code = textwrap.dedent("""
        import json, agents, webgym_agents
        from agents import Agent
        from webgym_agents import make_agent
        print(json.dumps({"agents": agents.__file__, "webgym_agents": webgym_agents.__file__,
                          "rule": type(make_agent("rule")).__name__}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    owners = importlib.metadata.packages_distributions()
    assert "openai-agents" in owners["agents"] and DISTRIBUTION not in owners["agents"]
    assert Path(seen["agents"]).parent.name == "agents" and "site-packages" in seen["agents"]
    assert seen["rule"] == "RuleAgent"
