"""What one client can do to the shop over real HTTP: never a 500, and bounded memory.

Nested JSON, restored states of the wrong shape, huge bodies, absurd page numbers, a session
fed long URLs, connections left idle or half-sent."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from webgym.shop import server as server_mod
from webgym.shop.app import MAX_BODY_BYTES
from webgym.shop.sessions import MAX_HISTORY, MAX_PATH_CHARS, SessionStore


@pytest.fixture(scope="module")
def client(shop):
    with httpx.Client(base_url=shop.url, timeout=60) as c:
        yield c


@pytest.fixture()
def session(client, catalog):
    task_id = catalog.split("test").goals[0]["task_id"]
    return client.post("/api/sessions", json={"task_id": task_id}).json()


def test_deeply_nested_json_is_a_400(client):
    r = client.post("/api/sessions", content="[" * 100_000 + "]" * 100_000)
    assert r.status_code == 400 and "JSON" in r.json()["error"]


@pytest.mark.parametrize(
    "state",
    [
        [],
        "x",
        {"goal": 1},
        {"goal": {}, "history": 5},
        {"goal": {}, "history": [1, 2]},
        {"goal": {}, "last_search": ["q", "1"]},
        {"goal": {}, "last_search": ["q", 10**30]},
        {"goal": {}, "options": []},
        {"goal": {}, "options": {"color": 3}},
        {"goal": {}, "current_asin": {"a": 1}},
        {"goal": {}, "purchase": 7},
        {"goal": {"task_id": "test-0000"}},  # not the task's goal
    ],
    ids=range(12),
)
def test_a_restored_state_of_the_wrong_shape_is_a_400(client, state):
    r = client.post("/api/sessions", json={"state": state})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("not a session state")


def test_a_restored_goal_must_be_its_tasks_and_a_purchase_is_recomputed(client, session):
    forged = {**session, "goal": {**session["goal"], "price_upper": 1e9}}
    assert client.post("/api/sessions", json={"state": forged}).status_code == 400
    asin = session["goal"]["asin"]
    fake = {"asin": asin, "options": {}, "reward": 1.0, "title": "x", "price": 0, "info": {}}
    r = client.post("/api/sessions", json={"state": {**session, "purchase": fake}})
    assert r.status_code == 201
    purchase = r.json()["purchase"]
    assert purchase["price"] > 0 and purchase["info"]  # the shop's own numbers, not the client's
    sid = r.json()["session_id"]
    done = client.get(f"/s/{sid}/done")
    assert done.status_code == 200 and str(purchase["reward"])[:4] in done.headers.get(
        "X-WebGym-Purchase", ""
    )


def test_a_huge_body_is_refused_before_it_is_read(client, shop):
    r = client.post("/api/sessions", content=b" " * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413
    # a claimed 256 MB body is refused on its Content-Length, nothing read
    host, port = shop.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 268435456\r\n\r\n{"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    # a chunked body (no Content-Length) is counted as it streams in
    r = client.post("/api/sessions", content=iter([b" " * 65536] * 40))
    assert r.status_code == 413


@pytest.mark.parametrize("page", ["9" * 5000, "\u00b2", "0", "-1", "1e3", "9999999"])
def test_a_page_number_that_is_not_one_gives_a_clear_page(client, session, page):
    r = client.get(f"/s/{session['session_id']}/search", params={"q": "shoe", "page": page})
    assert r.status_code == 404 and "No results page" in r.text


def test_one_session_cannot_grow_without_bound(client, session):
    sid = session["session_id"]
    for i in range(MAX_HISTORY + 50):
        assert client.get(f"/s/{sid}/search", params={"q": "x" * 6000 + str(i)}).status_code == 200
    history = client.get(f"/api/sessions/{sid}").json()["history"]
    assert len(history) == MAX_HISTORY
    assert max(len(p) for p in history) == MAX_PATH_CHARS
    assert history[-1].endswith(str(MAX_HISTORY + 49)) is False  # cut: the tail is gone


def test_the_session_store_is_bounded_in_bytes(catalog):
    store = SessionStore(max_sessions=1000, max_bytes=200_000)
    goal = catalog.split("test").goals[0]
    first = store.create(goal)
    sessions = [store.create(goal) for _ in range(20)]
    for s in sessions:
        for i in range(MAX_HISTORY):
            store.visit(s, "/s/x/search?q=" + "y" * 1000 + str(i))
    assert store.bytes <= 200_000
    assert store.get(first.session_id) is None  # the least recently used went first
    assert store.get(sessions[-1].session_id) is sessions[-1]


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_an_idle_or_half_sent_connection_is_closed(shop, monkeypatch, sent):
    monkeypatch.setattr(server_mod, "REQUEST_HEAD_S", 0.5)
    host, port = shop.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(sent)
        t0 = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - t0 < 5


def test_a_kept_alive_connection_serves_more_requests_then_closes_when_idle(shop):
    host, port = shop.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"}"):  # the head and the JSON body may come apart
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
        t0 = time.monotonic()
        assert sock.recv(4096) == b""
        assert time.monotonic() - t0 < server_mod.KEEP_ALIVE_S + 3
