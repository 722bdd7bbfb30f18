"""Errors raised by the browser layer.

`ActionFailed` is the agent's mistake (an unknown element id, an option that does not exist): the
environment reports it in ``last_action_error`` and the episode goes on. The other
`BrowserError` subclasses are the machine's trouble (a dead or hung Chromium): the environment
recovers the tab or ends the episode.

Imports nothing from webgym.
"""

from __future__ import annotations


class BrowserError(Exception):
    """Base class of every error the browser layer raises."""


class ChromiumNotFound(BrowserError, FileNotFoundError):
    """The configured Chromium executable does not exist or is not executable."""


class BrowserCrashed(BrowserError):
    """The browser (or the tab's renderer) died, or was relaunched under the tab.

    Recover with `BrowserTab.recover()`, which relaunches the shared browser if needed.
    """


class PageTimeout(BrowserError):
    """A page operation did not finish within its configured timeout."""


class ActionFailed(BrowserError):
    """The action could not be executed on this page (user-level: bad id, bad option...)."""
