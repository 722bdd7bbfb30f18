"""Agents from outside WebGym. The README's "Benchmark your own agent": its module and its
commands, read from the README itself, run in a fresh folder as the ``webgym-bench`` command
runs (the current folder not on ``sys.path``), verified and submitted to a private leaderboard;
the same agent on two worker processes. An agent found through the ``webgym.agents`` entry
point group (a real ``.dist-info`` folder on ``sys.path``). Bad ``--agent`` values refused in
one line before any directory exists."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from webgym_agents.base import unregister_agent
from webgym_bench import app
from webgym_leaderboards.store import LeaderboardStore

from .helpers import REPO, outcome

README = REPO / "README.md"
EPISODES = "3"


def readme_example() -> tuple[str, list[list[str]]]:
    """The python block and the commands of the README's "Benchmark your own agent"."""
    section = README.read_text().split("\n## Benchmark your own agent\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    commands = re.search(r"```bash\n(.*?)```", section, re.S)
    assert code and commands, "the README's section lost its python or bash block"
    lines = [shlex.split(line) for line in commands.group(1).splitlines() if line.strip()]
    return code.group(1), lines


def bench(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``webgym-bench ARGS`` in ``cwd``, on this checkout's code; ``-P``: like the installed
    command, the current folder is not on ``sys.path``."""
    code = "import sys; from webgym_bench import app; sys.argv[0] = 'webgym-bench'; app()"
    return subprocess.run(
        [sys.executable, "-P", "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README's example played in a fresh folder: (folder, env, run dir, outputs)."""
    code, commands = readme_example()
    assert [c[:2] for c in commands] == [
        ["webgym-bench", "run"],
        ["webgym-bench", "verify"],
        ["webgym-bench", "submit"],
    ]
    run_cmd = commands[0]
    agent = run_cmd[run_cmd.index("--agent") + 1]
    assert run_cmd[run_cmd.index("--mode") + 1] == "text"
    run_cmd[run_cmd.index("--episodes") + 1] = EPISODES  # a few tasks, not the README's 20
    module = agent.split(":")[0]
    folder = tmp_path_factory.mktemp("own-agent")
    (folder / f"{module}.py").write_text(code)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WEBGYM_LEADERBOARD": str(folder / "board" / "leaderboard.sqlite"),
        "COLUMNS": "200",
    }
    outputs = []
    for command in commands:
        done = bench(command[1:], folder, env)
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    out = folder / run_cmd[run_cmd.index("--out") + 1]
    return folder, env, out, agent, outputs


def test_the_readme_example_runs_verifies_and_submits(readme_run):
    folder, env, out, agent, (ran, verified, submitted) = readme_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["agent"] == agent and len(manifest["task_ids"]) == int(EPISODES)
    assert manifest["agent_description"] == "Search the instruction, open the first result, buy it."
    module = agent.split(":")[0]
    source = {"module": module, "distribution": None, "version": None, "entry_point": None}
    assert manifest["agent_source"] == source
    assert manifest["package_versions"]["webgym"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["n_episodes"] == int(EPISODES)
    assert summary["score"] > 0  # it buys something on these tasks
    assert f"verified: {agent} on test[:{EPISODES}]" in " ".join(verified.split())
    assert "rank 1 of 1" in submitted
    with LeaderboardStore(Path(env["WEBGYM_LEADERBOARD"])) as store:
        (entry,) = store.entries("test")
    assert entry.agent == agent and entry.n_episodes == int(EPISODES)
    assert abs(entry.score - summary["score"]) < 1e-9


def test_the_readme_agent_plays_the_same_on_two_worker_processes(readme_run):
    folder, env, out, agent, _ = readme_run
    again = folder / "runs" / "two-workers"
    args = ["run", "--agent", agent, "--episodes", EPISODES, "--workers", "2", "--out", again]
    done = bench([str(a) for a in args], folder, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(again) == outcome(out) and len(outcome(out)) == int(EPISODES)


# ---- entry points ------------------------------------------------------------------------------

PLUGIN = '''
class PluggedAgent:
    """Buys the first search result (a plugin's agent)."""

    def reset(self, goal, seed=None):
        self.goal = goal

    def act(self, observation):
        actions = observation["available_actions"]
        items = [a for a in actions if a.startswith("click('item_")]
        if "click('buy_now')" in actions:
            return "click('buy_now')"
        if items:
            return items[0]
        return f"search[{self.goal.split(', and price')[0]}]"
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed distribution ``myplugin`` 1.2 naming two agents in ``webgym.agents``: one
    that loads, one whose factory does not exist."""
    site = tmp_path / "site"
    info = site / "myplugin-1.2.dist-info"
    info.mkdir(parents=True)
    (site / "myplugin_agents.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(
        "[webgym.agents]\n"
        "plugged = myplugin_agents:PluggedAgent\n"
        "broken-plugin = myplugin_agents:Missing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield
    unregister_agent("plugged")
    unregister_agent("broken-plugin")
    sys.modules.pop("myplugin_agents", None)


def wide(*args) -> object:
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, [str(a) for a in args])


def test_an_entry_point_agent_is_listed_and_runs(tmp_path, plugin):
    listed = wide("list-agents")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if " plugged " in line)
    assert "Buys the first search result (a plugin's agent). (myplugin 1.2)" in row
    broken = next(line for line in listed.output.splitlines() if "broken-plugin" in line)
    assert "cannot be loaded" in broken

    out = tmp_path / "run"
    result = wide("run", "--agent", "plugged", "--episodes", "2", "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["agent"] == "plugged"
    assert manifest["agent_source"] == {
        "module": "myplugin_agents",
        "distribution": "myplugin",
        "version": "1.2",
        "entry_point": "plugged = myplugin_agents:PluggedAgent",
    }
    assert json.loads((out / "summary.json").read_text())["n_episodes"] == 2


def test_an_entry_point_that_does_not_load_is_refused_in_one_line(tmp_path, plugin):
    result = wide("run", "--agent", "broken-plugin", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: cannot load entry point broken-plugin = myplugin_agents:Missing of myplugin: "
        "AttributeError: module 'myplugin_agents' has no attribute 'Missing'"
    ]
    assert not (tmp_path / "r").exists()


# ---- bad --agent values --------------------------------------------------------------------------

FACTORIES = """
def no_agent():
    return object()


def explode():
    raise RuntimeError("no GPU here\\nand a second line")


class NoAct:
    def reset(self, goal, seed=None):
        pass
"""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nosuch.module:x",
            "cannot import module 'nosuch.module' of agent 'nosuch.module:x': "
            "ModuleNotFoundError: No module named 'nosuch'",
        ),
        ("json:nothing", "module 'json' has no attribute 'nothing' (agent 'json:nothing')"),
        ("json:JSONDecoder", "agent 'json:JSONDecoder' is a class without reset() and act()"),
        ("factories:NoAct", "agent 'factories:NoAct' is a class without act()"),
        (
            "factories:no_agent",
            "agent 'factories:no_agent' returned an object of type 'object' without reset() "
            "and act()",
        ),
        ("factories:explode", "cannot build agent 'factories:explode': RuntimeError: no GPU here"),
        ("json:", "agent 'json:' is not MODULE:FACTORY"),
        ("factories:__doc__", "agent 'factories:__doc__' is a NoneType, not a class or a function"),
    ],
)
def test_a_bad_agent_is_refused_in_one_line_before_any_directory(
    tmp_path, monkeypatch, spec, message
):
    monkeypatch.setattr(sys, "path", list(sys.path))  # run appends the current folder
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "factories.py").write_text(FACTORIES)
    monkeypatch.delitem(sys.modules, "factories", raising=False)
    result = wide("run", "--agent", spec, "--episodes", "1")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["factories.py"]  # no runs/ folder, nothing else
    sys.modules.pop("factories", None)
