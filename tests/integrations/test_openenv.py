"""webgym.integrations.openenv: openenv's own WebSocket client against `WebGymServer` on
loopback: 8 concurrent sessions reach their scripted rewards, a closed or dropped session
releases its shop session and browser context, a bad action is an observation with the error."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.request

import pytest

pytest.importorskip("openenv.core")

from tests.scripted import oracle_actions, script_variants  # noqa: E402
from webgym.integrations.openenv import WebGymAction, WebGymClient, WebGymServer  # noqa: E402


def shop_sessions(shop) -> int:
    with urllib.request.urlopen(shop.url + "/healthz") as r:
        return json.loads(r.read())["sessions"]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def play(url: str, task_id: str, actions: list[str]) -> tuple[float, bool, list]:
    async with WebGymClient(base_url=url) as client:
        result = await client.reset(task_id=task_id, seed=0)
        assert result.observation.task_id == task_id
        seen = [result.observation]
        for action in actions:
            result = await client.step(WebGymAction(action_str=action))
            seen.append(result.observation)
        return result.reward, result.done, seen


@pytest.fixture(scope="module")
def text_server(shop):
    with WebGymServer("text", max_sessions=8, shop_url=shop.url) as server:
        yield server


def test_eight_concurrent_sessions_reach_their_scripted_rewards(text_server, catalog):
    import gymnasium as gym

    tasks = [f"test-{i:04d}" for i in range(8)]
    runs = [(t, script_variants(catalog.task(t))[i]) for i, t in enumerate(tasks)]
    ref = gym.make("WebGym-ShoppingText-v0").unwrapped  # the expected rewards, one at a time
    want = []
    for task, actions in runs:
        ref.reset(options={"task_id": task})
        want.append([ref.step(a)[1] for a in actions][-1])
    ref.close()

    async def main():
        return await asyncio.gather(*(play(text_server.url, t, a) for t, a in runs))

    results = asyncio.run(main())
    assert [reward for reward, _, _ in results] == want and 1.0 in want
    for (task, actions), (_, _, seen) in zip(runs, results, strict=True):
        goal = catalog.task(task)["instruction_text"]
        assert all(obs.goal == goal for obs in seen)  # no cross-talk
        assert [obs.last_action for obs in seen[1:]] == actions


def test_a_bad_action_is_an_observation_with_the_error(text_server):
    async def main():
        async with WebGymClient(base_url=text_server.url) as client:
            early = await client.step(WebGymAction(action_str="noop()"))
            assert "reset" in early.observation.last_action_error
            await client.reset(task_id="test-0002")
            for bad in ("click('no_such_id')", "this is not an action((", "mouse_click(1, 2)"):
                result = await client.step(WebGymAction(action_str=bad))
                assert result.observation.last_action_error and not result.done
            result = await client.step(WebGymAction(action_str="search[lamp]"))  # still open
            assert result.observation.last_action_error == ""
            state = await client.state()
            assert state.task_id == "test-0002" and state.step == 4 and state.split_hash
            unknown = await client.reset(task_id="no-such-task")
            assert "no-such-task" in unknown.observation.last_action_error

    asyncio.run(main())


def test_closed_or_dropped_sessions_release_shop_session_and_context(shop, catalog):
    goal = catalog.task("test-0004")
    with WebGymServer("browser", max_sessions=4, shop_url=shop.url) as server:
        before = shop_sessions(shop)
        assert server.browser_contexts() == 0

        async def main():
            closed = WebGymClient(base_url=server.url)
            dropped = WebGymClient(base_url=server.url)
            await closed.connect()
            await dropped.connect()
            first = await closed.reset(task_id="test-0004")
            await dropped.reset(task_id="test-0005")
            await dropped.step(WebGymAction(action_str="search[lamp]"))
            assert server.browser_contexts() == 2 and shop_sessions(shop) == before + 2
            pixels = first.observation.screenshot_jpeg
            assert isinstance(pixels, str)
            from PIL import Image

            with Image.open(io.BytesIO(base64.b64decode(pixels))) as img:
                assert img.format == "JPEG" and img.size == (1280, 720)
            await closed.step(WebGymAction(action_str=oracle_actions(goal)[0]))  # mid-episode
            await closed.close()
            dropped._ws.transport.abort()  # the connection drops, no close message

        asyncio.run(main())
        assert wait_for(lambda: shop_sessions(shop) == before)
        assert wait_for(lambda: server.browser_contexts() == 0)
