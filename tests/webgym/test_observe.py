"""observe_page on the shop's real pages: elements, text, axtree, actions, labels, resolution."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from webgym.actions import Action, parse_action
from webgym.observe import ActionError, observe_page


@pytest.fixture(scope="module")
def pages(shop, catalog):
    """Real pages of one episode: search, results 1 and 2, the item before/after options."""
    goal = catalog.split("test").goals[3]
    with httpx.Client(base_url=shop.url, follow_redirects=True, timeout=30) as c:
        sid = c.post("/api/sessions", json={"task_id": goal["task_id"]}).json()["session_id"]
        out = {"goal": goal, "sid": sid, "catalog": catalog}
        out["search"] = c.get(f"/s/{sid}")
        out["results"] = c.get(f"/s/{sid}/search", params={"q": goal["query"]})
        out["results2"] = c.get(f"/s/{sid}/search", params={"q": goal["query"], "page": 2})
        out["item"] = c.get(f"/s/{sid}/item/{goal['asin']}")
        dim, value = next(iter(dict(goal["goal_options"]).items()))
        out["option"] = (dim, value)
        out["item_chosen"] = c.post(f"/s/{sid}/item/{goal['asin']}/option", data={dim: value})
        out["features"] = c.get(f"/s/{sid}/item/{goal['asin']}/features")
        for sub in ("description", "reviews", "attributes"):
            out[sub] = c.get(f"/s/{sid}/item/{goal['asin']}/{sub}")
        out["done"] = c.post(f"/s/{sid}/item/{goal['asin']}/buy")
    return out


SHOP_PAGES = (
    "search", "results", "results2", "item", "item_chosen",
    "features", "description", "reviews", "attributes", "done",
)  # fmt: skip
_BID_LINE_RE = r"^\t*\[{}\] (\S+)(?: ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"))?"


def view_of(response: httpx.Response):
    assert response.status_code == 200, response.text
    return observe_page(response.text, str(response.url))


def test_search_page(pages):
    v = view_of(pages["search"])
    assert v.has_search_bar and v.search_box == "search_box"
    assert v.available_actions == ("click('search_button')",)
    assert v.elements["search_box"].role == "textbox"
    assert v.elements["search_box"].form is not None
    assert v.elements["search_box"].form.method == "get"
    assert v.text == f"Instruction: [SEP] {pages['goal']['instruction_text']} [SEP] Search"
    assert v.instruction == pages["goal"]["instruction_text"]
    assert "[search_box] textbox 'Search'" in v.axtree
    steps = v.resolve(parse_action("search[red shoes]"))
    assert steps == [
        Action("fill", ("search_box", "red shoes")),
        Action("click", ("search_button",)),
    ]


def test_results_page_lists_every_result_and_the_pager(pages):
    v = view_of(pages["results"])
    asins = re.findall(r'data-asin="([^"]+)"', pages["results"].text)
    assert asins
    for asin in asins:
        assert f"click('item_{asin.lower()}')" in v.available_actions
        assert v.elements[f"item_{asin.lower()}"].asin == asin
        assert v.resolve_label(asin.lower()) == f"item_{asin.lower()}"
    assert "click('next_page')" in v.available_actions
    assert "click('back_to_search')" == v.available_actions[0]
    assert not v.has_search_bar
    product = pages["catalog"].get(asins[0])
    # WebShop's results read: asin, title, price
    assert f"{asins[0]} [SEP] {product['Title']} [SEP] {product['Price']}" in v.text
    assert v.text.count(asins[0]) == 1
    assert v.resolve_label("Next >") == "next_page"
    page2 = view_of(pages["results2"])
    assert page2.resolve_label("< prev") == "prev_page"
    assert page2.available_actions[:3] == (
        "click('back_to_search')",
        "click('prev_page')",
        "click('next_page')",
    )


def test_item_page_options_text_and_axtree(pages):
    goal, sid = pages["goal"], pages["sid"]
    dim, value = pages["option"]
    before = view_of(pages["item"])
    after = view_of(pages["item_chosen"])
    radios = [e for e in after.elements.values() if e.role == "radio"]
    assert radios and all(e.group is not None for e in radios)
    checked = [e for e in radios if e.checked]
    assert [(after.elements[e.group].label, e.value) for e in checked] == [(dim, value)]
    assert not any(e.checked for e in before.elements.values() if e.role == "radio")
    radio = checked[0]
    assert f"[{radio.bid}] radio '{value}', checked=true" in after.axtree
    assert f"[{radio.bid}] radio '{value}', checked=false" in before.axtree
    assert f"[{radio.group}] radiogroup '{dim}'" in after.axtree
    for v in (before, after):
        assert v.text.startswith(f"Instruction: [SEP] {goal['instruction_text']} [SEP] ")
        assert v.text.endswith("[SEP] Buy Now")
        assert f"{dim} [SEP] " in v.text
        assert "[buy_now] button 'Buy Now'" in v.axtree
        assert v.axtree.startswith("RootWebArea '")
        for field in (v.text, v.axtree, v.html_pruned, *v.available_actions):
            assert sid not in field
        assert "session" not in v.text.lower()
        assert "/s/SESSION/item/" in v.html_pruned
        assert "<head>" not in v.html_pruned and "<style" not in v.html_pruned
        assert v.available_actions[-1] == "click('buy_now')"
        assert f"click('{radio.group}')" not in v.available_actions
    # labels: case-insensitive and whitespace-normalised
    assert after.resolve_label("Buy Now") == "buy_now"
    assert after.resolve_label("  buy   NOW ") == "buy_now"
    assert after.resolve_label("< Prev") == "prev"
    assert after.resolve_label(value.upper()) == radio.bid
    assert after.resolve_label("features") == "tab_features"
    assert after.resolve_label("nothing like this") is None
    # the form a radio submits
    assert radio.form is not None and radio.form.method == "post"
    assert radio.form.action.endswith(f"/item/{goal['asin']}/option")
    assert (radio.name, radio.value) == (dim, value)


def test_resolve_translates_and_explains(pages):
    v = view_of(pages["item_chosen"])
    dim, value = pages["option"]
    group = next(e for e in v.elements.values() if e.role == "radiogroup" and e.label == dim)
    radio = next(e for e in v.elements.values() if e.group == group.bid and e.value == value)
    click = Action("click", (radio.bid,))
    assert v.resolve(parse_action(f"click[{value}]")) == [click]
    assert v.resolve(parse_action(f"select_option('{group.bid}', '{value}')")) == [click]
    assert v.resolve(parse_action(f"select_option('{radio.bid}', '{value.upper()}')")) == [click]
    assert v.resolve(parse_action("click('buy_now')")) == [Action("click", ("buy_now",))]
    for passthrough in ("go_back()", "noop()", "scroll(0, 100)", "send_msg_to_user('hi')"):
        assert v.resolve(parse_action(passthrough)) == [parse_action(passthrough)]

    def error(action: str) -> str:
        with pytest.raises(ActionError) as info:
            v.resolve(parse_action(action))
        return str(info.value)

    assert error("click('nope')").startswith("no element with id 'nope' on this page")
    assert error(f"click('{group.bid}')").startswith(f"element '{group.bid}' is not clickable")
    msg = error("click[Add to Cart]")
    assert msg.startswith("no clickable 'Add to Cart' on this page; clickables: ")
    assert "Buy Now" in msg and "< Prev" in msg
    assert error("search[tent]") == "there is no search bar on this page"
    msg = error(f"select_option('{group.bid}', 'no such value')")
    assert msg.startswith("option 'no such value' is not on this page") and value in msg
    assert "not a text field" in error("fill('buy_now', 'x')")
    assert "not an option group" in error("select_option('buy_now', 'x')")
    search = view_of(pages["search"])
    with pytest.raises(ActionError, match="not clickable.*fill"):
        search.resolve(parse_action("click('search_box')"))
    assert search.resolve(parse_action("fill('search_box', 'x')")) == [
        Action("fill", ("search_box", "x"))
    ]


def test_resolved_steps_carry_the_element_they_act_on(pages):
    """Resolution is the one check against the page: each click/fill step carries its element
    (the executors trust it), and says whether a click loads a new document."""
    search = view_of(pages["search"])
    fill, submit = search.resolve(parse_action("search[red shoes]"))
    assert fill.element is search.elements["search_box"]
    assert submit.element is search.elements["search_button"] and submit.element.navigates
    v = view_of(pages["item_chosen"])
    _, value = pages["option"]
    (click,) = v.resolve(parse_action(f"click[{value}]"))
    assert click.element is v.elements[click.args[0]] and click.element.value == value
    assert click.element.navigates  # an option is a submit button of the options form
    (buy,) = v.resolve(parse_action("click('buy_now')"))
    assert buy.element is v.elements["buy_now"] and buy.element.navigates
    assert v.elements["tab_features"].navigates  # a link
    (noop,) = v.resolve(parse_action("noop()"))
    assert noop.element is None


def test_sub_page_and_sessions_do_not_leak(pages, shop):
    v = view_of(pages["features"])
    assert v.available_actions == ("click('back_to_search')", "click('prev')")
    assert "heading 'Features'" in v.axtree
    assert v.elements["prev"].href.endswith(f"/item/{pages['goal']['asin']}")
    # the same page in another session reads the same
    with httpx.Client(base_url=shop.url, follow_redirects=True, timeout=30) as c:
        goal = pages["goal"]
        sid = c.post("/api/sessions", json={"task_id": goal["task_id"]}).json()["session_id"]
        c.get(f"/s/{sid}/search", params={"q": goal["query"], "page": 2})
        c.get(f"/s/{sid}/item/{goal['asin']}")
        other = view_of(c.get(f"/s/{sid}/item/{goal['asin']}/features"))
    assert sid != pages["sid"]
    assert (other.text, other.axtree, other.html_pruned, other.available_actions) == (
        v.text,
        v.axtree,
        v.html_pruned,
        v.available_actions,
    )


def test_deterministic_and_timed(pages):
    for name in ("search", "results", "item_chosen", "features"):
        html, url = pages[name].text, str(pages[name].url)
        assert observe_page(html, url) == observe_page(html, url)
    html = pages["results"].text
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        observe_page(html, "")
    per_page = (time.perf_counter() - start) / n
    print(f"\nobserve_page on a results page ({len(html)} bytes): {per_page * 1e3:.3f} ms")


def test_handwritten_html_edge_cases():
    html = """<!DOCTYPE html><html><head><title>T &amp; U</title><style>p{}</style>
    <script>var x = "<a bid='fake' href='/x'>no</a>";</script></head><body>
    <!-- <a bid="commented" href="/c">hidden</a> -->
    <p>Fish &amp; chips &lt;3</p>
    <form method="get" action="/find?x=1">
      <label for="q">Find it</label><input id="q" bid="q" name="q" value="old">
      <input type="hidden" name="page" value="1">
      <button bid="go">Go</button>
    </form>
    <a bid="o'neil" href="/o">O'Neil's</a>
    <div hidden><a bid="invisible" href="/i">x</a></div>
    <span class="session">session abcdef0123456789</span>
    </body></html>"""
    v = observe_page(html, "/s/abcdef0123456789")
    assert v.title == "T & U"
    assert list(v.elements) == ["q", "go", "o'neil"]
    assert v.elements["q"].label == "Find it" and v.elements["q"].value == "old"
    assert v.elements["q"].form.fields == (("q", "old", "q"), ("page", "1", None))
    assert v.has_search_bar and (v.search_box, v.search_button) == ("q", "go")
    assert v.text == "Fish & chips <3 [SEP] Find it [SEP] Go [SEP] O'Neil's"
    assert "[o'neil] link \"O'Neil's\"" in v.axtree
    assert "abcdef0123456789" not in v.html_pruned + v.text + v.axtree
    assert "<script" not in v.html_pruned and "<!--" not in v.html_pruned
    assert v.available_actions == ("click('go')", 'click("o\'neil")')


def inert_bids(v) -> list[str]:
    return [b for b, e in v.elements.items() if e.inert]


def test_clickable_actions_are_every_click_target_with_an_axtree_line(pages):
    """clickable_actions: the available actions and the inert targets, in document order; each
    one's bid leads a ``[bid] role 'name'`` line of the axtree; available_actions unchanged."""
    for name in SHOP_PAGES:
        v = view_of(pages[name])
        assert set(v.available_actions) <= set(v.clickable_actions), name
        targets = [a for a in v.clickable_actions if a in v.available_actions]
        assert tuple(targets) == v.available_actions, name  # the same order inside
        order = [b for b, e in v.elements.items() if e.click_target]
        assert v.clickable_actions == tuple(f"click('{b}')" for b in order), name
        inert = inert_bids(v)
        assert inert and len(v.clickable_actions) == len(v.available_actions) + len(inert), name
        for bid in inert:
            el = v.elements[bid]
            assert not el.clickable and not el.navigates and el.form is None
            lines = re.findall(_BID_LINE_RE.format(re.escape(bid)), v.axtree, re.M)
            assert len(lines) == 1, (name, bid)
            role, quoted = lines[0]
            assert role == el.role and role not in ("link", "button", "radio", "textbox")
            assert quoted or role == "img", (name, bid)  # every text target is named
    for name, bid in [
        ("search", "instruction"),
        ("results", "results_summary"),
        ("item", "product_title"),
        ("item", "product_price"),
        ("features", "current_tab"),
        ("reviews", "current_tab"),
        ("description", "description"),
        ("done", "score"),
    ]:
        assert bid in inert_bids(view_of(pages[name])), (name, bid)
    assert "[current_tab] heading 'Features'" in view_of(pages["features"]).axtree
    asin = pages["goal"]["asin"].lower()
    results = view_of(pages["results"])
    assert {f"thumb_{asin}", f"asin_{asin}", f"price_{asin}"} <= set(inert_bids(results)) or (
        f"click('item_{asin}')" not in results.available_actions  # the target on page 2
    )


def test_inert_ids_change_nothing_but_their_axtree_prefixes(pages):
    """The same page without its inert ids has the same text, actions and axtree (less the
    ``[bid]`` of the inert lines): what a policy read before the ids keeps reading the same."""
    for name in SHOP_PAGES:
        html, url = pages[name].text, str(pages[name].url)
        v = observe_page(html, url)
        inert = inert_bids(v)
        bare = html
        for bid in inert:
            bare, n = re.subn(rf' bid="{re.escape(bid)}"', "", bare)
            assert n == 1, (name, bid)
        w = observe_page(bare, url)
        assert inert_bids(w) == [] and w.clickable_actions == w.available_actions
        assert (w.text, w.available_actions, w.label_index) == (
            v.text,
            v.available_actions,
            v.label_index,
        )
        stripped = v.axtree
        for bid in inert:
            stripped = re.sub(rf"^(\t*)\[{re.escape(bid)}\] ", r"\1", stripped, flags=re.M)
        assert stripped == w.axtree, name


def test_a_click_on_an_inert_target_resolves_to_a_click_that_goes_nowhere(pages):
    v = view_of(pages["item_chosen"])
    (step,) = v.resolve(parse_action("click('product_title')"))
    assert step == Action("click", ("product_title",))
    assert step.element is v.elements["product_title"] and step.element.inert
    assert not step.element.navigates and step.element.role == "heading"
    with pytest.raises(ActionError, match="no element with id 'nope' on this page; ids: ") as e:
        v.resolve(parse_action("click('nope')"))
    assert "buy_now" in str(e.value) and "product_title" not in str(e.value)  # interactive ids
    with pytest.raises(ActionError, match="not a text field"):
        v.resolve(parse_action("fill('product_title', 'x')"))
    # click[label] stays on the interactive elements
    with pytest.raises(ActionError, match="no clickable"):
        v.resolve(parse_action(f"click[{v.elements['product_title'].label}]"))


def test_an_id_on_a_container_of_controls_or_inside_one_is_no_target():
    html = """<html><body>
    <div bid="box"><a bid="go" href="/go">Go <span bid="in_link">here</span></a></div>
    <div bid="note">A note</div>
    <ul><li><span bid="li_text">one</span></li></ul>
    <span bid="empty"></span><img bid="pic" alt="a cat" src="/c.png">
    <h2 bid="head">Title <b>bold</b></h2>
    </body></html>"""
    v = observe_page(html)
    assert list(v.elements) == ["go", "note", "li_text", "pic", "head"]
    assert v.available_actions == ("click('go')",)
    assert v.clickable_actions == tuple(f"click('{b}')" for b in v.elements)
    assert v.text == "Go here [SEP] A note [SEP] one [SEP] Title bold"
    for line in (
        "[note] StaticText 'A note'",
        "\t\t\t[li_text] StaticText 'one'",
        "[pic] img 'a cat'",
        "[head] heading 'Title bold'",
    ):
        assert line in v.axtree
