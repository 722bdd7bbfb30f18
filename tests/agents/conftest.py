"""Fixtures shared by the agents' tests (tests/conftest.py's catalog and shop come first).

Each is module-scoped: a module gets its own, as when every module defined it."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import webgym  # noqa: F401 - registers the environments
from webgym_agents.policies.scorer_policy import ScorerPolicy
from webgym_agents.toolkit.onpolicy import split_task_ids


@pytest.fixture(scope="module")
def env():
    """The text-mode env on the test split."""
    e = gym.make("WebGym-ShoppingText-v0", split="test")
    yield e
    e.close()


@pytest.fixture(scope="module")
def policy():
    """A tiny-encoder scorer whose head is not uniform, so that sampled rollouts (and forks)
    differ and the softmax's entropy is not log K. (policies/test_lm_agent.py overrides
    ``policy`` with an LM policy of its own.)"""
    torch.manual_seed(0)
    p = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=6)
    with torch.no_grad():
        p.head[2].weight.normal_(0, 1.0)
    return p.eval()


@pytest.fixture(scope="module")
def train_ids():
    """The first six train tasks."""
    return split_task_ids("train")[:6]
