"""The browser tab: one browser context + page, actions executed in it, captures.

The tab is one implementation of the page interface (:mod:`webgym.page`; the in-process page
is the other). It is written once, as `TabCore`, whose operations are generators of Playwright
calls (`webgym.browser.driver`); two thin drivers run it: `BrowserTab` with blocking calls
(Playwright's sync API, one thread) and `AsyncBrowserTab` with awaited ones (the async API, many
tabs on one event loop). Both expose the same methods (``goto``, ``capture``, ``execute``,
``recover``, ``reset_page``, ``detach``, ``close``) and give byte-identical captures.

Text observations in WebGym come from the SERVED HTML, so a tab records, for every navigation
of its main frame, the document response (``page.on("response")``, navigation requests of the
main frame, redirects skipped) and reads that response's body when a capture is taken: ``html``
is byte-for-byte what the server sent, the same bytes the browserless mode fetches; the
purchase comes from the same response's headers.

Steps: a resolved step (a ``click`` / ``fill`` carrying the page element it acts on, from
:meth:`webgym.observe.PageView.resolve`) is trusted: the element was checked against the served
page once, and whether a click navigates is read from it. An unresolved action (used without an
environment) is probed in the page first, in one round trip, so a bad id fails fast. A click on
an inert target (a heading, a text, an image with an id: ``Element.inert``) is the same real
click: it lands on the element and nothing happens (pixel-identical captures), except that one
outside the viewport is scrolled into view first, as Playwright (and BrowserGym) click.

Navigation waiting: a click that navigates (a link, or a form's submit control) is wrapped in
``expect_navigation`` and waits for the new document's "load" within the navigation timeout (the
click itself returns once dispatched); any other click is Playwright's own, which waits for a
navigation it started after all. After every action the tab checks whether a new document
response arrived and, only then, waits for its "load" event. No speculative wait ever costs a
timeout. ``mouse_click`` uses raw mouse input, which does not wait,
so the element under the point is inspected first and ``expect_navigation`` is used only when it
is a link or a form's submit control.

The tab never sees the `BrowserHost`: it gets a `TabHost`, the narrow handle below (the host
implements it): the host opens and recovers the tab's page, the tab uses it and reports back.
A tab starts detached; the host attaches a page (at once for the sync host's ``new_tab``, at the
first ``recover()`` for the async host's).

Screenshots are JPEG by default (see `BrowserConfig`), decoded to H x W x 3 uint8 with Pillow
(the async driver decodes in a worker thread).

Imports nothing above webgym.browser but ``webgym.page`` (and ``webgym.actions`` for types).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError  # the async API's classes too
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from webgym.browser.config import BrowserConfig
from webgym.browser.driver import Op, Ops, awaiting, blocking, compute
from webgym.browser.errors import ActionFailed, BrowserCrashed, BrowserError, PageTimeout
from webgym.page import PageCapture, purchase_from_headers

if TYPE_CHECKING:
    from webgym.actions import Action

__all__ = [
    "AsyncBrowserTab",
    "BrowserTab",
    "PageCapture",
    "TabCore",
    "TabHost",
    "decode_screenshot",
]

log = logging.getLogger(__name__)

#: What a core operation is: a generator of `Op`s returning the operation's result.
IO = Generator[Op, Any, Any]


class TabHost(Protocol):
    """What a tab may ask of the browser that hosts it (`BrowserHost` and `AsyncBrowserHost`
    implement it). ``guard`` is used by the tab's driver around each guarded call."""

    config: BrowserConfig
    generation: int  # bumped at every launch of Chromium

    @property
    def alive(self) -> bool: ...

    def guard(self, seconds: float) -> Any: ...

    def recover_io(self, tab: TabCore) -> IO: ...

    def release_io(self, tab: TabCore) -> IO: ...


# One round trip: what the element(s) matching a bid are, so a bad action fails fast.
_PROBE_JS = """(els) => els.map((e) => {
  const st = getComputedStyle(e);
  const visible = e.getClientRects().length > 0 && st.visibility !== 'hidden';
  const tag = e.tagName.toLowerCase();
  const info = {tag, type: (e.getAttribute('type') || '').toLowerCase(), visible,
                disabled: !!e.disabled};
  if (tag === 'select') {
    info.options = Array.from(e.options).map((o) => [o.value, o.label]);
  }
  // Does a click navigate? (a link, or a form's submit control)
  if (tag === 'a' || tag === 'area') {
    const href = (e.getAttribute('href') || '').trim().toLowerCase();
    info.navigates = href !== '' && !href.startsWith('#') && !href.startsWith('javascript:');
  } else if ((tag === 'button' || tag === 'input') && e.form && !e.disabled) {
    const type = (e.getAttribute('type') || (tag === 'button' ? 'submit' : 'text')).toLowerCase();
    info.navigates = type === 'submit' || type === 'image';
  } else {
    info.navigates = false;
  }
  return info;
})"""

# Is the element at (x, y) something whose click navigates (a link or a form submit control)?
_NAVIGATES_AT_JS = """([x, y]) => {
  const hit = document.elementFromPoint(x, y);
  if (!hit) return false;
  const el = hit.closest('a[href], area[href], button, input');
  if (!el) return false;
  const tag = el.tagName.toLowerCase();
  if (tag === 'a' || tag === 'area') {
    const href = el.getAttribute('href').trim().toLowerCase();
    const target = (el.getAttribute('target') || '_self').toLowerCase();
    return !href.startsWith('#') && !href.startsWith('javascript:')
      && (target === '_self' || target === '_top' || target === '_parent');
  }
  if (el.disabled || !el.form) return false;
  const type = (el.getAttribute('type') || (tag === 'button' ? 'submit' : 'text')).toLowerCase();
  return type === 'submit' || type === 'image';
}"""

_SCROLL_STATE_JS = """() => {
  const el = document.scrollingElement || document.documentElement;
  return [window.scrollX, window.scrollY,
          Math.max(0, el.scrollWidth - window.innerWidth),
          Math.max(0, el.scrollHeight - window.innerHeight)];
}"""
# How long a wheel scroll may take to land before the capture goes ahead anyway.
_SCROLL_SETTLE_S = 0.25

_CHARSET_RE = re.compile(r"charset=([\w-]+)", re.I)


def _css_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def decode_screenshot(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes -> (H, W, 3) uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


class TabCore:
    """One browser context with one page (or a page in a shared context), reused across
    episodes: every operation written once, as a generator of Playwright calls (``*_io``).
    Use a driver: `BrowserTab` or `AsyncBrowserTab`, made by their host's ``new_tab()``."""

    #: the operations a driver exposes: ``name`` drives ``name_io``.
    driven = ("goto", "capture", "execute", "recover", "reset_page", "detach", "close")

    def __init__(
        self,
        host: TabHost,
        *,
        viewport: tuple[int, int],
        java_script_enabled: bool = True,
        shared_context: bool = False,
    ) -> None:
        self._host = host
        self._config = host.config
        self.viewport = viewport
        self.java_script_enabled = java_script_enabled
        self.shared_context = shared_context
        self._closed = False
        self._context = self._page = None
        self._generation = -1  # detached: the host attaches a page
        self._forget_page()

    # ---- the page's events and state -------------------------------------------------------

    def _forget_page(self) -> None:
        self._response: Any = None
        self._html_cache: tuple[Any, str] | None = None
        #: number of main-frame document responses seen (navigation detector).
        self.navigations = 0
        self._renderer_crashed = False

    def _watch(self, page: Any) -> None:
        self._page = page
        self._forget_page()
        page.on("response", self._on_response)
        page.on("crash", self._on_crash)

    def _on_response(self, response: Any) -> None:
        request = response.request
        if not request.is_navigation_request() or request.frame != self._page.main_frame:
            return
        if 300 <= response.status < 400 and "location" in response.headers:
            return  # a redirect: its body is unavailable, the followed response comes next
        self._response = response
        self.navigations += 1

    def _on_crash(self, _page: Any) -> None:
        self._renderer_crashed = True

    @property
    def _guard(self) -> Any:
        return self._host.guard

    @property
    def host(self) -> Any:
        return self._host

    @property
    def page(self):
        """The Playwright page (for tests and diagnostics; prefer the tab's methods)."""
        return self._page

    @property
    def context(self):
        """The Playwright browser context the page lives in."""
        return self._context

    @property
    def generation(self) -> int:
        """The launch of Chromium this tab's page belongs to."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- lifecycle -------------------------------------------------------------------------

    def attach(self, context: Any, page: Any, generation: int) -> None:
        """Use ``page`` (in ``context``) of the browser of ``generation`` (called by the host)."""
        self._context, self._generation = context, generation
        self._watch(page)

    def detach_io(self) -> IO:
        """Let go of the page: close it (or this tab's own context) if it belongs to the
        running browser. It is being thrown away, so a failure is logged, never raised."""
        if self._context is not None and self._generation == self._host.generation:
            target = self._page if self.shared_context else self._context
            try:
                yield Ops(self._config.action_timeout_s)(target.close)
            except Exception:  # noqa: BLE001 - a dead page cannot be closed; it goes anyway
                log.debug("closing a browser page failed; dropping it", exc_info=True)
        self._context = self._page = None

    def close_io(self) -> IO:
        """Close this tab's context; the last tab to close stops the browser."""
        if self._closed:
            return
        yield from self.detach_io()
        self._closed = True
        yield from self._host.release_io(self)

    def recover_io(self, *, if_dead: bool = False) -> IO:
        """Make this tab usable again after a crash, a hang or a timeout (or open it): the host
        relaunches Chromium if it died and gives the tab a fresh page (the host's one recovery
        path). ``if_dead``: only if the tab is not usable. False (logged) if it could not; the
        tab then raises `BrowserCrashed` until a later recover succeeds."""
        if self._closed:
            raise BrowserError("this tab is closed")
        if if_dead and self._dead_reason() is None:
            return True
        return (yield from self._host.recover_io(self))

    def reset_page_io(self) -> IO:
        """Start clean between episodes without a new context: drop cookies and swap the page
        for a fresh one (empty history, so go_back cannot reach the previous episode)."""
        with self._calling(self._config.navigation_timeout_s) as call:
            if not self.shared_context:  # shared cookies belong to the other tabs too
                yield call(self._context.clear_cookies)
            old = self._page
            self._page = yield call(self._context.new_page)
            yield call(old.close)
        self._watch(self._page)

    # ---- error mapping ---------------------------------------------------------------------

    def _dead_reason(self) -> str | None:
        if self._closed:
            return "this tab is closed"
        if self._page is None:
            return "the tab has no page (not opened yet, or its recovery failed); call recover()"
        if self._generation != self._host.generation:
            return "the browser was relaunched since this tab opened; call recover()"
        if self._renderer_crashed:
            return "the page's renderer crashed; call recover()"
        if not self._host.alive:
            return "the browser died; call recover()"
        return None

    @contextlib.contextmanager
    def _calling(self, seconds: float):
        """A group of Playwright calls, each guarded for ``seconds`` (``yield call(fn, ...)``):
        check the tab first, map Playwright errors to ours after."""
        if self._closed:
            raise BrowserError("this tab is closed")
        if (
            self._page is None
            or self._generation != self._host.generation
            or self._renderer_crashed
        ):
            raise BrowserCrashed(self._dead_reason())
        try:
            yield Ops(seconds)
        except PlaywrightTimeout as exc:
            reason = self._dead_reason()
            if reason:
                raise BrowserCrashed(reason) from exc
            raise PageTimeout(str(exc).splitlines()[0]) from exc
        except PlaywrightError as exc:
            reason = self._dead_reason()
            if reason:
                raise BrowserCrashed(reason) from exc
            raise ActionFailed(str(exc).splitlines()[0]) from exc

    # ---- navigation and capture ------------------------------------------------------------

    def goto_io(self, url: str, *, screenshot: bool = False, axtree: bool = False) -> IO:
        """Navigate to ``url``, wait for "load", and capture."""
        timeout = self._config.navigation_timeout_s
        with self._calling(timeout) as call:
            yield call(self._page.goto, url, wait_until="load", timeout=timeout * 1000)
        return (yield from self.capture_io(screenshot=screenshot, axtree=axtree))

    def capture_io(self, screenshot: bool = False, axtree: bool = False) -> IO:
        """The current URL, served HTML and status, plus optional screenshot and ARIA tree."""
        cfg = self._config
        with self._calling(cfg.action_timeout_s) as call:
            url = self._page.url
            html, status = yield from self._served_html(call)
            response = self._response
            purchase = purchase_from_headers(response.headers) if response is not None else None
        image = None
        if screenshot:
            if cfg.screenshot_format == "jpeg":
                kind = {"type": "jpeg", "quality": cfg.jpeg_quality}
            else:
                kind = {"type": "png"}
            with self._calling(cfg.screenshot_timeout_s) as call:
                shot = call(self._page.screenshot, timeout=cfg.screenshot_timeout_s * 1000, **kind)
                data = yield shot
            image = yield compute(decode_screenshot, data)
        tree = None
        if axtree:
            with self._calling(cfg.action_timeout_s) as call:
                body = self._page.locator("body")
                tree = yield call(body.aria_snapshot, timeout=cfg.action_timeout_s * 1000)
        return PageCapture(
            url=url, html=html, status=status, screenshot=image, axtree=tree, purchase=purchase
        )

    def _served_html(self, call: Ops) -> IO:
        response = self._response
        if response is None:
            return "", 0
        if self._html_cache is not None and self._html_cache[0] is response:
            return self._html_cache[1], response.status
        body = yield call(response.body)
        match = _CHARSET_RE.search(response.headers.get("content-type", ""))
        encoding = match.group(1) if match else "utf-8"
        try:
            html = body.decode(encoding, errors="replace")
        except LookupError:
            html = body.decode("utf-8", errors="replace")
        self._html_cache = (response, html)
        return html, response.status

    # ---- actions ---------------------------------------------------------------------------

    def execute_io(self, action: Action, *, screenshot: bool = False, axtree: bool = False) -> IO:
        """Execute one element/pixel action and capture the page after it.

        Supports click, fill, select_option, scroll, go_back, noop, mouse_click and
        send_msg_to_user (no page effect). A ``click`` / ``fill`` that carries its element
        (``action.element``, set by resolution) is trusted; any other is probed in the page.
        Raises `ActionFailed` for a user-level failure, `PageTimeout` / `BrowserCrashed` for
        machine trouble.
        """
        name, args = action.name, tuple(action.args)
        handler = getattr(self, f"_do_{name}", None)
        if handler is None:
            raise ActionFailed(f"action '{name}' is not executed by the browser")
        element = getattr(action, "element", None)
        before = self.navigations
        if element is not None:
            yield from handler(*args, element=element)
        else:
            yield from handler(*args)
        if self.navigations != before:
            t = self._config.navigation_timeout_s
            with self._calling(t) as call:
                yield call(self._page.wait_for_load_state, "load", timeout=t * 1000)
        return (yield from self.capture_io(screenshot=screenshot, axtree=axtree))

    def _element(self, bid: str, expected: str = "") -> IO:
        """The unique element with ``bid``, and its probe info; ActionFailed otherwise."""
        bid = str(bid)
        locator = self._page.locator(f"[bid={_css_string(bid)}]")
        with self._calling(self._config.action_timeout_s) as call:
            infos = yield call(locator.evaluate_all, _PROBE_JS)
        if not infos:
            raise ActionFailed(f"no element with id '{bid}' on this page")
        if len(infos) > 1:
            raise ActionFailed(f"{len(infos)} elements have id '{bid}' on this page")
        info = infos[0]
        if not info["visible"]:
            raise ActionFailed(f"element '{bid}' is not visible")
        if info["disabled"]:
            raise ActionFailed(f"element '{bid}' is disabled")
        return locator, info

    def _located(self, bid: str, element: Any) -> IO:
        """The locator of ``bid`` and whether a click on it navigates: read from the resolved
        ``element`` when there is one (trusted), else probed in the page."""
        if element is not None:
            return self._page.locator(f"[bid={_css_string(str(bid))}]"), element.navigates
        locator, info = yield from self._element(bid)
        return locator, info["navigates"]

    def _do_click(self, bid: str, *, element: Any = None) -> IO:
        locator, navigates = yield from self._located(bid, element)
        t, nav_t = self._config.action_timeout_s, self._config.navigation_timeout_s
        with self._calling(t + nav_t) as call:
            if navigates:  # wait for the new document: a POST -> 303 -> GET included
                # The navigation has the navigation timeout, not the click's: the click returns
                # once dispatched (a slow server answer, e.g. the first Buy Now of a process
                # loading the reward's tagger, must not time the click out).
                wait = {"wait_until": "load", "timeout": nav_t * 1000}
                yield call.navigating(
                    self._page, wait, locator.click, timeout=t * 1000, no_wait_after=True
                )
            else:
                yield call(locator.click, timeout=t * 1000)

    def _do_fill(self, bid: str, value: str = "", *, element: Any = None) -> IO:
        locator, _ = yield from self._located(bid, element)
        t = self._config.action_timeout_s
        with self._calling(t) as call:
            yield call(locator.fill, str(value), timeout=t * 1000)
            # A focused field repaints (caret blink, focus ring) between screenshots of an
            # unchanged page; leaving it unfocused keeps captures pixel-identical.
            yield call(locator.blur, timeout=t * 1000)

    def _do_select_option(self, bid: str, option: str) -> IO:
        locator, info = yield from self._element(bid)
        if info["tag"] != "select":
            raise ActionFailed(f"element '{bid}' is not a <select>")
        option = str(option)
        choices = info["options"]
        if not any(option in (value, label) for value, label in choices):
            labels = ", ".join(repr(label) for _, label in choices)
            raise ActionFailed(f"select '{bid}' has no option {option!r} (options: {labels})")
        t = self._config.action_timeout_s
        with self._calling(t) as call:
            yield call(locator.select_option, option, timeout=t * 1000)

    def _do_scroll(self, dx: float, dy: float) -> IO:
        # Chromium applies a wheel scroll a frame after the input is acknowledged: wait until
        # the window reaches the expected offset (plain evaluates work with JavaScript off too;
        # a requestAnimationFrame promise would not).
        dx, dy = float(dx), float(dy)
        with self._calling(self._config.action_timeout_s) as call:
            before = yield call(self._page.evaluate, _SCROLL_STATE_JS)
            yield call(self._page.mouse.wheel, dx, dy)
            expected = [
                min(max(before[0] + dx, 0), before[2]),
                min(max(before[1] + dy, 0), before[3]),
            ]
            if [round(v) for v in expected] == [round(v) for v in before[:2]]:
                return
            deadline = time.monotonic() + _SCROLL_SETTLE_S
            while time.monotonic() < deadline:
                now = yield call(self._page.evaluate, _SCROLL_STATE_JS)
                if all(abs(a - b) < 1 for a, b in zip(now[:2], expected, strict=True)):
                    return
                yield call(self._page.wait_for_timeout, 5)

    def _do_go_back(self) -> IO:
        t = self._config.navigation_timeout_s
        before, url_before = self.navigations, self._page.url
        with self._calling(t) as call:
            response = yield call(self._page.go_back, wait_until="load", timeout=t * 1000)
        if response is None and self.navigations == before:
            if self._page.url != url_before:  # a same-document entry or the blank start page
                if self._page.url == "about:blank":
                    self._response = None
                return
            raise ActionFailed("cannot go back: there is no previous page")

    def _do_noop(self, wait_ms: float = 0) -> IO:
        wait_ms = max(0.0, min(float(wait_ms), self._config.action_timeout_s * 1000))
        if wait_ms:
            with self._calling(self._config.action_timeout_s) as call:
                yield call(self._page.wait_for_timeout, wait_ms)

    def _do_send_msg_to_user(self, text: str = "") -> IO:
        """No page effect: the environment records the message."""
        yield from ()

    def _do_mouse_click(self, x: float, y: float) -> IO:
        x, y = float(x), float(y)
        width, height = self.viewport
        if not (0 <= x < width and 0 <= y < height):
            raise ActionFailed(f"({x:g}, {y:g}) is outside the {width}x{height} viewport")
        t = self._config.navigation_timeout_s
        with self._calling(self._config.action_timeout_s) as call:
            navigates = yield call(self._page.evaluate, _NAVIGATES_AT_JS, [x, y])
        with self._calling(t) as call:
            mouse = self._page.mouse
            if navigates:
                wait = {"wait_until": "load", "timeout": t * 1000}
                yield call.navigating(self._page, wait, mouse.click, x, y)
            else:
                yield call(mouse.click, x, y)


@blocking
class BrowserTab(TabCore):
    """The tab driven with blocking calls (Playwright's sync API). Create with
    `BrowserHost.new_tab()`; use from the thread that created it. Its methods (``goto``,
    ``capture``, ``execute``, ``recover``, ``reset_page``, ``detach``, ``close``) are
    `TabCore`'s ``*_io`` operations, run to their end."""

    def __enter__(self) -> BrowserTab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@awaiting
class AsyncBrowserTab(TabCore):
    """The tab driven on an event loop (Playwright's async API): the same methods as
    `BrowserTab`, as coroutines. Create with `AsyncBrowserHost.new_tab()`; its first
    ``await recover()`` opens it; use it on the event loop that created it."""

    async def __aenter__(self) -> AsyncBrowserTab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
