"""`AsyncShoppingEnv`: the shopping environment on asyncio, many sessions in one process.

    async def episode(task_id):
        env = webgym.AsyncShoppingEnv(mode="browser")    # make it inside the running loop
        obs, info = await env.reset(seed=0, options={"task_id": task_id})
        obs, reward, terminated, truncated, info = await env.step("search[dog leash]")
        await env.aclose()

    await asyncio.gather(*(episode(t) for t in task_ids))   # N sessions, one Chromium

The same environment as ``ShoppingEnv`` (the same keywords, observations, actions, reward,
info and effect labels): both drive the one episode logic, ``ShoppingLogic``, whose reset /
step / snapshot / restore are generators of I/O calls; the sync env makes those calls blocking,
this one awaits them. In browser mode the page is an `AsyncBrowserTab` (Playwright's async
API): every env on one event loop shares one Chromium (a context each, or a page in one shared
context with ``shared_context=True``) and their steps interleave. In text mode the in-process
page and the shop's JSON API run in the loop's default thread pool, so no env blocks the loop.

An env belongs to the event loop it was made on. ``aclose()`` releases its shop session, its
context (the last one stops Chromium) and its share of the embedded shop.

Imports only ``webgym`` below ``envs``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Generator
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from webgym import sansio
from webgym.envs.shopping import IOCall, ShoppingLogic
from webgym.inprocess import InProcessPage
from webgym.transport import Transport

__all__ = ["AsyncShoppingEnv", "InThread"]


class InThread:
    """A blocking object's methods as coroutines that run in the loop's default thread pool."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.obj, name)

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


class AsyncShoppingEnv(ShoppingLogic):
    """The shopping environment with coroutine ``reset`` / ``step`` / ``snapshot`` / ``restore``
    / ``aclose``; ``mode="browser"`` (Chromium, async Playwright) or ``mode="text"``. Takes
    ``ShoppingEnv``'s keywords. Make it on the event loop that will use it."""

    def __init__(self, mode: str = "browser", **kwargs: Any) -> None:
        self._np_random: np.random.Generator | None = None
        self._np_random_seed: int | None = None
        self._closed = False
        super().__init__(mode, **kwargs)
        self._aclient = InThread(self._client)

    def _open_page(
        self, transport: Transport, headless: bool, chromium_path: str | None, shared: bool
    ) -> Any:
        """The in-process page (in the thread pool), or a tab of this loop's Chromium."""
        if self.mode == "text":
            return InThread(InProcessPage(transport))
        from webgym.browser import BrowserConfig
        from webgym.browser.host import AsyncBrowserHost

        config = BrowserConfig(
            headless=headless,
            viewport=self.viewport,
            **({"executable_path": chromium_path} if chromium_path else {}),
        )
        self._host = AsyncBrowserHost.acquire(config)
        self._tab = self._host.new_tab(self.viewport, shared_context=shared)
        return self._tab  # opened by the first reset's recover(if_dead=True)

    async def _adrive(self, gen: Generator[IOCall, Any, Any]) -> Any:
        """Run one of the episode's generators, awaiting each I/O call it asks for."""
        return await sansio.adrive(gen, self._aperform)

    async def _aperform(self, call: IOCall) -> sansio.Outcome:
        try:
            return await self._io_method(call, self._aclient)(*call.args, **call.kwargs), None
        except Exception as e:  # noqa: BLE001 - handed to the generator, which decides
            return None, e

    # ---- the environment -------------------------------------------------------------------
    @property
    def np_random(self) -> np.random.Generator:
        """The env's RNG (seeded by ``reset(seed=...)``, as Gymnasium's ``Env.np_random``)."""
        if self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random()
        return self._np_random

    @property
    def unwrapped(self) -> AsyncShoppingEnv:
        return self

    async def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._closed:
            raise RuntimeError("this env is closed")
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        return await self._adrive(self._reset_io(options))

    async def step(self, action: str):
        return await self._adrive(self._step_io(action))

    def render(self):
        """The last observation's pixels (``render_mode="rgb_array"``) or text (``"ansi"``)."""
        if self.render_mode == "rgb_array":
            return None if self._pixels is None else self._pixels.copy()
        if self.render_mode == "ansi":
            return self._view.text if self._view else ""
        return None

    async def snapshot(self) -> dict[str, Any]:
        """A small JSON-serialisable state from which ``restore`` continues this episode."""
        return await self._adrive(self._snapshot_io())

    async def restore(self, snapshot: dict[str, Any]):
        """Continue from ``snapshot`` in a new server session (a fork); returns (obs, info)."""
        return await self._adrive(self._restore_io(snapshot))

    async def aclose(self) -> None:
        """Release the shop session, the browser context and the shop (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._adrive(self._drop_session_io())
        if self._tab is not None:
            await self._tab.close()
            self._tab = None
        await asyncio.to_thread(self._closing.close)  # the transport, the HTTP server, the shop

    async def __aenter__(self) -> AsyncShoppingEnv:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
