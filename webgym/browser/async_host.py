"""`AsyncBrowserHost`: one Playwright driver (async API) and one Chromium per event loop.

The asyncio twin of `webgym.browser.host.BrowserHost`: every `AsyncBrowserHost.acquire()` on
one event loop returns the same host, and each `new_tab()` is one browser context with one page
(or a page in a shared context), so N environments on one loop share one Chromium and
interleave their steps. The host counts its tabs; the last one to close stops Chromium.

Recovery is one path, as in the sync host: `recover(tab)` relaunches Chromium if it died (once,
under a lock, however many tabs ask at the same moment) and gives the tab a fresh page. A
guarded call that outlives its deadline kills this host's Chromium, so every tab's next call
fails with `BrowserCrashed` instead of hanging (the sync host's watchdog thread, here an
``asyncio.timeout``). The Chromium pid is found as the sync host finds it.

Imports nothing above webgym.browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any

import psutil
from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from webgym.browser.async_tab import AsyncBrowserTab
from webgym.browser.config import BrowserConfig
from webgym.browser.errors import BrowserCrashed, BrowserError
from webgym.browser.host import BrowserHost

__all__ = ["AsyncBrowserHost"]

log = logging.getLogger(__name__)

_HOSTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBrowserHost] = (
    weakref.WeakKeyDictionary()
)


class AsyncBrowserHost:
    """The shared Chromium of the running event loop. Get it with `AsyncBrowserHost.acquire`."""

    def __init__(self, config: BrowserConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self._loop = loop
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pid: int | None = None
        self._tabs: set[AsyncBrowserTab] = set()
        self._shared_contexts: dict[tuple, Any] = {}
        self._lock = asyncio.Lock()
        #: bumped at every launch; a tab from an older generation must recover.
        self.generation = 0
        #: launches of Chromium so far (the first included), for tests and diagnostics.
        self.launches = 0

    @classmethod
    def acquire(cls, config: BrowserConfig | None = None) -> AsyncBrowserHost:
        """The running loop's host, created if needed (Chromium starts at the first recover)."""
        config = config or BrowserConfig()
        config.check_executable()
        loop = asyncio.get_running_loop()
        host = _HOSTS.get(loop)
        if host is None:
            host = _HOSTS[loop] = cls(config, loop)
        elif host.config.launch_key() != config.launch_key():
            raise BrowserError(
                "this event loop's browser was launched with other launch settings "
                f"({host.config.launch_key()} != {config.launch_key()}); close its tabs first"
            )
        return host

    @classmethod
    def of_running_loop(cls) -> AsyncBrowserHost | None:
        """The running loop's host, if it has one (diagnostics: count tabs and contexts)."""
        return _HOSTS.get(asyncio.get_running_loop())

    @property
    def running(self) -> bool:
        return self._browser is not None

    @property
    def pid(self) -> int | None:
        """Pid of the Chromium browser process (None while not running)."""
        return self._pid

    @property
    def tab_count(self) -> int:
        return len(self._tabs)

    @property
    def context_count(self) -> int:
        """Browser contexts open in the running Chromium (0 when none runs)."""
        return len(self._browser.contexts) if self._browser is not None else 0

    @property
    def alive(self) -> bool:
        """True if the browser is connected and its process still exists."""
        if self._browser is None or self._pid is None or not self._browser.is_connected():
            return False
        try:
            return psutil.Process(self._pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def _launch(self) -> None:
        self.config.check_executable()
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        marker = f"--webgym-host={uuid.uuid4().hex}"
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.config.executable_path,
                headless=self.config.headless,
                args=[*self.config.args, marker],
                timeout=self.config.launch_timeout_s * 1000,
            )
        except PlaywrightError as exc:
            raise BrowserCrashed(f"Chromium failed to launch: {exc}") from exc
        self._pid = BrowserHost._find_pid(marker)
        self.generation += 1
        self.launches += 1
        self._shared_contexts.clear()

    async def _kill_browser(self) -> None:
        browser, self._browser = self._browser, None
        pid, self._pid = self._pid, None
        if browser is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.action_timeout_s):
                    await browser.close()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()

    async def recover(self, tab: AsyncBrowserTab) -> bool:
        """The one recovery path: relaunch Chromium if it is not running or died (once, however
        many tabs ask), drop the tab's old page and open a fresh one. Never raises for browser
        trouble: logs and returns False; the tab raises `BrowserCrashed` until a later
        recover succeeds."""
        try:
            async with self._lock:
                if not self.alive:
                    if self._browser is not None:
                        log.warning("Chromium (pid %s) died or hung; relaunching it", self._pid)
                    await self._kill_browser()
                    await self._launch()
            await tab.detach()
            context, page = await self._open_page(
                tab.viewport, tab.java_script_enabled, tab.shared_context
            )
        except Exception:  # noqa: BLE001 - reported here; the tab stays unusable until next time
            log.warning(
                "could not recover a browser tab; the next recover tries again", exc_info=True
            )
            return False
        tab.attach(context, page, self.generation)
        return True

    def new_tab(
        self,
        viewport: tuple[int, int] | None = None,
        *,
        java_script_enabled: bool | None = None,
        shared_context: bool = False,
    ) -> AsyncBrowserTab:
        """A detached tab (its first ``recover()`` opens its context, launching Chromium if
        needed). ``shared_context=True``: a page in one context shared with such tabs."""
        if java_script_enabled is None:
            java_script_enabled = self.config.java_script_enabled
        tab = AsyncBrowserTab(
            self,
            viewport=viewport or self.config.viewport,
            java_script_enabled=java_script_enabled,
            shared_context=shared_context,
        )
        self._tabs.add(tab)
        return tab

    async def _open_page(
        self, viewport: tuple[int, int], java_script_enabled: bool, shared: bool = False
    ) -> tuple[Any, Any]:
        if self._browser is None:
            raise BrowserCrashed("the browser is not running")
        key = (self.generation, viewport, java_script_enabled)
        try:
            async with self.guard(self.config.launch_timeout_s):
                if shared and key in self._shared_contexts:
                    context = self._shared_contexts[key]
                    return context, await context.new_page()
                context = await self._browser.new_context(
                    viewport={"width": viewport[0], "height": viewport[1]},
                    java_script_enabled=java_script_enabled,
                    service_workers="block",
                )
                context.set_default_timeout(self.config.action_timeout_s * 1000)
                context.set_default_navigation_timeout(self.config.navigation_timeout_s * 1000)
                if shared:
                    self._shared_contexts[key] = context
                return context, await context.new_page()
        except PlaywrightError as exc:
            raise BrowserCrashed(f"could not open a browser context: {exc}") from exc

    async def release(self, tab: AsyncBrowserTab) -> None:
        """Forget a closed tab; the last one stops the browser."""
        self._tabs.discard(tab)
        if not self._tabs:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop Chromium and the Playwright driver now, and forget this host."""
        await self._kill_browser()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()
            self._playwright = None
        self._tabs.clear()
        if _HOSTS.get(self._loop) is self:
            del _HOSTS[self._loop]

    def kill(self) -> None:
        """SIGKILL this host's Chromium (what a hung call's deadline does)."""
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)

    @contextlib.asynccontextmanager
    async def guard(self, seconds: float) -> AsyncIterator[None]:
        """Kill Chromium if the enclosed Playwright calls take longer than ``seconds`` + 2 s."""
        try:
            async with asyncio.timeout(seconds + 2.0):
                yield
        except TimeoutError as exc:
            self.kill()
            raise BrowserCrashed(
                f"the browser hung for {seconds + 2.0:.0f} s and was killed; recover the tab"
            ) from exc
