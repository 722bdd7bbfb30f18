"""The decoder path of the on-policy trainers: an LM policy (choice mode) and an LM critic on
``tiny-lm``, through the same TurnBatch / losses / run loop as the candidate scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from webgym_agents.toolkit.losses import clipped_surrogate
from webgym_agents.toolkit.onpolicy import TurnBatch, critic_values, split_task_ids, start_policy
from webgym_agents.toolkit.rollouts import collect_rollouts
from webgym_agents.toolkit.trainers import get_trainer
from webgym_agents.toolkit.training import TrainRun


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    info = get_trainer("archer")
    cfg = info.presets["lm-smoke"]
    run = TrainRun(tmp_path_factory.mktemp("lm") / "archer", cfg, trainer="archer",
                   preset="lm-smoke", show_progress=False)  # fmt: skip
    return cfg, run


def test_lm_policy_turns_recompute_their_acting_logprob_and_carry_gradients(lm_run):
    cfg, run = lm_run
    policy, critic = start_policy(cfg, run, critic=True, critic_train_layers=1)
    assert type(policy).__name__ == "LMPolicy" and type(critic).__name__ == "LMCritic"
    rollouts = collect_rollouts(
        policy, split_task_ids("train")[:2], n_envs=2, seed=3, max_steps=3, temperature=1.0,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    batch = TurnBatch.of(rollouts)
    assert len(batch) >= 2
    # the critic reads the prompt (the value at its last token), not a response
    assert all(s == d.prompt for s, d in zip(batch.states, batch.decisions, strict=True))
    logp = batch.logprobs(policy, range(len(batch)))
    # an unchanged policy's ratio is exactly 1: the recomputed log-prob is the acting one
    assert torch.allclose(logp.detach(), batch.old_logp.to(logp.dtype), atol=1e-4)
    loss, _ = clipped_surrogate(
        logp.unsqueeze(1), batch.old_logp.unsqueeze(1), torch.ones(len(batch)),
        torch.ones(len(batch), 1), eps_low=0.2, loss_type="dapo",
    )  # fmt: skip
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    # the critic trains only its top layer (+ norm, head); its values are finite scalars
    v = critic_values(critic, batch.states)
    assert v.shape == (len(batch),) and torch.isfinite(v).all()
    trainable = {n.split(".")[2] for n, p in critic.backbone.model.named_parameters()
                 if p.requires_grad and n.startswith("model.layers.")}  # fmt: skip
    assert trainable == {str(len(critic.backbone.model.model.layers) - 1)}


@pytest.mark.parametrize("name", ["archer", "grpo", "reinforce"])
def test_lm_smoke_preset_trains_saves_and_plays(name, tmp_path):
    info = get_trainer(name)
    cfg = info.presets["lm-smoke"]
    run = TrainRun(tmp_path / name, cfg, trainer=name, preset="lm-smoke", show_progress=False)
    latest = info.train_fn(cfg, run)
    assert [int(r["iteration"]) for r in run.metrics()] == list(range(cfg.iterations + 1))
    assert json.loads((latest / "policy.json").read_text())["kind"] == "lm-policy"
    if name != "grpo":
        assert json.loads((latest / "critic" / "policy.json").read_text())["kind"] == "lm-critic"
    from webgym_agents import make_agent

    agent = make_agent(name, checkpoint=str(latest))
    assert agent.name == name and type(agent.policy).__name__ == "LMPolicy"
    agent.close()


def test_train_encoder_false_is_refused_on_an_lm(tmp_path):
    from dataclasses import replace

    cfg = replace(get_trainer("reinforce").presets["lm-smoke"], train_encoder=False)
    run = TrainRun(tmp_path / "r", cfg, trainer="reinforce", preset="lm-smoke", show_progress=False)
    with pytest.raises(ValueError, match="train_encoder"):
        start_policy(cfg, run)
