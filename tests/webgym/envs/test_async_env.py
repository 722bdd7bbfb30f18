"""AsyncShoppingEnv: the same episodes as the sync env byte for byte, many sessions on one event
loop and one Chromium without cross-talk, and a Chromium killed under live sessions."""

from __future__ import annotations

import asyncio
import os
import signal

import gymnasium as gym
import numpy as np
import pytest

import webgym
from tests.webgym.scripted import oracle_actions, script_variants

TASKS = [f"test-{i:04d}" for i in range(1, 9)]


def same_obs(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        if isinstance(a[key], np.ndarray):
            if a[key].dtype != b[key].dtype or not np.array_equal(a[key], b[key]):
                return False
        elif a[key] != b[key]:
            return False
    return True


def comparable(info: dict) -> dict:
    """The info without the machine's timings."""
    return {k: v for k, v in info.items() if k != "timings"}


def play_sync(mode: str, task_id: str, actions: list[str], **kwargs) -> list[tuple]:
    env = gym.make(webgym.envs.env_id_for_mode(mode), **kwargs).unwrapped  # no step limit
    try:
        obs, info = env.reset(seed=3, options={"task_id": task_id})
        trace = [(obs, 0.0, False, False, comparable(info))]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((obs, reward, terminated, truncated, comparable(info)))
        return trace
    finally:
        env.close()


async def play_async(env, task_id: str, actions: list[str]) -> list[tuple]:
    obs, info = await env.reset(seed=3, options={"task_id": task_id})
    trace = [(obs, 0.0, False, False, comparable(info))]
    for action in actions:
        obs, reward, terminated, truncated, info = await env.step(action)
        trace.append((obs, reward, terminated, truncated, comparable(info)))
    return trace


def expected_rewards(catalog, runs: list[tuple[str, list[str]]]) -> list[float]:
    """Each scripted episode's final reward, played one at a time in the sync text env."""
    env = gym.make("WebGym-ShoppingText-v0").unwrapped
    try:
        out = []
        for task_id, actions in runs:
            env.reset(options={"task_id": task_id})
            reward = 0.0
            for action in actions:
                _, reward, *_ = env.step(action)
            out.append(reward)
        return out
    finally:
        env.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["text", "browser"])
async def test_async_episode_is_byte_identical_to_sync(mode, catalog, shop):
    goal = catalog.task("test-0003")
    actions = script_variants(goal)[1] + ["click[Buy Now]"]  # bad id, go_back, buy, then over
    if mode == "browser":
        actions.insert(2, "scroll(0, 200)")
    # One shop server for both, so that the URLs (its port) agree too.
    sync_trace = await asyncio.to_thread(play_sync, mode, "test-0003", actions, shop_url=shop.url)
    env = webgym.AsyncShoppingEnv(mode=mode, shop_url=shop.url)
    try:
        async_trace = await play_async(env, "test-0003", actions)
    finally:
        await env.aclose()
    assert len(async_trace) == len(sync_trace)
    for (o1, *rest1), (o2, *rest2) in zip(sync_trace, async_trace, strict=True):
        assert same_obs(o1, o2), o1["last_action"]
        assert rest1 == rest2
    assert async_trace[-2][1] == 1.0 and async_trace[-2][2]  # the purchase
    assert async_trace[-1][0]["last_action_error"]  # a step after the end is reported
    if mode == "browser":
        assert "screenshot" in async_trace[0][0]


async def run_group(mode: str, runs: list[tuple[str, list[str]]]):
    envs = [webgym.AsyncShoppingEnv(mode=mode, screenshot=False) for _ in runs]
    try:
        traces = await asyncio.gather(
            *(
                play_async(env, task, actions)
                for env, (task, actions) in zip(envs, runs, strict=True)
            )
        )
        if mode == "browser":
            host = envs[0]._host
            assert all(env._host is host for env in envs)  # one Chromium
            assert host.context_count == len(envs)  # a context each
        return traces
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["text", "browser"])
async def test_eight_concurrent_sessions_of_different_tasks(mode, catalog):
    runs = [(task, script_variants(catalog.task(task))[i]) for i, task in enumerate(TASKS)]
    traces = await run_group(mode, runs)
    want = expected_rewards(catalog, runs)
    assert [trace[-1][1] for trace in traces] == want
    assert 1.0 in want and len(set(want)) > 2
    for (task, _), trace in zip(runs, traces, strict=True):
        goal = catalog.task(task)["instruction_text"]
        assert all(obs["goal"] == goal and info["task_id"] == task for obs, *_, info in trace)


@pytest.mark.asyncio
async def test_a_grpo_group_of_eight_sessions_of_one_task(catalog):
    goal = catalog.task("test-0005")
    runs = [("test-0005", script) for script in script_variants(goal)]
    traces = await run_group("browser", runs)
    starts = [trace[0][0] for trace in traces]
    assert all(same_obs(starts[0], start) for start in starts)  # identical group starts
    want = expected_rewards(catalog, runs)
    assert [trace[-1][1] for trace in traces] == want
    assert want[0] == 1.0 and len(set(want)) > 2
    for (_, actions), trace in zip(runs, traces, strict=True):
        assert [obs["last_action"] for obs, *_ in trace[1:]] == actions


@pytest.mark.asyncio
async def test_chromium_killed_under_eight_sessions_ends_each_episode(catalog):
    envs = [webgym.AsyncShoppingEnv(mode="browser", screenshot=False) for _ in TASKS]
    try:
        await asyncio.gather(
            *(env.reset(options={"task_id": task}) for env, task in zip(envs, TASKS, strict=True))
        )
        host = envs[0]._host
        pid, launches = host.pid, host.launches
        os.kill(pid, signal.SIGKILL)  # the Chromium this test's host started
        results = await asyncio.gather(*(env.step("search[lamp]") for env in envs))
        for obs, reward, terminated, truncated, info in results:
            assert truncated and not terminated and reward == 0.0
            assert "error" in info and obs["last_action_error"]
        assert host.launches == launches + 1  # relaunched once for all eight
        assert host.pid != pid and host.alive
        # The next resets work (all eight), and two whole episodes reach their reward.
        await asyncio.gather(
            *(env.reset(options={"task_id": t}) for env, t in zip(envs, TASKS, strict=True))
        )
        assert host.context_count == len(envs)
        goals = [catalog.task(task) for task in TASKS[:2]]
        traces = await asyncio.gather(
            *(
                play_async(env, g["task_id"], oracle_actions(g))
                for env, g in zip(envs, goals, strict=False)
            )
        )
        assert [trace[-1][1] for trace in traces] == [1.0, 1.0]
    finally:
        await asyncio.gather(*(env.aclose() for env in envs))


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["text", "browser"])
async def test_a_click_on_an_inert_target_changes_nothing(mode, catalog):
    """A click on a heading or a text with an element id is legal and does nothing: label 0,
    distances 0 (the same as tests/webgym/envs/test_inert_targets.py, on the async tab)."""
    env = webgym.AsyncShoppingEnv(mode=mode)
    try:
        obs, _ = await env.reset(options={"task_id": TASKS[6]})
        for action in ("click('instruction')", "click('logo')"):
            assert action in obs["clickable_actions"] and action not in obs["available_actions"]
            after, reward, terminated, truncated, info = await env.step(action)
            assert after["last_action_error"] == "" and not (terminated or truncated)
            assert same_obs(
                {**after, "last_action": "", "step": 0}, {**obs, "step": 0, "last_action": ""}
            )
            effect = info["action_effect"]
            assert effect["label"] == 0 and effect["text_distance"] == 0
            assert effect.get("pixel_distance", 0.0) == 0.0
            obs = after
        obs, *_ = await env.step("click('no_such_id')")
        assert obs["last_action_error"].startswith("no element with id 'no_such_id'")
    finally:
        await env.aclose()
