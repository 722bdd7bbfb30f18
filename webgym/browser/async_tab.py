"""`AsyncBrowserTab`: the browser tab on Playwright's async API, for many tabs on one event loop.

The asyncio twin of `webgym.browser.tab.BrowserTab`: one browser context (or a page in a shared
one) whose steps are coroutines, so N environments on one event loop interleave their waits on
Chromium. It captures the same things the same way (the SERVED HTML of the last main-frame
document, its purchase header, a JPEG screenshot decoded by the same `decode_screenshot`) and
uses the sync tab's page scripts, so the two tabs give byte-identical captures.

A tab starts detached: its first ``recover()`` (an environment's first reset) asks the host for
a context. It sees the host only through the narrow handle the sync tab uses (`TabHost`, with
coroutine ``recover`` / ``release`` and an async ``guard``).

Imports nothing above webgym.browser but ``webgym.page`` (and ``webgym.actions`` for types).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Response
from playwright.async_api import TimeoutError as PlaywrightTimeout

from webgym.browser.errors import ActionFailed, BrowserCrashed, BrowserError, PageTimeout
from webgym.browser.tab import (
    _CHARSET_RE,
    _NAVIGATES_AT_JS,
    _PROBE_JS,
    _SCROLL_SETTLE_S,
    _SCROLL_STATE_JS,
    _css_string,
    _TabEvents,
    decode_screenshot,
)
from webgym.page import PageCapture, purchase_from_headers

if TYPE_CHECKING:
    from webgym.actions import Action

__all__ = ["AsyncBrowserTab"]

log = logging.getLogger(__name__)


class AsyncBrowserTab(_TabEvents):
    """One browser context with one page, reused across episodes; every call is a coroutine.
    Create with `AsyncBrowserHost.new_tab()`; use on the event loop that created it."""

    def __init__(
        self,
        host: Any,
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
        self._generation = -1  # detached: the first recover() opens the page
        self._response: Response | None = None
        self._html_cache: tuple[Response, str] | None = None
        self.navigations = 0
        self._renderer_crashed = False

    # ---- lifecycle -------------------------------------------------------------------------

    def attach(self, context: Any, page: Any, generation: int) -> None:
        """Use ``page`` (in ``context``) of the browser of ``generation`` (called by the host)."""
        self._context, self._page, self._generation = context, page, generation
        self._response, self._html_cache = None, None
        self.navigations = 0
        self._renderer_crashed = False
        page.on("response", self._on_response)
        page.on("crash", self._on_crash)

    async def detach(self) -> None:
        """Let go of the page: close it (or this tab's own context) if it belongs to the
        running browser; a failure is logged, never raised."""
        if self._context is not None and self._generation == self._host.generation:
            try:
                async with self._host.guard(self._config.action_timeout_s):
                    await (self._page if self.shared_context else self._context).close()
            except Exception:  # noqa: BLE001 - a dead page cannot be closed; it goes anyway
                log.debug("closing a browser page failed; dropping it", exc_info=True)
        self._context = self._page = None

    @property
    def context(self):
        """The Playwright browser context the page lives in."""
        return self._context

    async def close(self) -> None:
        """Close this tab's context; the last tab to close stops the browser."""
        if self._closed:
            return
        await self.detach()
        self._closed = True
        await self._host.release(self)

    async def recover(self, *, if_dead: bool = False) -> bool:
        """Make this tab usable (a fresh page; Chromium relaunched if it died): the host's one
        recovery path. ``if_dead``: only if the tab is not usable. False (logged) if it could
        not; the tab then raises `BrowserCrashed` until a later recover succeeds."""
        if self._closed:
            raise BrowserError("this tab is closed")
        if if_dead and self._dead_reason() is None:
            return True
        return await self._host.recover(self)

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

    @contextlib.asynccontextmanager
    async def _calling(self, seconds: float):
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
            async with self._host.guard(seconds):
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

    async def goto(self, url: str, *, screenshot: bool = False) -> PageCapture:
        """Navigate to ``url``, wait for "load", and capture."""
        timeout = self._config.navigation_timeout_s
        async with self._calling(timeout):
            await self._page.goto(url, wait_until="load", timeout=timeout * 1000)
        return await self.capture(screenshot=screenshot)

    async def capture(self, screenshot: bool = False) -> PageCapture:
        """The current URL, served HTML and status, plus an optional screenshot."""
        cfg = self._config
        async with self._calling(cfg.action_timeout_s):
            url = self._page.url
            html, status = await self._served_html()
            response = self._response
            purchase = purchase_from_headers(response.headers) if response is not None else None
        image = None
        if screenshot:
            async with self._calling(cfg.screenshot_timeout_s):
                if cfg.screenshot_format == "jpeg":
                    data = await self._page.screenshot(
                        type="jpeg",
                        quality=cfg.jpeg_quality,
                        timeout=cfg.screenshot_timeout_s * 1000,
                    )
                else:
                    data = await self._page.screenshot(
                        type="png", timeout=cfg.screenshot_timeout_s * 1000
                    )
            image = await asyncio.to_thread(decode_screenshot, data)  # Pillow drops the GIL
        return PageCapture(url=url, html=html, status=status, screenshot=image, purchase=purchase)

    async def _served_html(self) -> tuple[str, int]:
        response = self._response
        if response is None:
            return "", 0
        if self._html_cache is not None and self._html_cache[0] is response:
            return self._html_cache[1], response.status
        body = await response.body()
        match = _CHARSET_RE.search(response.headers.get("content-type", ""))
        encoding = match.group(1) if match else "utf-8"
        try:
            html = body.decode(encoding, errors="replace")
        except LookupError:
            html = body.decode("utf-8", errors="replace")
        self._html_cache = (response, html)
        return html, response.status

    # ---- actions ---------------------------------------------------------------------------

    async def execute(self, action: Action, *, screenshot: bool = False) -> PageCapture:
        """Execute one element/pixel action and capture the page after it (the sync tab's
        `BrowserTab.execute`, awaited)."""
        name, args = action.name, tuple(action.args)
        handler = getattr(self, f"_do_{name}", None)
        if handler is None:
            raise ActionFailed(f"action '{name}' is not executed by the browser")
        element = getattr(action, "element", None)
        before = self.navigations
        if element is not None:
            await handler(*args, element=element)
        else:
            await handler(*args)
        if self.navigations != before:
            t = self._config.navigation_timeout_s
            async with self._calling(t):
                await self._page.wait_for_load_state("load", timeout=t * 1000)
        return await self.capture(screenshot=screenshot)

    async def _element(self, bid: str) -> tuple[Any, dict]:
        bid = str(bid)
        locator = self._page.locator(f"[bid={_css_string(bid)}]")
        async with self._calling(self._config.action_timeout_s):
            infos = await locator.evaluate_all(_PROBE_JS)
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

    async def _located(self, bid: str, element: Any) -> tuple[Any, bool]:
        if element is not None:
            return self._page.locator(f"[bid={_css_string(str(bid))}]"), element.navigates
        locator, info = await self._element(bid)
        return locator, info["navigates"]

    async def _do_click(self, bid: str, *, element: Any = None) -> None:
        locator, navigates = await self._located(bid, element)
        t, nav_t = self._config.action_timeout_s, self._config.navigation_timeout_s
        async with self._calling(t + nav_t):
            if navigates:
                async with self._page.expect_navigation(wait_until="load", timeout=nav_t * 1000):
                    await locator.click(timeout=t * 1000, no_wait_after=True)
            else:
                await locator.click(timeout=t * 1000)

    async def _do_fill(self, bid: str, value: str = "", *, element: Any = None) -> None:
        locator, _ = await self._located(bid, element)
        t = self._config.action_timeout_s
        async with self._calling(t):
            await locator.fill(str(value), timeout=t * 1000)
            await locator.blur(timeout=t * 1000)  # unfocused: pixel-identical captures

    async def _do_select_option(self, bid: str, option: str) -> None:
        locator, info = await self._element(bid)
        if info["tag"] != "select":
            raise ActionFailed(f"element '{bid}' is not a <select>")
        option = str(option)
        choices = info["options"]
        if not any(option in (value, label) for value, label in choices):
            labels = ", ".join(repr(label) for _, label in choices)
            raise ActionFailed(f"select '{bid}' has no option {option!r} (options: {labels})")
        async with self._calling(self._config.action_timeout_s):
            await locator.select_option(option, timeout=self._config.action_timeout_s * 1000)

    async def _do_scroll(self, dx: float, dy: float) -> None:
        dx, dy = float(dx), float(dy)
        async with self._calling(self._config.action_timeout_s):
            before = await self._page.evaluate(_SCROLL_STATE_JS)
            await self._page.mouse.wheel(dx, dy)
            expected = [
                min(max(before[0] + dx, 0), before[2]),
                min(max(before[1] + dy, 0), before[3]),
            ]
            if [round(v) for v in expected] == [round(v) for v in before[:2]]:
                return
            deadline = time.monotonic() + _SCROLL_SETTLE_S
            while time.monotonic() < deadline:
                now = await self._page.evaluate(_SCROLL_STATE_JS)
                if all(abs(a - b) < 1 for a, b in zip(now[:2], expected, strict=True)):
                    return
                await self._page.wait_for_timeout(5)

    async def _do_go_back(self) -> None:
        t = self._config.navigation_timeout_s
        before, url_before = self.navigations, self._page.url
        async with self._calling(t):
            response = await self._page.go_back(wait_until="load", timeout=t * 1000)
        if response is None and self.navigations == before:
            if self._page.url != url_before:
                if self._page.url == "about:blank":
                    self._response = None
                return
            raise ActionFailed("cannot go back: there is no previous page")

    async def _do_noop(self, wait_ms: float = 0) -> None:
        wait_ms = max(0.0, min(float(wait_ms), self._config.action_timeout_s * 1000))
        if wait_ms:
            async with self._calling(self._config.action_timeout_s):
                await self._page.wait_for_timeout(wait_ms)

    async def _do_send_msg_to_user(self, text: str = "") -> None:
        """No page effect: the environment records the message."""

    async def _do_mouse_click(self, x: float, y: float) -> None:
        x, y = float(x), float(y)
        width, height = self.viewport
        if not (0 <= x < width and 0 <= y < height):
            raise ActionFailed(f"({x:g}, {y:g}) is outside the {width}x{height} viewport")
        t = self._config.navigation_timeout_s
        async with self._calling(self._config.action_timeout_s):
            navigates = await self._page.evaluate(_NAVIGATES_AT_JS, [x, y])
        async with self._calling(t):
            if navigates:
                async with self._page.expect_navigation(wait_until="load", timeout=t * 1000):
                    await self._page.mouse.click(x, y)
            else:
                await self._page.mouse.click(x, y)
