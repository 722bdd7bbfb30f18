"""The shop over real HTTP: the page flow, element ids, sessions, and the session API."""

from __future__ import annotations

import re

import httpx
import pytest

from webgym.shop.app import purchase_price
from webgym.shop.reward import get_reward
from webgym.shop.schema import PURCHASE_HEADER, purchase_from_headers

BID_RE = re.compile(r'\bbid="([^"]+)"')
INTERACTIVE_RE = re.compile(r"<(a|button|input|select|textarea|fieldset)\b[^>]*>")


@pytest.fixture()
def client(shop):
    with httpx.Client(base_url=shop.url, follow_redirects=True, timeout=30) as c:
        yield c


def new_session(client: httpx.Client, task_id: str) -> str:
    r = client.post("/api/sessions", json={"task_id": task_id})
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def test_landing_and_health(client, catalog):
    r = client.get("/")
    assert r.status_code == 200
    assert "WebGym Shop" in r.text and "test" in r.text
    assert client.get("/healthz").json()["products"] == len(catalog)
    assert client.get("/static/style.css").status_code == 200


def test_start_form_creates_a_session_for_a_task(client, catalog):
    goal = catalog.split("test").goals[0]
    r = client.post("/start", data={"task_id": goal["task_id"]})
    assert r.status_code == 200
    assert re.search(r"/s/[0-9a-f]{16}$", str(r.url))
    assert goal["instruction_text"] in r.text.replace("&#39;", "'")


def test_a_whole_episode_buying_the_target_scores_one(client, catalog):
    goal = catalog.split("test").goals[3]
    sid = new_session(client, goal["task_id"])
    page = client.get(f"/s/{sid}")
    assert 'bid="search_box"' in page.text and 'bid="search_button"' in page.text

    results = client.get(f"/s/{sid}/search", params={"q": goal["query"]})
    assert results.status_code == 200
    asins = re.findall(r'data-asin="([^"]+)"', results.text)
    assert 1 <= len(asins) <= 10
    total = int(re.search(r"Total results: (\d+)", results.text).group(1))
    assert total <= 50
    if total > 10:
        assert "Next &gt;" in results.text
        page2 = client.get(f"/s/{sid}/search", params={"q": goal["query"], "page": 2})
        assert "&lt; Prev" in page2.text and 'bid="prev_page"' in page2.text

    target = catalog.get(goal["asin"])
    item = client.get(f"/s/{sid}/item/{goal['asin']}")
    assert item.status_code == 200
    assert 'bid="buy_now"' in item.text and target["Price"] in item.text
    assert item.text.count('role="radiogroup"') == len(target["options"])
    for sub in ("description", "features", "reviews", "attributes"):
        sub_page = client.get(f"/s/{sid}/item/{goal['asin']}/{sub}")
        assert sub_page.status_code == 200
        assert f'href="/s/{sid}/item/{goal["asin"]}"' in sub_page.text  # the way back
        assert "&lt; Prev" in sub_page.text

    for dim, value in dict(goal["goal_options"]).items():
        r = client.post(f"/s/{sid}/item/{goal['asin']}/option", data={dim: value})
        assert r.status_code == 200
        assert re.search(rf'value="{re.escape(value)}" role="radio"\s+aria-checked="true"', r.text)
    done = client.post(f"/s/{sid}/item/{goal['asin']}/buy")
    assert done.status_code == 200 and str(done.url).endswith("/done")
    state = client.get(f"/api/sessions/{sid}").json()
    assert state["done"] and state["purchase"]["asin"] == goal["asin"]
    expected = get_reward(target, goal, purchase_price(target), dict(goal["goal_options"]))
    assert state["purchase"]["reward"] == pytest.approx(expected)
    assert state["purchase"]["reward"] == pytest.approx(1.0)
    assert f"{state['purchase']['reward']:.4f}" in done.text
    assert "r_type" in done.text and "r_att" in done.text
    # the episode is over: buying again is refused, other pages lead to the done page
    assert client.post(f"/s/{sid}/item/{goal['asin']}/buy").status_code == 409
    assert str(client.get(f"/s/{sid}").url).endswith("/done")


def test_a_wrong_product_scores_less_than_one(client, catalog):
    goal = catalog.split("test").goals[5]
    other = next(a for a in catalog.search(goal["query"]) if a != goal["asin"])
    sid = new_session(client, goal["task_id"])
    client.post(f"/s/{sid}/item/{other}/buy")
    purchase = client.get(f"/api/sessions/{sid}").json()["purchase"]
    assert purchase["asin"] == other and purchase["reward"] < 1.0


def test_the_done_page_carries_the_purchase_in_a_header(client, catalog):
    """The reward comes with the page that shows it: no second request needed."""
    goal = catalog.split("test").goals[6]
    sid = new_session(client, goal["task_id"])
    item = client.get(f"/s/{sid}/item/{goal['asin']}")
    assert PURCHASE_HEADER not in item.headers
    done = client.post(f"/s/{sid}/item/{goal['asin']}/buy")
    assert str(done.url).endswith("/done")
    state = client.get(f"/api/sessions/{sid}").json()
    assert purchase_from_headers(done.headers) == state["purchase"]
    again = client.get(f"/s/{sid}/done")  # every serving of the done page carries it
    assert purchase_from_headers(again.headers) == state["purchase"]


def test_every_interactive_element_has_a_unique_stable_id(client, catalog):
    goal = catalog.split("test").goals[1]
    sid = new_session(client, goal["task_id"])
    paths = [
        f"/s/{sid}",
        f"/s/{sid}/search?q={goal['query']}",
        f"/s/{sid}/item/{goal['asin']}",
        f"/s/{sid}/item/{goal['asin']}/reviews",
    ]
    for path in paths:
        first, second = client.get(path).text, client.get(path).text
        tags = INTERACTIVE_RE.findall(first)
        elements = INTERACTIVE_RE.finditer(first)
        for m in elements:
            assert "bid=" in m.group(0), f"{path}: {m.group(0)} has no element id"
        bids = BID_RE.findall(first)
        assert len(bids) == len(set(bids)) and len(bids) >= len(tags) > 0
        assert BID_RE.findall(second) == bids  # same page state, same ids


def test_every_id_the_shop_writes_is_an_element_an_agent_can_target(client, catalog):
    """Visible non-interactive elements carry ids too (headings, the instruction, product
    texts and images, the open tab of a sub-page), each one an element of the observation:
    none sits inside a link or a button, none is empty, none holds a control; no id names the
    session."""
    from webgym.observe import observe_page

    for goal in catalog.split("test").goals[4:7]:
        sid = new_session(client, goal["task_id"])
        item = f"/s/{sid}/item/{goal['asin']}"
        paths = [
            f"/s/{sid}",
            f"/s/{sid}/search?q={goal['query']}",
            f"/s/{sid}/search?q=zzzzqqqq",  # no results
            item,
            *(f"{item}/{sub}" for sub in ("description", "features", "reviews", "attributes")),
            f"/s/{sid}/item/NOSUCHASIN",  # an error page
        ]
        for path in paths:
            html = client.get(path).text
            bids = BID_RE.findall(html)
            view = observe_page(html)
            assert list(view.elements) == bids, path
            assert not any(sid in b for b in bids)
            assert len(view.clickable_actions) > len(view.available_actions), path
        done = client.post(f"{item}/buy")
        assert done.url.path.endswith("/done")
        assert list(observe_page(done.text).elements) == BID_RE.findall(done.text)
    landing = client.get("/").text
    assert list(observe_page(landing).elements) == BID_RE.findall(landing)


def test_sessions_are_isolated_and_clone_and_restore(client, catalog):
    goal = catalog.split("test").goals[2]
    product = catalog.get(goal["asin"])
    dim, values = next(iter(product["options"].items()))
    a, b = new_session(client, goal["task_id"]), new_session(client, goal["task_id"])
    client.post(f"/s/{a}/item/{goal['asin']}/option", data={dim: values[-1]})
    assert client.get(f"/api/sessions/{a}").json()["options"] == {dim: values[-1]}
    assert client.get(f"/api/sessions/{b}").json()["options"] == {}

    twin = client.post(f"/api/sessions/{a}/clone").json()["session_id"]
    assert twin != a
    assert client.get(f"/api/sessions/{twin}").json()["options"] == {dim: values[-1]}
    client.post(f"/s/{twin}/item/{goal['asin']}/option", data={dim: values[0]})
    assert client.get(f"/api/sessions/{a}").json()["options"] == {dim: values[-1]}

    state = client.get(f"/api/sessions/{a}").json()
    restored = client.post("/api/sessions", json={"state": state}).json()
    assert restored["session_id"] != a and restored["options"] == {dim: values[-1]}
    assert restored["history"] == state["history"]


def test_many_sessions_at_once(shop, catalog):
    import concurrent.futures

    goals = catalog.split("test").goals[:16]

    def episode(goal):
        with httpx.Client(base_url=shop.url, follow_redirects=True, timeout=30) as c:
            sid = new_session(c, goal["task_id"])
            c.get(f"/s/{sid}/search", params={"q": goal["query"]})
            c.post(f"/s/{sid}/item/{goal['asin']}/buy")
            return goal["asin"], c.get(f"/api/sessions/{sid}").json()["purchase"]["asin"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for wanted, bought in pool.map(episode, goals):
            assert wanted == bought


def test_api_errors_are_json(client):
    assert client.post("/api/sessions", json={"task_id": "test-99999"}).status_code == 404
    assert client.post("/api/sessions", content=b"{not json").status_code == 400
    assert client.post("/api/sessions", json=[1, 2]).status_code == 400
    assert client.get("/api/sessions/nope").status_code == 404
    r = client.get("/api/tasks", params={"split": "nope"})
    assert r.status_code == 404 and "test" in r.json()["error"]
    assert set(client.get("/api/tasks").json()) >= {"train", "validation", "test"}
