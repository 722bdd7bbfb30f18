"""Bad input gives a clear message and exit code 2, never a traceback; list-agents."""

from __future__ import annotations

import json

import pytest

from webgym_benchmarks.cli import bare_ray_to_local

from .helpers import cli


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def _one_line(result) -> str:
    """The refusal, which must be exactly one line (exit code 2, no traceback)."""
    text = _error(result)
    assert len(result.output.strip().splitlines()) == 1, result.output
    return text


def test_unknown_agent_lists_valid_names(tmp_path):
    text = _error(cli("run", "--agent", "nope", "--out", tmp_path / "r"))
    assert "unknown agent 'nope'" in text and "random" in text and "rule" in text
    assert not (tmp_path / "r").exists()


def test_unknown_split_lists_valid_names(tmp_path):
    text = _one_line(cli("run", "--agent", "rule", "--split", "tset", "--out", tmp_path / "r"))
    assert "'tset'" in text and "valid: test, train, validation, ood" in text
    assert not (tmp_path / "r").exists()


def test_episodes_beyond_split_and_unknown_task_ids(tmp_path):
    text = _error(cli("run", "--agent", "rule", "--episodes", "100000", "--out", tmp_path / "r"))
    assert "--episodes 100000 is beyond split 'test'" in text
    text = _error(
        cli(
            "run",
            "--agent",
            "rule",
            "--task-ids",
            "test-0001,bogus-1",
            "--task-ids",
            "train-0001",
            "--out",
            tmp_path / "r",
        )
    )
    assert "bogus-1" in text and "train-0001" in text and "test-0001," not in text
    text = _error(
        cli("run", "--agent", "random", "--checkpoint", tmp_path, "--out", tmp_path / "r")
    )
    assert "takes no checkpoint" in text
    text = _error(cli("run", "--agent", "rule", "--mode", "pixels", "--out", tmp_path / "r"))
    assert "--mode" in text


def test_resume_with_another_manifest_is_refused(tmp_path):
    out = tmp_path / "r"
    ok = cli("run", "--agent", "rule", "--task-ids", "test-0003", "--out", out)
    assert ok.exit_code == 0, ok.output
    text = _error(
        cli("run", "--agent", "rule", "--task-ids", "test-0003", "--seed", "7", "--out", out)
    )
    assert "refusing to resume" in text and "seed: the run has 0, this command 7" in text
    text = _error(cli("run", "--agent", "random", "--task-ids", "test-0003", "--out", out))
    assert "agent: the run has 'rule'" in text
    # the same command resumes (nothing to do) and leaves the manifest as it was
    before = json.loads((out / "manifest.json").read_text())
    again = cli("run", "--agent", "rule", "--task-ids", "test-0003", "--out", out)
    assert again.exit_code == 0 and "1 already complete, 0 to run" in again.output
    assert json.loads((out / "manifest.json").read_text()) == before
    manifest = before
    for key in (
        "run_id",
        "created",
        "agent_description",
        "split_hash",
        "split_size",
        "package_versions",
        "git_hash",
        "git_dirty",
        "machine",
        "command",
        "catalog",
    ):
        assert key in manifest, key
    assert manifest["task_ids"] == ["test-0003"] and manifest["mode"] == "text"


def test_show_refuses_a_non_run_and_list_agents():
    text = _error(cli("show", "/nonexistent/run"))
    assert "not a run directory" in text
    result = cli("list-agents")
    assert result.exit_code == 0
    assert "random" in result.output and "rule" in result.output and "needs" in result.output


def test_bare_ray_means_local():
    assert bare_ray_to_local(["run", "--ray"]) == ["run", "--ray", "local"]
    assert bare_ray_to_local(["run", "--ray", "--workers", "2"])[:3] == ["run", "--ray", "local"]
    assert bare_ray_to_local(["run", "--ray", "auto"]) == ["run", "--ray", "auto"]


def test_an_output_under_a_file_is_refused_in_one_line_before_anything_is_made(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("not a folder")
    text = _one_line(cli("run", "--agent", "rule", "--task-ids", "test-0001", "--out",
                         blocker / "sub"))  # fmt: skip
    assert f"--out {blocker / 'sub'}: {blocker} is a file, not a folder" in text
    assert "choose another --out" in text
    db = tmp_path / "board.sqlite"
    text = _one_line(cli("leaderboard", "--db", db, "--html", blocker / "x.html"))
    assert f"{blocker} is a file, not a folder; choose another --html" in text
    run = tmp_path / "some-run"
    run.mkdir()
    text = _one_line(cli("view", run, "--out", blocker / "deeper" / "trace.html"))
    assert f"{blocker} is a file, not a folder; choose another --out" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "some-run"]  # no board either
    assert blocker.read_text() == "not a folder" and not any(run.iterdir())


@pytest.fixture(scope="module")
def digiq_checkpoints(tmp_path_factory):
    """A digiq run's checkpoints as its trainer saves them (TrainRun.save_checkpoint): one
    after its first phase (no policy yet) and the last (the extracted scorer policy, trained_by
    digiq, with the critic's heads beside it)."""
    from webgym_agents.algos.digiq import CRITIC_FILE, PRESETS, CriticHeads, save_critic
    from webgym_agents.policies.scorer_policy import ScorerPolicy
    from webgym_agents.toolkit.training import TrainRun

    out = tmp_path_factory.mktemp("digiq") / "run"
    run = TrainRun(out, PRESETS["smoke"], trainer="digiq", preset="smoke", show_progress=False)
    first = run.save_checkpoint(1, lambda folder: None, state={"phase_done": 1})
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0)

    def write(folder):
        policy.save(folder, metadata={"trained_by": "digiq"})
        save_critic(folder / CRITIC_FILE, CriticHeads(policy.backbone.hidden_size, 16), {})

    run.save_checkpoint(4, write, state={"phase_done": 4})
    return first, run.latest_path


def test_a_checkpoint_the_agent_does_not_play_is_refused_naming_what_it_is(
    digiq_checkpoints, tmp_path
):
    first, latest = digiq_checkpoints
    out = tmp_path / "r"
    args = ("run", "--task-ids", "test-0001", "--out", out, "--checkpoint")
    text = _one_line(cli(*args, latest, "--agent", "bc"))
    assert f"checkpoint {latest} is a digiq checkpoint (a scorer policy)" in text
    assert "not trained by bc: play it with --agent digiq" in text
    assert "re-run" not in text and not out.exists()
    text = _one_line(cli(*args, latest, "--agent", "lm"))
    assert "is a digiq checkpoint (a scorer policy), not an LM policy" in text
    assert "--agent digiq" in text and "LMPolicy.save" not in text
    for agent in ("bc", "lm", "scorer", "digiq"):  # saved before digiq made its policy
        text = _one_line(cli(*args, first, "--agent", agent))
        assert "a checkpoint of a digiq training run that holds no policy" in text, agent
        assert "with --agent digiq" in text and "LMPolicy.save" not in text
    text = _one_line(cli(*args, tmp_path / "nowhere", "--agent", "bc"))
    assert "does not exist" in text and "`webgym-bench train --agent bc` makes one" in text
    assert not out.exists()
    # where the loaders are called directly, the same words (not "make one with LMPolicy.save")
    from webgym_agents import load_trained_agent

    with pytest.raises(FileNotFoundError, match="digiq training run that holds no policy"):
        load_trained_agent(str(first))
    with pytest.raises(ValueError, match=r"not trained by bc .*play it with --agent digiq"):
        load_trained_agent(str(latest), trained_by="bc")
    # the agent its trainer registered plays it
    ok = cli("run", "--task-ids", "test-0001", "--out", out, "--checkpoint", latest,
             "--agent", "digiq", "--max-steps", "2")  # fmt: skip
    assert ok.exit_code == 0, ok.output
