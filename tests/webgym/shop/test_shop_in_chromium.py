"""A person's path through the shop in a real Chromium with JavaScript disabled.

Screenshots of each page are kept in the test artifacts folder for a person to look at.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": 1280, "height": 720}
        )
        yield context.new_page()
        browser.close()


def test_the_shop_works_without_javascript(page, shop, catalog, artifacts_dir):
    goal = catalog.split("test").goals[0]
    page.set_default_timeout(10_000)
    page.goto(f"{shop.url}/")
    page.fill('[bid="task_id"]', goal["task_id"])
    page.click('[bid="start"]')
    assert goal["instruction_text"] in page.inner_text("#instruction")
    page.screenshot(path=artifacts_dir / "shop-1-search.png")

    page.fill('[bid="search_box"]', goal["query"])
    page.click('[bid="search_button"]')
    page.wait_for_selector(".result")
    assert "/search?" in page.url
    page.screenshot(path=artifacts_dir / "shop-2-results.png")

    page.goto(f"{shop.url}{page.url.split(shop.url)[1].split('/search')[0]}/item/{goal['asin']}")
    product = catalog.get(goal["asin"])
    assert page.inner_text(".item-title") == product["Title"]
    for dim, value in dict(goal["goal_options"]).items():
        dim_index = list(product["options"]).index(dim)
        value_index = product["options"][dim].index(value)
        page.click(f'[bid="opt_{dim_index}_{value_index}"]')  # a form submit: no JS needed
        assert (
            page.get_attribute(f'[bid="opt_{dim_index}_{value_index}"]', "aria-checked") == "true"
        )
    page.screenshot(path=artifacts_dir / "shop-3-item.png")

    page.click('[bid="tab_reviews"]')
    assert page.inner_text("h2") == "Reviews"
    page.click('[bid="prev"]')
    assert page.url.endswith(f"/item/{goal['asin']}")

    page.click('[bid="buy_now"]')
    assert page.url.endswith("/done")
    assert float(page.inner_text("#reward")) == pytest.approx(1.0)
    page.screenshot(path=artifacts_dir / "shop-4-done.png")
