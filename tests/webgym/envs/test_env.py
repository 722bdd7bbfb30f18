"""WebGym-Shopping-v0 and WebGym-ShoppingText-v0: Gymnasium citizenship, whole episodes in both
modes, bad actions, snapshots, and a browser that dies mid-episode."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import webgym  # noqa: F401 - registers the ids


def target_actions(goal: dict) -> list[str]:
    """Reach the goal's target from the search page by ids and labels, then buy it."""
    actions = [f"search[{goal['query']}]"]
    actions += [f"click[{v}]" for v in dict(goal["goal_options"]).values()]
    return actions + ["click('tab_reviews')", "click('prev')", "click[Buy Now]"]


def play(env, task_id: str, actions: list[str], goto_item: str | None = None):
    obs, _ = env.reset(options={"task_id": task_id})
    trace = [obs]
    for i, action in enumerate(actions):
        if i == 1 and goto_item is not None:  # open the target item from the results page
            item = f"click('item_{goto_item.lower()}')"
            if item not in obs["available_actions"]:  # not on page 1: go through the url
                core = env.unwrapped
                core._goto(f"/s/{core._session['session_id']}/item/{goto_item}")
                obs = core._observation(item, "")
            else:
                obs, *_ = env.step(item)
            trace.append(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(obs)
    return trace, reward, terminated, info


@pytest.fixture(scope="module")
def text_env():
    env = gym.make("WebGym-ShoppingText-v0")
    yield env
    env.close()


@pytest.fixture(scope="module")
def browser_env():
    env = gym.make("WebGym-Shopping-v0")
    yield env
    env.close()


def test_check_env_text():
    """Gymnasium's checker, render check included: text mode declares only 'ansi'."""
    env = gym.make("WebGym-ShoppingText-v0")
    assert env.metadata["render_modes"] == ["ansi"]
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_check_env_browser():
    env = gym.make("WebGym-Shopping-v0")
    assert env.metadata["render_modes"] == ["rgb_array", "ansi"]
    check_env(env.unwrapped, skip_render_check=False)  # makes one env per render mode
    env.close()


def test_check_env_browser_rendering():
    env = gym.make("WebGym-Shopping-v0", render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


def test_spaces_print_in_one_short_line(text_env):
    """A Text space over 65k characters prints its count, not its characters."""
    import pickle

    action_space = text_env.action_space
    assert len(repr(action_space)) < 200 and "\n" not in repr(action_space)
    assert repr(action_space).startswith("Text(0, 4000, charset=<")
    obs_repr = repr(text_env.observation_space)
    assert len(obs_repr) < 1000 and "\n" not in obs_repr  # 10 fields, one line
    plain = gym.spaces.Text(4000, min_length=0, charset=action_space.characters)
    assert action_space == plain and plain == action_space
    again = pickle.loads(pickle.dumps(text_env.observation_space))
    assert again == text_env.observation_space and repr(again) == obs_repr
    assert action_space.contains("click[Buy Now]") and action_space.contains(action_space.sample())


def test_async_vector_env_default_shared_memory_is_refused_in_one_sentence():
    with pytest.raises(TypeError) as refused:
        gym.make_vec("WebGym-ShoppingText-v0", num_envs=2, vectorization_mode="async")
    message = str(refused.value)
    assert len(message) < 300 and "\n" not in message
    assert "vector_kwargs={'shared_memory': False}" in message


def test_spaces_and_registration(browser_env, text_env):
    assert browser_env.spec.max_episode_steps == 15
    assert browser_env.observation_space["screenshot"].shape == (720, 1280, 3)
    assert "screenshot" not in text_env.observation_space.spaces
    assert browser_env.action_space.contains("click('buy_now')")


def test_browser_envs_share_the_screenshot_space_arrays_not_its_random_state(browser_env):
    # A 1280x720 Box holds four full-shape arrays (10.5 MB): one copy per process, read-only
    other = gym.make("WebGym-Shopping-v0")
    try:
        mine, theirs = (e.observation_space["screenshot"] for e in (browser_env, other))
        for name in ("low", "high", "bounded_below", "bounded_above"):
            assert np.shares_memory(getattr(mine, name), getattr(theirs, name))
            assert not getattr(mine, name).flags.writeable
        mine.seed(1), theirs.seed(2)
        assert not np.array_equal(mine.sample(), theirs.sample())
        mine.seed(1)
        first = mine.sample()
        mine.seed(1)
        assert np.array_equal(first, mine.sample()) and mine.contains(first)
    finally:
        other.close()


def test_same_task_same_start(browser_env, text_env):
    for env in (browser_env, text_env):
        a, _ = env.reset(seed=1, options={"task_id": "test-0007"})
        b, _ = env.reset(seed=2, options={"task_id": "test-0007"})
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


def test_seeded_task_draw_is_reproducible(text_env):
    first = [text_env.reset(seed=s)[1]["task_id"] for s in (3, 4, 5)]
    again = [text_env.reset(seed=s)[1]["task_id"] for s in (3, 4, 5)]
    assert first == again and len(set(first)) > 1


def test_browser_and_text_modes_see_the_same_episode(browser_env, text_env, catalog):
    for goal in catalog.split("test").goals[10:13]:
        actions = target_actions(goal)
        browser_trace, b_reward, b_term, b_info = play(
            browser_env, goal["task_id"], actions, goal["asin"]
        )
        text_trace, t_reward, t_term, t_info = play(
            text_env, goal["task_id"], actions, goal["asin"]
        )
        assert len(browser_trace) == len(text_trace)
        for b, t in zip(browser_trace, text_trace, strict=True):
            for key in (
                "text",
                "axtree",
                "available_actions",
                "clickable_actions",
                "html",
                "goal",
                "last_action",
                "last_action_error",
            ):
                assert b[key] == t[key], (goal["task_id"], key)
        assert b_term and t_term and b_reward == t_reward == pytest.approx(1.0)
        assert b_info["reward_info"] == t_info["reward_info"]


def test_the_reward_comes_with_the_page_and_steps_are_resolved_once(
    browser_env, text_env, catalog, monkeypatch
):
    """Buy Now's page carries the reward (no API request during a step), and the browser
    runs the resolved steps without probing the page again."""
    from webgym.browser import BrowserTab
    from webgym.shop_client import ShopClient

    goal = catalog.split("test").goals[14]
    requests = []
    real = ShopClient.request_json
    monkeypatch.setattr(
        ShopClient, "request_json", lambda self, *a: requests.append(a) or real(self, *a)
    )
    monkeypatch.setattr(BrowserTab, "_element", lambda *a: pytest.fail("probed a resolved step"))
    rewards = []
    for env in (browser_env, text_env):
        env.reset(options={"task_id": goal["task_id"]})
        core = env.unwrapped
        core._goto(f"/s/{core.session_id}/item/{goal['asin']}")
        requests.clear()
        for action in [f"click[{v}]" for v in dict(goal["goal_options"]).values()]:
            env.step(action)
        obs, reward, terminated, _, info = env.step("click[Buy Now]")
        assert requests == [] and terminated and obs["url"].endswith("/done")
        assert info["purchased_asin"] == goal["asin"]
        rewards.append((reward, info["reward_info"]))
    assert rewards[0] == rewards[1] and rewards[0][0] == pytest.approx(1.0)


def test_bad_actions_are_reported_not_raised(text_env, catalog):
    goal = catalog.split("test").goals[0]
    text_env.reset(options={"task_id": goal["task_id"]})
    cases = {
        "clik('x')": "unknown action",
        "click('no_such_id')": "no element with id 'no_such_id'",
        "click[Buy Now]": "no clickable 'Buy Now'",
        "select_option('opt_0', 'red')": "",
        "mouse_click(10, 10)": "browser mode only",
        "click('a', 'b')": "takes",
        "": "empty",
    }
    for action, needle in cases.items():
        obs, reward, terminated, truncated, info = text_env.step(action)
        assert reward == 0 and not terminated and not truncated
        assert obs["last_action_error"], action
        assert needle.lower() in obs["last_action_error"].lower(), (
            action,
            obs["last_action_error"],
        )
        assert info["action_effect"]["label"] == 0
    assert int(obs["step"]) == len(cases)  # invalid actions count as steps


def test_option_not_on_page_is_an_error(text_env, catalog):
    goal = next(g for g in catalog.split("test").goals if catalog.get(g["asin"])["options"])
    text_env.reset(options={"task_id": goal["task_id"]})
    core = text_env.unwrapped
    core._goto(f"/s/{core._session['session_id']}/item/{goal['asin']}")
    obs, *_ = text_env.step("select_option('opt_0', 'no such colour')")
    assert "no such colour" in obs["last_action_error"]
    value = next(iter(catalog.get(goal["asin"])["options"].values()))[0]
    obs, *_, info = text_env.step(f"select_option('opt_0', '{value}')")
    assert obs["last_action_error"] == "" and info["action_effect"]["label"] == 1


def test_truncated_at_max_episode_steps(catalog):
    env = gym.make("WebGym-ShoppingText-v0", max_episode_steps=3)
    env.reset(options={"task_id": "test-0001"})
    flags = [env.step("noop()")[3] for _ in range(3)]
    assert flags == [False, False, True]
    env.close()


def test_effect_labels(browser_env, catalog):
    goal = next(g for g in catalog.split("test").goals if g["goal_options"])
    browser_env.reset(options={"task_id": goal["task_id"]})
    _, _, _, _, info = browser_env.step("noop()")
    assert info["action_effect"]["label"] == 0
    assert (
        info["action_effect"]["pixel_distance"] == 0 and info["action_effect"]["text_distance"] == 0
    )
    _, _, _, _, info = browser_env.step(f"search[{goal['query']}]")
    assert info["action_effect"]["label"] == 1
    _, _, _, _, info = browser_env.step("click('no_such_id')")
    assert info["action_effect"]["label"] == 0
    core = browser_env.unwrapped
    core._goto(f"/s/{core._session['session_id']}/item/{goal['asin']}")
    value = next(iter(dict(goal["goal_options"]).values()))
    _, _, _, _, info = browser_env.step(f"click[{value}]")
    effect = info["action_effect"]
    assert effect["label"] == 1 and effect["text_label"] == 1 and effect["pixel_label"] == 1
    _, _, _, _, info = browser_env.step(f"click[{value}]")  # choosing it again changes nothing
    assert info["action_effect"]["label"] == 0


def test_snapshot_forks_reach_the_same_reward(text_env, browser_env, catalog):
    goal = catalog.split("test").goals[20]
    for env in (text_env, browser_env):
        env.reset(options={"task_id": goal["task_id"]})
        core = env.unwrapped
        core._goto(f"/s/{core._session['session_id']}/item/{goal['asin']}")
        first = next(iter(dict(goal["goal_options"]).values()), None)
        if first is not None:
            env.step(f"click[{first}]")
        snap = json.loads(json.dumps(core.snapshot()))  # serialisable
        rest = [f"click[{v}]" for v in list(dict(goal["goal_options"]).values())[1:]]
        rest += ["click[Buy Now]"]
        rewards = []
        for _ in range(2):
            obs, _ = core.restore(snap)
            assert obs["url"].endswith(f"/item/{goal['asin']}")
            for action in rest:
                obs, reward, terminated, *_ = env.step(action)
            rewards.append((reward, terminated))
        assert rewards[0] == rewards[1] == (pytest.approx(1.0), True)
        # a fork that buys something else diverges
        core.restore(snap)
        obs, *_ = env.step("click('back_to_search')")
        assert "search_box" in obs["axtree"]


def test_render_modes(catalog):
    env = gym.make("WebGym-Shopping-v0", render_mode="rgb_array", screenshot=False)
    env.reset(options={"task_id": "test-0002"})
    assert "screenshot" not in env.observation_space.spaces
    assert env.render().shape == (720, 1280, 3)
    env.close()
    text = gym.make("WebGym-ShoppingText-v0", render_mode="ansi")
    obs, _ = text.reset(options={"task_id": "test-0002"})
    assert text.render() == obs["text"]
    text.close()
    with pytest.raises(ValueError, match="text mode has no pixels"):
        gym.make("WebGym-ShoppingText-v0", render_mode="rgb_array")


def test_unknown_split_or_task_is_a_clear_error():
    with pytest.raises(ValueError, match="test"):
        gym.make("WebGym-ShoppingText-v0", split="nope")
    env = gym.make("WebGym-ShoppingText-v0")
    with pytest.raises(ValueError, match="test-9999"):
        env.reset(options={"task_id": "test-9999"})
    env.close()


def test_a_killed_browser_ends_the_episode_and_the_next_reset_works(catalog):
    env = gym.make("WebGym-Shopping-v0")
    env.reset(options={"task_id": "test-0004"})
    core = env.unwrapped
    os.kill(core._host.pid, signal.SIGKILL)
    time.sleep(0.2)
    obs, reward, terminated, truncated, info = env.step("search[tent]")
    assert truncated and not terminated and reward == 0 and "error" in info
    # the crash detector ended the step and named the dead browser (a page operation that ran
    # out of time in a live one would end it as a PageTimeout)
    assert info["error"] == "BrowserCrashed: the browser died; call recover()"
    obs, info = env.reset(options={"task_id": "test-0004"})
    assert "search_box" in obs["axtree"] and obs["screenshot"].shape == (720, 1280, 3)
    obs, *_ = env.step("search[tent]")
    assert obs["last_action_error"] == "" and "Total results" in obs["text"]
    env.close()


def test_close_stops_the_browser():
    """Envs of one thread share one Chromium; closing the last one stops it. (A fresh thread
    has its own browser host, so the module's other envs do not keep it alive.)"""
    seen = {}

    def body():
        env = gym.make("WebGym-Shopping-v0")
        env.reset(options={"task_id": "test-0001"})
        host = env.unwrapped._host
        other = gym.make("WebGym-Shopping-v0")
        other.reset(options={"task_id": "test-0001"})
        seen["shared"] = other.unwrapped._host is host and host.tab_count == 2
        env.close()
        seen["after_one"] = host.running and host.tab_count == 1
        other.close()
        seen["after_all"] = host.running

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(120)
    assert seen == {"shared": True, "after_one": True, "after_all": False}


def test_async_vector_env():
    # Text observations cannot live in shared memory: async vector envs pass them by pipe.
    envs = gym.make_vec(
        "WebGym-ShoppingText-v0",
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"shared_memory": False},
    )
    obs, infos = envs.reset(seed=0)
    assert len(obs["text"]) == 2
    obs, rewards, terminated, truncated, infos = envs.step(["noop()", "search[tent]"])
    assert list(rewards) == [0.0, 0.0]
    envs.close()


def test_shared_context_envs_are_isolated_episodes(catalog):
    """shared_context=True: envs are pages of one browser context; sessions stay separate."""
    goals = catalog.split("test").goals[30:32]
    envs = [gym.make("WebGym-Shopping-v0", shared_context=True) for _ in goals]
    try:
        for env, goal in zip(envs, goals, strict=True):
            env.reset(options={"task_id": goal["task_id"]})
        tabs = [env.unwrapped._tab for env in envs]
        assert tabs[0]._context is tabs[1]._context
        obs0, *_ = envs[0].step(f"search[{goals[0]['query']}]")
        obs1, *_ = envs[1].step("noop()")
        assert "Total results" in obs0["text"] and "search_box" in obs1["axtree"]
        assert obs0["goal"] == goals[0]["instruction_text"] != obs1["goal"]
        envs[0].close()
        obs1, *_ = envs[1].step(f"search[{goals[1]['query']}]")
        assert obs1["last_action_error"] == "" and "Total results" in obs1["text"]
    finally:
        for env in envs:
            env.close()


def test_missing_chromium_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        gym.make("WebGym-Shopping-v0", chromium_path="/nonexistent/chromium")


# ---- options are checked, a fork keeps the step limit, a reward is paid once ----------------


def test_reset_refuses_a_task_of_another_split(browser_env, text_env):
    train = gym.make("WebGym-ShoppingText-v0", split="train")
    with pytest.raises(ValueError, match="not in split 'train'.*test-0001"):
        train.reset(options={"task_id": "test-0001"})  # a test task never plays as "train"
    _, info = train.reset(options={"task_id": "train-0001"})
    assert info["task_id"] == "train-0001" and info["split"] == "train"
    train.close()
    for env in (text_env, browser_env):
        with pytest.raises(ValueError, match="not in split 'test'.*train-0001"):
            env.reset(options={"task_id": "train-0001"})
        with pytest.raises(ValueError, match="task id"):
            env.reset(options={"task_id": 7})


@pytest.mark.parametrize("which", ["text", "browser"])
def test_a_step_after_the_end_pays_nothing(request, which, catalog):
    from webgym.envs.shopping import EPISODE_OVER

    env = request.getfixturevalue(f"{which}_env")
    goal = catalog.split("test").goals[14]
    env.reset(options={"task_id": goal["task_id"]})
    core = env.unwrapped
    core._goto(f"/s/{core.session_id}/item/{goal['asin']}")
    total, ends = 0.0, []
    actions = [f"click[{v}]" for v in dict(goal["goal_options"]).values()]
    for action in [*actions, "click[Buy Now]", "click[Buy Now]", "noop()", "go_back()"]:
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated:
            ends.append((reward, obs["last_action_error"], int(obs["step"])))
    assert total == pytest.approx(1.0)  # one purchase, paid once
    (paid, _, step), *after = ends
    assert paid == pytest.approx(1.0) and len(after) == 3  # terminated again, each time
    assert all(r == 0.0 and e == EPISODE_OVER and s == step for r, e, s in after)
    snap = core.snapshot()  # a fork of the finished episode pays nothing either
    core.restore(snap)
    _, reward, terminated, truncated, _ = env.step("click[Buy Now]")
    assert (reward, terminated, truncated) == (0.0, True, False)


def test_a_fork_truncates_at_the_episodes_step_limit(catalog):
    from webgym.envs import restore

    env = gym.make("WebGym-ShoppingText-v0", max_episode_steps=6)
    env.reset(options={"task_id": "test-0001"})
    for _ in range(4):
        env.step("noop()")
    snap = env.unwrapped.snapshot()
    assert snap["step"] == 4
    env.reset(options={"task_id": "test-0002"})
    flags = [env.step("noop()")[3] for _ in range(6)]  # the wrappers' count is at 6 now
    assert flags[-1] is True
    for _ in range(2):  # forked after a finished episode, then after a reset
        obs, _ = restore(env, snap)
        assert int(obs["step"]) == 4
        steps = [env.step("noop()") for _ in range(2)]
        assert [s[3] for s in steps] == [False, True]  # step 5, then step 6: the limit
        assert [int(s[0]["step"]) for s in steps] == [5, 6]
        env.reset(options={"task_id": "test-0003"})
    with pytest.raises(ValueError, match="split"):
        restore(env, {**snap, "split": "train"})
    env.close()
