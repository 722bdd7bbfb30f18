"""The fast chaos scenarios of the env: fuzzed actions in text mode (the real in-process shop
over the real catalog). An agent's input never ends an episode as a machine failure, and every
observation stays inside the declared observation space. The browser scenarios are in
``python -m webgym_benchmarks.perf.chaos`` (see benchmarks/perf/README.md)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import webgym  # noqa: F401 - registers the ids
from webgym_benchmarks.perf.chaos import SpaceChecker, fuzz_env


@pytest.fixture(scope="module")
def text_env():
    env = gym.make("WebGym-ShoppingText-v0")
    yield env
    env.close()


def test_ten_thousand_fuzzed_actions_never_end_as_a_machine_failure(text_env):
    result = fuzz_env(text_env, 10_000, seed=13)
    assert result.actions == 10_000
    assert result.raised == []
    assert result.failures == [], result.failures[:5]
    assert result.outside == [], result.outside[:5]
    assert result.invalid > 3000  # most fuzzed actions are bad, and reported as such
    assert result.episodes > 100  # the valid quarter moves episodes on to their end


@pytest.mark.parametrize(
    "action",
    [
        "noop(" + "9" * 3000 + ")",
        "scroll(0, 1e308)",
        "search[dog \ud800 leash]",
        "fill('search_box', '\\udfff')",
        "mouse_click(1, 1)",
        None,
        "x" * 5000,
    ],
)
def test_a_malformed_action_is_an_error_in_the_observation_and_the_step_counts(text_env, action):
    obs, _ = text_env.reset(options={"task_id": "test-0001"})
    obs, reward, terminated, truncated, info = text_env.step(action)
    assert obs["last_action_error"] and "error" not in info
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert int(obs["step"]) == 1
    assert SpaceChecker(text_env.observation_space).outside(obs) == []


def test_emoji_in_the_page_stay_inside_the_observation_space(text_env):
    obs, _ = text_env.reset(options={"task_id": "test-0001"})
    obs, *_ = text_env.step("search[dog 🐶 leash \U0001f1fa\U0001f1f8]")
    assert obs["last_action_error"] == ""
    assert text_env.observation_space.contains(obs)
    assert "dog \ufffd leash" in obs["text"] and "🐶" not in obs["last_action"]
