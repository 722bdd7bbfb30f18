"""webgym.integrations.openenv: openenv's own WebSocket client against `WebGymServer` on
loopback: 8 concurrent sessions reach their scripted rewards, a closed or dropped session
releases its shop session and browser context, a bad action is an observation with the error,
clients over the session limit get the capacity error, clients that leave log one line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import time
import urllib.request

import pytest

pytest.importorskip("openenv.core")

from tests.webgym.scripted import oracle_actions, script_variants  # noqa: E402
from webgym.integrations.openenv import (  # noqa: E402
    WebGymAction,
    WebGymCapacityError,
    WebGymClient,
    WebGymServer,
    capacity_message,
)


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
        body = r.json()
        assert body["detail"] == capacity_message(body["active_sessions"], limit)
        assert body["max_sessions"] == limit and r.headers["retry-after"]
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
                assert full.json()["detail"] == capacity_message(2, 2)
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


# ---- over the limit: one clear error; clients that leave: one log line, no traceback ----


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def server_log():
    """Every record uvicorn's loggers (and ours, ``uvicorn.error.webgym``) emit meanwhile: attach
    after the server started (its logging config replaces the loggers' handlers)."""
    handler = _Records()
    logger = logging.getLogger("uvicorn")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def trouble(records: list) -> list[str]:
    """Records that are errors or carry a traceback."""
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info]


def session_lines(records: list, port: int) -> list[str]:
    """Our lines about the WebSocket connection from local port ``port``."""
    mine = [r.getMessage() for r in records if r.name == "uvicorn.error.webgym"]
    return [m for m in mine if f":{port} - WebSocket /ws " in m]


def test_six_clients_against_four_sessions_two_get_the_capacity_error(shop):
    full = capacity_message(4, 4)
    assert full == (
        "CAPACITY_REACHED: 4 sessions in use (max 4); retry later or raise --max-sessions"
    )

    async def one(url: str, i: int, tried: list, everyone: asyncio.Event):
        async with WebGymClient(base_url=url) as client:
            try:
                first = await client.reset(task_id=f"test-{i:04d}")
            except Exception as e:  # whatever it is, the test says which
                outcome = e
            else:
                outcome = None
            tried.append(i)
            if len(tried) == 6:
                everyone.set()
            await everyone.wait()  # the four sessions stay open until all six have tried
            if outcome is not None:
                return outcome
            step = await client.step(WebGymAction(action_str="search[lamp]"))
            return first.observation.task_id, step.observation

    with (
        WebGymServer("text", max_sessions=4, shop_url=shop.url, log_level="info") as server,
        server_log() as records,
    ):

        async def main():
            tried, everyone = [], asyncio.Event()
            runs = (one(server.url, i, tried, everyone) for i in range(6))
            return await asyncio.wait_for(asyncio.gather(*runs), 120)

        outcomes = asyncio.run(main())
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        played = [o for o in outcomes if not isinstance(o, BaseException)]
        assert [type(e) for e in refused] == [WebGymCapacityError] * 2, refused
        assert [str(e) for e in refused] == [full, full]
        assert len(played) == 4
        for task_id, obs in played:
            assert task_id.startswith("test-") and obs.task_id == task_id
            assert obs.step == 1 and obs.last_action_error == "" and obs.last_action
        assert wait_for(lambda: server.sessions()["active"] == 0)
        assert server.sessions()["peak"] == 4
        warnings = [r for r in records if r.name == "uvicorn.error.webgym" and r.levelno >= 30]
        assert [r.getMessage().split(" refused: ")[1] for r in warnings] == [full, full]
        assert trouble(records) == []


def test_a_refused_connection_gets_the_frame_then_close_1013_and_can_retry(shop):
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    full = capacity_message(1, 1)
    with WebGymServer("text", max_sessions=1, shop_url=shop.url) as server:
        ws_url = server.url.replace("http://", "ws://") + "/ws"

        async def main():
            holder = WebGymClient(base_url=server.url)
            await holder.reset(task_id="test-0001")
            with connect(ws_url) as raw:  # any WebSocket client: the frame, then the close
                frame = json.loads(raw.recv(timeout=30))
                assert frame["type"] == "error" and frame["data"]["code"] == "CAPACITY_REACHED"
                assert frame["data"]["message"] == full and frame["data"]["max_sessions"] == 1
                with pytest.raises(ConnectionClosedError) as closed:
                    raw.recv(timeout=30)
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, full)
            late = WebGymClient(base_url=server.url)
            await late.connect()
            await asyncio.wait_for(late._ws.wait_closed(), 30)  # the close comes before reset
            with pytest.raises(WebGymCapacityError) as refused:
                await late.reset(task_id="test-0002")
            assert str(refused.value) == full
            await holder.close()
            assert wait_for(lambda: server.sessions()["active"] == 0)
            again = await late.reset(task_id="test-0002")  # the same client connects anew
            assert again.observation.task_id == "test-0002"
            await late.close()

        asyncio.run(main())
        assert wait_for(lambda: server.sessions()["active"] == 0)


def test_a_client_that_leaves_ends_its_session_with_one_log_line(shop):
    with (
        WebGymServer("text", max_sessions=2, shop_url=shop.url, log_level="info") as server,
        server_log() as records,
    ):
        before = shop_sessions(shop)

        async def normal_exit() -> tuple[int, int]:
            async with WebGymClient(base_url=server.url) as client:
                await client.reset(task_id="test-0001")
                await client.step(WebGymAction(action_str="search[lamp]"))
                port = client._ws.local_address[1]
                start = len(records)
            return port, start

        port, start = asyncio.run(normal_exit())
        assert wait_for(lambda: session_lines(records, port))
        time.sleep(0.3)  # anything else the exit would log has arrived by now
        exit_lines = [r.getMessage() for r in records[start:]]
        assert exit_lines == session_lines(records, port)
        assert len(exit_lines) == 1 and "session ended (closed by the" in exit_lines[0]

        async def leave_mid_step() -> int:  # the answer to its step finds it gone
            client = WebGymClient(base_url=server.url)
            await client.reset(task_id="test-0002")
            await client._send({"type": "step", "data": {"action_str": "search[bed sheets]"}})
            port = client._ws.local_address[1]
            await client._ws.close()
            return port

        port = asyncio.run(leave_mid_step())
        assert wait_for(lambda: session_lines(records, port))
        time.sleep(0.3)
        assert session_lines(records, port) == [
            f"127.0.0.1:{port} - WebSocket /ws session ended "
            "(the client left; 1 answer(s) not delivered)"
        ]
        assert trouble(records) == []
        assert wait_for(lambda: shop_sessions(shop) == before)  # both sessions released
        assert server.sessions()["active"] == 0
