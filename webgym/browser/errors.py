"""Errors raised by the browser layer.

`ActionFailed` is the agent's mistake (an unknown element id, an option that does not exist),
found by the browser itself: it is a `webgym.actions.ActionError`, so the environment reports it
in ``last_action_error`` and the episode goes on. The other `BrowserError` subclasses are the
machine's trouble (a dead or hung Chromium): the environment recovers the tab and ends the
episode.

Imports only ``webgym.actions``.
"""

from __future__ import annotations

from webgym.actions import ActionError


class BrowserError(Exception):
    """Base class of every error the browser layer raises."""


class ChromiumNotFound(BrowserError, FileNotFoundError):
    """The configured Chromium executable does not exist or is not executable."""


class BrowserCrashed(BrowserError):
    """The browser (or the tab's renderer) died, or was relaunched under the tab.

    Recover with `BrowserTab.recover()` (`BrowserHost.recover`), which relaunches the shared
    browser if needed.
    """


class PageTimeout(BrowserError):
    """A page operation did not finish within its configured timeout."""


class ActionFailed(BrowserError, ActionError):
    """The action could not be executed on this page (user-level: bad id, bad option...)."""
