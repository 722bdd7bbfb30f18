"""Behaviour cloning (agents/algos/bc.py) and the shared training plumbing (toolkit/training.py)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from webgym.actions import parse_action
from webgym_agents import make_agent
from webgym_agents.algos.bc import PRESETS, bc_loss, collect_demonstrations, split_heldout, train_bc
from webgym_agents.policies.lm_agent import LMPolicy, PromptConfig
from webgym_agents.toolkit.trainers import UnknownTrainerError, get_trainer
from webgym_agents.toolkit.training import ConfigError, ConfigMismatch, TrainRun, config_from_file

SMOKE = dataclasses.replace(
    PRESETS["smoke"], n_demo_tasks=4, heldout_fraction=0.25, max_heldout_steps=2
)


@pytest.fixture(scope="module")
def demos():
    episodes, facts = collect_demonstrations(SMOKE, log=lambda _m: None)
    return episodes, facts


def test_demonstrations_are_successful_rule_episodes_with_valid_actions(demos):
    episodes, facts = demos
    assert episodes and facts["demo_episodes_played"] == 4
    assert facts["demo_agent"] == "rule" and facts["split_hash"]
    for ep in episodes:
        assert ep.split == "train" and ep.reward == 1.0 and ep.steps
        assert ep.steps[-1].done and ep.steps[-1].action == "click('buy_now')"
        for step in ep.steps:
            assert parse_action(step.action)  # every demonstrated action parses
            assert step.obs["goal"] == ep.goal and step.obs["available_actions"]
            assert "html" not in step.obs  # dropped: the prompts read text and axtree


def test_a_few_bc_updates_lower_the_loss_and_raise_the_demo_logprob(demos):
    torch.manual_seed(0)
    episodes, _ = demos
    train_steps, _ = split_heldout(episodes, 0.0, seed=0)
    steps = train_steps[:6]
    policy = LMPolicy.from_backbone_name("tiny-lm", PromptConfig(max_prompt_tokens=256))
    prompts = [policy.prompt(s.obs) for s in steps]
    actions = [s.action for s in steps]
    with torch.no_grad():
        before = policy.action_logprobs(prompts, actions, batch_size=1)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=0.0)
    policy.model.train()
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        total = 0.0
        for i in range(len(steps)):
            loss, _ = bc_loss(policy, prompts[i : i + 1], actions[i : i + 1], len(steps))
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        losses.append(total)
    with torch.no_grad():
        after = policy.action_logprobs(prompts, actions, batch_size=1)
    assert losses[-1] < losses[0]
    assert after.mean() > before.mean() + 1.0
    assert (after > before).all()


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_resume_continues_at_the_saved_iteration_with_identical_optimizer_state(tmp_path):
    config = dataclasses.replace(SMOKE, epochs=1, batch_size=2, updates_per_iteration=1)
    out = tmp_path / "bc"
    run = TrainRun(out, config, trainer="bc", keep=100, show_progress=False)
    latest = train_bc(config, run)
    n_iter = int(json.loads((latest / "trainer_state.json").read_text())["iteration"])
    assert n_iter >= 3 and (latest / "optimizer.pt").is_file()
    final = _weights(latest)
    rows = [int(r["iteration"]) for r in run.metrics()]
    assert rows == list(range(n_iter + 1))

    # A run killed after iteration 2's checkpoint: latest points there, later rows remain.
    link = out / "checkpoints" / "latest"
    link.unlink()
    os.symlink("step-2", link)
    saved = torch.load(out / "checkpoints" / "step-2" / "optimizer.pt", weights_only=False)

    run2 = TrainRun(out, config, trainer="bc", keep=100, show_progress=False)
    policy = LMPolicy.load(run2.latest_checkpoint())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr)
    assert run2.restore(optimizer) == 2
    restored = optimizer.state_dict()
    assert restored["param_groups"] == saved["param_groups"]
    for k, st in saved["state"].items():
        assert int(st["step"]) == int(restored["state"][k]["step"]) == 2 * 1
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(st[name], restored["state"][k][name])
    assert [int(r["iteration"]) for r in run2.metrics()] == [0, 1, 2]  # rows past it dropped

    link.unlink()
    os.symlink("step-2", link)
    train_bc(config, TrainRun(out, config, trainer="bc", keep=100, show_progress=False))
    assert [int(r["iteration"]) for r in run.metrics()] == list(range(n_iter + 1))
    again = _weights(out / "checkpoints" / "latest")
    for name, tensor in final.items():  # iterations 3.. redone give the same model
        assert torch.allclose(tensor, again[name], atol=1e-6), name
    log = (out / "train.log").read_text()
    assert "resumed from step-2 (iteration 2)" in log


def test_a_config_override_with_an_unknown_key_is_an_error_naming_the_valid_ones(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lr": 0.1, "learning_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"learning_rate.*valid keys: .*backbone, .*lr"):
        config_from_file(PRESETS["cpu"], bad)
    good = tmp_path / "good.toml"
    good.write_text('lr = 1\nbackbone = "tiny-lm"\nextra_runs = ["runs/a"]\n')
    cfg = config_from_file(PRESETS["cpu"], good)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.backbone == "tiny-lm"
    assert cfg.extra_runs == ["runs/a"] and cfg.epochs == PRESETS["cpu"].epochs
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"epochs": "two"}))
    with pytest.raises(ConfigError, match="epochs must be a int"):
        config_from_file(PRESETS["cpu"], wrong)


def test_a_training_directory_refuses_another_config(tmp_path):
    TrainRun(tmp_path, SMOKE, trainer="bc", show_progress=False)
    other = dataclasses.replace(SMOKE, lr=0.5)
    with pytest.raises(ConfigMismatch, match="lr: 0.001 there, 0.5 now"):
        TrainRun(tmp_path, other, trainer="bc", show_progress=False)


def test_the_trainer_registry_names_the_trainable_agents():
    assert get_trainer("bc").presets.keys() >= {"smoke", "cpu", "gpu"}
    assert get_trainer("bc").presets["gpu"].device == "cuda"
    with pytest.raises(UnknownTrainerError, match="trainable agents: .*bc"):
        get_trainer("rule")


def test_the_bc_agent_plays_only_bc_checkpoints(tmp_path):
    LMPolicy.from_backbone_name("tiny-lm").save(tmp_path / "untrained")
    with pytest.raises(ValueError, match="not trained by bc"):
        make_agent("bc", checkpoint=str(tmp_path / "untrained"))
    LMPolicy.from_backbone_name("tiny-lm", metadata={"trained_by": "bc"}).save(tmp_path / "bc")
    agent = make_agent("bc", checkpoint=str(tmp_path / "bc"))
    assert agent.name == "bc"
