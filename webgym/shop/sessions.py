"""Server-side episode sessions: the goal, the page history, the options chosen, the purchase.

A session id appears in every shop URL, as in WebShop. Sessions are isolated from each other and
a snapshot of an episode is a clone of its session. Imports only ``webgym.shop.schema``.

Memory is bounded whatever clients send: a session keeps its last ``MAX_HISTORY`` pages, each
path cut at ``MAX_PATH_CHARS``; the store holds at most ``max_sessions`` sessions and about
``max_bytes`` of them (the least recently used go first); a restored state is checked field by
field (``session_from_json`` raises ``ValueError`` naming the field).
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from webgym.shop.schema import Goal

MAX_HISTORY = 100  # pages a session remembers (the most recent)
MAX_PATH_CHARS = 2048  # a longer page path is remembered cut here
MAX_STORE_BYTES = 256 * 1024 * 1024  # about what the store's sessions may hold, all together
_MAX_FIELD_CHARS = 10_000  # a restored string field (query, asin, option value) at most


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
    footprint: int = field(default=0, compare=False, repr=False)  # bytes, about

    @property
    def done(self) -> bool:
        return self.purchase is not None

    def measure(self) -> int:
        """About how many bytes the session holds (its JSON size)."""
        return len(json.dumps(self.to_json(), ensure_ascii=False, default=str))

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

    def __init__(self, max_sessions: int = 20_000, max_bytes: int = MAX_STORE_BYTES) -> None:
        self._sessions: OrderedDict[str, ShopSession] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._bytes = 0

    def _evict(self) -> None:  # under the lock; the most recent session always stays
        while len(self._sessions) > 1 and (
            len(self._sessions) > self.max_sessions or self._bytes > self.max_bytes
        ):
            _, old = self._sessions.popitem(last=False)
            self._bytes -= old.footprint

    def _add(self, session: ShopSession) -> ShopSession:
        session.footprint = session.measure()
        with self._lock:
            self._sessions[session.session_id] = session
            self._bytes += session.footprint
            self._evict()
        return session

    def visit(self, session: ShopSession, path: str) -> None:
        """Remember a page served in ``session`` (bounded: see the module docstring)."""
        path = path[:MAX_PATH_CHARS]
        with self._lock:
            history = session.history
            history.append(path)
            grown = len(path)
            for old in history[: max(0, len(history) - MAX_HISTORY)]:
                grown -= len(old)
            del history[:-MAX_HISTORY]
            session.footprint += grown
            if session.session_id in self._sessions:
                self._bytes += grown
                self._evict()

    @property
    def bytes(self) -> int:
        """About how many bytes the live sessions hold."""
        return self._bytes

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

    def add(self, session: ShopSession) -> ShopSession:
        """Make ``session`` (e.g. from ``session_from_json``) live."""
        return self._add(session)

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
            old = self._sessions.pop(session_id, None)
            if old is not None:
                self._bytes -= old.footprint
            return old is not None

    def __len__(self) -> int:
        return len(self._sessions)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_FIELD_CHARS:
        raise ValueError(f"{name!r} must be a string of at most {_MAX_FIELD_CHARS} characters")
    return value


def session_from_json(state: dict[str, Any], session_id: str | None = None) -> ShopSession:
    """Rebuild a session from ``ShopSession.to_json()`` output (restoring a snapshot).

    Every field is checked (``ValueError`` names the first wrong one); the history keeps its
    last ``MAX_HISTORY`` paths, cut at ``MAX_PATH_CHARS``. Whether the goal and the purchase
    agree with the catalog is the app's check."""
    if not isinstance(state, dict):
        raise ValueError("a session state must be a JSON object")
    goal = state.get("goal")
    if not isinstance(goal, dict):
        raise ValueError("'goal' must be an object")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(p, str) for p in history):
        raise ValueError("'history' must be a list of paths (strings)")
    last = state.get("last_search")
    if last is not None:
        ok = isinstance(last, list | tuple) and len(last) == 2
        if not ok or type(last[1]) is not int or not 1 <= last[1] <= 10_000:
            raise ValueError("'last_search' must be null or [keywords, page number]")
        last = (_text(last[0], "last_search"), last[1])
    asin = state.get("current_asin")
    if asin is not None:
        _text(asin, "current_asin")
    options = state.get("options") or {}
    if not isinstance(options, dict) or len(options) > 100:
        raise ValueError("'options' must be an object of at most 100 dimension: value pairs")
    for dim, value in options.items():
        _text(value, f"options.{_text(dim, 'options')[:40]}")
    purchase = state.get("purchase")
    if purchase is not None and not isinstance(purchase, dict):
        raise ValueError("'purchase' must be null or an object")
    return ShopSession(
        session_id=session_id or secrets.token_hex(8),
        goal=copy.deepcopy(goal),
        history=[p[:MAX_PATH_CHARS] for p in history[-MAX_HISTORY:]],
        last_search=last,
        current_asin=asin,
        options=dict(options),
        purchase=copy.deepcopy(purchase),
    )
