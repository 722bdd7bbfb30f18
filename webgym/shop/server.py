"""``ShopServer``: the shop on a real HTTP server (uvicorn) in a background thread.

    with ShopServer() as shop:          # the embedded synthetic catalog, a free port on 127.0.0.1
        print(shop.url)

It binds to loopback unless given another host explicitly. Connections are bounded: one kept
alive after a response closes after ``KEEP_ALIVE_S`` idle (uvicorn's timeout), one that has not
sent a whole request's head ``REQUEST_HEAD_S`` after it opened or after its last response is
closed too (uvicorn has no such timeout), and past ``MAX_CONNECTIONS`` new requests get 503.
Request bodies are bounded by the app (``webgym.shop.app.BodyLimit``), sessions by its store:
they expire after 30 minutes unused, one client address holds at most 1,000, and one in use is
never evicted for another (``webgym.shop.sessions``). Imports only ``webgym.shop``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from webgym.shop.app import create_app
from webgym.shop.catalog import Catalog, open_catalog

LOOPBACK = "127.0.0.1"
KEEP_ALIVE_S = 5.0
REQUEST_HEAD_S = 10.0
MAX_CONNECTIONS = 1000


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's head: a connection that sends
    nothing, or never finishes its request line and headers, is closed (no slow-loris)."""

    _head_deadline: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(REQUEST_HEAD_S, self._head_timeout)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _head_timeout(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.timeout_keep_alive_handler()  # closes the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if not self._waiting_for_head():
            self._disarm_head_deadline()  # a request is being served

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._waiting_for_head() and not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)


class ShopServer:
    """A running shop. ``start()`` returns once it answers; ``stop()`` shuts it down cleanly."""

    def __init__(
        self,
        catalog: Catalog | str | Path | None = None,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        max_sessions: int = 20_000,
        log_level: str = "warning",
        **session_limits: Any,
    ) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        # session_limits: create_app's session_idle_s, session_in_use_s, max_sessions_per_client
        self.app = create_app(self.catalog, max_sessions=max_sessions, **session_limits)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the shop server is not running: call start() first")
        host = LOOPBACK if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ShopServer:
        if self._thread is not None:
            return self
        # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections
        # (without it every kept-alive response waits ~40 ms for Nagle's algorithm).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))  # port 0: the OS picks a free port
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            http=BoundedH11Protocol,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"webgym-shop-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the shop server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self.port = None

    def serve_forever(self) -> None:
        """Run in the foreground (the CLI's ``webgym shop serve``) until interrupted."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
