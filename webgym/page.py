"""One page interface, two implementations: the browser tab and the in-process page.

    cap = page.goto(url, screenshot=True)      # load a page, capture it
    cap = page.execute(step, screenshot=True)  # run one resolved step, capture the page after it
    cap.url, cap.html, cap.status              # the served document, byte for byte
    cap.screenshot                             # (H, W, 3) uint8, or None (no pixels in-process)
    cap.purchase                               # the shop's purchase record on its done page

``webgym.browser.BrowserTab`` runs steps in Chromium; ``webgym.inprocess.InProcessPage`` sends
the same HTTP requests to the shop without a browser. ``step`` is what
:meth:`webgym.observe.PageView.resolve` returns: a ``click`` or ``fill`` carrying the page
element it acts on (checked once, there; the pages trust it), or an action that needs no
element (``scroll``, ``noop``, ``mouse_click``, ``send_msg_to_user``). Each page also takes an
unresolved action and checks it itself, for use without an environment.

The purchase comes with the page that shows it: the shop's done page carries it in a response
header (:data:`webgym.shop.schema.PURCHASE_HEADER`), which both pages read from the document
they were served, so the reward needs no second request.

Imports only ``webgym.shop.schema`` (and ``webgym.actions`` for types).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from webgym.shop.schema import Purchase, purchase_from_headers

if TYPE_CHECKING:
    import numpy as np

    from webgym.actions import Action

__all__ = ["Page", "PageCapture", "purchase_from_headers"]


@dataclass(frozen=True)
class PageCapture:
    """What a page shows after a navigation or an action.

    ``url`` is absolute; ``html`` the served HTML of the last main-frame document ("" before
    the first one); ``status`` its HTTP status (0 before the first one); ``screenshot`` an
    (H, W, 3) uint8 array of the viewport or None; ``axtree`` Playwright's ARIA snapshot of
    <body> or None; ``purchase`` the purchase the document carries (the done page) or None.
    """

    url: str
    html: str
    status: int
    screenshot: np.ndarray | None = None
    axtree: str | None = None
    purchase: Purchase | None = None

    def __iter__(self) -> Iterator:
        """``status, html = page.goto(url)``, as the in-process page's ``goto`` always read."""
        return iter((self.status, self.html))


class Page(Protocol):
    """The page an environment drives (see the module docstring)."""

    def goto(self, url: str, *, screenshot: bool = False) -> PageCapture:
        """Load ``url`` (absolute) as a new history entry and capture it."""
        ...

    def execute(self, step: Action, *, screenshot: bool = False) -> PageCapture:
        """Run one step and capture the page after it; raise ``webgym.actions.ActionError``
        (or a subclass) for what the page cannot do, anything else for machine trouble."""
        ...

    def capture(self, screenshot: bool = False) -> PageCapture:
        """The current page, without doing anything."""
        ...

    def recover(self, *, if_dead: bool = False) -> bool:
        """After machine trouble: make the page usable again (a fresh browser page; nothing
        to do in-process). ``if_dead``: only if it is not usable. Logs and returns False when
        it could not; never raises for that."""
        ...

    def close(self) -> None: ...
