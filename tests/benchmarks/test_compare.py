"""``webgym-bench compare`` in an 80-column terminal: the runs named in full, the tables by
label, the bar chart of Score and success rate to scale. Real runs of the rule and random
agents in text mode."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from webgym_bench import app
from webgym_benchmarks.cli import text_bar

RULE = "rule-test-20261201T101010Z-options-chosen"
RANDOM = "random-test-20261201T111111Z-seed-0"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    for name, agent in ((RULE, "rule"), (RANDOM, "random")):
        args = ["run", "--agent", agent, "--mode", "text", "--episodes", "4"]
        result = CliRunner().invoke(app, [*args, "--out", str(folder / name)])
        assert result.exit_code == 0, result.output
    return folder


def test_compare_names_every_run_in_full_and_fits_80_columns(runs, monkeypatch):
    monkeypatch.chdir(runs)
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["compare", RULE, RANDOM, RULE])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert [line.split() for line in lines[:3]] == [["base", RULE], ["#1", RANDOM], ["#2", RULE]]
    rows = {x.split()[0]: x for x in lines if "±" in x and x.split()[0] in ("#1", "#2")}
    assert rows["#1"].split()[1] == "4"  # tasks in common
    assert rows["#2"].count("+0.0 ± 0.0") == 2  # the baseline against itself

    metrics = {
        name: json.loads((runs / name / "summary.json").read_text()) for name in (RULE, RANDOM)
    }
    chart = lines[lines.index(next(x for x in lines if x.startswith("Score and success"))) :]
    for label, name in (("base", RULE), ("#1", RANDOM)):
        score, sr = metrics[name]["score"], metrics[name]["success_rate"]
        line = next(x for x in chart if x.startswith(label + " "))
        assert f"{text_bar(score / 100, 25)} {score:.1f}" in line
        assert f"{text_bar(sr, 25)} {100 * sr:.1f}" in line
    loss = [x for x in lines if x.startswith("│ base") or x.startswith("│ #1")]
    assert len(loss) == 2  # the reward-loss table, by label too


def test_text_bars_are_drawn_in_eighths():
    assert text_bar(1.0, 10) == "█" * 10
    assert text_bar(0.5, 10) == "█" * 5
    assert text_bar(0.0625, 10) == "▋"  # 5 eighths of a character
    assert text_bar(0.0, 10) == "" and text_bar(1.5, 4) == "████" and text_bar(-1, 4) == ""
