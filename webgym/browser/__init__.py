"""The browser layer: Chromium lifecycle, contexts, captures and action execution.

    host = BrowserHost.acquire(BrowserConfig())   # one Chromium per thread, shared
    tab = host.new_tab()                          # one context + page
    cap = tab.goto("http://127.0.0.1:8000/")      # PageCapture(url, html, status, ...)
    cap = tab.execute(action, screenshot=True)    # action: anything with .name and .args
    tab.close()                                   # the last tab stops Chromium

    host = AsyncBrowserHost.acquire(config)       # the same on an event loop: one per loop
    tab = host.new_tab(); await tab.recover()     # every tab method a coroutine

The host owns Chromium, the contexts, crash detection and recovery (``tab.recover()`` asks it);
the tab, one implementation of ``webgym.page.Page``, never imports the host. Both are written
once, as generators of Playwright calls (``TabCore``, ``HostCore``), that a sync and an async
driver run (``webgym.browser.driver``).

Imports nothing above webgym.browser except ``webgym.page`` and ``webgym.actions``.
"""

from webgym.browser.config import DEFAULT_ARGS, EXECUTABLE_ENV_VAR, BrowserConfig
from webgym.browser.errors import (
    ActionFailed,
    BrowserCrashed,
    BrowserError,
    ChromiumNotFound,
    PageTimeout,
)
from webgym.browser.host import AsyncBrowserHost, BrowserHost
from webgym.browser.tab import AsyncBrowserTab, BrowserTab, TabHost, decode_screenshot
from webgym.page import PageCapture

__all__ = [
    "DEFAULT_ARGS",
    "EXECUTABLE_ENV_VAR",
    "ActionFailed",
    "AsyncBrowserHost",
    "AsyncBrowserTab",
    "BrowserConfig",
    "BrowserCrashed",
    "BrowserError",
    "BrowserHost",
    "BrowserTab",
    "ChromiumNotFound",
    "PageCapture",
    "PageTimeout",
    "TabHost",
    "decode_screenshot",
]
