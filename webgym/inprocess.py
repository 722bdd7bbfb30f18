"""The browserless page of the text mode: the shop's own HTML, fetched without a browser.

:class:`InProcessPage` behaves like one browser tab over the shop, for the element-level steps
that :meth:`webgym.observe.PageView.resolve` produces: a click on a link GETs its href, a click
on a submit button submits its form (POST -> 303 -> GET, as a browser does), ``fill`` keeps the
typed text for the next submission, ``go_back`` re-fetches the previous history entry (the shop
serves ``no-store`` pages, so Chromium re-fetches them too). Observations come from
:func:`webgym.observe.observe_page` over the served HTML, exactly as in browser mode.

Two transports carry the requests:

- :class:`ASGITransport`: the shop's Starlette app called in-process (no sockets, no threads)
  on a private asyncio event loop owned by the transport;
- :class:`HTTPTransport`: a real HTTP server (``http.client`` with one kept-alive connection).

The shop's JSON session API goes through the same transport (:meth:`InProcessPage.request_json`),
so an environment can create, clone and restore sessions in-process or remotely.

Imports only ``webgym.actions`` and ``webgym.observe``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

from webgym.actions import Action
from webgym.observe import ActionError, Element, PageView, observe_page

__all__ = [
    "ASGITransport",
    "HTTPTransport",
    "InProcessPage",
    "Response",
    "ShopRequestError",
    "Transport",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ShopRequestError(RuntimeError):
    """A JSON API call the shop answered with an error status; ``status`` and ``payload``."""

    def __init__(self, status: int, payload: Any, method: str, path: str) -> None:
        detail = payload.get("error") if isinstance(payload, dict) else payload
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status
        self.payload = payload


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


class InProcessPage:
    """One browserless tab over the shop (see the module docstring).

    ``url`` is the current page's path and query (server-relative, e.g. ``/s/<sid>/search?q=x``);
    ``absolute_url`` adds the transport's base URL. ``history`` holds the GET URLs of the
    session history up to the current one, like a browser's back list.
    """

    def __init__(self, transport: Transport | str | Callable[..., Any]) -> None:
        self.transport = make_transport(transport)
        self.url = ""
        self.status = 0
        self.html = ""
        self.headers: dict[str, str] = {}
        self.history: list[str] = []
        self.typed: dict[str, str] = {}
        self._view: PageView | None = None
        self._view_key: tuple[str, str] | None = None

    # ---- state -----------------------------------------------------------------------------
    @property
    def absolute_url(self) -> str:
        return urljoin(self.transport.base_url + "/", self.url) if self.url else ""

    @property
    def view(self) -> PageView:
        """The :class:`PageView` of the current HTML (computed once per page)."""
        key = (self.html, self.url)
        if self._view is None or self._view_key != key:
            self._view = observe_page(self.html, self.url)
            self._view_key = key
        return self._view

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> InProcessPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- navigation ------------------------------------------------------------------------
    def _target(self, url: str) -> str:
        """A server-relative target (path + query) for ``url``, resolved against the page."""
        absolute = urljoin(self.absolute_url or self.transport.base_url + "/", url)
        split = urlsplit(absolute)
        return (split.path or "/") + (f"?{split.query}" if split.query else "")

    def _fetch(
        self, method: str, target: str, body: bytes = b"", content_type: str | None = None
    ) -> tuple[str, Response]:
        """Send a request and follow redirects as a browser does; the final URL and response."""
        headers = {"accept": "text/html"}
        for _ in range(MAX_REDIRECTS + 1):
            if body and content_type:
                headers["content-type"] = content_type
            r = self.transport.request(method, target, headers, body)
            location = r.headers.get("location")
            if r.status not in _REDIRECTS or not location:
                return target, r
            target = urljoin(target, location)
            if r.status in (301, 302, 303) and method != "HEAD":
                method, body, content_type = "GET", b"", None
                headers.pop("content-type", None)
        raise ActionError(f"too many redirects (more than {MAX_REDIRECTS}) from {target!r}")

    def _navigate(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        content_type: str | None = None,
        push: bool = True,
    ) -> tuple[int, str]:
        target = self._target(url)
        same_url_get = method == "GET" and target == self.url
        final, r = self._fetch(method, target, body, content_type)
        self.url, self.status, self.headers = final, r.status, r.headers
        self.html = r.text
        self.typed = {}
        if push and self.history and same_url_get:
            self.history[-1] = final  # a browser replaces the entry for a same-URL GET
        elif push:
            self.history.append(final)
        return self.status, self.html

    def goto(self, url: str) -> tuple[int, str]:
        """GET ``url`` (absolute, or relative to the current page) as a new history entry."""
        return self._navigate("GET", url)

    def go_back(self) -> bool:
        """Re-fetch the previous history entry; False (nothing happens) at the first page."""
        if len(self.history) < 2:
            return False
        self.history.pop()
        self._navigate("GET", self.history[-1], push=False)
        return True

    def reload(self) -> tuple[int, str]:
        return self._navigate("GET", self.url or "/", push=False)

    # ---- actions ---------------------------------------------------------------------------
    def perform(self, action: Action) -> None:
        """Resolve ``action`` on the current page and run its element-level steps."""
        for step in self.view.resolve(action):
            self.execute(step)

    def execute(self, step: Action) -> None:
        """Run one element-level step (``click``, ``fill``, ``go_back``, ``noop``, ...).

        Page-level actions (``click[label]``, ``search[...]``, ``select_option``) are resolved
        first. Raises :class:`~webgym.observe.ActionError` for what the page cannot do.
        """
        name = step.name
        if name in ("click_label", "search", "select_option"):
            self.perform(step)
        elif name == "click":
            self._click(step.args[0])
        elif name == "fill":
            bid, value = step.args
            self.view.resolve(step)  # checks that bid is a text field
            self.typed[bid] = value
        elif name == "go_back":
            self.go_back()
        elif name in ("noop", "scroll", "send_msg_to_user"):
            return
        elif name == "mouse_click":
            raise ActionError("mouse_click needs pixels: it is not available without a browser")
        else:
            raise ActionError(f"cannot execute {step.to_string()} on a browserless page")

    def _click(self, bid: str) -> None:
        view = self.view
        view.resolve(Action("click", (bid,)))  # unknown / not clickable -> ActionError
        el = view.elements[bid]
        if el.href is not None:
            self._navigate("GET", el.href)
        elif el.is_submit:
            self._submit(el, view)
        # a button outside a form (or a non-submit button) does nothing without scripts

    def _submit(self, button: Element, view: PageView) -> None:
        form = button.form
        assert form is not None
        pairs: list[tuple[str, str]] = []
        for name, value, bid in form.fields:
            pairs.append((name, self.typed.get(bid, value) if bid is not None else value))
        if button.name:
            pairs.append((button.name, button.value or ""))
        action = form.action or self.url
        data = urlencode(pairs)
        if form.method == "post":
            self._navigate("POST", action, data.encode(), FORM_CONTENT_TYPE)
        else:
            base = action.split("?", 1)[0].split("#", 1)[0]
            self._navigate("GET", f"{base}?{data}")

    # ---- the JSON API ----------------------------------------------------------------------
    def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """Call the shop's JSON API (e.g. ``POST /api/sessions``); raise on an error status."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        r = self.transport.request(method.upper(), path, headers, data)
        try:
            payload = json.loads(r.body) if r.body else None
        except ValueError:
            payload = r.text
        if r.status >= 400:
            raise ShopRequestError(r.status, payload, method.upper(), path)
        return payload
