"""`BrowserTab`: one browser context + page, actions executed in it, captures.

The browser tab is one implementation of the page interface (:mod:`webgym.page`; the
in-process page is the other). Text observations in WebGym come from the SERVED HTML, so a tab
records, for every navigation of its main frame, the document response (``page.on("response")``,
navigation requests of the main frame, redirects skipped) and reads that response's body when a
capture is taken: ``html`` is byte-for-byte what the server sent, the same bytes the browserless
mode fetches; the purchase comes from the same response's headers.

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

Screenshots are JPEG by default (see `BrowserConfig`), decoded to H x W x 3 uint8 with Pillow.

Imports nothing above webgym.browser but ``webgym.page`` (and ``webgym.actions`` for types).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Response
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from webgym.browser.config import BrowserConfig
from webgym.browser.errors import ActionFailed, BrowserCrashed, BrowserError, PageTimeout
from webgym.page import PageCapture, purchase_from_headers

if TYPE_CHECKING:
    from webgym.actions import Action

__all__ = ["BrowserTab", "PageCapture", "TabHost", "decode_screenshot"]

log = logging.getLogger(__name__)


class TabHost(Protocol):
    """What a tab may ask of the browser that hosts it (`BrowserHost` implements it)."""

    config: BrowserConfig
    generation: int  # bumped at every launch of Chromium

    @property
    def alive(self) -> bool: ...

    def guard(self, seconds: float) -> AbstractContextManager[None]: ...

    def recover(self, tab: BrowserTab) -> bool: ...

    def release(self, tab: BrowserTab) -> None: ...


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


class _TabEvents:
    """What the sync tab and the async one (async_tab.py) share: the page's navigation and
    crash listeners, and their read-only state."""

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
    def host(self) -> Any:
        return self._host

    @property
    def page(self):
        """The Playwright page (for tests and diagnostics; prefer the tab's methods)."""
        return self._page

    @property
    def generation(self) -> int:
        """The launch of Chromium this tab's page belongs to."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed


class BrowserTab(_TabEvents):
    """One browser context with one page, reused across episodes. Create with
    `BrowserHost.new_tab()`; use from the thread that created it."""

    def __init__(
        self,
        host: TabHost,
        context: Any,
        page: Any,
        generation: int,
        *,
        viewport: tuple[int, int],
        java_script_enabled: bool = True,
        shared_context: bool = False,
    ) -> None:
        self._host = host
        self.shared_context = shared_context
        self._config = host.config
        self.viewport = viewport
        self.java_script_enabled = java_script_enabled
        self._closed = False
        self.attach(context, page, generation)

    # ---- lifecycle -------------------------------------------------------------------------

    def attach(self, context: Any, page: Any, generation: int) -> None:
        """Use ``page`` (in ``context``) of the browser of ``generation`` (called by the host)."""
        self._context, self._page, self._generation = context, page, generation
        self._watch_page()

    def detach(self) -> None:
        """Let go of the page: close it (or this tab's own context) if it belongs to the
        running browser. It is being thrown away, so a failure is logged, never raised."""
        if self._context is not None and self._generation == self._host.generation:
            try:
                with self._host.guard(self._config.action_timeout_s):
                    (self._page if self.shared_context else self._context).close()
            except Exception:  # noqa: BLE001 - a dead page cannot be closed; it goes anyway
                log.debug("closing a browser page failed; dropping it", exc_info=True)
        self._context = self._page = None

    def _watch_page(self) -> None:
        self._response: Response | None = None
        self._html_cache: tuple[Response, str] | None = None
        #: number of main-frame document responses seen (navigation detector).
        self.navigations = 0
        self._renderer_crashed = False
        self._page.on("response", self._on_response)
        self._page.on("crash", self._on_crash)

    def close(self) -> None:
        """Close this tab's context; the last tab to close stops the browser."""
        if self._closed:
            return
        self.detach()
        self._closed = True
        self._host.release(self)

    def recover(self, *, if_dead: bool = False) -> bool:
        """Make this tab usable again after a crash, a hang or a timeout: the host relaunches
        Chromium if it died and gives the tab a fresh page (`BrowserHost.recover`, the one
        recovery path). ``if_dead``: only if the tab is not usable. False (logged) if it
        could not; the tab then raises `BrowserCrashed` until a later recover succeeds."""
        if self._closed:
            raise BrowserError("this tab is closed")
        if if_dead and self._dead_reason() is None:
            return True
        return self._host.recover(self)

    def reset_page(self) -> None:
        """Start clean between episodes without a new context: drop cookies and swap the page
        for a fresh one (empty history, so go_back cannot reach the previous episode)."""
        with self._calling(self._config.navigation_timeout_s):
            if not self.shared_context:  # shared cookies belong to the other tabs too
                self._context.clear_cookies()
            old, self._page = self._page, self._context.new_page()
            old.close()
        self._watch_page()

    def __enter__(self) -> BrowserTab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- error mapping ---------------------------------------------------------------------

    def _dead_reason(self) -> str | None:
        if self._closed:
            return "this tab is closed"
        if self._page is None:
            return "the tab has no page (its recovery failed); call recover()"
        if self._generation != self._host.generation:
            return "the browser was relaunched since this tab opened; call recover()"
        if self._renderer_crashed:
            return "the page's renderer crashed; call recover()"
        if not self._host.alive:
            return "the browser died; call recover()"
        return None

    @contextlib.contextmanager
    def _calling(self, seconds: float):
        """Run Playwright calls: check the tab first, map Playwright errors to ours after."""
        if self._closed:
            raise BrowserError("this tab is closed")
        if (
            self._page is None
            or self._generation != self._host.generation
            or self._renderer_crashed
        ):
            raise BrowserCrashed(self._dead_reason())
        try:
            with self._host.guard(seconds):
                yield
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

    def goto(self, url: str, *, screenshot: bool = False, axtree: bool = False) -> PageCapture:
        """Navigate to ``url``, wait for "load", and capture."""
        timeout = self._config.navigation_timeout_s
        with self._calling(timeout):
            self._page.goto(url, wait_until="load", timeout=timeout * 1000)
        return self.capture(screenshot=screenshot, axtree=axtree)

    def capture(self, screenshot: bool = False, axtree: bool = False) -> PageCapture:
        """The current URL, served HTML and status, plus optional screenshot and ARIA tree."""
        cfg = self._config
        with self._calling(cfg.action_timeout_s):
            url = self._page.url
            html, status = self._served_html()
            response = self._response
            purchase = purchase_from_headers(response.headers) if response is not None else None
        image = None
        if screenshot:
            with self._calling(cfg.screenshot_timeout_s):
                if cfg.screenshot_format == "jpeg":
                    data = self._page.screenshot(
                        type="jpeg",
                        quality=cfg.jpeg_quality,
                        timeout=cfg.screenshot_timeout_s * 1000,
                    )
                else:
                    data = self._page.screenshot(
                        type="png", timeout=cfg.screenshot_timeout_s * 1000
                    )
            image = decode_screenshot(data)
        tree = None
        if axtree:
            with self._calling(cfg.action_timeout_s):
                tree = self._page.locator("body").aria_snapshot(timeout=cfg.action_timeout_s * 1000)
        return PageCapture(
            url=url, html=html, status=status, screenshot=image, axtree=tree, purchase=purchase
        )

    def _served_html(self) -> tuple[str, int]:
        response = self._response
        if response is None:
            return "", 0
        if self._html_cache is not None and self._html_cache[0] is response:
            return self._html_cache[1], response.status
        body = response.body()
        match = _CHARSET_RE.search(response.headers.get("content-type", ""))
        encoding = match.group(1) if match else "utf-8"
        try:
            html = body.decode(encoding, errors="replace")
        except LookupError:
            html = body.decode("utf-8", errors="replace")
        self._html_cache = (response, html)
        return html, response.status

    # ---- actions ---------------------------------------------------------------------------

    def execute(
        self, action: Action, *, screenshot: bool = False, axtree: bool = False
    ) -> PageCapture:
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
            handler(*args, element=element)
        else:
            handler(*args)
        if self.navigations != before:
            with self._calling(self._config.navigation_timeout_s):
                self._page.wait_for_load_state(
                    "load", timeout=self._config.navigation_timeout_s * 1000
                )
        return self.capture(screenshot=screenshot, axtree=axtree)

    def _element(self, bid: str, expected: str = "") -> tuple[Any, dict]:
        """The unique element with ``bid``, and its probe info; ActionFailed otherwise."""
        bid = str(bid)
        locator = self._page.locator(f"[bid={_css_string(bid)}]")
        with self._calling(self._config.action_timeout_s):
            infos = locator.evaluate_all(_PROBE_JS)
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

    def _located(self, bid: str, element: Any) -> tuple[Any, bool]:
        """The locator of ``bid`` and whether a click on it navigates: read from the resolved
        ``element`` when there is one (trusted), else probed in the page."""
        if element is not None:
            return self._page.locator(f"[bid={_css_string(str(bid))}]"), element.navigates
        locator, info = self._element(bid)
        return locator, info["navigates"]

    def _do_click(self, bid: str, *, element: Any = None) -> None:
        locator, navigates = self._located(bid, element)
        t, nav_t = self._config.action_timeout_s, self._config.navigation_timeout_s
        with self._calling(t + nav_t):
            if navigates:  # wait for the new document: a POST -> 303 -> GET included
                # The navigation has the navigation timeout, not the click's: the click returns
                # once dispatched (a slow server answer, e.g. the first Buy Now of a process
                # loading the reward's tagger, must not time the click out).
                with self._page.expect_navigation(wait_until="load", timeout=nav_t * 1000):
                    locator.click(timeout=t * 1000, no_wait_after=True)
            else:
                locator.click(timeout=t * 1000)

    def _do_fill(self, bid: str, value: str = "", *, element: Any = None) -> None:
        locator, _ = self._located(bid, element)
        with self._calling(self._config.action_timeout_s):
            locator.fill(str(value), timeout=self._config.action_timeout_s * 1000)
            # A focused field repaints (caret blink, focus ring) between screenshots of an
            # unchanged page; leaving it unfocused keeps captures pixel-identical.
            locator.blur(timeout=self._config.action_timeout_s * 1000)

    def _do_select_option(self, bid: str, option: str) -> None:
        locator, info = self._element(bid)
        if info["tag"] != "select":
            raise ActionFailed(f"element '{bid}' is not a <select>")
        option = str(option)
        choices = info["options"]
        if not any(option in (value, label) for value, label in choices):
            labels = ", ".join(repr(label) for _, label in choices)
            raise ActionFailed(f"select '{bid}' has no option {option!r} (options: {labels})")
        with self._calling(self._config.action_timeout_s):
            locator.select_option(option, timeout=self._config.action_timeout_s * 1000)

    def _do_scroll(self, dx: float, dy: float) -> None:
        # Chromium applies a wheel scroll a frame after the input is acknowledged: wait until
        # the window reaches the expected offset (plain evaluates work with JavaScript off too;
        # a requestAnimationFrame promise would not).
        dx, dy = float(dx), float(dy)
        t = self._config.action_timeout_s
        with self._calling(t):
            before = self._page.evaluate(_SCROLL_STATE_JS)
            self._page.mouse.wheel(dx, dy)
            expected = [
                min(max(before[0] + dx, 0), before[2]),
                min(max(before[1] + dy, 0), before[3]),
            ]
            if [round(v) for v in expected] == [round(v) for v in before[:2]]:
                return
            deadline = time.monotonic() + _SCROLL_SETTLE_S
            while time.monotonic() < deadline:
                now = self._page.evaluate(_SCROLL_STATE_JS)
                if all(abs(a - b) < 1 for a, b in zip(now[:2], expected, strict=True)):
                    return
                self._page.wait_for_timeout(5)

    def _do_go_back(self) -> None:
        t = self._config.navigation_timeout_s
        before, url_before = self.navigations, self._page.url
        with self._calling(t):
            response = self._page.go_back(wait_until="load", timeout=t * 1000)
        if response is None and self.navigations == before:
            if self._page.url != url_before:  # a same-document entry or the blank start page
                if self._page.url == "about:blank":
                    self._response = None
                return
            raise ActionFailed("cannot go back: there is no previous page")

    def _do_noop(self, wait_ms: float = 0) -> None:
        wait_ms = max(0.0, min(float(wait_ms), self._config.action_timeout_s * 1000))
        if wait_ms:
            with self._calling(self._config.action_timeout_s):
                self._page.wait_for_timeout(wait_ms)

    def _do_send_msg_to_user(self, text: str = "") -> None:
        """No page effect: the environment records the message."""

    def _do_mouse_click(self, x: float, y: float) -> None:
        x, y = float(x), float(y)
        width, height = self.viewport
        if not (0 <= x < width and 0 <= y < height):
            raise ActionFailed(f"({x:g}, {y:g}) is outside the {width}x{height} viewport")
        t = self._config.navigation_timeout_s
        with self._calling(self._config.action_timeout_s):
            navigates = self._page.evaluate(_NAVIGATES_AT_JS, [x, y])
        with self._calling(t):
            if navigates:
                with self._page.expect_navigation(wait_until="load", timeout=t * 1000):
                    self._page.mouse.click(x, y)
            else:
                self._page.mouse.click(x, y)
