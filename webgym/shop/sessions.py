"""Server-side episode sessions: the goal, the page history, the options chosen, the purchase.

A session id appears in every shop URL, as in WebShop. Sessions are isolated from each other and
a snapshot of an episode is a clone of its session. Imports only ``webgym.shop.schema``.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from webgym.shop.schema import Goal


@dataclass
class ShopSession:
    session_id: str
    goal: Goal
    created: float = field(default_factory=time.time)
    history: list[str] = field(default_factory=list)  # paths of the pages served, in order
    last_search: tuple[str, int] | None = None  # (keywords, page) of the last results page
    current_asin: str | None = None  # the item whose options are being chosen
    options: dict[str, str] = field(default_factory=dict)  # dimension -> chosen value
    purchase: dict[str, Any] | None = None  # set once, by Buy Now

    @property
    def done(self) -> bool:
        return self.purchase is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "task_id": self.goal.get("task_id"),
            "goal": self.goal,
            "history": self.history,
            "last_search": list(self.last_search) if self.last_search else None,
            "current_asin": self.current_asin,
            "options": self.options,
            "done": self.done,
            "purchase": self.purchase,
        }


class SessionStore:
    """Thread-safe map of live sessions, bounded: the least recently used are dropped first."""

    def __init__(self, max_sessions: int = 20_000) -> None:
        self._sessions: OrderedDict[str, ShopSession] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions

    def _add(self, session: ShopSession) -> ShopSession:
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def create(self, goal: Goal) -> ShopSession:
        return self._add(ShopSession(session_id=secrets.token_hex(8), goal=copy.deepcopy(goal)))

    def get(self, session_id: str) -> ShopSession | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                self._sessions.move_to_end(session_id)
            return session

    def restore(self, state: dict[str, Any]) -> ShopSession:
        """A new live session from a serialised one (see ``session_from_json``)."""
        return self._add(session_from_json(state))

    def clone(self, session_id: str) -> ShopSession | None:
        """A new session with a deep copy of another's state: the fork of a snapshot."""
        source = self.get(session_id)
        if source is None:
            return None
        twin = copy.deepcopy(source)
        twin.session_id = secrets.token_hex(8)
        twin.created = time.time()
        return self._add(twin)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)


def session_from_json(state: dict[str, Any], session_id: str | None = None) -> ShopSession:
    """Rebuild a session from ``ShopSession.to_json()`` output (restoring a snapshot)."""
    last = state.get("last_search")
    return ShopSession(
        session_id=session_id or secrets.token_hex(8),
        goal=copy.deepcopy(state["goal"]),
        history=list(state.get("history", [])),
        last_search=(str(last[0]), int(last[1])) if last else None,
        current_asin=state.get("current_asin"),
        options=dict(state.get("options") or {}),
        purchase=copy.deepcopy(state.get("purchase")),
    )
