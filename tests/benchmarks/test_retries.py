"""An episode whose attempt fails is retried; after the last retry it counts as an error with
reward 0 (AgentLab's rule). The failing agents are real agents registered here, not mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.helpers import cli, summaries
from webgym_agents.base import Agent, register_agent, unregister_agent


class FlakyAgent(Agent):
    """Raises on the first attempt of each task, then plays like `rule`'s first moves: it
    searches the goal and buys the first result. Attempts are counted in a file."""

    name = "flaky-test"
    description = "fails every first attempt (test agent)"
    deterministic = True
    ledger: Path | None = None

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        self.goal = goal
        seen = json.loads(self.ledger.read_text()) if self.ledger.exists() else {}
        seen[goal] = seen.get(goal, 0) + 1
        self.ledger.write_text(json.dumps(seen))
        self.fail = seen[goal] == 1

    def act(self, observation: dict) -> str:
        if self.fail:
            raise RuntimeError("flaky agent: first attempt fails")
        if "search_box" in observation["axtree"]:
            return f"search[{self.goal.split(', and price')[0]}]"
        items = [a for a in observation["available_actions"] if "item_" in a]
        return items[0] if items else "click('buy_now')"


class BrokenAgent(FlakyAgent):
    name = "broken-test"
    description = "always fails (test agent)"

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        self.goal, self.fail = goal, True


@pytest.fixture()
def test_agents(tmp_path):
    FlakyAgent.ledger = tmp_path / "attempts.json"
    register_agent("flaky-test", FlakyAgent, description=FlakyAgent.description)
    register_agent("broken-test", BrokenAgent, description=BrokenAgent.description)
    yield
    unregister_agent("flaky-test")
    unregister_agent("broken-test")


def test_a_failed_attempt_is_retried(tmp_path, test_agents):
    out = tmp_path / "run"
    r = cli(
        "run",
        "--agent",
        "flaky-test",
        "--episodes",
        "2",
        "--mode",
        "text",
        "--max-retries",
        "2",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    for summary in summaries(out).values():
        assert summary["attempts"] == 2 and summary["error"] is None
        assert summary["n_steps"] >= 2
    log = (out / "run.log").read_text()
    assert log.count("episode error") == 2


def test_an_episode_that_keeps_failing_counts_as_an_error(tmp_path, test_agents):
    out = tmp_path / "run"
    r = cli(
        "run",
        "--agent",
        "broken-test",
        "--episodes",
        "2",
        "--mode",
        "text",
        "--max-retries",
        "1",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    runs = summaries(out)
    assert len(runs) == 2
    for summary in runs.values():
        assert summary["reward"] == 0 and summary["attempts"] == 2
        assert "first attempt fails" in summary["error"]
    metrics = json.loads((out / "summary.json").read_text())
    assert metrics["n_errors"] == 2 and metrics["score"] == 0
