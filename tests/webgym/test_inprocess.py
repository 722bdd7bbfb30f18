"""The browserless page: the shop app in-process and over real HTTP give the same episode."""

from __future__ import annotations

import json

import pytest

from webgym.actions import ActionError, parse_action
from webgym.inprocess import InProcessPage
from webgym.shop_client import ShopRequestError
from webgym.transport import ASGITransport, HTTPTransport


@pytest.fixture()
def pages(shop):
    """An in-process page (the same Starlette app object) and a page over real HTTP."""
    local, remote = InProcessPage(shop.app), InProcessPage(shop.url)
    assert isinstance(local.transport, ASGITransport)
    assert isinstance(remote.transport, HTTPTransport)
    yield local, remote
    local.close()
    remote.close()


def findable_goal(catalog):
    """A test goal whose target is on the first results page of its query."""
    for goal in catalog.split("test").goals[:50]:
        if goal["asin"] in catalog.search(goal["query"], limit=50)[:10]:
            return goal
    pytest.skip("no test goal with its target on the first results page")


def snapshot(page: InProcessPage):
    v = page.view
    return v.text, v.axtree, v.available_actions, v.html_pruned


def test_both_transports_play_the_same_episode(pages, catalog):
    goal = findable_goal(catalog)
    sessions = [
        p.request_json("POST", "/api/sessions", {"task_id": goal["task_id"]}) for p in pages
    ]
    assert sessions[0]["session_id"] != sessions[1]["session_id"]
    options = dict(goal["goal_options"])
    steps = [f"search[{goal['query']}]", f"click[{goal['asin']}]"]
    steps += [f"click[{value}]" for value in options.values()]
    steps += ["click('tab_features')", "go_back()", "click[Buy Now]"]

    seen = []
    for page, session in zip(pages, sessions, strict=True):
        status, html = page.goto(session["url"])
        assert status == 200 and 'bid="search_box"' in html
        trace = [snapshot(page)]
        for step in steps:
            page.execute(parse_action(step))
            assert page.status == 200, (step, page.url, page.html[:500])
            trace.append(snapshot(page))
            if step == "go_back()":
                assert page.view.text == trace[-3][0]  # the item page again
                assert page.url.endswith(f"/item/{goal['asin']}")
        assert page.url == f"{session['url']}/done"
        for text, axtree, _, _ in trace:
            assert session["session_id"] not in text + axtree
        state = page.request_json("GET", f"/api/sessions/{session['session_id']}")
        assert state["done"] and state["purchase"]["asin"] == goal["asin"]
        assert state["purchase"]["options"] == options
        assert state["purchase"]["reward"] == 1.0
        seen.append(trace)
    local, remote = seen
    assert len(local) == len(remote) == len(steps) + 1
    for i, (a, b) in enumerate(zip(local, remote, strict=True)):
        assert a == b, f"the two transports differ after step {i}: {([''] + steps)[i]}"
    item = local[2]
    for value in options.values():  # options chosen show as checked
        assert f"radio '{value}', checked=true" in local[2 + len(options)][1]
        assert f"radio '{value}', checked=true" not in item[1]


def test_search_form_sends_the_typed_text(pages, catalog):
    goal = catalog.split("test").goals[0]
    for page in pages:
        session = page.request_json("POST", "/api/sessions", {"task_id": goal["task_id"]})
        page.goto(session["url"])
        page.execute(parse_action("fill('search_box', 'red & blue shoes')"))
        assert page.url == session["url"]  # typing sends nothing
        page.execute(parse_action("click('search_button')"))
        assert page.url == f"{session['url']}/search?q=red+%26+blue+shoes"
        assert page.history == [session["url"], page.url]
        assert page.go_back() and page.url == session["url"] and page.history == [page.url]
        assert not page.go_back()  # nothing before the first page: nothing happens
        with pytest.raises(ActionError, match="no clickable"):
            page.execute(parse_action("click[Buy Now]"))
        page.execute(parse_action("noop()"))
        page.execute(parse_action("scroll(0, 300)"))
        assert page.url == session["url"]


def test_the_capture_of_the_done_page_carries_the_purchase(pages, catalog):
    goal = catalog.split("test").goals[2]
    for page in pages:
        session = page.request_json("POST", "/api/sessions", {"task_id": goal["task_id"]})
        cap = page.goto(f"{session['url']}/item/{goal['asin']}")
        assert cap.purchase is None and cap.url == page.absolute_url
        cap = page.execute(parse_action("click[Buy Now]"))
        assert cap.url.endswith("/done") and cap.html == page.html
        state = page.request_json("GET", f"/api/sessions/{session['session_id']}")
        assert cap.purchase == state["purchase"] and cap.purchase["asin"] == goal["asin"]


def test_errors_are_pages_not_exceptions(pages):
    for page in pages:
        status, html = page.goto("/no/such/route")
        assert status == 404
        assert "<html" in html and "404" in page.view.title
        status, html = page.goto("/s/0000000000000000/search?q=x")
        assert status == 404 and "No session" in page.view.text
        with pytest.raises(ShopRequestError) as info:
            page.request_json("GET", "/api/sessions/0000000000000000")
        assert info.value.status == 404


def test_clone_and_restore_through_the_transport(pages, catalog):
    goal = catalog.split("test").goals[1]
    for page in pages:
        session = page.request_json("POST", "/api/sessions", {"task_id": goal["task_id"]})
        page.goto(f"{session['url']}/search?q={goal['query'].replace(' ', '+')}")
        twin = page.request_json("POST", f"/api/sessions/{session['session_id']}/clone")
        assert twin["session_id"] != session["session_id"]
        assert twin["last_search"] == [goal["query"], 1]
        state = page.request_json("GET", f"/api/sessions/{session['session_id']}")
        restored = page.request_json("POST", "/api/sessions", {"state": state})
        assert restored["last_search"] == state["last_search"]


def test_repeated_requests_answer_alike_in_process_and_over_http(pages, catalog):
    """The same requests, repeated, on the in-process page and the page over HTTP: /healthz
    answers the same on both, every reload of a results page captures what the first did
    (without a history entry), and the two pages capture the same results page. How long a
    request takes is for benchmarks/perf/env_bench.py to measure, not for a test."""
    n = 20
    health = [[p.transport.request("GET", "/healthz") for _ in range(n)] for p in pages]
    assert len({(r.status, r.body) for answers in health for r in answers}) == 1
    (first, *_), _ = health
    assert first.status == 200
    answer = json.loads(first.body)
    assert answer["ok"] is True and answer["products"] == len(catalog)

    goal = catalog.split("test").goals[0]
    seen = []
    for page in pages:
        started = page.request_json("POST", "/api/sessions", {"task_id": goal["task_id"]})
        results = page.goto(f"{started['url']}/search?q={goal['query'].replace(' ', '+')}")
        assert results.status == 200 and "Total results" in page.view.text
        history = list(page.history)
        for _ in range(n):
            assert page.reload() == results
        assert page.history == history
        seen.append((snapshot(page), results.html.replace(started["session_id"], "ID")))
    local, remote = seen
    assert local == remote
