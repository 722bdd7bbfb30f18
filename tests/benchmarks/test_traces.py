"""What a run records of each step beyond what happened: the page text the agent saw
(``observations.jsonl``) and why it acted (a step's ``decision``, from the agent's optional
``explain()``). Real runs of the rule agent, of agents from outside WebGym given here (one that
explains nothing, one whose ``explain()`` raises) and of the scorer on a tiny random encoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from webgym.runs import (
    MAX_CANDIDATES,
    MAX_REASON_CHARS,
    RunDir,
    decision_record,
    observations_problem,
)

from .helpers import cli

TASKS = [f"test-{i:04d}" for i in range(5)]  # the split's first 5: a run verify accepts


def run_args(out: Path, agent: str, *extra: str, episodes: int = len(TASKS)) -> list:
    return ["run", "--agent", agent, "--mode", "text", "--episodes", str(episodes),
            "--out", out, *extra]  # fmt: skip


def records(run: Path, task: str) -> tuple[list[dict], list[dict]]:
    """(steps, observations) of an episode, as the one reader reads them."""
    rd = RunDir(run)
    steps, problem = rd.read_steps(task)
    assert problem is None, problem
    observations, problem = rd.read_observations(task)
    assert problem is None, problem
    return steps, observations


class SilentAgent:
    """Buy whatever the first result is; says nothing of why."""

    def reset(self, goal, seed=None):
        self.goal = goal

    def act(self, observation):
        actions = observation["available_actions"]
        if "click('buy_now')" in actions:
            return "click('buy_now')"
        items = [a for a in actions if a.startswith("click('item_")]
        if items:
            return items[0]
        return f"search[{self.goal.split(', and price')[0]}]"


class BrokenExplainAgent(SilentAgent):
    """The same moves; its ``explain()`` raises."""

    def explain(self):
        raise RuntimeError("no idea")


@pytest.fixture(scope="module")
def rule_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traces") / "rule"
    result = cli(*run_args(out, "rule"))
    assert result.exit_code == 0, result.output
    return out


def test_every_page_the_agent_saw_is_recorded_and_is_the_step_s_page(rule_run):
    for task in TASKS:
        steps, observations = records(rule_run, task)
        assert [o["step"] for o in observations] == list(range(len(steps) + 1))
        assert observations[0]["text"].startswith("Instruction: [SEP] ")  # the reset's page
        for step, page in zip(steps, observations[1:], strict=True):
            assert hashlib.sha256(page["text"].encode()).hexdigest() == step["obs_digest"]
        assert observations_problem(steps, observations) is None
    # what the agent searched for is on the page after its search
    steps, observations = records(rule_run, "test-0000")
    query = steps[0]["action"][len("search[") : -1]
    assert f"Results for {query}" in observations[1]["text"]


def test_the_rule_agent_says_why_it_acted(rule_run):
    steps, _ = records(rule_run, "test-0004")
    reasons = [s["decision"]["reason"] for s in steps]
    assert reasons[0] == "search page: search the instruction"
    assert reasons[1] == "results page: the first of 10 results"
    assert steps[-1]["action"] == "click('buy_now')"
    assert reasons[-1] == "item page: every option the instruction names is set"
    options = [r for r, s in zip(reasons, steps, strict=True) if s["action"] != "click('buy_now')"]
    assert all("the instruction names" in r for r in options[2:])
    assert set(steps[0]["decision"]) == {"reason"}


def test_a_run_with_traces_verifies_and_resumes_as_it_is(rule_run):
    result = cli("verify", rule_run)
    assert result.exit_code == 0, result.output
    result = cli(*run_args(rule_run, "rule"))
    assert result.exit_code == 0, result.output
    assert f"{len(TASKS)} already complete, 0 to run" in result.output


def test_a_resume_reruns_an_episode_whose_page_texts_do_not_hold(rule_run, tmp_path):
    run = tmp_path / "copy"
    import shutil

    shutil.copytree(rule_run, run)
    edited, torn = run / "episodes" / TASKS[0], run / "episodes" / TASKS[1]
    lines = (edited / "observations.jsonl").read_text().splitlines()
    page = json.loads(lines[2])
    page["text"] += " [SEP] Buy Now"
    lines[2] = json.dumps(page)
    (edited / "observations.jsonl").write_text("\n".join(lines) + "\n")
    with open(torn / "observations.jsonl", "a") as f:
        f.write('{"step": 99, "te')  # a line torn mid-write
    finished = {
        t: json.loads((run / "episodes" / t / "summary.json").read_text())["finished"]
        for t in TASKS[2:]
    }

    result = cli(*run_args(run, "rule"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"episode {TASKS[0]} does not hold against its summary" in text
    assert "the page text after step 2 is not the page of its step record" in text
    assert f"episode {TASKS[1]} does not hold against its summary" in text
    assert f"{len(TASKS) - 2} already complete, 2 to run" in text
    for task in TASKS[:2]:
        steps, observations = records(run, task)
        assert observations_problem(steps, observations) is None
    for task, when in finished.items():  # the others were kept
        assert RunDir(run).read_episode_summary(task)["finished"] == when


def test_an_agent_that_explains_nothing_records_no_decision(tmp_path):
    out = tmp_path / "silent"
    result = cli(*run_args(out, f"{__name__}:SilentAgent", episodes=2))
    assert result.exit_code == 0, result.output
    for task in TASKS[:2]:
        steps, observations = records(out, task)
        assert steps and all("decision" not in s for s in steps)
        assert len(observations) == len(steps) + 1  # the pages are the harness's: recorded
    assert cli("verify", out).exit_code == 0


def test_an_explain_that_raises_is_recorded_not_fatal(tmp_path):
    out = tmp_path / "broken"
    result = cli(*run_args(out, f"{__name__}:BrokenExplainAgent", episodes=1))
    assert result.exit_code == 0, result.output
    steps, _ = records(out, TASKS[0])
    summary = RunDir(out).read_episode_summary(TASKS[0])
    assert summary["error"] is None and summary["attempts"] == 1
    assert {s["decision"]["reason"] for s in steps} == {"explain() raised RuntimeError: no idea"}


def test_decision_records_are_bounded_and_shaped():
    assert decision_record(None) is None
    assert decision_record("  two\nlines ") == {"reason": "two lines"}
    assert decision_record({"nothing": "known"}) is None
    assert decision_record(42) == {"reason": "explain() gave a int"}
    long = decision_record({"reason": "x" * 5000, "text": "y" * 10_000})
    assert len(long["reason"]) == MAX_REASON_CHARS and long["reason"].endswith("\u2026")
    assert len(long["text"]) == 4000
    many = decision_record(
        {
            "candidates": [(f"click('a{i}')", 1 / 3) for i in range(30)]
            + [{"action": "noop()", "prob": float("nan")}],
            "value": float("inf"),
        }
    )
    assert len(many["candidates"]) == MAX_CANDIDATES
    assert many["candidates"][0] == {"action": "click('a0')", "prob": 0.3333}
    assert "value" not in many
    odd = decision_record({"candidates": [{"action": "noop()", "prob": float("nan")}, "junk"]})
    assert odd == {"candidates": [{"action": "noop()", "prob": None}]}


def test_the_scorer_records_its_likeliest_candidates(tmp_path):
    pytest.importorskip("torch")
    from webgym_agents.policies.scorer_policy import ScorerPolicy

    checkpoint = tmp_path / "scorer"
    ScorerPolicy.from_backbone_name("tiny-encoder", seed=0).save(checkpoint)
    out = tmp_path / "scorer-run"
    args = run_args(out, "scorer", "--checkpoint", checkpoint, "--max-steps", "4", episodes=2)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    n = 0
    for task in TASKS[:2]:
        steps, _ = records(out, task)
        for step in steps:
            cands = step["decision"]["candidates"]
            probs = [c["prob"] for c in cands]
            assert 1 <= len(cands) <= 6 and all(0 < p <= 1 for p in probs)
            assert sum(probs) <= 1 + 1e-3
            # temperature 0: the action taken is the likeliest, listed first
            assert cands[0]["action"] == step["action"]
            assert probs[:5] == sorted(probs[:5], reverse=True)
            n += 1
    assert n >= 2
    assert cli("verify", out).exit_code == 0
