"""The harness's planning function (``webgym_benchmarks.runner.plan_run``) without the command: what
it decides, what it refuses, and that planning writes nothing; then a plan played through
``execute_plan`` (which finalises a complete run: it verifies as it is) and resumed."""

from __future__ import annotations

import pytest

from webgym.envs import MAX_EPISODE_STEPS
from webgym.runs import FORMAT_VERSION, RunDir, episode_seed
from webgym_benchmarks.runner import (
    PlanError,
    RunPlan,
    execute_plan,
    finalise_run,
    plan_run,
    select_tasks,
)


def test_a_new_run_is_planned_without_writing_anything(tmp_path, catalog):
    out = tmp_path / "run"
    plan = plan_run(agent="rule", split="test", episodes=3, seed=5, out=out, catalog=catalog)
    assert isinstance(plan, RunPlan)
    ids = catalog.split("test").task_ids[:3]
    assert plan.task_ids == ids and plan.todo == ids and not plan.resuming
    assert not out.exists()  # planning reads; execute_plan writes
    m = plan.manifest
    assert m["format_version"] == FORMAT_VERSION and m["run_id"] == "run"
    assert (m["agent"], m["split"], m["seed"], m["mode"]) == ("rule", "test", 5, "text")
    assert m["max_episode_steps"] == MAX_EPISODE_STEPS and m["task_ids"] == ids
    assert m["split_hash"] == catalog.split("test").hash and m["executor"] == "local"
    spec = plan.spec
    assert spec.run_path == str(out.resolve()) and spec.task_ids == tuple(ids)
    assert set(spec.task_meta) == set(ids) and "difficulty" in spec.task_meta[ids[0]]
    assert plan.executor == "local" and plan.workers == 1


def test_ray_and_workers_are_carried_into_the_plan(tmp_path, catalog):
    tasks = ["test-0002", "test-0000"]
    plan = plan_run(
        agent="random", task_ids=tasks, workers=3, ray="local", out=tmp_path / "r", catalog=catalog
    )
    assert plan.task_ids == tasks  # in the order given
    assert plan.use_ray and plan.executor == "ray" and plan.manifest["executor"] == "ray"
    assert plan.manifest["workers"] == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"agent": "nope"}, "unknown agent 'nope'; agents: "),
        ({"agent": "lm"}, "agent 'lm' needs a checkpoint"),
        ({"agent": "rule", "checkpoint": "/"}, "agent 'rule' takes no checkpoint"),
        ({"agent": "lm", "checkpoint": "/nonexistent/ckpt"}, "/nonexistent/ckpt does not exist"),
        ({"agent": "rule", "mode": "pixels"}, "--mode must be 'browser' or 'text'"),
        ({"agent": "rule", "workers": 0}, "--workers must be at least 1"),
        ({"agent": "rule", "max_retries": -1}, "--max-retries must be >= 0"),
        ({"agent": "rule", "max_steps": 0}, "--max-steps must be at least 1"),
        ({"agent": "rule", "split": "tset"}, "'tset'"),
        ({"agent": "rule", "episodes": 10**6}, "--episodes 1000000 is beyond split 'test'"),
    ],
)
def test_bad_options_are_refused_with_a_message(tmp_path, catalog, options, message):
    with pytest.raises(PlanError) as info:
        plan_run(out=tmp_path / "r", catalog=catalog, **options)
    assert message in str(info.value) and info.value.code == 2
    assert not (tmp_path / "r").exists()


def test_select_tasks():
    ids = ["t-0", "t-1", "t-2"]
    assert select_tasks(ids, "s", episodes=None, task_ids=None) == ids
    assert select_tasks(ids, "s", episodes=2, task_ids=None) == ["t-0", "t-1"]
    assert select_tasks(ids, "s", episodes=None, task_ids=["t-2", "t-0"]) == ["t-2", "t-0"]
    for episodes, task_ids, message in [
        (1, ["t-0"], "not both"),
        (0, None, "at least 1"),
        (4, None, "beyond split 's', which has 3 tasks"),
        (None, ["t-0", "x-9"], "tasks not in split 's': x-9 (ids look like 't-0')"),
        (None, ["t-1", "t-1"], "more than once"),
    ]:
        with pytest.raises(PlanError) as info:
            select_tasks(ids, "s", episodes=episodes, task_ids=task_ids)
        assert message in str(info.value)


def test_an_executed_plan_is_resumed_and_another_run_is_refused(tmp_path, catalog):
    out = tmp_path / "run"
    plan = plan_run(agent="rule", task_ids=["test-0001"], out=out, catalog=catalog)
    outcome = execute_plan(plan)
    assert outcome.status == "complete" and outcome.episodes_run == 1
    run = RunDir(out)
    summary = run.read_episode_summary("test-0001")
    assert summary["seed"] == episode_seed(0, "test-0001") and summary["attempts"] == 1
    assert len(run.read_invocations()) == 1
    results = finalise_run(out)
    assert results.metrics["n_episodes"] == 1 and results.write_error is None
    assert run.read_summary() == results.metrics

    again = plan_run(agent="rule", task_ids=["test-0001"], out=out, catalog=catalog)
    assert again.resuming and again.todo == [] and list(again.scan.complete) == ["test-0001"]
    assert again.manifest == run.read_manifest()  # the manifest in force is the first one
    with pytest.raises(PlanError, match="refusing to resume") as info:
        plan_run(agent="rule", task_ids=["test-0001"], seed=7, out=out, catalog=catalog)
    assert "seed: the run has 0, this command 7" in str(info.value)


def test_execute_plan_finalises_a_complete_run_and_it_verifies(tmp_path, catalog):
    from webgym_leaderboards.verify import verify_run

    out = tmp_path / "run"
    outcome = execute_plan(plan_run(agent="rule", episodes=2, out=out, catalog=catalog))
    run = RunDir(out)
    assert outcome.status == "complete" and outcome.results is not None
    assert run.summary_path.is_file() and (out / "results.csv").is_file()
    assert run.read_summary() == outcome.results.metrics
    assert outcome.results.metrics["complete"] and outcome.results.metrics["n_episodes"] == 2
    verified = verify_run(out, catalog.splits())
    assert len(verified.run.episodes) == 2 and verified.n_steps > 0


def test_a_run_that_fails_is_not_finalised(tmp_path, catalog):
    from webgym_agents.base import register_agent, unregister_agent

    def unbuildable():
        raise RuntimeError("no model here")

    register_agent("unbuildable-test", unbuildable, description="test only")
    try:
        out = tmp_path / "run"
        outcome = execute_plan(
            plan_run(agent="unbuildable-test", episodes=1, out=out, catalog=catalog)
        )
    finally:
        unregister_agent("unbuildable-test")
    assert outcome.status == "failed" and "no model here" in outcome.message
    assert outcome.results is None and not RunDir(out).summary_path.exists()
