"""Verification by replay (`webgym-bench verify`, run by `submit`): real runs of the rule agent,
tampered with as a forger would (every file made consistent again, the run's summary.json
recomputed), must be refused naming the episode (and the step) the replay does not reproduce.

The recorded run (conftest ``recorded_rule_run``): rule on test[:6]; tasks 0-3 fail (rewards
0.6, 0.5, 0.8, 0.5), tasks 4-5 succeed.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from tests.fakerun import (
    make_run,
    read_json,
    record_run,
    refresh_run_summary,
    write_json,
)
from webgym.runs import episode_seed
from webgym_leaderboards import SubmissionRefused, submit_run, validate_run
from webgym_leaderboards.verify import verify_run

FAILED, SUCCEEDED = "test-0001", "test-0004"


def refused(run, known_splits) -> str:
    with pytest.raises(SubmissionRefused) as info:
        verify_run(run, known_splits)
    return info.value.reason


def steps_of(run, task):
    path = run / "episodes" / task / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_steps(run, task, steps) -> None:
    """Rewrite an episode's steps as a forger does, who also drops its page texts
    (``observations.jsonl``: optional, and it would no longer match the forged steps)."""
    path = run / "episodes" / task / "steps.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in steps))
    (run / "episodes" / task / "observations.jsonl").unlink(missing_ok=True)


def summary_path(run, task):
    return run / "episodes" / task / "summary.json"


def test_honest_run_verifies_and_submits(rule_run, store, known_splits):
    verified = verify_run(rule_run, known_splits)
    total = sum(read_json(summary_path(rule_run, f"test-000{i}"))["n_steps"] for i in range(6))
    assert verified.n_steps == total and verified.run.task_set == "test[:6]"
    entry = submit_run(rule_run, store, known_splits)
    assert entry.rank == 1 and entry.task_set == "test[:6]" and entry.n_tasks == 6


def test_verify_command(rule_run):
    from webgym_bench import app

    result = CliRunner().invoke(app, ["verify", str(rule_run)])
    assert result.exit_code == 0, result.output
    assert "verified: rule on test[:6] (text mode), 6 episodes" in " ".join(result.output.split())
    path = summary_path(rule_run, FAILED)
    write_json(path, {**read_json(path), "purchased_asin": "B000000000"})
    result = CliRunner().invoke(app, ["verify", str(rule_run)])
    assert result.exit_code == 1 and "not verified" in result.output
    assert FAILED in result.output


def test_reward_edited_in_both_files_is_refused(rule_run, known_splits):
    path = summary_path(rule_run, FAILED)
    s = read_json(path)
    write_json(path, {**s, "reward": 1.0, "success": True})
    steps = steps_of(rule_run, FAILED)
    steps[-1]["reward"] = 1.0
    write_steps(rule_run, FAILED, steps)
    refresh_run_summary(rule_run)
    validate_run(rule_run, known_splits)  # the files agree with each other now
    reason = refused(rule_run, known_splits)
    assert f"episode {FAILED}, step {len(steps)}" in reason
    assert "reward: recorded 1.0, replay 0.5" in reason


def test_successful_episode_copied_over_a_failed_one_is_refused(rule_run, known_splits):
    src, dst = rule_run / "episodes" / SUCCEEDED, rule_run / "episodes" / FAILED
    shutil.rmtree(dst)
    shutil.copytree(src, dst)
    s = read_json(summary_path(rule_run, FAILED))
    write_json(summary_path(rule_run, FAILED), {**s, "task_id": FAILED})
    refresh_run_summary(rule_run)
    reason = refused(rule_run, known_splits)  # its seed is the other task's
    assert f"episode {FAILED}: seed" in reason
    # ... and with the seed made right, the replay of the other task's actions differs
    write_json(summary_path(rule_run, FAILED), {**s, "task_id": FAILED,
                                                "seed": episode_seed(0, FAILED)})  # fmt: skip
    reason = refused(rule_run, known_splits)
    assert f"replay refused episode {FAILED}, step 1" in reason and "obs_digest" in reason


@pytest.mark.parametrize(
    "field, value",
    [("purchased_asin", "B0NJHHANDV"), ("reward_info", {"r_type": 1.0, "r_att": 1.0})],
)
def test_rewritten_purchase_is_refused(rule_run, known_splits, field, value):
    path = summary_path(rule_run, FAILED)
    write_json(path, {**read_json(path), field: value})
    reason = refused(rule_run, known_splits)
    assert f"episode {FAILED}: the outcome does not replay" in reason and field in reason


def test_edited_action_is_refused(rule_run, known_splits):
    steps = steps_of(rule_run, SUCCEEDED)
    steps[1]["action"] = "click[< Prev]"  # step 2: another action, the rest left as it was
    write_steps(rule_run, SUCCEEDED, steps)
    reason = refused(rule_run, known_splits)
    assert f"replay refused episode {SUCCEEDED}, step 2" in reason


def test_changed_seed_is_refused(rule_run, known_splits):
    path = summary_path(rule_run, SUCCEEDED)
    s = read_json(path)
    write_json(path, {**s, "seed": s["seed"] + 1})
    reason = refused(rule_run, known_splits)
    assert f"episode {SUCCEEDED}: seed {s['seed'] + 1}" in reason
    assert f"gives {s['seed']}" in reason


def test_text_run_relabelled_as_browser_is_refused(rule_run, known_splits):
    path = rule_run / "manifest.json"
    write_json(path, {**read_json(path), "mode": "browser"})
    reason = refused(rule_run, known_splits)
    assert "replay refused episode test-0000, step 1" in reason
    assert "text-mode run labelled as a browser run" in reason


def test_relabelling_with_invented_pixels_is_what_a_replay_cannot_see(rule_run, known_splits):
    """The documented limit: pixels are not replayed. A forger who relabels a text run and
    invents pixel distances that agree with the recorded labels is not caught."""
    path = rule_run / "manifest.json"
    write_json(path, {**read_json(path), "mode": "browser"})
    for i in range(6):
        task = f"test-000{i}"
        steps = steps_of(rule_run, task)
        for st in steps:
            st["pixel_distance"] = 500.0 if st["effect_label"] == 1 else 0.0
        write_steps(rule_run, task, steps)
    assert verify_run(rule_run, known_splits).n_steps > 0


def test_browser_run_relabelled_as_text_is_refused(rule_run, known_splits):
    steps = steps_of(rule_run, SUCCEEDED)
    steps[0]["pixel_distance"] = 512.0
    write_steps(rule_run, SUCCEEDED, steps)
    reason = refused(rule_run, known_splits)
    assert f"episode {SUCCEEDED}, step 1" in reason and "pixel_distance" in reason


def make_error_episode(run, task, keep: int) -> list[dict]:
    """Turn ``task`` into an error episode whose last attempt stopped after ``keep`` steps."""
    steps = steps_of(run, task)[:keep]
    write_steps(run, task, steps)
    path = summary_path(run, task)
    write_json(
        path,
        {
            **read_json(path),
            "n_steps": keep,
            "reward": 0.0,
            "success": False,
            "terminated": False,
            "truncated": True,
            "error": "EpisodeFailed: the environment failed at step 3: TargetClosedError",
            "attempts": 3,
            "n_invalid_actions": sum(1 for s in steps if s["last_action_error"]),
            "n_effect": sum(1 for s in steps if s["effect_label"] == 1),
            "purchased_asin": None,
            "reward_info": {},
        },
    )
    refresh_run_summary(run)
    return steps


def test_error_episode_replays_up_to_where_it_stopped(rule_run, known_splits):
    steps = make_error_episode(rule_run, SUCCEEDED, keep=2)
    assert verify_run(rule_run, known_splits).run.metrics["n_errors"] == 1
    # the step the machine failed on is recorded truncated, with the error: it may differ
    failed = {**steps_of(rule_run, SUCCEEDED)[-1], "step": 3, "truncated": True, "reward": 0.0}
    failed.update(last_action_error="Target page, context or browser has been closed")
    failed.update(obs_digest="0" * 64, effect_label=0, text_distance=0.0)
    write_steps(rule_run, SUCCEEDED, [*steps, failed])
    path = summary_path(rule_run, SUCCEEDED)
    write_json(path, {**read_json(path), "n_steps": 3})
    refresh_run_summary(rule_run)
    verify_run(rule_run, known_splits)
    # ... but a step before it must replay
    steps[1]["obs_digest"] = "1" * 64
    write_steps(rule_run, SUCCEEDED, [*steps, failed])
    assert f"episode {SUCCEEDED}, step 2" in refused(rule_run, known_splits)


def test_error_episode_with_a_made_up_step_count_is_refused(rule_run, known_splits):
    make_error_episode(rule_run, SUCCEEDED, keep=2)
    path = summary_path(rule_run, SUCCEEDED)
    write_json(path, {**read_json(path), "n_steps": 9})
    refresh_run_summary(rule_run)
    reason = refused(rule_run, known_splits)
    assert f"episode {SUCCEEDED}: summary.json says n_steps=9" in reason
    # made-up step lines to match: the replay does not reproduce them
    steps = steps_of(rule_run, SUCCEEDED)
    invented = [{**steps[-1], "step": k, "action": "noop()"} for k in range(3, 10)]
    write_steps(rule_run, SUCCEEDED, [*steps, *invented])
    reason = refused(rule_run, known_splits)
    assert f"episode {SUCCEEDED}, step" in reason


def test_steps_cut_short_are_refused(rule_run, known_splits):
    steps = steps_of(rule_run, FAILED)[:-1]  # drop the Buy Now: a "reward 0" episode
    write_steps(rule_run, FAILED, steps)
    path = summary_path(rule_run, FAILED)
    s = read_json(path)
    write_json(path, {**s, "n_steps": len(steps), "reward": 0.0, "n_effect": len(steps)})
    refresh_run_summary(rule_run)
    reason = refused(rule_run, known_splits)
    assert f"episode {FAILED}, step {len(steps)}" in reason and "goes on" in reason


# ---------------------------------------------------------------------------------------------
# The page texts (observations.jsonl): what the viewer shows must be what the agent saw


def edit_page(run, task, step: int, **change) -> None:
    path = run / "episodes" / task / "observations.jsonl"
    pages = [json.loads(line) for line in path.read_text().splitlines()]
    pages[step]["text"] += " [SEP] <b>Free gift</b>"
    pages[step].update(change)
    path.write_text("".join(json.dumps(p) + "\n" for p in pages))


def test_an_edited_page_text_is_refused(rule_run, known_splits):
    edit_page(rule_run, SUCCEEDED, 2)
    reason = refused(rule_run, known_splits)
    assert reason.startswith(f"episode {SUCCEEDED}: observations.jsonl: the page text after step 2")
    # marked as cut, its digest is not compared: the replay shows it is not the page
    edit_page(rule_run, SUCCEEDED, 2, cut=True)
    reason = refused(rule_run, known_splits)
    assert reason == (
        f"replay refused episode {SUCCEEDED}, step 2: the recorded page text after this step is "
        "not the replayed page"
    )


def test_an_edited_reset_page_is_refused_by_the_replay(rule_run, known_splits):
    edit_page(rule_run, FAILED, 0)  # no step's digest covers the reset's page
    validate_run(rule_run, known_splits)
    reason = refused(rule_run, known_splits)
    assert reason == (
        f"replay refused episode {FAILED}, step 0: the recorded page text after the reset is not "
        "the replayed page"
    )


def test_page_texts_beyond_the_steps_are_refused(rule_run, known_splits):
    path = rule_run / "episodes" / FAILED / "observations.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join([*lines, lines[-1].replace(f'"step": {len(lines) - 1}', f'"step": {len(lines)}')])
        + "\n"
    )
    reason = refused(rule_run, known_splits)
    assert (
        f"observations.jsonl has {len(lines) + 1} observations for {len(lines) - 1} steps" in reason
    )


# ---------------------------------------------------------------------------------------------
# Task sets


def test_dropped_failed_episode_is_refused(rule_run, known_splits):
    shutil.rmtree(rule_run / "episodes" / FAILED)
    path = rule_run / "manifest.json"
    m = read_json(path)
    write_json(path, {**m, "task_ids": [t for t in m["task_ids"] if t != FAILED]})
    refresh_run_summary(rule_run)
    reason = refused(rule_run, known_splits)
    assert "5 chosen tasks" in reason and FAILED in reason and "--episodes N" in reason


def test_cherry_picked_subset_is_refused(tmp_path, known_splits, lb_catalog):
    run = record_run(tmp_path / "picked", agent="rule", task_ids=["test-0004", "test-0005"])
    reason = refused(run, known_splits)
    assert "2 chosen tasks" in reason and "test-0000" in reason


def test_prefix_and_full_runs_are_ranked_separately(tmp_path, store, test_split, known_splits):
    """Entries over the whole split and over a prefix never share a ranking (file-checked
    fake runs: a 500-episode replay is not a unit test; the honest submit is tested above)."""
    full = make_run(tmp_path, test_split, rewards=[0.5] * test_split.size, agent="full")
    prefix = make_run(tmp_path, test_split, rewards=[1.0, 1.0, 0.5, 1.0], agent="prefix")
    prefix_low = make_run(tmp_path, test_split, rewards=[0.0, 0.5, 0.0, 0.0], agent="low")
    for run in (full, prefix, prefix_low):
        store.add(validate_run(run, known_splits).entry())
    board = store.ranked("test", test_split.hash)
    assert [(e.agent, e.task_set, e.rank) for e in board] == [
        ("full", "test (500)", 1),
        ("prefix", "test[:4]", 1),
        ("low", "test[:4]", 2),
    ]
    entry = next(e for e in board if e.agent == "full")
    assert store.rank_of(entry) == 1

    from webgym_leaderboards.cli import app

    out = CliRunner(env={"COLUMNS": "100"}).invoke(app, ["leaderboard", "--db", str(store.path)])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "WebGym leaderboard: test (500)" in text and "WebGym leaderboard: test[:4]" in text
    assert text.index("test (500)") < text.index("test[:4]")


# ---------------------------------------------------------------------------------------------
# Progress: a 500-episode replay takes a while


def test_verify_and_submit_show_their_progress(rule_run, db_path):
    from webgym_bench import app

    for args in (["verify", str(rule_run)], ["submit", str(rule_run), "--db", str(db_path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        lines = [x.split(" (")[0] for x in result.stderr.splitlines()]
        assert lines == [f"replayed {i}/6 episodes" for i in range(1, 7)]  # not a terminal
        assert "replayed 1/6" not in result.stdout


def test_progress_of_a_long_replay_on_a_terminal_and_off_it():
    import io
    import re

    from webgym.terminal import SafeConsole
    from webgym_leaderboards.cli import replay_progress

    log = io.StringIO()
    with replay_progress(SafeConsole(file=log, force_terminal=False)) as on_episode:
        for i in range(1, 501):
            on_episode(i, 500)
    lines = [x.split(" (")[0] for x in log.getvalue().splitlines()]
    assert lines == [f"replayed {50 * k}/500 episodes" for k in range(1, 11)]

    screen = io.StringIO()
    with replay_progress(SafeConsole(file=screen, force_terminal=True, width=100)) as on_episode:
        for i in range(1, 501):
            on_episode(i, 500)
    shown = screen.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "\x1b[" in shown and "replaying" in plain and "500/500 episodes" in plain
    assert "replayed 50/500" not in plain


def test_verify_bench_counts_the_replay_by_part(recorded_rule_run, lb_catalog, monkeypatch):
    """``webgym_leaderboards.verify_bench`` verifies a run once and sums the CPU of each
    part; it leaves the functions it wrapped as they were."""
    from webgym.shop.catalog import Catalog
    from webgym.transport import ASGITransport
    from webgym_leaderboards.verify_bench import PARTS, measure, render

    monkeypatch.setenv("WEBGYM_CATALOG", str(lb_catalog.path))
    before = (ASGITransport.request, Catalog.search)
    result = measure(recorded_rule_run)
    assert (ASGITransport.request, Catalog.search) == before
    parts = result["parts"]
    assert result["episodes"] == 6 and result["steps"] > 6
    assert parts["env step"]["calls"] == result["steps"] and parts["env reset"]["calls"] == 6
    assert parts["catalog search (FTS5 BM25)"]["calls"] >= 6
    assert 0 < parts["env step"]["cpu_s"] <= result["verify_cpu_s"]
    table = render(result)
    assert all(label in table for _spec, _name, label, _depth in PARTS)
