"""Driving a sans-I/O generator: the one loop under every sync and async driver of WebGym.

Two layers are written once as generators that yield the I/O they need and receive its result
(or its exception) back: the episode logic (``webgym.envs.shopping.ShoppingLogic`` yields
``IOCall``s) and the browser core (``webgym.browser.tab.TabCore`` / ``host.HostCore`` yield
``webgym.browser.driver.Op``s). Each has a blocking driver and an awaiting one; what they share,
sending a result or throwing an exception into the generator until it returns, is here:

    result = drive(gen, perform)          # perform(request) -> (value, exception or None)
    result = await adrive(gen, aperform)  # the same, perform awaited

A driver only says how one request is performed (and which exceptions it hands back to the
generator rather than raising them itself).

Imports nothing from webgym.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any

__all__ = ["Outcome", "Run", "adrive", "drive"]

#: What performing one request gave: (its value, None) or (None, the exception it raised).
Outcome = tuple[Any, BaseException | None]


class Run:
    """One generator being driven: ``request`` is what it asks for next while ``pending``;
    once it has returned, ``result`` is what it returned."""

    __slots__ = ("gen", "pending", "request", "result")

    def __init__(self, gen: Generator[Any, Any, Any]) -> None:
        self.gen, self.pending, self.result = gen, True, None
        self.resume(None, None)

    def resume(self, value: Any, exc: BaseException | None) -> None:
        """Hand the last request's value (or exception) to the generator; take its next one."""
        try:
            self.request = self.gen.send(value) if exc is None else self.gen.throw(exc)
        except StopIteration as stop:
            self.pending, self.request, self.result = False, None, stop.value


def drive(gen: Generator[Any, Any, Any], perform: Callable[[Any], Outcome]) -> Any:
    """Run ``gen`` to its end, each request performed by ``perform``; return its result."""
    run = Run(gen)
    while run.pending:
        run.resume(*perform(run.request))
    return run.result


async def adrive(gen: Generator[Any, Any, Any], perform: Callable[[Any], Awaitable[Outcome]]):
    """Run ``gen`` to its end, each request performed by awaiting ``perform``; its result."""
    run = Run(gen)
    while run.pending:
        run.resume(*await perform(run.request))
    return run.result
