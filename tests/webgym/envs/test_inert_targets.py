"""Inert click targets (headings, texts, images with an element id) in both modes: a click on
one is a legal action that changes nothing, so its action-effect label is 0; scrolling a page
that cannot scroll and a mouse click on inert text change nothing either; an unknown id is
still an error that names it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import webgym  # noqa: F401 - registers the ids
from webgym.replay import iter_replay, step_differences

UNCHANGED = ("goal", "url", "text", "axtree", "html", "available_actions", "clickable_actions")

# Records clicks: which element with an id each real click landed on (inside it counts).
_LISTEN_JS = """() => { window.__hits = [];
  document.addEventListener('click', (e) => {
    const el = e.target.closest('[bid]'); window.__hits.push(el && el.getAttribute('bid')); },
    true); }"""


def inert(obs: dict) -> list[str]:
    return [a for a in obs["clickable_actions"] if a not in obs["available_actions"]]


def assert_nothing_happened(before: dict, step: tuple) -> None:
    after, reward, terminated, truncated, info = step
    assert after["last_action_error"] == "", after["last_action_error"]
    assert (reward, terminated, truncated) == (0.0, False, False)
    for key in UNCHANGED:
        assert after[key] == before[key], (after["last_action"], key)
    effect = info["action_effect"]
    assert effect["label"] == 0 and effect["text_distance"] == 0.0, effect
    if "screenshot" in before:
        assert effect["pixel_distance"] == 0.0, (after["last_action"], effect)
        assert np.array_equal(after["screenshot"], before["screenshot"])


def pages(env, goal: dict):
    """The search page, a results page, the target item and its Features page, in turn."""
    obs, _ = env.reset(options={"task_id": goal["task_id"]})
    yield "search", obs
    obs, *_ = env.step(f"search[{goal['query']}]")
    yield "results", obs
    core = env.unwrapped
    core._goto(f"/s/{core.session_id}/item/{goal['asin']}")
    yield "item", core._observation("", "")
    obs, *_ = env.step("click('tab_features')")
    yield "features", obs


@pytest.fixture(scope="module")
def text_env():
    env = gym.make("WebGym-ShoppingText-v0").unwrapped  # no step limit: many clicks
    yield env
    env.close()


@pytest.fixture(scope="module")
def browser_env():
    env = gym.make("WebGym-Shopping-v0").unwrapped
    yield env
    env.close()


def test_every_inert_target_is_a_click_that_changes_nothing_in_text_mode(text_env, catalog):
    goal = catalog.split("test").goals[5]
    seen = 0
    for name, obs in pages(text_env, goal):
        assert text_env.observation_space.contains(obs)
        assert set(obs["available_actions"]) < set(obs["clickable_actions"]), name
        for action in inert(obs):
            assert_nothing_happened(obs, text_env.step(action))
            seen += 1
    assert seen > 30
    obs, *_ = text_env.step("click('no_such_id')")
    assert obs["last_action_error"].startswith("no element with id 'no_such_id' on this page")


def test_in_the_browser_the_click_lands_on_the_inert_target_and_no_pixel_changes(
    browser_env, catalog
):
    goal = catalog.split("test").goals[5]
    core = browser_env.unwrapped
    wanted = {
        "search": ["logo", "instruction_label", "instruction", "tagline"],
        "results": ["results_summary", "instruction", "logo"],
        "item": ["product_title", "product_price", "product_image", "product_rating"],
        "features": ["current_tab", "product_title", "feature_0"],
    }
    for name, obs in pages(browser_env, goal):
        page = core._tab.page
        page.evaluate(_LISTEN_JS)
        for bid in wanted[name]:
            assert f"click('{bid}')" in inert(obs), (name, bid)
            assert_nothing_happened(obs, browser_env.step(f"click('{bid}')"))
        assert page.evaluate("window.__hits") == wanted[name]  # each click landed on its target
        if name == "search":
            assert_nothing_happened(obs, browser_env.step("scroll(0, 300)"))  # cannot scroll
            box = page.locator("[bid=instruction]").bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            assert_nothing_happened(obs, browser_env.step(f"mouse_click({x:.0f}, {y:.0f})"))
            assert page.evaluate("window.__hits")[-1] == "instruction"
    obs, *_, info = browser_env.step("click('no_such_id')")
    assert obs["last_action_error"].startswith("no element with id 'no_such_id' on this page")
    assert info["action_effect"]["label"] == 0


def test_a_browser_episode_with_inert_clicks_replays_in_the_text_twin(
    browser_env, text_env, catalog
):
    """The run record of a browser episode with inert clicks verifies: the text twin rebuilds
    every page, text distance and label of it."""
    goal = catalog.split("test").goals[6]
    actions = [
        "click('instruction')",
        f"search[{goal['query']}]",
        "click('results_summary')",
        "click('logo')",
    ]

    def records(env) -> list[dict]:
        return [st.record() for st in list(iter_replay(env, goal["task_id"], 0, actions))[1:]]

    recorded = records(browser_env)
    assert [r["effect_label"] for r in recorded] == [0, 1, 0, 0]
    for rec, rep in zip(recorded, records(text_env), strict=True):
        assert step_differences(rec, rep, mode="browser") == [], rec["action"]
