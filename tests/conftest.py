"""Fixtures shared by the whole suite: the embedded catalog and a real shop server on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webgym.shop.catalog import Catalog, default_catalog
from webgym.shop.server import ShopServer

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The embedded synthetic catalog (built once into the cache by `make` set-up)."""
    return default_catalog()


@pytest.fixture(scope="session")
def shop(catalog: Catalog):
    """A real uvicorn server on 127.0.0.1 serving the embedded catalog."""
    with ShopServer(catalog) as server:
        yield server


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep files a person may want to look at (screenshots, pages)."""
    path = Path(os.environ.get("WEBGYM_TEST_ARTIFACTS", ARTIFACTS))
    path.mkdir(parents=True, exist_ok=True)
    return path
