"""How a client reaches the shop: one request at a time, in-process or over HTTP.

- :class:`ASGITransport`: the shop's Starlette app called in-process (no sockets, no threads)
  on a private asyncio event loop owned by the transport;
- :class:`HTTPTransport`: a real HTTP server (``http.client`` with one kept-alive connection).

A transport sends one request and follows no redirect. Both the in-process page
(:mod:`webgym.inprocess`) and the JSON API client (:mod:`webgym.shop_client`) go through one.
Stdlib only; imports nothing from webgym.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ASGITransport",
    "HTTPTransport",
    "Response",
    "Transport",
    "ascii_target",
    "make_transport",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Response:
    """One HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Transport:
    """Sends one request (no redirect following) to the shop; ``target`` is path + query."""

    base_url = "http://shop.local"

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections or the event loop."""


class ASGITransport(Transport):
    """Calls an ASGI application in-process on a private event loop.

    If the calling thread already runs an event loop (a notebook, an async agent), requests run
    on a helper thread that owns the private loop instead.
    """

    def __init__(self, app: Callable[..., Any], host: str = "shop.local") -> None:
        self.app = app
        self.host = host
        self.base_url = f"http://{host}"
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._thread_pool = None

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        coro = self._call(method, target, headers or {}, body)
        with self._lock:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._loop.run_until_complete(coro)
            return self._on_helper_thread(coro)

    def _on_helper_thread(self, coro: Any) -> Response:
        from concurrent.futures import ThreadPoolExecutor

        if self._thread_pool is None:
            self._thread_pool = ThreadPoolExecutor(1, thread_name_prefix="webgym-asgi")
        return self._thread_pool.submit(self._loop.run_until_complete, coro).result()

    async def _call(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response:
        split = urlsplit(ascii_target(target))
        raw_path = split.path or "/"
        raw_headers = [(b"host", self.host.encode())]
        raw_headers += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        if body:
            raw_headers.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1", errors="replace"),
            "query_string": split.query.encode("latin-1", errors="replace"),
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 0),
            "server": (self.host, 80),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # the request is over: wait like an idle client
            return {"type": "http.disconnect"}

        status = 0
        out_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", ()):
                    out_headers[k.decode("latin-1").lower()] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception:  # a server error: answer as a real server would (500), and log it
            log.exception("the shop app failed on %s %s", method, target)
            if not status:
                return Response(
                    500, {"content-type": "text/plain; charset=utf-8"}, b"Internal Server Error"
                )
        return Response(status, out_headers, b"".join(chunks))

    def close(self) -> None:
        if self._thread_pool is not None:
            self._thread_pool.shutdown()
            self._thread_pool = None
        if not self._loop.is_closed():
            self._loop.close()


class HTTPTransport(Transport):
    """A real HTTP server at ``base_url``, over one kept-alive ``http.client`` connection."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        split = urlsplit(base_url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.base_url = f"{split.scheme}://{split.netloc}"
        self._prefix = split.path.rstrip("/")
        self._https = split.scheme == "https"
        self._host = split.hostname
        self._port = split.port
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    conn.request(
                        method.upper(),
                        self._prefix + ascii_target(target),
                        body=body or None,
                        headers=headers or {},
                    )
                    r = conn.getresponse()
                    data = r.read()
                except (
                    http.client.RemoteDisconnected,
                    http.client.CannotSendRequest,
                    BrokenPipeError,
                    ConnectionResetError,
                ):
                    self.close()  # a stale kept-alive connection: reconnect once
                    if attempt:
                        raise
                    continue
                out = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
                if r.will_close:
                    self.close()
                return out
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def ascii_target(target: str) -> str:
    """``target`` with any non-ASCII character percent-encoded (as a browser sends it)."""
    return target if target.isascii() else quote(target, safe="/?&=%:+;,@!$'()*#[]~")


def make_transport(transport: Transport | str | Callable[..., Any]) -> Transport:
    """A :class:`Transport` from a transport, a base URL, or an ASGI app."""
    if isinstance(transport, Transport):
        return transport
    if isinstance(transport, str):
        return HTTPTransport(transport)
    if callable(transport):
        return ASGITransport(transport)
    raise TypeError(f"expected a Transport, a base URL or an ASGI app, got {transport!r}")
