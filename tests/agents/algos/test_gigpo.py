"""GiGPO's advantages: the episode level is GRPO's, the step level compares the turns of a
group that share an observation (anchor states), on real text-mode rollouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from webgym_agents.algos.gigpo import PRESETS, anchor_key, gigpo_advantages
from webgym_agents.policies.scorer_policy import ScorerPolicy
from webgym_agents.toolkit.onpolicy import TurnBatch, back_probes, old_logprobs, split_task_ids
from webgym_agents.toolkit.returns import anchor_step_advantages, group_advantages
from webgym_agents.toolkit.rollouts import collect_rollouts


def test_step_advantages_compare_returns_within_each_anchor_state():
    g = 0.9
    # rollouts 0 and 1 share their first two states; 2 shares only the first
    keys = [["s", "item"], ["s", "item", "back", "item2"], ["s", "other"]]
    rewards = [0.5, 1.0, 0.0]
    adv = anchor_step_advantages(keys, rewards, g, scale="none")
    r_s = [g * 0.5, g**3 * 1.0, g * 0.0]  # the return each rollout got from "s"
    assert adv[0][0] == pytest.approx(r_s[0] - sum(r_s) / 3)
    assert adv[1][0] == pytest.approx(r_s[1] - sum(r_s) / 3)
    r_item = [0.5, g**2 * 1.0]  # from "item": buy now (0.5) against go back and buy (g^2)
    assert adv[0][1] == pytest.approx(r_item[0] - sum(r_item) / 2) and adv[0][1] < 0
    assert adv[1][1] == pytest.approx(r_item[1] - sum(r_item) / 2) and adv[1][1] > 0
    assert adv[1][2] == adv[1][3] == adv[2][1] == 0  # met once: no comparison, no advantage
    scaled = anchor_step_advantages(keys, rewards, g, scale="std")
    std = torch.tensor(r_item, dtype=torch.float64).std().item()
    assert scaled[1][1] == pytest.approx((r_item[1] - sum(r_item) / 2) / (std + 1e-4), rel=1e-4)


def test_an_errored_rollout_is_left_out_of_the_anchor_statistics():
    adv = anchor_step_advantages([["s"], ["s"], ["s"]], [1.0, 0.0, math.nan], 0.95, "none")
    assert [float(a[0]) for a in adv] == [pytest.approx(0.5), pytest.approx(-0.5), 0.0]


@pytest.fixture(scope="module")
def rollouts():
    torch.manual_seed(0)
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=6)
    with torch.no_grad():
        policy.head[2].weight.normal_(0, 1.0)
    tasks = split_task_ids("train")[:3]
    return collect_rollouts(
        policy.eval(), tasks, group_size=4, seed=0, n_envs=4, temperature=1.0, max_steps=6
    )


def test_group_starts_are_one_anchor_and_advantages_add_both_levels(rollouts):
    cfg = PRESETS["smoke"]
    cfg = type(cfg)(**{**cfg.__dict__, "group_size": 4, "omega": 0.5})
    for g in range(0, len(rollouts), 4):
        assert len({anchor_key(r.turns[0].obs) for r in rollouts[g : g + 4]}) == 1
    adv = gigpo_advantages(rollouts, cfg)
    rewards = torch.tensor([r.reward for r in rollouts])
    episode = group_advantages(rewards, 4, "group")
    for g in range(0, len(rollouts), 4):
        group = rollouts[g : g + 4]
        step = anchor_step_advantages(
            [[anchor_key(t.obs) for t in r.turns] for r in group],
            rewards[g : g + 4].tolist(), cfg.gamma, cfg.step_scale,
        )  # fmt: skip
        for i in range(4):
            torch.testing.assert_close(adv[g + i], float(episode[g + i]) + 0.5 * step[i])


def test_the_anchor_key_tells_apart_the_same_page_with_a_different_memory(rollouts):
    obs = rollouts[0].turns[-1].obs
    fresh = {**obs, "previous_actions": []}
    opened = {**obs, "previous_actions": ["click('item_b000000001')"]}
    assert anchor_key(fresh) != anchor_key(opened)
    assert anchor_key(fresh) == anchor_key({**fresh, "previous_actions": ["search[x]"]})


def test_back_probes_fork_from_a_product_page_with_the_episode_memory_and_join_the_anchor():
    """A probe restarts a rollout's product page from its snapshot with the rollout's earlier
    actions as memory, takes ``< Prev`` there with the policy's own log-probability, and its
    first turn shares the anchor of the turn it forked from."""
    torch.manual_seed(0)
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=8).eval()
    with torch.no_grad():
        policy.head[2].weight.normal_(0, 1.0)
    cfg = PRESETS["smoke"]
    cfg = type(cfg)(**{**cfg.__dict__, "group_size": 4, "max_steps": 8, "back_probes": 1.0})
    tasks = split_task_ids("train")[:4]
    rollouts = collect_rollouts(
        policy, tasks, group_size=4, seed=0, n_envs=4, temperature=1.0, max_steps=8,
        snapshots=True, explore=0.5, rng=np.random.default_rng(0),
    )  # fmt: skip
    probes = back_probes(cfg, policy, rollouts, np.random.default_rng(1), seed=0)
    forkable = [
        r for r in rollouts
        if r.valid and any(
            {"click('buy_now')", "click('prev')"} <= set(t.obs["available_actions"])
            and t.action not in ("click('prev')", "click('back_to_search')")
            for t in r.turns
        )
    ]  # fmt: skip
    assert forkable and len(probes) == len(forkable)
    memories: dict[str, list[list[str]]] = {}  # anchor -> the memories of its turns
    for r in rollouts:
        for t in r.turns:
            memories.setdefault(anchor_key(t.obs), []).append(t.obs["previous_actions"])
    for probe in probes:
        first = probe.turns[0]
        assert first.action == "click('prev')"
        # the same page and the same opened results: the anchor of the turn it forked from,
        # whose whole action history it carries
        assert first.obs["previous_actions"] in memories[anchor_key(first.obs)]
        want = policy.logprobs(
            [first.decision.state], [first.decision.candidates], [first.decision.index]
        )
        assert math.isclose(first.decision.logprob, float(want[0]), abs_tol=1e-5)
    # the forced turn trains with the plain policy gradient (ratio 1), the others against the
    # log-probability they were acted with
    batch = TurnBatch.of(probes)
    turns = list(range(len(batch)))
    with torch.no_grad():
        shifted = batch.old_logp - 0.5  # any current log-probabilities
    old = old_logprobs(batch, turns, shifted)
    forced = torch.tensor([d.forced for d in batch.decisions])
    assert forced.any() and not forced.all()
    torch.testing.assert_close(old[forced], shifted[forced])
    torch.testing.assert_close(old[~forced], batch.old_logp[~forced])
    adv = gigpo_advantages(rollouts, cfg, probes)
    assert len(adv) == len(rollouts) + len(probes)
    assert all(len(a) == len(r.turns) for a, r in zip(adv, [*rollouts, *probes], strict=True))


def test_smoke_preset_trains_and_writes_a_curve(tmp_path, smoke_trains_and_writes_a_curve):
    smoke_trains_and_writes_a_curve("gigpo", tmp_path)
