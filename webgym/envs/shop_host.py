"""The shop an environment talks to: one embedded shop per process, shared by its environments.

Browser-mode environments need a real HTTP server (Chromium fetches pages over the network);
text-mode environments call the same Starlette application in-process. Both come from one
``EmbeddedShop`` per (process, catalog), reference-counted: the last environment to close stops
the server. Without a catalog file the catalog is the embedded one that holds the env's split
(``webgym.shop.catalog.open_catalog``: the ood companion for ``ood``). An external shop
(``shop_url``, e.g. the Docker image) is used as it is. Imports only ``webgym.shop``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from webgym.shop.catalog import CATALOG_ENV, open_catalog
from webgym.shop.server import ShopServer
from webgym.shop.tasks import OOD_SPLIT

_LOCK = threading.Lock()
_SHOPS: dict[tuple[int, str], EmbeddedShop] = {}


class EmbeddedShop:
    """A catalog, its application, and (on demand) a loopback HTTP server for it."""

    def __init__(self, catalog_path: str | Path | None, split: str | None = None) -> None:
        self.server = ShopServer(open_catalog(catalog_path, split=split))
        self.app = self.server.app
        self.catalog = self.server.catalog
        self.users = 0
        self._http_users = 0

    @property
    def url(self) -> str:
        return self.server.url

    def start_http(self) -> str:
        with _LOCK:
            if self._http_users == 0:
                self.server.start()
            self._http_users += 1
        return self.server.url

    def stop_http(self) -> None:
        with _LOCK:
            self._http_users -= 1
            if self._http_users == 0:
                self.server.stop()


def acquire_shop(
    catalog_path: str | Path | None = None, *, split: str | None = None
) -> EmbeddedShop:
    """The process's embedded shop for ``catalog_path`` (default: the embedded catalog that
    holds ``split``)."""
    named = str(catalog_path or os.environ.get(CATALOG_ENV, ""))
    key = (os.getpid(), named or ("embedded:ood" if split == OOD_SPLIT else "embedded"))
    with _LOCK:
        shop = _SHOPS.get(key)
        if shop is None:
            shop = _SHOPS[key] = EmbeddedShop(catalog_path, split)
        shop.users += 1
        return shop


def release_shop(shop: EmbeddedShop) -> None:
    with _LOCK:
        shop.users -= 1
        if shop.users > 0:
            return
        for key, value in list(_SHOPS.items()):
            if value is shop:
                del _SHOPS[key]
    if shop.server.port is not None:
        shop.server.stop()
