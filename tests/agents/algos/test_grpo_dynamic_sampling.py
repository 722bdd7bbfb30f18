"""GRPO's dynamic sampling (agents/algos/grpo.py:informative_groups): groups whose rewards are
all equal carry no advantage and are dropped; the others, and everything when it is off, stay."""

import torch

from webgym_agents.algos.grpo import informative_groups
from webgym_agents.toolkit.returns import group_advantages


def test_groups_with_equal_rewards_are_dropped_and_the_rest_kept():
    rewards = [
        torch.tensor([1.0, 1.0, 1.0, 1.0]),  # all succeed: A = 0 for each
        torch.tensor([0.0, 1.0, 0.0, 0.0]),  # one success: informative
        torch.tensor([0.0, 0.0, 0.0, 0.0]),  # all fail: A = 0
        torch.tensor([0.5, float("nan"), 0.5, 0.2]),  # an errored rollout (NaN) among varied
    ]
    keep = informative_groups(rewards, dynamic_sampling=True)
    assert keep.dtype == torch.bool
    assert keep.tolist() == [False, True, False, True]
    # what is dropped is exactly what carries no signal: its group advantages are all zero
    for group, kept in zip(rewards, keep.tolist(), strict=True):
        valid = group[~group.isnan()]
        advantages = group_advantages(valid, len(valid), "group")
        assert bool(advantages.abs().max() > 0) == kept


def test_an_errored_rollout_counts_as_zero_reward_in_the_spread():
    # 0 beside a NaN (an errored rollout) reads as 0 and 0: no spread, dropped; 1 beside it: kept
    keep = informative_groups(
        [torch.tensor([0.0, float("nan")]), torch.tensor([1.0, float("nan")])], True
    )
    assert keep.tolist() == [False, True]


def test_without_dynamic_sampling_every_group_is_kept():
    rewards = [torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([])]
    assert informative_groups(rewards, dynamic_sampling=False).tolist() == [True, True, True]
    assert informative_groups(rewards, dynamic_sampling=True).tolist() == [False, True, False]
