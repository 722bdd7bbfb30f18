"""Server-side episode sessions: the goal, the page history, the options chosen, the purchase.

A session id appears in every shop URL, as in WebShop. Sessions are isolated from each other and
a snapshot of an episode is a clone of its session. Imports only ``webgym.shop.schema``.

Memory is bounded whatever clients send: a session keeps its last ``MAX_HISTORY`` pages, each
path cut at ``MAX_PATH_CHARS``; a restored state is checked field by field
(``session_from_json`` raises ``ValueError`` naming the field).

The store is shared fairly:

- a session unused (no page, no API call) for ``SESSION_IDLE_S`` (30 minutes) expires: its
  pages are 404 "expired" from then on;
- a session used within the last ``IN_USE_S`` (5 minutes) is *in use*, otherwise *idle*;
- each client address holds at most ``MAX_SESSIONS_PER_CLIENT`` (1,000) sessions: a new one
  past that replaces the client's own least recently used session if it is idle, else it is
  refused (``ClientLimitError``, HTTP 429); one client never crowds out the others;
- the store holds at most ``max_sessions``: a new session past that replaces the least recently
  used session of the store if it is idle, else it is refused (``StoreFullError``, HTTP 503);
  an in-use session is never evicted to make room;
- about ``max_bytes`` of sessions in all: past that the least recently used go first (idle
  ones before any in use; the most recent always stays).
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from webgym.shop.schema import Goal

MAX_HISTORY = 100  # pages a session remembers (the most recent)
MAX_PATH_CHARS = 2048  # a longer page path is remembered cut here
MAX_STORE_BYTES = 256 * 1024 * 1024  # about what the store's sessions may hold, all together
SESSION_IDLE_S = 30 * 60.0  # a session unused this long expires
IN_USE_S = 5 * 60.0  # a session used this recently is in use: never evicted for another
MAX_SESSIONS_PER_CLIENT = 1000  # sessions one client address may hold at once
_MAX_FIELD_CHARS = 10_000  # a restored string field (query, asin, option value) at most


class SessionLimitError(Exception):
    """A new session was refused: the sessions it would replace are in use."""

    status = 503


class StoreFullError(SessionLimitError):
    status = 503


class ClientLimitError(SessionLimitError):
    status = 429


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
    owner: str = field(default="", compare=False, repr=False)  # the client address that made it
    last_used: float = field(default=0.0, compare=False, repr=False)  # the store's clock

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
    """Thread-safe map of live sessions, bounded and shared fairly (see the module docstring).
    Sessions are kept in order of last use; ``owner`` is the client address that made one."""

    def __init__(
        self,
        max_sessions: int = 20_000,
        max_bytes: int = MAX_STORE_BYTES,
        *,
        idle_s: float = SESSION_IDLE_S,
        in_use_s: float = IN_USE_S,
        max_per_client: int = MAX_SESSIONS_PER_CLIENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: OrderedDict[str, ShopSession] = OrderedDict()
        self._by_owner: dict[str, OrderedDict[str, ShopSession]] = {}
        self._lock = threading.Lock()
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.idle_s, self.in_use_s = idle_s, in_use_s
        self.max_per_client = max_per_client
        self._clock = clock
        self._bytes = 0

    # ---- under the lock ---------------------------------------------------------------------
    def _drop(self, session: ShopSession) -> None:
        if self._sessions.pop(session.session_id, None) is None:
            return
        self._bytes -= session.footprint
        mine = self._by_owner.get(session.owner)
        if mine is not None:
            mine.pop(session.session_id, None)
            if not mine:
                del self._by_owner[session.owner]

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used <= self.idle_s:
                return
            self._drop(oldest)

    def _make_room(self, owner: str, now: float) -> None:
        """Room for one more session of ``owner``: an idle session replaced, or an error."""
        self._expire(now)
        mine = self._by_owner.get(owner)
        if mine and len(mine) >= self.max_per_client:
            oldest = next(iter(mine.values()))
            if now - oldest.last_used < self.in_use_s:
                raise ClientLimitError(
                    f"this client ({owner or 'unknown'}) holds {len(mine)} sessions, the most "
                    f"one client may: delete some (DELETE /api/sessions/<id>) or let them "
                    f"expire ({self.idle_s:.0f} s unused)"
                )
            self._drop(oldest)
        if len(self._sessions) >= self.max_sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_used < self.in_use_s:
                raise StoreFullError(
                    f"the shop holds {len(self._sessions)} sessions, all in use: retry later"
                )
            self._drop(oldest)

    def _evict_bytes(self) -> None:  # the least recently used first; the most recent stays
        while len(self._sessions) > 1 and self._bytes > self.max_bytes:
            self._drop(next(iter(self._sessions.values())))

    def _add(self, session: ShopSession, owner: str = "") -> ShopSession:
        session.footprint = session.measure()
        session.owner = owner
        with self._lock:
            now = self._clock()
            self._make_room(owner, now)
            session.last_used = now
            self._sessions[session.session_id] = session
            self._by_owner.setdefault(owner, OrderedDict())[session.session_id] = session
            self._bytes += session.footprint
            self._evict_bytes()
        return session

    # ---- the API ------------------------------------------------------------------------------
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
                self._evict_bytes()

    @property
    def bytes(self) -> int:
        """About how many bytes the live sessions hold."""
        return self._bytes

    def create(self, goal: Goal, owner: str = "") -> ShopSession:
        session = ShopSession(session_id=secrets.token_hex(8), goal=copy.deepcopy(goal))
        return self._add(session, owner)

    def get(self, session_id: str) -> ShopSession | None:
        """The live session (now used: in use, and last in the eviction order), or None if it
        never existed, was deleted or evicted, or has expired."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            now = self._clock()
            if now - session.last_used > self.idle_s:
                self._drop(session)
                return None
            session.last_used = now
            self._sessions.move_to_end(session_id)
            self._by_owner[session.owner].move_to_end(session_id)
            return session

    def restore(self, state: dict[str, Any], owner: str = "") -> ShopSession:
        """A new live session from a serialised one (see ``session_from_json``)."""
        return self._add(session_from_json(state), owner)

    def add(self, session: ShopSession, owner: str = "") -> ShopSession:
        """Make ``session`` (e.g. from ``session_from_json``) live."""
        return self._add(session, owner)

    def clone(self, session_id: str, owner: str = "") -> ShopSession | None:
        """A new session with a deep copy of another's state: the fork of a snapshot."""
        source = self.get(session_id)
        if source is None:
            return None
        twin = copy.deepcopy(source)
        twin.session_id = secrets.token_hex(8)
        twin.created = time.time()
        return self._add(twin, owner)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            old = self._sessions.get(session_id)
            if old is not None:
                self._drop(old)
            return old is not None

    def owned_by(self, owner: str) -> int:
        """How many live sessions ``owner`` holds."""
        with self._lock:
            return len(self._by_owner.get(owner, ()))

    def __len__(self) -> int:
        """Live sessions (the expired are dropped first)."""
        with self._lock:
            self._expire(self._clock())
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
