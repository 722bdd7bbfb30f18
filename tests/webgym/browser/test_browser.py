"""The browser layer against a real Chromium and a real local HTTP server, through both of its
drivers: every test that exercises a tab or a host runs with the sync driver (`BrowserHost`,
blocking calls) and the async one (`AsyncBrowserHost` on an event loop, seen here through a
blocking view: `Synced`)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import psutil
import pytest

from webgym.actions import Action
from webgym.browser import (
    ActionFailed,
    AsyncBrowserHost,
    BrowserConfig,
    BrowserCrashed,
    BrowserHost,
    ChromiumNotFound,
)
from webgym.observe import observe_page

CHROMIUM = os.environ.get("WEBGYM_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")

PAGES = {
    "/": (
        "<!doctype html><html><head><title>Home</title></head><body>"
        '<h1>Home</h1><a bid="to_form" href="/form">Go to the form</a> '
        '<a bid="to_select" href="/select">Go to the select</a></body></html>'
    ),
    "/form": (
        "<!doctype html><html><body><h1>Search</h1>"
        '<form action="/results" method="get">'
        '<input bid="search_box" name="keywords" type="text">'
        '<button bid="search_go" type="submit">Search</button></form>'
        '<a bid="home" href="/">Home</a></body></html>'
    ),
    "/select": (
        "<!doctype html><html><body><h1>Pick</h1>"
        '<select bid="colour" name="colour"><option value="r">red</option>'
        '<option value="b">blue</option></select></body></html>'
    ),
    "/long": (
        "<!doctype html><html><body>"
        + "".join(f'<p style="height:90px">row {i}</p>' for i in range(40))
        + "</body></html>"
    ),
}


def _results(query: str) -> str:
    return f"<!doctype html><html><body><h1>Results for [{query}]</h1></body></html>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        parts = urlsplit(self.path)
        if parts.path == "/results":
            body = _results(parse_qs(parts.query).get("keywords", [""])[0])
        elif parts.path in PAGES:
            body = PAGES[parts.path]
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class SyncDriver:
    """The sync host, in the calling thread."""

    def acquire(self, config: BrowserConfig | None = None):
        return BrowserHost.acquire(config or BrowserConfig())

    def new_tab(self, host, **kwargs):
        return host.new_tab(**kwargs)

    def isolated(self, body, seconds: float = 60) -> None:
        """Run ``body(driver)`` with a host of its own (its own thread)."""
        _in_thread(body, SyncDriver(), seconds)


def _in_thread(body, arg, seconds: float) -> None:
    thread = threading.Thread(target=body, args=(arg,))
    thread.start()
    thread.join(seconds)


class Synced:
    """A blocking view of an object of the async driver: attribute reads and calls run on the
    driver's event loop (awaited when they return a coroutine); live objects come back as
    views too (the same view for the same object)."""

    __slots__ = ("_driver", "_obj")

    def __init__(self, driver: AsyncDriver, obj: object) -> None:
        object.__setattr__(self, "_driver", driver)
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str):
        value = self._driver.call(getattr, self._obj, name)
        if callable(value) and not isinstance(value, Synced):
            return functools.partial(self._driver.call, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        self._driver.call(setattr, self._obj, name, value)

    def __delattr__(self, name: str) -> None:
        self._driver.call(delattr, self._obj, name)


class AsyncDriver:
    """The async host, on an event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._views: dict[int, Synced] = {}

    def call(self, fn, *args, **kwargs):
        async def run():
            result = fn(*args, **kwargs)
            return (await result) if inspect.isawaitable(result) else result

        value = asyncio.run_coroutine_threadsafe(run(), self.loop).result(120)
        if type(value).__module__.startswith(("playwright.", "webgym.browser")):
            view = self._views.get(id(value))
            if view is None:
                view = self._views[id(value)] = Synced(self, value)
            return view
        return value

    def acquire(self, config: BrowserConfig | None = None):
        return self.call(AsyncBrowserHost.acquire, config or BrowserConfig())

    def new_tab(self, host, **kwargs):
        tab = host.new_tab(**kwargs)
        assert tab.recover()  # an async tab opens at its first recover
        return tab

    def isolated(self, body, seconds: float = 60) -> None:
        """Run ``body(driver)`` with a host of its own (its own event loop)."""
        driver = AsyncDriver()
        try:
            _in_thread(body, driver, seconds)
        finally:
            driver.stop()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module", params=["sync", "async"])
def driver(request):
    if request.param == "sync":
        yield SyncDriver()
        return
    driver = AsyncDriver()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def host(driver):
    host = driver.acquire()
    keeper = driver.new_tab(host)  # keeps Chromium up for the module
    yield host
    keeper.close()


@pytest.fixture
def tab(driver, host):
    tab = driver.new_tab(host)
    yield tab
    tab.close()


def act(name: str, *args: object) -> SimpleNamespace:
    return SimpleNamespace(name=name, args=args, raw=f"{name}{args}")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url) as resp:
        return resp.read().decode("utf-8")


def test_goto_returns_the_served_html_byte_identically(server, tab):
    cap = tab.goto(server + "/")
    assert cap.html == fetch(server + "/")
    assert cap.status == 200
    assert cap.url == server + "/"
    assert cap.screenshot is None


def test_click_on_a_link_navigates_and_captures_the_new_page(server, tab):
    tab.goto(server + "/")
    cap = tab.execute(act("click", "to_form"))
    assert cap.url == server + "/form"
    assert cap.html == PAGES["/form"]


def test_fill_then_submit_loads_the_results_page(server, tab):
    tab.goto(server + "/form")
    cap = tab.execute(act("fill", "search_box", "red shoes"))
    assert cap.url == server + "/form"  # filling does not navigate
    cap = tab.execute(act("click", "search_go"))
    assert cap.url == server + "/results?keywords=red+shoes"
    assert cap.html == _results("red shoes")


def test_select_option_by_label_or_value(server, tab):
    tab.goto(server + "/select")
    tab.execute(act("select_option", "colour", "blue"))
    assert tab.page.locator('[bid="colour"]').input_value() == "b"
    tab.execute(act("select_option", "colour", "r"))
    assert tab.page.locator('[bid="colour"]').input_value() == "r"
    with pytest.raises(ActionFailed, match="no option 'green'"):
        tab.execute(act("select_option", "colour", "green"))


def test_go_back_returns_to_the_previous_served_html(server, tab):
    tab.goto(server + "/")
    tab.execute(act("click", "to_select"))
    cap = tab.execute(act("go_back"))
    assert cap.url == server + "/"
    assert cap.html == PAGES["/"]


def test_reset_page_forgets_the_page_and_its_history(server, tab):
    tab.goto(server + "/")
    tab.execute(act("click", "to_form"))
    tab.reset_page()
    assert tab.capture().html == ""
    cap = tab.goto(server + "/select")
    assert cap.html == PAGES["/select"]
    back = tab.execute(act("go_back"))  # to the blank start page, not the previous episode
    assert (back.url, back.html, back.status) == ("about:blank", "", 0)
    with pytest.raises(ActionFailed, match="no previous page"):
        tab.execute(act("go_back"))


def test_unknown_bid_raises_action_failed_naming_the_id(server, tab):
    tab.goto(server + "/")
    start = time.monotonic()
    with pytest.raises(ActionFailed, match="no element with id 'nope'") as failed:
        tab.execute(act("click", "nope"))
    # fails fast, no timeout wait: the tab's probe found no such element and said so itself,
    # not a Playwright call that waited for one (its error would be the cause) ...
    assert failed.value.__cause__ is None
    # ... and well within the action timeout (5 s) a waiting locator would have used up
    assert time.monotonic() - start < BrowserConfig().action_timeout_s / 2


def test_resolved_steps_are_trusted_without_probing_the_page(server, tab, monkeypatch):
    """A step resolved against the served page carries its element: no second check."""
    cap = tab.goto(server + "/form")
    view = observe_page(cap.html, cap.url)
    monkeypatch.setattr(tab, "_element", lambda *a: pytest.fail("probed a resolved step"))
    fill, submit = view.resolve(Action("search", ("red shoes",)))
    assert fill.element is not None and submit.element.navigates
    tab.execute(fill)
    cap = tab.execute(submit)
    assert cap.html == _results("red shoes")


def test_recover_logs_what_failed_and_the_next_recover_works(server, driver, caplog):
    done = {}

    def run(driver):
        host = driver.acquire()
        tab = driver.new_tab(host)
        try:
            tab.goto(server + "/")
            os.kill(host.pid, signal.SIGKILL)

            def no_launch():
                raise BrowserCrashed("Chromium failed to launch: (a test)")

            host._launch = no_launch  # the relaunch fails once
            done["first"] = tab.recover()
            try:
                tab.goto(server + "/")
            except BrowserCrashed as exc:
                done["error"] = str(exc)
            del host._launch
            done["second"] = tab.recover()
            done["html"] = tab.goto(server + "/form").html
        finally:
            tab.close()

    with caplog.at_level(logging.WARNING, logger="webgym.browser"):
        driver.isolated(run)
    assert done["first"] is False and "recover()" in done["error"]
    assert done["second"] is True and done["html"] == PAGES["/form"]
    logged = [r for r in caplog.records if r.name == "webgym.browser.host"]
    assert any("could not recover" in r.getMessage() and r.exc_info for r in logged)


def test_screenshot_shape_and_unchanged_page_is_pixel_identical(server, tab):
    tab.goto(server + "/form")
    tab.execute(act("fill", "search_box", "caret"))  # a focused input: the caret must not blink in
    first = tab.capture(screenshot=True).screenshot
    second = tab.capture(screenshot=True).screenshot
    assert first.shape == (720, 1280, 3)
    assert first.dtype == np.uint8
    assert np.array_equal(first, second)


def test_scroll_lands_before_the_capture(server, tab):
    top = tab.goto(server + "/long", screenshot=True).screenshot
    scrolled = tab.execute(act("scroll", 0, 450), screenshot=True).screenshot
    assert tab.page.evaluate("window.scrollY") == 450
    assert not np.array_equal(top, scrolled)
    assert np.array_equal(scrolled, tab.capture(screenshot=True).screenshot)
    tab.execute(act("scroll", 0, -10_000))  # clamped at the top: returns without waiting
    assert tab.page.evaluate("window.scrollY") == 0


def test_mouse_click_on_a_link_navigates(server, tab):
    tab.goto(server + "/")
    box = tab.page.locator('[bid="to_form"]').bounding_box()
    cap = tab.execute(act("mouse_click", box["x"] + 3, box["y"] + 3))
    assert cap.html == PAGES["/form"]
    cap = tab.execute(act("mouse_click", 600, 600))  # blank space: no navigation, no wait
    assert cap.url == server + "/form"


def test_two_tabs_share_one_chromium_process(server, driver, host):
    a, b = driver.new_tab(host), driver.new_tab(host)
    try:
        a.goto(server + "/")
        b.goto(server + "/form")
        assert a.host is b.host is driver.acquire()
        browsers = []
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = proc.cmdline()
            except psutil.Error:  # exited renderers linger as zombies for a moment
                continue
            if "--remote-debugging-pipe" in cmdline and not any(
                arg.startswith("--type=") for arg in cmdline
            ):
                browsers.append(proc.pid)
        assert browsers == [host.pid]
    finally:
        a.close()
        b.close()


def test_closing_the_last_tab_stops_the_browser(server, driver):
    done = {}

    def run(driver):  # its own host, independent of the module's shared one
        host = driver.acquire()
        tab = driver.new_tab(host)
        tab.goto(server + "/")
        done["pid"] = host.pid
        tab.close()
        done["running"] = host.running

    driver.isolated(run, 30)
    assert done["running"] is False
    proc_gone = not psutil.pid_exists(done["pid"])
    if not proc_gone:
        proc_gone = psutil.Process(done["pid"]).status() == psutil.STATUS_ZOMBIE
    assert proc_gone


def test_killed_chromium_raises_crashed_quickly_then_recovers(server, driver):
    done = {}

    def run(driver):
        host = driver.acquire()
        tab = driver.new_tab(host)
        try:
            tab.goto(server + "/")
            old_pid = host.pid
            os.kill(old_pid, signal.SIGKILL)
            start = time.monotonic()
            try:
                tab.goto(server + "/form")
            except BrowserCrashed as exc:
                done["error"] = exc
            done["seconds"] = time.monotonic() - start
            done["alive_after_kill"] = host.alive
            host.relaunch()
            tab.recover()
            done["html"] = tab.goto(server + "/form").html
            done["pids"] = (old_pid, host.pid)
        finally:
            tab.close()

    driver.isolated(run, 30)
    assert isinstance(done.get("error"), BrowserCrashed)
    assert done["seconds"] < 5
    assert done["alive_after_kill"] is False
    assert done["html"] == PAGES["/form"]
    assert done["pids"][0] != done["pids"][1]


def test_missing_executable_gives_install_advice(driver):
    config = BrowserConfig(executable_path="/nonexistent/chromium")
    with pytest.raises(ChromiumNotFound, match="apt-get install -y chromium"):
        driver.acquire(config)


def test_javascript_can_be_disabled(server, driver, host):
    tab = driver.new_tab(host, java_script_enabled=False)
    try:
        tab.goto(server + "/form")
        assert tab.page.evaluate("typeof window") == "object"  # CDP evaluate still works
        tab.execute(act("fill", "search_box", "x"))
        cap = tab.execute(act("click", "search_go"), screenshot=True)
        assert cap.html == _results("x")
        tab.goto(server + "/long")
        tab.execute(act("scroll", 0, 100))
        assert tab.page.evaluate("window.scrollY") == 100
    finally:
        tab.close()
