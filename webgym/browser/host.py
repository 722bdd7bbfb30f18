"""`BrowserHost`: one Playwright driver and one Chromium per thread, shared by many tabs.

Sync Playwright objects must never cross threads, so hosts are kept per thread id: every
`BrowserHost.acquire()` in one thread returns the same host, and each `new_tab()` is one browser
context with one page. The host counts its tabs; closing the last one stops Chromium and the
Playwright driver.

The host owns the contexts, crash detection (`alive`, `generation`) and recovery: `recover(tab)`
is the one recovery path (relaunch Chromium if it died, give the tab a fresh page; it logs what
it throws away and what fails). After a relaunch, tabs opened before it raise `BrowserCrashed`
until they recover. Tabs see the host only through the narrow `TabHost` handle and never
import this module.

The Chromium pid: Playwright does not expose it, so the host adds a unique, inert switch
(``--webgym-host=<token>``) to the launch arguments and looks, among this process's descendants
(python -> playwright driver -> chromium; Debian's /usr/bin/chromium wrapper ``exec``s the real
binary, so the pid is the browser's own), for the process whose command line carries that switch
and no ``--type=`` (renderers, GPU and utility processes all have a ``--type=``).

A watchdog thread guards Playwright calls that take no timeout of their own (evaluate, mouse
input, response bodies): past the deadline it kills this host's Chromium, so the call fails with
`BrowserCrashed` instead of hanging.

Imports nothing above webgym.browser.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
from playwright.sync_api import Browser, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from webgym.browser.config import BrowserConfig
from webgym.browser.errors import BrowserCrashed, BrowserError
from webgym.browser.tab import BrowserTab

log = logging.getLogger(__name__)

_HOSTS: dict[int, BrowserHost] = {}
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


class BrowserHost:
    """The shared Chromium of the calling thread. Get it with `BrowserHost.acquire(config)`."""

    def __init__(self, config: BrowserConfig) -> None:
        self.config = config
        self._thread_id = threading.get_ident()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pid: int | None = None
        self._tabs: set[BrowserTab] = set()
        self._shared_contexts: dict[tuple, Any] = {}  # (generation, viewport, js) -> context
        self._watchdog: _Watchdog | None = None
        #: bumped at every launch; a tab from an older generation must recover.
        self.generation = 0

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def acquire(cls, config: BrowserConfig | None = None) -> BrowserHost:
        """Return this thread's host, creating it if needed (Chromium starts at the first tab)."""
        config = config or BrowserConfig()
        config.check_executable()
        tid = threading.get_ident()
        with _HOSTS_LOCK:
            host = _HOSTS.get(tid)
            if host is None:
                host = _HOSTS[tid] = cls(config)
            elif host.config.launch_key() != config.launch_key():
                raise BrowserError(
                    "this thread's browser was launched with other launch settings "
                    f"({host.config.launch_key()} != {config.launch_key()}); close its tabs first"
                )
        return host

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
    def alive(self) -> bool:
        """True if the browser is connected and its process still exists."""
        if self._browser is None or self._pid is None:
            return False
        try:
            connected = self._browser.is_connected()
        except PlaywrightError:
            return False
        if not connected:
            return False
        try:
            return psutil.Process(self._pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread_id:
            raise BrowserError("a BrowserHost is bound to the thread that acquired it")

    def _launch(self) -> None:
        self.config.check_executable()
        if self._playwright is None:
            self._playwright = sync_playwright().start()
        if self._watchdog is None:
            self._watchdog = _Watchdog()
        token = uuid.uuid4().hex
        marker = f"--webgym-host={token}"
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.config.executable_path,
                headless=self.config.headless,
                args=[*self.config.args, marker],
                timeout=self.config.launch_timeout_s * 1000,
            )
        except PlaywrightError as exc:
            raise BrowserCrashed(f"Chromium failed to launch: {exc}") from exc
        self._pid = self._find_pid(marker)
        self.generation += 1
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

    def _kill_browser(self) -> None:
        browser, self._browser = self._browser, None
        pid, self._pid = self._pid, None
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.close()
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()

    def relaunch(self) -> None:
        """Stop the current Chromium (dead or not) and start a fresh one.

        Every existing tab must then recover (`BrowserTab.recover()`).
        """
        self._check_thread()
        self._kill_browser()
        self._launch()

    def recover(self, tab: BrowserTab) -> bool:
        """The one recovery path: make ``tab`` usable again after a crash, a hang or a timeout.

        Relaunches Chromium if it is not running or died, drops the tab's old page and opens a
        fresh one (a new context, or a page in the shared context). Never raises for browser
        trouble: logs what failed and returns False; the tab then raises `BrowserCrashed`
        until a later recover succeeds (an environment tries again at its next reset).
        """
        self._check_thread()
        try:
            if not self.alive:
                if self._browser is not None:
                    log.warning("Chromium (pid %s) died or hung; relaunching it", self._pid)
                self.relaunch()
            tab.detach()
            context, page = self._open_page(
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
    ) -> BrowserTab:
        """Open a new browser context with one page (launching Chromium if needed).

        ``viewport`` (width, height) and ``java_script_enabled`` default to the host's config.
        ``shared_context=True`` gives the tab a page in a context shared with the other such
        tabs of the same viewport and JavaScript setting instead of a context of its own:
        ~16 MB PSS per tab instead of ~65 MB, but cookies and storage are shared and a renderer
        crash takes down every page of the context. (The shop keeps sessions in the URL, so
        shopping episodes stay isolated either way.)
        """
        self._check_thread()
        if self._browser is None:
            self._launch()
        if java_script_enabled is None:
            java_script_enabled = self.config.java_script_enabled
        viewport = viewport or self.config.viewport
        context, page = self._open_page(viewport, java_script_enabled, shared_context)
        tab = BrowserTab(
            self,
            context,
            page,
            self.generation,
            viewport=viewport,
            java_script_enabled=java_script_enabled,
            shared_context=shared_context,
        )
        self._tabs.add(tab)
        return tab

    def _open_page(
        self, viewport: tuple[int, int], java_script_enabled: bool, shared: bool = False
    ) -> tuple[Any, Any]:
        """A fresh context (or the shared one) and a new page in it."""
        self._check_thread()
        if self._browser is None:
            raise BrowserCrashed("the browser is not running")
        key = (self.generation, viewport, java_script_enabled)
        if shared and key in self._shared_contexts:
            try:
                with self.guard(self.config.launch_timeout_s):
                    context = self._shared_contexts[key]
                    return context, context.new_page()
            except PlaywrightError as exc:
                raise BrowserCrashed(f"could not open a page: {exc}") from exc
        try:
            with self.guard(self.config.launch_timeout_s):
                context = self._browser.new_context(
                    viewport={"width": viewport[0], "height": viewport[1]},
                    java_script_enabled=java_script_enabled,
                    service_workers="block",
                )
                context.set_default_timeout(self.config.action_timeout_s * 1000)
                context.set_default_navigation_timeout(self.config.navigation_timeout_s * 1000)
                page = context.new_page()
        except PlaywrightError as exc:
            raise BrowserCrashed(f"could not open a browser context: {exc}") from exc
        if shared:
            self._shared_contexts[key] = context
        return context, page

    def release(self, tab: BrowserTab) -> None:
        """Forget a closed tab; the last one stops the browser."""
        self._tabs.discard(tab)
        if not self._tabs:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop Chromium and the Playwright driver now, and forget this host.

        Called automatically when the last tab closes. Open tabs become unusable.
        """
        self._kill_browser()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                self._playwright.stop()
            self._playwright = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        self._tabs.clear()
        with _HOSTS_LOCK:
            if _HOSTS.get(self._thread_id) is self:
                del _HOSTS[self._thread_id]

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
