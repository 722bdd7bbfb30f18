"""``ShopServer``: the shop on a real HTTP server (uvicorn) in a background thread.

    with ShopServer() as shop:          # the embedded synthetic catalog, a free port on 127.0.0.1
        print(shop.url)

It binds to loopback unless given another host explicitly. Imports only ``webgym.shop``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from webgym.shop.app import create_app
from webgym.shop.catalog import Catalog, open_catalog

LOOPBACK = "127.0.0.1"


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
    ) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
        self.app = create_app(self.catalog, max_sessions=max_sessions)
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
