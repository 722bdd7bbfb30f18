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


# ---- one session limit for every entry point; a malformed frame is answered, not fatal ----


async def _post_resets(url: str, n: int, task_id: str = "test-0001") -> list:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        return await asyncio.gather(
            *(http.post("/reset", json={"task_id": task_id}) for _ in range(n))
        )


def _assert_capacity_answers(responses: list, limit: int) -> int:
    ok = [r for r in responses if r.status_code == 200]
    full = [r for r in responses if r.status_code == 503]
    assert len(ok) + len(full) == len(responses), [r.status_code for r in responses]
    for r in full:
        assert "capacity" in r.json()["detail"] and r.headers["retry-after"]
        assert r.json()["max_sessions"] == limit
    return len(ok)


def test_http_resets_share_the_session_limit_with_websocket_sessions(shop):
    import httpx

    with WebGymServer("text", max_sessions=2, shop_url=shop.url) as server:

        async def main():
            a, b = WebGymClient(base_url=server.url), WebGymClient(base_url=server.url)
            await a.reset(task_id="test-0001")
            await b.reset(task_id="test-0002")
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                full = await http.post("/reset", json={"task_id": "test-0003"})
                step = await http.post("/step", json={"action": {"action_str": "noop()"}})
                assert full.status_code == step.status_code == 503
                assert "capacity" in full.json()["detail"]
                await b.close()
                assert wait_for(lambda: server.sessions()["active"] == 1)
                again = await http.post("/reset", json={"task_id": "test-0003"})
                assert again.status_code == 200
                assert again.json()["observation"]["task_id"] == "test-0003"
            await a.close()

        asyncio.run(main())
        assert wait_for(lambda: server.sessions()["active"] == 0)
        assert server.sessions() == {"active": 0, "peak": 2, "max": 2}


def test_concurrent_http_resets_never_exceed_the_limit(shop):
    with WebGymServer("text", max_sessions=3, shop_url=shop.url) as server:
        before = shop_sessions(shop)
        served = _assert_capacity_answers(asyncio.run(_post_resets(server.url, 16)), 3)
        assert served >= 1
        assert server.sessions()["peak"] <= 3
        assert wait_for(lambda: server.sessions()["active"] == 0)  # released once closed
        assert wait_for(lambda: shop_sessions(shop) == before)


def test_concurrent_browser_http_resets_never_exceed_the_limit(shop):
    with WebGymServer("browser", max_sessions=2, shop_url=shop.url) as server:
        responses = asyncio.run(_post_resets(server.url, 8))
        served = _assert_capacity_answers(responses, 2)
        assert served >= 1 and server.sessions()["peak"] <= 2
        assert wait_for(lambda: server.browser_contexts() == 0)


def test_a_malformed_frame_gets_an_error_frame_and_the_session_lives_on(text_server):
    from websockets.sync.client import connect

    ws_url = text_server.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url) as ws:
        ws.send(json.dumps({"type": "reset", "data": {"task_id": "test-0003"}}))
        first = json.loads(ws.recv(timeout=30))
        assert first["type"] == "observation"
        for bad in ("[1,2,3]", "not json {", "7", '{"type": 5}', "[" * 100_000, b"\x00\x01"):
            ws.send(bad)
            frame = json.loads(ws.recv(timeout=30))
            assert frame["type"] == "error" and frame["data"]["message"], bad
        ws.send(json.dumps({"type": "step", "data": {"action_str": "search[lamp]"}}))
        after = json.loads(ws.recv(timeout=30))
        assert after["type"] == "observation"
        obs = after["data"]["observation"]
        assert obs["task_id"] == "test-0003" and obs["step"] == 1
        assert obs["last_action_error"] == ""
