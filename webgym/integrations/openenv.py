"""WebGym as an OpenEnv environment: models, the server-side environment, a client, a server.

    webgym serve openenv --port 8000 --mode text --max-sessions 16    # 127.0.0.1 unless --host

    from webgym.integrations.openenv import WebGymAction, WebGymClient
    async with WebGymClient(base_url="http://127.0.0.1:8000") as client:
        result = await client.reset(task_id="test-0001", seed=0)
        result = await client.step(WebGymAction(action_str="search[bed sheets]"))
        result.observation.text, result.reward, result.done

The server is ``openenv-core``'s ``HTTPEnvServer`` over :class:`WebGymEnvironment`, one per
WebSocket session (``SUPPORTS_CONCURRENT_SESSIONS = True``). Every entry point that can start an
episode shares the one ``--max-sessions`` limit: a WebSocket session holds a slot while it is
open, an HTTP ``POST /reset`` or ``/step`` holds one until its environment is closed. Over
capacity, a WebSocket gets an error frame (``CAPACITY_REACHED``) and then a close with code 1013
(try again later) whose reason is the same message, and :class:`WebGymClient` raises
:class:`WebGymCapacityError` with it; an HTTP request gets 503 with that message as ``detail`` and
``Retry-After``. There is no wait queue. A WebSocket frame that is not a JSON object with a
string ``type`` (invalid JSON, ``[1,2,3]``, a binary frame) is answered with an error frame and
the session lives on. A client that leaves (even mid-step) ends its session with one log line
(logger ``uvicorn.error.webgym``), never a traceback. Its
``reset_async`` / ``step_async`` are those of ``webgym.AsyncShoppingEnv``: every session runs on
the server's event loop (in browser mode one Chromium, a context per session), so sessions never
queue behind one thread. A bad action is an observation with ``last_action_error`` (the env's
rule), never an error frame or a closed socket. Closing or dropping a session releases its shop
session and its browser context.

Observations carry the screenshot as a base64 JPEG (``screenshot_jpeg``), never a nested list.
Imports only ``webgym`` (and ``openenv``, ``fastapi``, ``starlette``, ``uvicorn``, ``websockets``,
``PIL``).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import io
import json
import logging
import socket
import threading
import time
import uuid
from typing import Any

from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server.exceptions import SessionCapacityError
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import (
    Action,
    Observation,
    State,
    WSErrorCode,
    WSErrorResponse,
)
from pydantic import Field
from websockets.exceptions import ConnectionClosed

__all__ = [
    "CAPACITY_CLOSE_CODE",
    "WebGymAction",
    "WebGymCapacityError",
    "WebGymClient",
    "WebGymEnvironment",
    "WebGymObservation",
    "WebGymServer",
    "WebGymState",
    "build_app",
    "capacity_message",
    "encode_jpeg",
]

# The server's log lines about WebSocket sessions: a child of uvicorn's own logger, so they go
# where uvicorn's go, at its --log-level.
LOG = logging.getLogger("uvicorn.error.webgym")
CAPACITY_CLOSE_CODE = 1013  # RFC 6455 "Try Again Later": the close code of a refused session


def capacity_message(active_sessions: int, max_sessions: int) -> str:
    """What a client over ``--max-sessions`` is told (WebSocket close reason, error frame, 503)."""
    return (
        f"CAPACITY_REACHED: {active_sessions} sessions in use (max {max_sessions}); "
        "retry later or raise --max-sessions"
    )


class WebGymCapacityError(RuntimeError):
    """The server refused a session: all of its ``--max-sessions`` slots are in use. There is no
    wait queue; ``reset()`` on the same client later connects anew."""


class WebGymAction(Action):
    """One action of WebGym's grammar, as text (``webgym.actions.describe_action_space``)."""

    action_str: str = Field(
        ..., description="e.g. search[dog leash], click('item_b0..'), go_back()"
    )


class WebGymObservation(Observation):
    """What the env observes after a reset or a step (``reward`` and ``done`` from the base)."""

    goal: str = ""
    url: str = ""
    text: str = ""
    axtree: str = ""
    available_actions: list[str] = Field(default_factory=list)
    clickable_actions: list[str] = Field(
        default_factory=list,
        description="click('bid') for every click target, inert ones included (a superset of "
        "available_actions; a click on an inert one changes nothing)",
    )
    last_action: str = ""
    last_action_error: str = ""
    step: int = 0
    task_id: str = ""
    truncated: bool = False
    error: str = Field(default="", description="machine trouble that ended the episode")
    action_effect: dict[str, float] = Field(
        default_factory=dict, description="d(s, s'), eps and labels (info['action_effect'])"
    )
    screenshot_jpeg: str | None = Field(default=None, description="base64 JPEG (browser mode)")


class WebGymState(State):
    """The episode: its task, its step, the split and the split's hash."""

    task_id: str | None = None
    step: int = 0
    split: str = ""
    split_hash: str = ""


def encode_jpeg(pixels: Any, quality: int = 90) -> str:
    """An (H, W, 3) uint8 array as a base64 JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class WebGymEnvironment(Environment[WebGymAction, WebGymObservation, WebGymState]):
    """One OpenEnv session: an ``AsyncShoppingEnv`` made on the server's event loop at the
    first reset (the server builds environments in worker threads)."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, mode: str = "text", split: str = "test", **env_kwargs: Any) -> None:
        super().__init__()
        self.mode, self.split = mode, split
        self._env_kwargs = {"html": False, **env_kwargs}
        self._env = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = WebGymState(split=split)

    async def _environment(self):
        if self._env is None:
            from webgym.envs.async_shopping import AsyncShoppingEnv

            self._loop = asyncio.get_running_loop()
            self._env = AsyncShoppingEnv(self.mode, split=self.split, **self._env_kwargs)
            self._state.split_hash = self._env.split_hash
        return self._env

    def _observation(self, obs: dict, reward: float, done: bool, info: dict) -> WebGymObservation:
        effect = info.get("action_effect", {})
        pixels = obs.get("screenshot")
        return WebGymObservation(
            goal=obs["goal"],
            url=obs["url"],
            text=obs["text"],
            axtree=obs.get("axtree", ""),
            available_actions=list(obs["available_actions"]),
            clickable_actions=list(obs["clickable_actions"]),
            last_action=obs["last_action"],
            last_action_error=obs["last_action_error"],
            step=int(obs["step"]),
            task_id=info.get("task_id", ""),
            truncated=bool(info.get("truncated", False)),
            error=info.get("error", ""),
            action_effect={k: float(v) for k, v in effect.items()},
            screenshot_jpeg=encode_jpeg(pixels) if pixels is not None else None,
            reward=float(reward),
            done=done,
        )

    async def reset_async(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        task_id: str | None = None,
        **kwargs: Any,
    ) -> WebGymObservation:
        env = await self._environment()
        options = {"task_id": task_id} if task_id else None
        try:
            obs, info = await env.reset(seed=seed, options=options)
        except ValueError as e:  # an unknown task id: said in the observation
            return WebGymObservation(last_action_error=str(e), done=True, reward=0.0)
        self._state = WebGymState(
            episode_id=episode_id or env.session_id,
            step_count=0,
            task_id=info["task_id"],
            step=0,
            split=self.split,
            split_hash=env.split_hash,
        )
        return self._observation(obs, 0.0, False, info)

    async def step_async(
        self, action: WebGymAction, timeout_s: float | None = None, **kwargs: Any
    ) -> WebGymObservation:
        if self._env is None or self._env.session_id is None:
            return WebGymObservation(
                last_action=action.action_str,
                last_action_error="call reset() before step()",
                reward=0.0,
            )
        obs, reward, terminated, truncated, info = await self._env.step(action.action_str)
        self._state.step = self._state.step_count = int(obs["step"])
        info = {**info, "truncated": truncated}
        return self._observation(obs, reward, terminated or truncated, info)

    def reset(self, seed=None, episode_id=None, **kwargs) -> WebGymObservation:
        raise RuntimeError("WebGymEnvironment is asynchronous: the server calls reset_async")

    def step(self, action, timeout_s=None, **kwargs) -> WebGymObservation:
        raise RuntimeError("WebGymEnvironment is asynchronous: the server calls step_async")

    @property
    def state(self) -> WebGymState:
        return self._state

    def close(self) -> None:
        """Release the shop session and the browser context (the server calls this from a
        worker thread when a session closes or drops; the env lives on the server's loop)."""
        env, self._env = self._env, None
        if env is None:
            return
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(env.aclose())
            slot = _REQUEST_SLOT.get()
            if slot is not None:  # an HTTP request: its slot is held until the env is gone
                slot.append(task)
        elif loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(env.aclose(), loop).result(timeout=30)


# The closing tasks of the environments an HTTP request made (set by SessionLimit).
_REQUEST_SLOT: contextvars.ContextVar[list[asyncio.Task] | None] = contextvars.ContextVar(
    "webgym_openenv_request_slot", default=None
)
LIMITED_HTTP_PATHS = ("/reset", "/step")  # the HTTP entry points that make an environment


class LimitedEnvServer(HTTPEnvServer):
    """openenv's server whose session table also holds a slot per HTTP ``/reset`` or ``/step``
    in flight, so WebSocket sessions and HTTP requests share ``max_concurrent_envs``."""

    peak_sessions = 0  # the most slots ever held at once

    async def _create_session(self):
        connection = _WS_CONNECTION.get()
        first = connection is not None and not connection.asked_for_session
        if connection is not None:
            connection.asked_for_session = True
        try:
            session_id, env = await super()._create_session()
        except SessionCapacityError as e:
            if first:  # the WebSocket's own session: refused with the message and code 1013
                await connection.refuse(e.active_sessions, e.max_sessions)
            raise
        self.peak_sessions = max(self.peak_sessions, len(self._sessions))
        return session_id, env

    async def reserve_request_slot(self) -> str:
        """A slot for one HTTP request; ``SessionCapacityError`` when none is free."""
        async with self._session_lock:
            if len(self._sessions) >= self._max_concurrent_envs:
                raise SessionCapacityError(len(self._sessions), self._max_concurrent_envs)
            key = f"http-{uuid.uuid4()}"
            self._sessions[key] = None  # counted like a session whose env is being made
            self.peak_sessions = max(self.peak_sessions, len(self._sessions))
            return key

    async def release_request_slot(self, key: str) -> None:
        async with self._session_lock:
            self._sessions.pop(key, None)


def _ws_frame_problem(message: dict) -> str | None:
    """Why a received WebSocket frame is not a message openenv's loop can read, or None."""
    text = message.get("text")
    if text is None:
        return "binary frames are not accepted: send a JSON object as text"
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as e:
        return f"Invalid JSON: {e}"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type", ""), str):
        return "a message must be a JSON object with a string 'type' (reset, step, state, close)"
    return None


class _WebSocketConnection:
    """One WebSocket connection as :class:`SessionLimit` sees it. A send to a client that has
    left is dropped, not raised (openenv would answer the failure with more sends to the gone
    client and end in a traceback); its end is logged as one line; a connection whose session is
    refused for capacity gets an error frame and a close with code 1013 and the message."""

    def __init__(self, scope: Any, send: Any) -> None:
        client = scope.get("client")
        self.name = f"{client[0]}:{client[1]} - WebSocket {scope['path']}" if client else "-"
        self._send = send
        self.asked_for_session = False  # its session was asked of the server's session table
        self.refused = False
        self.gone = False  # the connection is closed: nothing more can be sent
        self.end = ""  # how it ended, for the log line
        self.undelivered = 0  # answers dropped because the client had left

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if self.refused or self.gone:
            if kind == "websocket.send" and not self.refused:
                self.undelivered += 1
            return
        try:
            await self._send(message)
        except OSError:  # uvicorn's ClientDisconnected: the client is gone
            self.gone = True
            if kind == "websocket.send":
                self.undelivered += 1
                self.end = self.end or "the client left"
            else:  # the client's close came first: an ordinary end
                self.end = self.end or "closed by the client"
            return
        if kind == "websocket.close":
            self.gone = True
            self.end = self.end or f"closed by the server, code {message.get('code', 1000)}"

    def watch(self, receive: Any) -> Any:
        async def receiving() -> dict:
            message = await receive()
            if message["type"] == "websocket.disconnect" and not self.gone:
                self.gone = True
                code = message.get("code", 1005)
                how = "closed by the client" if code in (1000, 1001) else "connection lost"
                self.end = f"{how}, code {code}"
            return message

        return receiving

    async def refuse(self, active_sessions: int, max_sessions: int) -> None:
        message = capacity_message(active_sessions, max_sessions)
        frame = WSErrorResponse(
            data={
                "message": message,
                "code": WSErrorCode.CAPACITY_REACHED,
                "active_sessions": active_sessions,
                "max_sessions": max_sessions,
            }
        )
        await self.send({"type": "websocket.send", "text": frame.model_dump_json()})
        close = {"type": "websocket.close", "code": CAPACITY_CLOSE_CODE, "reason": message[:123]}
        await self.send(close)  # a close reason holds at most 123 bytes
        self.refused = True  # openenv's own error frame and close (code 1000) are dropped
        LOG.warning("%s refused: %s", self.name, message)

    def log_end(self) -> None:
        if self.refused:
            return  # its one line is the refusal
        left = f"; {self.undelivered} answer(s) not delivered" if self.undelivered else ""
        LOG.info("%s session ended (%s%s)", self.name, self.end or "closed", left)


# The WebSocket connection whose ASGI call is running (set by SessionLimit).
_WS_CONNECTION: contextvars.ContextVar[_WebSocketConnection | None] = contextvars.ContextVar(
    "webgym_openenv_ws_connection", default=None
)


class SessionLimit:
    """ASGI middleware over the OpenEnv app: HTTP ``/reset`` and ``/step`` take a slot of the
    server's session limit (503 when none is free) and hold it until the environments they made
    are closed; a malformed WebSocket frame on ``/ws`` is answered with an error frame here, so
    it never reaches (and ends) openenv's session loop; every WebSocket connection is a
    :class:`_WebSocketConnection` (capacity refusals, clients that leave, one log line)."""

    def __init__(self, app: Any, server: LimitedEnvServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in LIMITED_HTTP_PATHS:
            return await self._http(scope, receive, send)
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _websocket(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.websockets import WebSocketDisconnect

        connection = _WebSocketConnection(scope, send)
        receive = connection.watch(receive)
        if scope["path"] == "/ws":
            receive = self._checked_receive(receive, connection.send)
        token = _WS_CONNECTION.set(connection)
        try:
            await self.app(scope, receive, connection.send)
        except WebSocketDisconnect:  # a route that does not catch its client leaving
            if not connection.gone:
                raise
        finally:
            _WS_CONNECTION.reset(token)
        connection.log_end()

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        from fastapi.responses import JSONResponse

        try:
            key = await self.server.reserve_request_slot()
        except SessionCapacityError as e:
            response = JSONResponse(
                {
                    "detail": capacity_message(e.active_sessions, e.max_sessions),
                    "code": WSErrorCode.CAPACITY_REACHED.value,
                    "active_sessions": e.active_sessions,
                    "max_sessions": e.max_sessions,
                },
                503,
                headers={"Retry-After": "1"},
            )
            return await response(scope, receive, send)
        closing: list[asyncio.Task] = []
        token = _REQUEST_SLOT.set(closing)
        try:
            await self.app(scope, receive, send)
        finally:
            _REQUEST_SLOT.reset(token)
            try:
                if closing:
                    await asyncio.gather(*closing, return_exceptions=True)
            finally:
                await self.server.release_request_slot(key)

    @staticmethod
    def _checked_receive(receive: Any, send: Any) -> Any:
        async def checked() -> dict:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                problem = _ws_frame_problem(message)
                if problem is None:
                    return message
                json_error = problem.startswith("Invalid JSON")
                code = WSErrorCode.INVALID_JSON if json_error else WSErrorCode.VALIDATION_ERROR
                frame = WSErrorResponse(data={"message": problem, "code": code})
                await send({"type": "websocket.send", "text": frame.model_dump_json()})

        return checked


def build_app(mode: str = "text", max_sessions: int = 8, **env_kwargs: Any):
    """The OpenEnv FastAPI app serving WebGym: ``openenv-core``'s routes (``/reset``, ``/step``,
    ``/state``, ``/ws``, ``/schema``, ``/health``, ...) with one session limit for them all."""
    from fastapi import FastAPI

    factory = functools.partial(WebGymEnvironment, mode=mode, **env_kwargs)
    server = LimitedEnvServer(
        factory, WebGymAction, WebGymObservation, max_concurrent_envs=max_sessions
    )
    app = FastAPI(title="WebGym OpenEnv server", version="1.0.0")
    server.register_routes(app)
    app.add_middleware(SessionLimit, server=server)
    app.state.env_server = server
    return app


class WebGymClient(EnvClient[WebGymAction, WebGymObservation, WebGymState]):
    """OpenEnv's WebSocket client for a WebGym server. A session the server refuses for capacity
    raises :class:`WebGymCapacityError` with the server's message, whichever arrives first (its
    error frame or its close with code 1013); the closed connection is dropped, so a later call
    connects anew. Other error frames raise ``RuntimeError`` as openenv's client does."""

    async def _send_and_receive(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            await self._send(message)
            response = await self._receive()
        except ConnectionClosed as e:
            close = e.rcvd
            if close is None or close.code != CAPACITY_CLOSE_CODE:
                raise
            await self._drop_connection()
            raise WebGymCapacityError(
                close.reason or "CAPACITY_REACHED: the server refused the session; retry later"
            ) from None
        if response.get("type") == "error":
            data = response.get("data", {})
            if data.get("code") == WSErrorCode.CAPACITY_REACHED.value:
                await self._drop_connection()
                raise WebGymCapacityError(data.get("message", "CAPACITY_REACHED"))
            raise RuntimeError(
                f"Server error: {data.get('message', 'Unknown error')} "
                f"(code: {data.get('code', 'UNKNOWN')})"
            )
        return response

    async def _drop_connection(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # already closed by the server: nothing left to do
                pass

    def _step_payload(self, action: WebGymAction) -> dict[str, Any]:
        return action.model_dump(exclude={"metadata"})

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[WebGymObservation]:
        obs = WebGymObservation(
            **payload.get("observation", {}),
            reward=payload.get("reward"),
            done=payload.get("done", False),
        )
        return StepResult(observation=obs, reward=payload.get("reward"), done=obs.done)

    def _parse_state(self, payload: dict[str, Any]) -> WebGymState:
        return WebGymState(**payload)


class WebGymServer:
    """The app on uvicorn in a background thread (tests, notebooks); ``url`` once started.
    Binds to loopback unless ``host`` says otherwise; logs at ``log_level`` (uvicorn's, with the
    line per WebSocket session at ``info``)."""

    def __init__(
        self,
        mode: str = "text",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_sessions: int = 8,
        log_level: str = "warning",
        **env_kwargs: Any,
    ) -> None:
        self.app = build_app(mode, max_sessions, **env_kwargs)
        self.host, self.port, self.log_level = host, port, log_level
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> WebGymServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level=self.log_level, lifespan="off", ws="websockets-sansio"
        )
        self._server = uvicorn.Server(config)

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="webgym-openenv", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the OpenEnv server did not start")
            time.sleep(0.02)
        return self

    def call(self, coro_fn, timeout: float = 30.0) -> Any:
        """Run ``coro_fn()`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def sessions(self) -> dict[str, int]:
        """The shared session limit: slots held now (WebSocket sessions and HTTP requests),
        the most ever held at once, and the limit."""
        server = self.app.state.env_server
        return {
            "active": server.active_sessions,
            "peak": server.peak_sessions,
            "max": server.max_concurrent_envs,
        }

    def browser_contexts(self) -> int:
        """Browser contexts open in the server's Chromium (browser mode; 0 if none runs)."""
        from webgym.browser.host import AsyncBrowserHost

        async def count() -> int:
            host = AsyncBrowserHost.of_running_loop()
            return host.context_count if host is not None else 0

        return self.call(count)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> WebGymServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    mode: str = "text", host: str = "127.0.0.1", port: int = 8000, max_sessions: int = 8, **kw
) -> None:
    """Serve until interrupted (``webgym serve openenv``)."""
    import uvicorn

    uvicorn.run(build_app(mode, max_sessions, **kw), host=host, port=port, log_level="info")
