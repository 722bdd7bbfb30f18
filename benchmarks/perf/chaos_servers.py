"""Chaos scenarios for the servers' limits and the episode's end, as rows of the chaos suite.

    from webgym_benchmarks.perf.chaos_servers import scenarios
    for run in scenarios(fast=True):
        print(run())

Scenarios (each returns a ``webgym_benchmarks.perf.chaos_row.Row``):

- **openenv http capacity** (text; browser when not fast): 16 concurrent ``POST /reset`` on an
  OpenEnv server with ``--max-sessions 4``; every answer is 200 or a 503 that says the server is
  at capacity, the slots held never pass 4, and every slot, shop session and browser context is
  released afterwards.
- **openenv malformed frame**: a WebSocket session sent ``[1,2,3]``, invalid JSON, a JSON
  scalar, a 100,000-deep array and a binary frame answers each with an error frame and then
  steps on in the same episode.
- **step after the end** (text; browser when not fast): the target bought, then Buy Now twice
  more and a noop; the episode's total reward is the one purchase's, each later step says the
  episode is over.
- **shop crowding**: over real HTTP, one client address (127.0.0.2) floods the shop with new
  sessions; it is refused past its share (429), while another client's live episode stays
  served and a third client can still start one.

Imports only ``webgym`` (and ``webgym_benchmarks.perf.chaos`` for ``Row``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from webgym_benchmarks.perf.chaos_row import Row

HTTP_RESETS = 16
MAX_SESSIONS = 4


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _shop_sessions(url: str) -> int:
    import httpx

    return int(httpx.get(url + "/healthz", timeout=30).json()["sessions"])


def scenario_openenv_http_capacity(mode: str = "text") -> Row:
    import httpx

    from webgym.integrations.openenv import WebGymServer
    from webgym.shop.server import ShopServer

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            return await asyncio.gather(
                *(http.post("/reset", json={"task_id": "test-0001"}) for _ in range(HTTP_RESETS))
            )

    with (
        ShopServer() as shop,
        WebGymServer(mode, max_sessions=MAX_SESSIONS, shop_url=shop.url) as server,
    ):
        t0 = time.perf_counter()
        answers = asyncio.run(burst(server.url))
        seconds = time.perf_counter() - t0
        served = sum(r.status_code == 200 for r in answers)
        refused = [r for r in answers if r.status_code == 503]
        clear = all("capacity" in r.json().get("detail", "").lower() for r in refused)
        peak = server.sessions()["peak"]
        released = _wait(lambda: server.sessions()["active"] == 0)
        shop_freed = _wait(lambda: _shop_sessions(shop.url) == 0)
        contexts_freed = mode != "browser" or _wait(lambda: server.browser_contexts() == 0)
    ok = (
        served + len(refused) == HTTP_RESETS
        and served >= 1
        and clear
        and peak <= MAX_SESSIONS
        and released
        and shop_freed
        and contexts_freed
    )
    return Row(
        f"openenv http capacity ({mode})",
        f"{HTTP_RESETS} concurrent POST /reset, --max-sessions {MAX_SESSIONS}: {served} served, "
        f"{len(refused)} refused 503{'' if clear else ' (unclear message)'}; peak {peak} slots; "
        f"released: slots {released}, shop sessions {shop_freed}, contexts {contexts_freed}; "
        f"{seconds:.1f} s",
        ok,
    )


def scenario_openenv_malformed_frame() -> Row:
    from websockets.sync.client import connect

    from webgym.integrations.openenv import WebGymServer
    from webgym.shop.server import ShopServer

    frames: list[str | bytes] = ["[1,2,3]", "not json {", "7", '{"type": 5}', "[" * 100_000]
    frames.append(b"\x00\x01")
    with ShopServer() as shop, WebGymServer("text", max_sessions=2, shop_url=shop.url) as server:
        with connect(server.url.replace("http://", "ws://") + "/ws") as ws:
            ws.send(json.dumps({"type": "reset", "data": {"task_id": "test-0003"}}))
            started = json.loads(ws.recv(timeout=60))["type"] == "observation"
            answered = 0
            for frame in frames:
                ws.send(frame)
                reply = json.loads(ws.recv(timeout=60))
                answered += reply["type"] == "error" and bool(reply["data"].get("message"))
            ws.send(json.dumps({"type": "step", "data": {"action_str": "search[lamp]"}}))
            after = json.loads(ws.recv(timeout=60))
    obs = after.get("data", {}).get("observation", {})
    lived = after["type"] == "observation" and obs.get("task_id") == "test-0003"
    lived = lived and obs.get("step") == 1
    return Row(
        "openenv malformed frame",
        f"{answered}/{len(frames)} malformed frames answered with an error frame; "
        f"the session {'stepped on (step 1 of test-0003)' if lived else 'did not go on'}",
        started and answered == len(frames) and lived,
    )


def _buy_the_target(env, catalog) -> tuple[str, list[str]]:
    """A test task whose target item is on the first results page, and the actions that buy
    it with the goal's options."""
    for goal in catalog.split("test").goals[:50]:
        obs, _ = env.reset(options={"task_id": goal["task_id"]})
        obs, *_ = env.step(f"search[{goal['query']}]")
        item = f"click('item_{goal['asin'].lower()}')"
        if item in obs["available_actions"]:
            options = [f"click[{v}]" for v in dict(goal["goal_options"]).values()]
            return goal["task_id"], [f"search[{goal['query']}]", item, *options, "click[Buy Now]"]
    raise RuntimeError("no test task has its target on the first results page")


def scenario_step_after_end(mode: str = "text") -> Row:
    import gymnasium as gym

    import webgym  # noqa: F401 - registers the env ids
    from webgym.envs import env_id_for_mode
    from webgym.shop.catalog import default_catalog

    env = gym.make(env_id_for_mode(mode))
    try:
        task_id, actions = _buy_the_target(env, default_catalog())
        env.reset(options={"task_id": task_id})
        rewards, ends, errors = [], [], []
        for action in [*actions, "click[Buy Now]", "click[Buy Now]", "noop()"]:
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            ends.append(terminated)
            errors.append(obs["last_action_error"])
    finally:
        env.close()
    n = len(actions)
    paid, after = rewards[n - 1], rewards[n:]
    over = all("episode is over" in e for e in errors[n:])
    ok = paid > 0 and sum(rewards) == paid and after == [0.0] * 3 and all(ends[n - 1 :]) and over
    return Row(
        f"step after the end ({mode})",
        f"{task_id}: bought for {paid:.2f}, then Buy Now x2 and a noop paid "
        f"{' + '.join(f'{r:g}' for r in after)}; total {sum(rewards):.2f}; "
        f"terminated each time: {all(ends[n - 1 :])}; 'episode is over' said: {over}",
        ok,
    )


def scenario_shop_crowding(flood: int = 400, share: int = 50) -> Row:
    import httpx

    from webgym.shop.server import ShopServer

    def client(address: str, base: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=base, transport=transport, timeout=60)

    with ShopServer(max_sessions=300, max_sessions_per_client=share) as shop:
        with (
            client("127.0.0.1", shop.url) as alice,
            client("127.0.0.2", shop.url) as mallory,
            client("127.0.0.3", shop.url) as bob,
        ):
            task = alice.get("/api/tasks", params={"split": "test"}).json()["task_ids"][0]
            episode = alice.post("/api/sessions", json={"task_id": task}).json()["session_id"]
            alice.get(f"/s/{episode}/search", params={"q": "lamp"})
            t0 = time.perf_counter()
            codes = [
                mallory.post("/api/sessions", json={"task_id": task}).status_code
                for _ in range(flood)
            ]
            seconds = time.perf_counter() - t0
            live = alice.get(f"/s/{episode}/search", params={"q": "lamp"}).status_code
            other = bob.post("/api/sessions", json={"task_id": task}).status_code
    created, limited = codes.count(201), codes.count(429)
    ok = created == share and limited == flood - share and live == 200 and other == 201
    return Row(
        "shop crowding",
        f"one client sent {flood} new sessions in {seconds:.1f} s: {created} made, {limited} "
        f"refused 429 (share {share}); another's live episode: {live}; a third client's new "
        f"session: {other}",
        ok,
    )


def scenarios(fast: bool) -> list[Callable[[], Row]]:
    """The scenarios to run: without Chromium when ``fast``."""
    runs: list[Callable[[], Row]] = [
        scenario_openenv_http_capacity,
        scenario_openenv_malformed_frame,
        scenario_step_after_end,
        scenario_shop_crowding,
    ]
    if not fast:
        runs += [
            lambda: scenario_openenv_http_capacity("browser"),
            lambda: scenario_step_after_end("browser"),
        ]
    return runs
