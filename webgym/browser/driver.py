"""The browser layer's two drivers: one sans-IO core, run with blocking calls or awaited.

The tab and the host (``tab.py``, ``host.py``) are written once, as generators that yield an
`Op` for every Playwright call they need (``page.goto``, ``locator.click``, ``response.body``,
``browser.new_context`` ...) and receive its result (or its exception) back, exactly as the
episode logic (``webgym.envs.shopping.ShoppingLogic``) yields its ``IOCall``s. The page
scripts, the captures, the error mapping, crash detection and recovery are all in that core.
Two drivers run it:

* `drive`: each `Op` is a blocking call on Playwright's sync API (`BrowserTab`, `BrowserHost`);
* `adrive`: each `Op` is awaited on Playwright's async API (`AsyncBrowserTab`,
  `AsyncBrowserHost`), so many tabs on one event loop interleave their waits on Chromium.

The two APIs share their object model (the same method names, arguments, properties and error
classes), so one `Op` names the call for both; what is not I/O in either API (``page.url``,
``page.locator(...)``, ``page.on(...)``, ``response.headers``) the core reads directly.

Why this and not Playwright's async API under a sync driver (one event loop in a thread that
the sync env submits coroutines to): that puts a thread hop (two context switches and a GIL
hand-over) on every Playwright call of the sync env, whose step cost is CPU-bound; it would
hand sync users async Playwright objects (``tab.page``) usable only on a hidden loop; and every
host would own a thread and a loop to start, stop and survive a fork (Gymnasium's process
vectorisation). The sans-IO core costs a generator step per call, and it is the pattern the
episode logic already uses.

An `Op` carries the host's guard deadline (``guard_s``: past ``guard_s`` + 2 s the host kills
Chromium, see `BrowserHost.guard` / `AsyncBrowserHost.guard`), optionally a navigation to
expect around the call (``page.expect_navigation``), or marks a plain CPU function (a JPEG
decode) that the async driver runs in a worker thread instead of on the loop.

The generator stepping itself is ``webgym.sansio``'s, shared with the env's drivers.

Imports only ``webgym.sansio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from webgym import sansio

__all__ = ["Op", "Ops", "UNGUARDED", "adrive", "awaiting", "blocking", "compute", "drive"]

#: A guard: ``guard(seconds)`` is a context manager (sync host) or an async one (async host).
Guard = Callable[[float], Any]


@dataclass(frozen=True, slots=True)
class Op:
    """One call the core asks its driver for: ``fn(*args, **kwargs)``."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    guard_s: float | None = None  # run under the host's guard of this many seconds
    navigation: tuple[Any, dict] | None = None  # (page, expect_navigation kwargs) around it
    cpu: bool = False  # a plain function, not Playwright: the async driver runs it in a thread

    def contexts(self, guard: Guard) -> list[Any]:
        """The context managers the call runs in, outermost first."""
        out = [] if self.guard_s is None else [guard(self.guard_s)]
        if self.navigation is not None:
            page, wait = self.navigation
            out.append(page.expect_navigation(**wait))
        return out


class Ops:
    """Makes the `Op`s of one guarded group: ``yield ops(page.goto, url, timeout=...)``."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Op:
        return Op(fn, args, kwargs, self.seconds)

    def navigating(self, page: Any, wait: dict, fn: Callable[..., Any], *args: Any, **kw) -> Op:
        """``fn(*args, **kw)`` inside ``page.expect_navigation(**wait)``."""
        return Op(fn, args, kw, self.seconds, (page, wait))


UNGUARDED = Ops(None)


def compute(fn: Callable[..., Any], *args: Any) -> Op:
    """A CPU-bound plain function (no Playwright) as an `Op`."""
    return Op(fn, args, cpu=True)


def _perform(op: Op, guard: Guard) -> tuple[Any, BaseException | None]:
    try:
        with contextlib.ExitStack() as stack:
            for cm in op.contexts(guard):
                stack.enter_context(cm)
            return op.fn(*op.args, **op.kwargs), None
    except BaseException as exc:  # noqa: BLE001 - handed to the core, which decides
        return None, exc


async def _aperform(op: Op, guard: Guard) -> tuple[Any, BaseException | None]:
    try:
        if op.cpu:  # e.g. a JPEG decode: Pillow drops the GIL, the loop goes on meanwhile
            return await asyncio.to_thread(op.fn, *op.args, **op.kwargs), None
        async with contextlib.AsyncExitStack() as stack:
            for cm in op.contexts(guard):
                await stack.enter_async_context(cm)
            return await op.fn(*op.args, **op.kwargs), None
    except BaseException as exc:  # noqa: BLE001 - handed to the core, which decides
        return None, exc


def drive(gen: Generator[Op, Any, Any], guard: Guard) -> Any:
    """Run a core generator to its end with blocking (sync API) calls; return its result."""
    return sansio.drive(gen, functools.partial(_perform, guard=guard))


async def adrive(gen: Generator[Op, Any, Any], guard: Guard) -> Any:
    """Run a core generator to its end, awaiting each (async API) call; return its result."""
    return await sansio.adrive(gen, functools.partial(_aperform, guard=guard))


def _driven(make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[type], type]:
    """A class decorator: for each name in ``cls.driven``, a method ``name`` that drives the
    core generator ``name_io`` (``make`` builds it from that generator function)."""

    def decorate(cls: type) -> type:
        for name in cls.driven:
            core = getattr(cls, f"{name}_io")
            method = functools.wraps(core)(make(core))
            method.__name__, method.__qualname__ = name, f"{cls.__qualname__}.{name}"
            setattr(cls, name, method)
        return cls

    return decorate


def _blocking_method(core: Callable[..., Any]) -> Callable[..., Any]:
    def method(self, *args: Any, **kwargs: Any) -> Any:
        return drive(core(self, *args, **kwargs), self._guard)

    return method


def _awaiting_method(core: Callable[..., Any]) -> Callable[..., Any]:
    async def method(self, *args: Any, **kwargs: Any) -> Any:
        return await adrive(core(self, *args, **kwargs), self._guard)

    return method


#: Class decorators: the sync driver's methods (blocking) and the async driver's (coroutines).
blocking = _driven(_blocking_method)
awaiting = _driven(_awaiting_method)
