"""Shipped checkpoints (agents/release.py): every shipped one loads, matches its hash and plays
an episode; a damaged file is refused naming itself and the rebuild command; a release of a
tiny-encoder checkpoint scores as the checkpoint did; configs name a release as released:NAME.

Nothing here reads runs/: the shipped checkpoints are in the repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import webgym  # noqa: F401 - registers the environments
from webgym.runs import atomic_write_json
from webgym_agents import make_agent
from webgym_agents.policies.scorer_policy import ScorerPolicy, candidates, read_info, state_text
from webgym_agents.release import (
    ADAPTER_FILE,
    HEAD_FILE,
    RELEASE_FILE,
    Release,
    ReleaseError,
    list_releases,
    load_release,
    make_release,
    resolve_checkpoint,
)
from webgym_agents.scripted.rule_agent import RuleAgent

SHIPPED = list_releases()


def play(env, agent, task_id: str) -> tuple[list[dict], float, bool]:
    """One episode: its observations, the final reward, whether it ended on its own."""
    obs, _ = env.reset(options={"task_id": task_id})
    agent.reset(obs["goal"], seed=0)
    seen, reward, terminated, truncated = [obs], 0.0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        seen.append(obs)
    return seen, float(reward), terminated


def test_the_repository_ships_bc():
    assert "bc" in {r.name for r in SHIPPED}
    total = sum(p.stat().st_size for r in SHIPPED for p in r.path.iterdir() if p.is_file())
    assert total < 25e6  # every shipped checkpoint together, in the repository


@pytest.mark.parametrize("release", SHIPPED, ids=lambda r: r.name)
def test_every_shipped_checkpoint_matches_its_hash_and_plays_an_episode(env, release):
    info = release.verify()
    assert info["name"] == release.name == release.path.name
    assert len(info["sha256"]) == 64 and info["files"].keys() >= {HEAD_FILE, "config.json"}
    # its own adapter, or the one of the shipped checkpoint whose encoder it kept
    assert (ADAPTER_FILE in info["files"]) != bool(info.get("adapter_from"))
    agent = make_agent(release.name, checkpoint=str(release.path))
    try:
        assert agent.name == release.name  # the trainer's agent, checked by trained_by
        assert agent.policy.metadata["release"] == {"name": release.name, "sha256": release.sha256}
        seen, reward, _ = play(env, agent, "test-0000")
    finally:
        agent.close()
    assert len(seen) >= 2 and 0.0 <= reward <= 1.0
    assert read_info(release.path)["kind"] == "scorer-policy"


def test_a_damaged_shipped_file_is_refused_naming_it_and_the_rebuild_command(tmp_path):
    from webgym_benchmarks.runner import PlanError, plan_run

    copy = tmp_path / "released" / "bc"
    shutil.copytree(Release(resolve_checkpoint("released:bc")).path, copy)
    adapter = copy / ADAPTER_FILE
    data = bytearray(adapter.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    adapter.write_bytes(bytes(data))

    with pytest.raises(ReleaseError) as err:
        ScorerPolicy.from_release(copy)
    message = str(err.value)
    assert "\n" not in message
    assert str(adapter) in message and "does not match its sha256" in message
    assert "webgym-bench release bc --checkpoint" in message and "git checkout --" in message
    with pytest.raises(PlanError, match="adapter.safetensors does not match"):
        plan_run(agent="bc", checkpoint=copy, split="test", episodes=1, out=tmp_path / "run")

    (copy / RELEASE_FILE).write_text("{ not json")  # the provenance file itself
    with pytest.raises(ReleaseError, match="release.json is unreadable"):
        load_release(copy)


def test_released_names_resolve_where_configs_take_a_checkpoint(tmp_path):
    assert resolve_checkpoint("released:bc") == Release(resolve_checkpoint("released:bc")).path
    assert resolve_checkpoint("released:bc").name == "bc"
    assert resolve_checkpoint(tmp_path) == tmp_path  # a folder stays a folder
    with pytest.raises(ReleaseError, match="no shipped checkpoint 'nope'.*shipped: .*bc"):
        resolve_checkpoint("released:nope")


def test_cpu_presets_start_from_the_shipped_bc():
    from webgym_agents.toolkit.trainers import get_trainer

    for name in ("grpo", "gigpo", "archer", "reinforce", "vineppo", "poise", "genac"):
        assert get_trainer(name).presets["cpu"].init_checkpoint == "released:bc", name
    assert get_trainer("digiq").presets["cpu"].behaviour_checkpoint == "released:bc"


def _trained_tiny(tmp_path: Path) -> tuple[ScorerPolicy, Path]:
    """A tiny-encoder scorer whose top layer and heads moved (as bc's training moves them),
    saved as a training checkpoint."""
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", train_layers=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:  # the top layer and the heads
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    ckpt = tmp_path / "run" / "checkpoints" / "step-3"
    policy.save(ckpt, metadata={"trained_by": "bc", "demos_hash": "abc"})
    (tmp_path / "run" / "config.json").write_text(
        json.dumps({"trainer": "bc", "preset": "smoke", "config": {"seed": 0}})
    )
    return ScorerPolicy.load(ckpt), ckpt


def test_a_release_scores_as_the_checkpoint_it_was_made_from(env, tmp_path):
    trained, ckpt = _trained_tiny(tmp_path)
    release = make_release("bc", ckpt, root=tmp_path / "released")
    info = release.verify()
    # only the layer that trained is stored, as float16 deltas; the heads as float32
    from safetensors.torch import load_file

    deltas = load_file(str(release.path / ADAPTER_FILE))
    assert deltas and all(".layer.1." in k for k in deltas)
    assert {t.dtype for t in deltas.values()} == {torch.float16}
    assert info["trainer"] == "bc" and info["preset"] == "smoke"
    assert info["training_data_hash"] == "abc" and info["results"] is None

    shipped = ScorerPolicy.from_release(release.path)
    seen, _, _ = play(env, RuleAgent(), "test-0001")  # search, results and item pages
    states = [state_text(o, shipped.max_steps) for o in seen]
    cands = [candidates(o, shipped.max_steps) for o in seen]
    with torch.no_grad():
        for a, b in zip(trained.scores(states, cands), shipped.scores(states, cands), strict=True):
            torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
            assert int(torch.argmax(a)) == int(torch.argmax(b))
    for key, tensor in shipped.encoder.state_dict().items():
        if ".layer.1." not in key:  # the frozen rest is the base's, exactly
            assert torch.equal(tensor, trained.encoder.state_dict()[key]), key


def test_a_results_row_must_come_from_a_run_of_the_release(tmp_path):
    _, ckpt = _trained_tiny(tmp_path)
    root = tmp_path / "released"
    release = make_release("bc", ckpt, root=root)
    run = tmp_path / "eval"
    run.mkdir()
    manifest = {"run_id": "eval", "split": "test", "mode": "text", "seed": 0, "agent": "bc"}
    summary = {"complete": True, "n_episodes": 500, "score": 74.0, "success_rate": 0.23}
    atomic_write_json(run / "summary.json", summary)
    atomic_write_json(run / "manifest.json", manifest)  # played a folder, not this release
    with pytest.raises(ReleaseError, match="did not play the shipped bc"):
        make_release("bc", results=run, root=root)

    played = {"name": "bc", "sha256": release.sha256, "results": None}
    atomic_write_json(run / "manifest.json", {**manifest, "release": played})
    make_release("bc", results=run, root=root)  # only the results row changes
    again = Release(root / "bc")
    assert again.sha256 == release.sha256 and again.verify()["results"]["score"] == 74.0
    assert "Score 74.0, SR 23.0% on test (500 episodes" in again.describe()


def test_a_checkpoint_is_released_under_the_agent_that_plays_it(tmp_path):
    _, ckpt = _trained_tiny(tmp_path)
    with pytest.raises(ReleaseError, match="trained by bc; release it as bc"):
        make_release("digiq", ckpt, root=tmp_path / "released")


def test_run_without_a_checkpoint_plays_the_shipped_one_and_records_it(tmp_path):
    from typer.testing import CliRunner

    from webgym_bench import app
    from webgym_benchmarks.runner import plan_run

    bc = Release(resolve_checkpoint("released:bc"))
    plan = plan_run(agent="bc", split="test", episodes=1, out=tmp_path / "run")
    assert plan.spec.checkpoint == str(bc.path)
    assert plan.manifest["checkpoint_sha256"] == bc.sha256  # the content hash: what played
    assert plan.manifest["release"] == {"name": "bc", "sha256": bc.sha256, "results": bc.results}

    listing = CliRunner().invoke(app, ["list-agents"], env={"COLUMNS": "300"})
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if line.startswith("│ bc "))
    assert bc.short_hash in row and "no (shipped)" in row


def test_the_release_command_ships_a_checkpoint_and_refuses_a_bad_one(tmp_path):
    from typer.testing import CliRunner

    from webgym_bench import app

    _, ckpt = _trained_tiny(tmp_path)
    root = tmp_path / "released"
    cli = CliRunner()
    done = cli.invoke(app, ["release", "bc", "--checkpoint", str(ckpt), "--out", str(root)])
    assert done.exit_code == 0, done.output
    release = Release(root / "bc")
    assert release.short_hash in done.output and "No results row" in done.output
    assert release.verify()["rebuild"] == f"webgym-bench release bc --checkpoint {ckpt}"
    again = cli.invoke(app, ["release", "bc", "--checkpoint", str(ckpt), "--out", str(root)])
    assert again.exit_code == 0 and Release(root / "bc").sha256 == release.sha256  # same bytes
    bad = cli.invoke(app, ["release", "bc", "--checkpoint", str(tmp_path), "--out", str(root)])
    assert bad.exit_code == 2 and "policy.json" in bad.output


def test_learners_start_from_the_shipped_bc_by_name(tmp_path):
    from webgym_agents.algos.digiq import DigiQConfig, behaviour_scorer
    from webgym_agents.toolkit.onpolicy import start_policy
    from webgym_agents.toolkit.trainers import get_trainer
    from webgym_agents.toolkit.training import TrainRun

    cfg = get_trainer("grpo").presets["cpu"]
    run = TrainRun(tmp_path / "grpo", cfg, trainer="grpo", preset="cpu", show_progress=False)
    policy, _ = start_policy(cfg, run)
    bc = Release(resolve_checkpoint("released:bc"))
    assert policy.metadata["release"] == {"name": "bc", "sha256": bc.sha256}
    behaviour = behaviour_scorer(DigiQConfig(behaviour_checkpoint="released:bc"))
    assert behaviour.metadata["release"]["sha256"] == bc.sha256


def test_a_heads_only_learner_ships_its_heads_over_its_starts_encoder(env, tmp_path):
    """A learner that trained only the heads over a shipped start keeps that start's encoder
    bit for bit: its release stores the heads and names the start's adapter by sha256; it
    loads to the checkpoint's exact parameters; a changed start adapter refuses it."""
    _, ckpt = _trained_tiny(tmp_path)
    root = tmp_path / "released"
    bc = make_release("bc", ckpt, root=root)
    learner = ScorerPolicy.from_release(bc.path)  # as a learner starts from released:bc
    with torch.no_grad():
        learner.feature_weights.weight.add_(0.5)  # only its heads move
    learner.metadata = {"trained_by": "grpo"}
    learner.save(tmp_path / "grpo-ckpt")
    grpo = make_release("grpo", tmp_path / "grpo-ckpt", root=root)
    info = grpo.verify()
    assert not (grpo.path / ADAPTER_FILE).exists() and ADAPTER_FILE not in info["files"]
    assert info["adapter_from"] == {"name": "bc", "sha256": bc.verify()["files"][ADAPTER_FILE]}
    shipped = ScorerPolicy.from_release(grpo.path)
    trained = ScorerPolicy.load(tmp_path / "grpo-ckpt")
    for (key, a), b in zip(
        shipped.state_dict().items(), trained.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    seen, reward, _ = play(env, make_agent("grpo", checkpoint=str(grpo.path)), "test-0002")
    assert len(seen) >= 2 and 0.0 <= reward <= 1.0

    # a learner whose encoder moved keeps its own adapter
    with torch.no_grad():
        next(p for p in trained.encoder.parameters()).add_(0.01)
    trained.save(tmp_path / "moved")
    moved = make_release("grpo", tmp_path / "moved", root=tmp_path / "other")
    assert (moved.path / ADAPTER_FILE).is_file()

    # bc re-released over another encoder: grpo is refused, naming why and how to rebuild
    (root / "bc" / ADAPTER_FILE).write_bytes((moved.path / ADAPTER_FILE).read_bytes())
    with pytest.raises(
        ReleaseError,
        match="made over bc's encoder with sha256 .*webgym-bench release grpo --checkpoint",
    ):
        ScorerPolicy.from_release(grpo.path)
