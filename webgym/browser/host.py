"""The browser host: one Playwright driver and one Chromium, shared by many tabs.

Written once, as `HostCore` (its operations are generators of Playwright calls, see
`webgym.browser.driver`), and driven two ways:

* `BrowserHost` (Playwright's sync API): one per thread, since sync Playwright objects must never
  cross threads; every `BrowserHost.acquire()` in one thread returns the same host, and each
  `new_tab()` opens a browser context with one page at once.
* `AsyncBrowserHost` (the async API): one per event loop; each `new_tab()` is a detached tab
  whose first ``await recover()`` opens its context, so N environments on one loop share one
  Chromium and interleave their steps.

A host counts its tabs; closing the last one stops Chromium and the Playwright driver.

The host owns the contexts (one per tab, or with ``shared_context=True`` a page in one context
shared by such tabs), crash detection (`alive`, `generation`) and recovery: ``recover(tab)`` is
the one recovery path (relaunch Chromium if it died, once however many tabs ask, and give the
tab a fresh page; it logs what it throws away and what fails). After a relaunch, tabs opened
before it raise `BrowserCrashed` until they recover. Tabs see the host only through the narrow
`TabHost` handle and never import this module.

The Chromium pid: Playwright does not expose it, so the host adds a unique, inert switch
(``--webgym-host=<token>``) to the launch arguments and looks, among this process's descendants
(python -> playwright driver -> chromium; Debian's /usr/bin/chromium wrapper ``exec``s the real
binary, so the pid is the browser's own), for the process whose command line carries that switch
and no ``--type=`` (renderers, GPU and utility processes all have a ``--type=``).

The guard: Playwright calls that take no timeout of their own (evaluate, mouse input, response
bodies) run under ``guard(seconds)``; past the deadline (+ 2 s) the host kills its Chromium, so
the call fails with `BrowserCrashed` instead of hanging (the sync host: a watchdog thread; the
async host: ``asyncio.timeout``).

Imports nothing above webgym.browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any, ClassVar

import psutil
from playwright.async_api import async_playwright
from playwright.sync_api import Error as PlaywrightError  # the async API's class too
from playwright.sync_api import sync_playwright

from webgym.browser.config import BrowserConfig
from webgym.browser.driver import UNGUARDED, Ops, awaiting, blocking, drive
from webgym.browser.errors import BrowserCrashed, BrowserError
from webgym.browser.tab import IO, AsyncBrowserTab, BrowserTab, TabCore

__all__ = ["AsyncBrowserHost", "BrowserHost", "HostCore"]

log = logging.getLogger(__name__)

_HOSTS_LOCK = threading.Lock()


class _Watchdog:
    """Kills a pid if a guarded call outlives its deadline. One daemon thread per host."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._pid: int | None = None
        self._stopped = False
        self.fired = False
        self._thread = threading.Thread(
            target=self._run, name="webgym-browser-watchdog", daemon=True
        )
        self._thread.start()

    def arm(self, seconds: float, pid: int | None) -> None:
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._pid = pid
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                pid, self._deadline = self._pid, None
                if pid is not None:
                    self.fired = True
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)


class HostCore:
    """The shared Chromium of one thread or event loop, written once (``*_io`` generators).
    Use a driver: get it with `BrowserHost.acquire(config)` or `AsyncBrowserHost.acquire`."""

    #: the operations a driver exposes: ``name`` drives ``name_io``.
    driven = ("relaunch", "recover", "release", "shutdown")
    #: set by each driver: its tab class, its hosts by owner, what owns a host, its lock type.
    _tab_class: ClassVar[type[TabCore]]
    _hosts: ClassVar[MutableMapping[Any, Any]]
    _owner_word: ClassVar[str]
    _lock_type: ClassVar[type]

    def __init__(self, config: BrowserConfig, owner: Any) -> None:
        self.config = config
        self._owner = owner
        self._playwright: Any = None
        self._browser: Any = None
        self._pid: int | None = None
        self._tabs: set[TabCore] = set()
        self._shared_contexts: dict[tuple, Any] = {}  # (generation, viewport, js) -> context
        self._lock = self._lock_type()  # one relaunch, however many tabs recover at once
        #: bumped at every launch; a tab from an older generation must recover.
        self.generation = 0
        #: launches of Chromium so far (the first included), for tests and diagnostics.
        self.launches = 0

    # ---- what a driver supplies ------------------------------------------------------------

    @staticmethod
    def _current_owner() -> Any:
        """The thread id or the running event loop that a host belongs to."""
        raise NotImplementedError

    @staticmethod
    def _playwright_api() -> Any:
        """``sync_playwright()`` or ``async_playwright()``."""
        raise NotImplementedError

    def _check_owner(self) -> None:
        """Raise `BrowserError` when called from outside the host's owner."""

    def _open_new(self, tab: TabCore) -> None:
        """What ``new_tab`` does to a new tab before handing it out."""

    def _on_launch(self) -> None:
        """Called at every launch of Chromium."""

    def _on_shutdown(self) -> None:
        """Called when the host stops."""

    def guard(self, seconds: float) -> Any:
        """Kill Chromium if the enclosed Playwright call takes longer than ``seconds`` + 2 s."""
        raise NotImplementedError

    # ---- state -----------------------------------------------------------------------------

    @classmethod
    def acquire(cls, config: BrowserConfig | None = None) -> Any:
        """This thread's (event loop's) host, created if needed (Chromium starts with the
        first tab that opens)."""
        config = config or BrowserConfig()
        config.check_executable()
        owner = cls._current_owner()
        with _HOSTS_LOCK:
            host = cls._hosts.get(owner)
            if host is None:
                host = cls._hosts[owner] = cls(config, owner)
            elif host.config.launch_key() != config.launch_key():
                raise BrowserError(
                    f"this {cls._owner_word}'s browser was launched with other launch settings "
                    f"({host.config.launch_key()} != {config.launch_key()}); close its tabs first"
                )
        return host

    @property
    def _guard(self) -> Any:
        return self.guard

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
        if self._browser is None or self._pid is None:
            return False
        try:
            if not self._browser.is_connected():
                return False
        except PlaywrightError:
            return False
        try:
            return psutil.Process(self._pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def kill(self) -> None:
        """SIGKILL this host's Chromium (what a hung call's deadline does)."""
        if self._pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)

    # ---- launch and stop -------------------------------------------------------------------

    def _launch(self) -> IO:
        self.config.check_executable()
        if self._playwright is None:
            self._playwright = yield UNGUARDED(self._playwright_api().start)
        self._on_launch()
        marker = f"--webgym-host={uuid.uuid4().hex}"
        try:
            self._browser = yield UNGUARDED(
                self._playwright.chromium.launch,
                executable_path=self.config.executable_path,
                headless=self.config.headless,
                args=[*self.config.args, marker],
                timeout=self.config.launch_timeout_s * 1000,
            )
        except PlaywrightError as exc:
            raise BrowserCrashed(f"Chromium failed to launch: {exc}") from exc
        self._pid = self._find_pid(marker)
        self.generation += 1
        self.launches += 1
        self._shared_contexts.clear()  # they belonged to the previous browser

    @staticmethod
    def _find_pid(marker: str) -> int | None:
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if marker in cmdline and not any(a.startswith("--type=") for a in cmdline):
                return proc.pid
        return None

    def _kill_browser(self) -> IO:
        browser, self._browser = self._browser, None  # not alive from here on
        if browser is not None:  # the guard kills the pid if closing hangs
            with contextlib.suppress(Exception):
                yield Ops(self.config.action_timeout_s)(browser.close)
        pid, self._pid = self._pid, None
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()

    def relaunch_io(self) -> IO:
        """Stop the current Chromium (dead or not) and start a fresh one.

        Every existing tab must then recover (``tab.recover()``).
        """
        self._check_owner()
        yield from self._kill_browser()
        yield from self._launch()

    def release_io(self, tab: TabCore) -> IO:
        """Forget a closed tab; the last one stops the browser."""
        self._tabs.discard(tab)
        if not self._tabs:
            yield from self.shutdown_io()

    def shutdown_io(self) -> IO:
        """Stop Chromium and the Playwright driver now, and forget this host.

        Called automatically when the last tab closes. Open tabs become unusable.
        """
        yield from self._kill_browser()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                yield UNGUARDED(self._playwright.stop)
            self._playwright = None
        self._on_shutdown()
        self._tabs.clear()
        with _HOSTS_LOCK:
            if self._hosts.get(self._owner) is self:
                del self._hosts[self._owner]

    # ---- tabs ------------------------------------------------------------------------------

    def new_tab(
        self,
        viewport: tuple[int, int] | None = None,
        *,
        java_script_enabled: bool | None = None,
        shared_context: bool = False,
    ) -> Any:
        """A new tab: a browser context with one page (the sync host opens it now, launching
        Chromium if needed; the async host's tab opens at its first ``recover()``).

        ``viewport`` (width, height) and ``java_script_enabled`` default to the host's config.
        ``shared_context=True`` gives the tab a page in a context shared with the other such
        tabs of the same viewport and JavaScript setting instead of a context of its own:
        ~16 MB PSS per tab instead of ~65 MB, but cookies and storage are shared and a renderer
        crash takes down every page of the context. (The shop keeps sessions in the URL, so
        shopping episodes stay isolated either way.)
        """
        self._check_owner()
        if java_script_enabled is None:
            java_script_enabled = self.config.java_script_enabled
        tab = self._tab_class(
            self,
            viewport=viewport or self.config.viewport,
            java_script_enabled=java_script_enabled,
            shared_context=shared_context,
        )
        self._open_new(tab)
        self._tabs.add(tab)
        return tab

    def _open_io(self, tab: TabCore) -> IO:
        """Open a new tab's page (launching Chromium if it is not running); raises."""
        if self._browser is None:
            yield from self._launch()
        context, page = yield from self._open_page(
            tab.viewport, tab.java_script_enabled, tab.shared_context
        )
        tab.attach(context, page, self.generation)

    def recover_io(self, tab: TabCore) -> IO:
        """The one recovery path: make ``tab`` usable again after a crash, a hang or a timeout.

        Relaunches Chromium if it is not running or died (once, however many tabs ask), drops
        the tab's old page and opens a fresh one (a new context, or a page in the shared
        context). Never raises for browser trouble: logs what failed and returns False; the tab
        then raises `BrowserCrashed` until a later recover succeeds (an environment tries again
        at its next reset).
        """
        self._check_owner()
        try:
            yield UNGUARDED(self._lock.acquire)
            try:
                if not self.alive:
                    if self._browser is not None:
                        log.warning("Chromium (pid %s) died or hung; relaunching it", self._pid)
                    yield from self.relaunch_io()
            finally:
                self._lock.release()
            yield from tab.detach_io()
            context, page = yield from self._open_page(
                tab.viewport, tab.java_script_enabled, tab.shared_context
            )
        except Exception:  # noqa: BLE001 - reported here; the tab stays unusable until next time
            log.warning(
                "could not recover a browser tab; the next recover tries again", exc_info=True
            )
            return False
        tab.attach(context, page, self.generation)
        return True

    def _open_page(self, viewport: tuple[int, int], java_script_enabled: bool, shared: bool) -> IO:
        """A fresh context (or the shared one) and a new page in it."""
        self._check_owner()
        if self._browser is None:
            raise BrowserCrashed("the browser is not running")
        key = (self.generation, viewport, java_script_enabled)
        call = Ops(self.config.launch_timeout_s)
        try:
            if shared and key in self._shared_contexts:
                context = self._shared_contexts[key]
                return context, (yield call(context.new_page))
            context = yield call(
                self._browser.new_context,
                viewport={"width": viewport[0], "height": viewport[1]},
                java_script_enabled=java_script_enabled,
                service_workers="block",
            )
            context.set_default_timeout(self.config.action_timeout_s * 1000)
            context.set_default_navigation_timeout(self.config.navigation_timeout_s * 1000)
            if shared:
                self._shared_contexts[key] = context
            return context, (yield call(context.new_page))
        except PlaywrightError as exc:
            raise BrowserCrashed(f"could not open a browser context or page: {exc}") from exc


@blocking
class BrowserHost(HostCore):
    """The shared Chromium of the calling thread, driven with blocking calls (Playwright's sync
    API). Get it with `BrowserHost.acquire(config)`; use it from that thread only."""

    _tab_class = BrowserTab
    _hosts: ClassVar[dict[int, BrowserHost]] = {}
    _owner_word = "thread"
    _lock_type = threading.Lock
    _watchdog: _Watchdog | None = None

    _current_owner = staticmethod(threading.get_ident)
    _playwright_api = staticmethod(sync_playwright)

    def _check_owner(self) -> None:
        if threading.get_ident() != self._owner:
            raise BrowserError("a BrowserHost is bound to the thread that acquired it")

    def _open_new(self, tab: TabCore) -> None:
        drive(self._open_io(tab), self.guard)

    def _on_launch(self) -> None:
        if self._watchdog is None:
            self._watchdog = _Watchdog()

    def _on_shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    @contextlib.contextmanager
    def guard(self, seconds: float) -> Iterator[None]:
        """Kill Chromium if the enclosed Playwright calls take longer than ``seconds`` + 2 s."""
        wd = self._watchdog
        if wd is None:
            yield
            return
        wd.fired = False
        wd.arm(seconds + 2.0, self._pid)
        try:
            yield
        except PlaywrightError as exc:
            if wd.fired:
                raise BrowserCrashed(
                    f"the browser hung for {seconds + 2.0:.0f} s and was killed; recover the tab"
                ) from exc
            raise
        finally:
            wd.disarm()


@awaiting
class AsyncBrowserHost(HostCore):
    """The shared Chromium of the running event loop, driven with awaited calls (Playwright's
    async API). Get it with `AsyncBrowserHost.acquire(config)` inside the loop."""

    _tab_class = AsyncBrowserTab
    _hosts: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()
    _owner_word = "event loop"
    _lock_type = asyncio.Lock

    _current_owner = staticmethod(asyncio.get_running_loop)
    _playwright_api = staticmethod(async_playwright)

    @classmethod
    def of_running_loop(cls) -> AsyncBrowserHost | None:
        """The running loop's host, if it has one (diagnostics: count tabs and contexts)."""
        return cls._hosts.get(asyncio.get_running_loop())

    @contextlib.asynccontextmanager
    async def guard(self, seconds: float) -> AsyncIterator[None]:
        """Kill Chromium if the enclosed Playwright call takes longer than ``seconds`` + 2 s."""
        try:
            async with asyncio.timeout(seconds + 2.0):
                yield
        except TimeoutError as exc:
            self.kill()
            raise BrowserCrashed(
                f"the browser hung for {seconds + 2.0:.0f} s and was killed; recover the tab"
            ) from exc
