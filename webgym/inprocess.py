"""The browserless page of the text mode: the shop's own HTML, fetched without a browser.

:class:`InProcessPage` is the other implementation of the page interface (:mod:`webgym.page`;
the browser tab is the first): it behaves like one browser tab over the shop for the steps
that :meth:`webgym.observe.PageView.resolve` produces, trusting the element each carries. A
click on a link GETs its href, a click on a submit button submits its form (POST -> 303 -> GET,
as a browser does), ``fill`` keeps the typed text for the next submission, ``go_back``
re-fetches the previous history entry (the shop serves ``no-store`` pages, so Chromium
re-fetches them too). Observations come from :func:`webgym.observe.observe_page` over the
served HTML, exactly as in browser mode.

The requests go through a :mod:`webgym.transport`: the shop's app in-process, or a real HTTP
server. The shop's JSON API is :class:`webgym.shop_client.ShopClient`'s.

Imports only ``webgym.actions``, ``webgym.observe``, ``webgym.page``, ``webgym.transport`` and
``webgym.shop_client``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from webgym.actions import Action, ActionError
from webgym.observe import Element, PageView, observe_page
from webgym.page import PageCapture, purchase_from_headers
from webgym.shop_client import ShopClient
from webgym.transport import Response, Transport, make_transport

__all__ = ["InProcessPage"]

MAX_REDIRECTS = 10
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Steps that act on an element: checked against the page unless they come resolved.
_ON_ELEMENTS = frozenset({"click", "fill", "click_label", "search", "select_option"})


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
    ) -> None:
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

    def goto(self, url: str, *, screenshot: bool = False) -> PageCapture:
        """GET ``url`` (absolute, or relative to the current page) as a new history entry."""
        self._navigate("GET", url)
        return self.capture()

    def go_back(self) -> bool:
        """Re-fetch the previous history entry; False (nothing happens) at the first page."""
        if len(self.history) < 2:
            return False
        self.history.pop()
        self._navigate("GET", self.history[-1], push=False)
        return True

    def reload(self) -> PageCapture:
        self._navigate("GET", self.url or "/", push=False)
        return self.capture()

    def capture(self, screenshot: bool = False) -> PageCapture:
        """The current page (there are no pixels without a browser: ``screenshot`` is None)."""
        return PageCapture(
            url=self.absolute_url,
            html=self.html,
            status=self.status,
            purchase=purchase_from_headers(self.headers),
        )

    def recover(self, *, if_dead: bool = False) -> bool:
        """Nothing to recover without a browser."""
        return True

    # ---- actions ---------------------------------------------------------------------------
    def execute(self, step: Action, *, screenshot: bool = False) -> PageCapture:
        """Run one step and capture the page after it.

        A resolved step (from :meth:`~webgym.observe.PageView.resolve`: a ``click`` or ``fill``
        carrying its element) runs as it is; an unresolved one (``click('id')``,
        ``click[label]``, ``search[...]``, ``select_option``) is resolved on the current page
        first. Raises :class:`~webgym.actions.ActionError` for what the page cannot do.
        """
        if step.element is None and step.name in _ON_ELEMENTS:
            for resolved in self.view.resolve(step):
                self._run(resolved)
        else:
            self._run(step)
        return self.capture()

    def _run(self, step: Action) -> None:
        name = step.name
        if name == "click":
            self._click(step.element)
        elif name == "fill":
            bid, value = step.args
            self.typed[bid] = value
        elif name == "go_back":
            self.go_back()
        elif name in ("noop", "scroll", "send_msg_to_user"):
            return
        elif name == "mouse_click":
            raise ActionError("mouse_click needs pixels: it is not available without a browser")
        else:
            raise ActionError(f"cannot execute {step.to_string()} on a browserless page")

    def _click(self, el: Element) -> None:
        if el.href is not None:
            self._navigate("GET", el.href)
        elif el.is_submit:
            self._submit(el)
        # a button outside a form (or a non-submit button) does nothing without scripts

    def _submit(self, button: Element) -> None:
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
        """The shop's JSON API over this page's transport (a convenience for scripts; see
        :class:`~webgym.shop_client.ShopClient`, which environments use)."""
        return ShopClient(self.transport).request_json(method, path, body)
