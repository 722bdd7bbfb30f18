"""The shop's sessions are shared fairly, on the real Starlette app with clients at different
addresses: an unused session expires, one client cannot hold more than its share, and a full
store replaces an idle session, never one in use."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from webgym.shop.app import create_app


@pytest.fixture()
def task_id(catalog) -> str:
    return catalog.split("test").goals[0]["task_id"]


def client(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000))


def new_session(c: TestClient, task_id: str):
    return c.post("/api/sessions", json={"task_id": task_id})


def alive(c: TestClient, sid: str) -> bool:
    return c.get(f"/s/{sid}").status_code == 200


def test_an_unused_session_expires(catalog, task_id):
    app = create_app(catalog, session_idle_s=0.3)
    c = client(app, "10.0.0.1")
    sid = new_session(c, task_id).json()["session_id"]
    for _ in range(3):  # each use keeps it alive
        time.sleep(0.15)
        assert alive(c, sid)
    time.sleep(0.45)
    page = c.get(f"/s/{sid}")
    assert page.status_code == 404 and "expired" in page.text
    assert c.get(f"/api/sessions/{sid}").status_code == 404
    assert c.get("/healthz").json()["sessions"] == 0


def test_a_flood_from_one_client_never_evicts_anothers_episode(catalog, task_id):
    app = create_app(catalog, max_sessions=20, max_sessions_per_client=8)
    alice, mallory = client(app, "10.0.0.1"), client(app, "10.0.0.66")
    episode = new_session(alice, task_id).json()["session_id"]
    assert alice.get(f"/s/{episode}/search", params={"q": "lamp"}).status_code == 200
    answers = [new_session(mallory, task_id) for _ in range(40)]
    assert [r.status_code for r in answers] == [201] * 8 + [429] * 32
    assert "this client (10.0.0.66) holds 8 sessions" in answers[-1].json()["error"]
    assert answers[-1].headers["retry-after"]
    assert alive(alice, episode)
    assert new_session(client(app, "10.0.0.2"), task_id).status_code == 201  # others still can
    # many clients fill the store: once every session is in use, new ones are refused (503)
    others = [new_session(client(app, f"10.0.1.{i}"), task_id) for i in range(15)]
    assert [r.status_code for r in others] == [201] * 10 + [503] * 5
    assert "in use" in others[-1].json()["error"]
    assert alive(alice, episode)
    forged = mallory.post("/api/sessions", json={"state": answers[0].json()})  # restore: counted
    clone = mallory.post(f"/api/sessions/{answers[0].json()['session_id']}/clone")
    assert forged.status_code == clone.status_code == 429


def test_a_full_store_replaces_an_idle_session_never_one_in_use(catalog, task_id):
    app = create_app(catalog, max_sessions=3, session_in_use_s=0.3)
    c = client(app, "10.0.0.1")
    s1, s2 = (new_session(c, task_id).json()["session_id"] for _ in range(2))
    time.sleep(0.4)  # both idle now
    assert alive(c, s1)  # s1 in use again
    s3 = new_session(c, task_id).json()["session_id"]
    assert new_session(c, task_id).status_code == 201  # replaces s2, the idle one
    assert not alive(c, s2) and alive(c, s1) and alive(c, s3)
    assert new_session(c, task_id).status_code == 503  # all three in use: none is taken
    assert alive(c, s1) and alive(c, s3)


def test_a_client_at_its_limit_replaces_its_own_idle_session(catalog, task_id):
    app = create_app(catalog, max_sessions_per_client=2, session_in_use_s=0.3)
    c = client(app, "10.0.0.1")
    a1, a2 = (new_session(c, task_id).json()["session_id"] for _ in range(2))
    assert new_session(c, task_id).status_code == 429
    time.sleep(0.4)
    assert alive(c, a2)
    assert new_session(c, task_id).status_code == 201  # a1 (idle, its own) made room
    assert not alive(c, a1) and alive(c, a2)


def test_a_flood_at_the_store_cap_never_evicts_a_live_episode(catalog, task_id):
    app = create_app(catalog, max_sessions=20)  # the default per-client share (1,000)
    alice, mallory = client(app, "10.0.0.1"), client(app, "10.0.0.66")
    episode = new_session(alice, task_id).json()["session_id"]
    answers = [new_session(mallory, task_id).status_code for _ in range(60)]
    assert answers == [201] * 19 + [503] * 41
    assert alive(alice, episode)
