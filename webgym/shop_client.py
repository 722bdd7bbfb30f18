"""`ShopClient`: the shop's JSON API (``/api``), as an environment uses it in either mode.

    client = ShopClient(shop.app)                 # in-process; or ShopClient("http://host:port")
    tasks = client.tasks("test")                  # {"split", "hash", "task_ids"}
    session = client.create_session("test-0001")  # {"session_id", "goal", "url", ...}
    state = client.session(session["session_id"])
    twin = client.restore_session(state)          # a new session with that state (a fork)

Pages are not fetched here: the browser tab and the in-process page (:mod:`webgym.page`) do
that. Imports only ``webgym.transport``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from webgym.transport import Transport, make_transport

__all__ = ["ShopClient", "ShopRequestError"]


class ShopRequestError(RuntimeError):
    """A JSON API call the shop answered with an error status; ``status`` and ``payload``."""

    def __init__(self, status: int, payload: Any, method: str, path: str) -> None:
        detail = payload.get("error") if isinstance(payload, dict) else payload
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status
        self.payload = payload


class ShopClient:
    """The JSON API over one transport (an ASGI app in-process, or a base URL over HTTP)."""

    def __init__(self, transport: Transport | str | Callable[..., Any]) -> None:
        self.transport = make_transport(transport)

    @property
    def base_url(self) -> str:
        """Where the shop's pages are (``http://shop.local`` for an in-process shop)."""
        return self.transport.base_url

    def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """Call the shop's JSON API (e.g. ``POST /api/sessions``); raise on an error status."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        r = self.transport.request(method.upper(), path, headers, data)
        try:
            payload = json.loads(r.body) if r.body else None
        except ValueError:
            payload = r.text
        if r.status >= 400:
            raise ShopRequestError(r.status, payload, method.upper(), path)
        return payload

    def tasks(self, split: str) -> dict[str, Any]:
        """The task ids of ``split`` and the split's hash."""
        return self.request_json("GET", f"/api/tasks?split={split}")

    def create_session(self, task_id: str) -> dict[str, Any]:
        """A new session (an episode) for ``task_id``."""
        return self.request_json("POST", "/api/sessions", {"task_id": task_id})

    def restore_session(self, state: dict[str, Any]) -> dict[str, Any]:
        """A new session with the state of another (``session()`` output): a fork."""
        return self.request_json("POST", "/api/sessions", {"state": state})

    def clone_session(self, session_id: str) -> dict[str, Any]:
        """A new session with a copy of a live one's state."""
        return self.request_json("POST", f"/api/sessions/{session_id}/clone")

    def session(self, session_id: str) -> dict[str, Any]:
        """A session's state: goal, history, options chosen, purchase."""
        return self.request_json("GET", f"/api/sessions/{session_id}")

    def delete_session(self, session_id: str) -> None:
        self.request_json("DELETE", f"/api/sessions/{session_id}")

    def close(self) -> None:
        self.transport.close()
