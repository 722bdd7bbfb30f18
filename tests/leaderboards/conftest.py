"""Fixtures: the real catalog's test split, a fresh leaderboard file, a Chromium page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from webgym.shop.catalog import Catalog
from webgym.shop.tasks import TaskSplit
from webgym_leaderboards.store import LeaderboardStore

CHROMIUM = os.environ.get("WEBGYM_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def lb_catalog(catalog, tmp_path_factory):
    """A private copy of the embedded catalog: the split versions these tests submit against
    stay fixed even if another process rebuilds the shared cache meanwhile."""
    path = tmp_path_factory.mktemp("catalog") / catalog.path.name
    shutil.copyfile(catalog.path, path)
    with Catalog.open(path) as copy:
        yield copy


@pytest.fixture(autouse=True)
def _catalog_env(lb_catalog, monkeypatch):
    """The commands under test (``--catalog`` default) open the same private copy."""
    monkeypatch.setenv("WEBGYM_CATALOG", str(lb_catalog.path))


@pytest.fixture(scope="session")
def test_split(lb_catalog) -> TaskSplit:
    return lb_catalog.splits()["test"]


@pytest.fixture(scope="session")
def known_splits(lb_catalog):
    return lb_catalog.splits()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "board" / "leaderboard.sqlite"


@pytest.fixture
def store(db_path: Path):
    with LeaderboardStore(db_path) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    external: list[str] = []  # the pages must be self-contained: record any other request

    def on_request(request) -> None:
        if not request.url.startswith(("file://", "http://127.0.0.1", "data:")):
            external.append(request.url)

    p = context.new_page()
    p.on("request", on_request)
    p.external_requests = external
    yield p
    context.close()


@pytest.fixture(scope="session")
def recorded_rule_run(lb_catalog, tmp_path_factory) -> Path:
    """A real run: the rule agent on the first 6 test tasks, text mode (tasks 0-3 fail, 4-5
    succeed). Played once per session; tests that change it work on a copy (``rule_run``)."""
    from tests.fakerun import record_run

    out = tmp_path_factory.mktemp("recorded") / "rule-test6"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WEBGYM_CATALOG", str(lb_catalog.path))
        return record_run(out, agent="rule", episodes=6)


@pytest.fixture
def rule_run(recorded_rule_run, tmp_path) -> Path:
    """A private copy of ``recorded_rule_run`` to tamper with."""
    copy = tmp_path / recorded_rule_run.name
    shutil.copytree(recorded_rule_run, copy)
    return copy
