"""WebGym-Shopping-v0 (a real Chromium) and WebGym-ShoppingText-v0 (no browser): one env class.

    env = gym.make("WebGym-Shopping-v0")            # starts the embedded shop on loopback
    obs, info = env.reset(seed=0, options={"task_id": "test-0001"})
    obs, reward, terminated, truncated, info = env.step("search[dog leash]")

One step: the action string is parsed by ``webgym.actions`` (the one grammar), resolved once
into element-level steps by the current page's ``PageView`` (``webgym.observe``), executed by
the env's page (``webgym.page``: a Chromium tab in browser mode, the in-process page in text
mode), and the served HTML is observed by the same function in both modes. Reward is 0 until
Buy Now; then the page that shows the purchase carries WebShop's reward, and
``terminated=True``. ``info["action_effect"]`` holds d(s, s') and the label y = 1[d >= eps]
(``webgym.effects``). A bad action (``webgym.actions.InvalidAction``) never raises: reward 0,
``last_action_error`` says why, and the step counts. A step after the episode ended does
nothing and pays nothing (reward 0, ``last_action_error`` says the episode is over, the end's
terminated / truncated again): a purchase is paid once. Sessions, tasks and snapshots go through
the shop's JSON API (``webgym.shop_client``) in both modes. The modes differ only where the
env chooses its page (``_open_page``).

Threads: sync Playwright objects never cross threads, so a browser-mode env must be used from
the thread that created it; ``gymnasium.make_vec(..., vectorization_mode="async")`` gives each
env its own process (and its own Chromium). Imports only ``webgym`` below ``envs``.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory

from webgym import sansio
from webgym.actions import MAX_ACTION_LENGTH, ActionError, InvalidAction, parse_action
from webgym.effects import EffectThresholds, action_effect
from webgym.envs.shop_host import acquire_shop, release_shop
from webgym.inprocess import InProcessPage
from webgym.observe import SESSION_PLACEHOLDER, PageView, observe_page
from webgym.page import Page, PageCapture
from webgym.shop.schema import Purchase
from webgym.shop_client import ShopClient, ShopRequestError
from webgym.transport import Transport, make_transport

log = logging.getLogger(__name__)

# Gymnasium's Text space accepts only listed characters: list every printable BMP character.
CHARSET = "".join(chr(c) for c in range(0x20, 0xFFFF) if not 0xD800 <= c <= 0xDFFF) + "\n\t"
MAX_TEXT = 500_000
RENDER_MODES = {"browser": ("rgb_array", "ansi"), "text": ("ansi",)}  # per mode, so per env id
EPISODE_OVER = "the episode is over: call reset()"  # last_action_error of a step after the end
_OUTSIDE_CHARSET = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffe]")


def observable_text(text: str) -> str:
    """``text`` inside CHARSET: a character outside it (an emoji or any other character past
    the BMP, a control character, a lone surrogate, U+FFFF) becomes U+FFFD. Applied to every
    text field of an observation, in both modes, so observations stay in the declared space
    whatever the shop shows or the agent typed."""
    return _OUTSIDE_CHARSET.sub("\ufffd", text) if _OUTSIDE_CHARSET.search(text) else text


@functools.lru_cache(maxsize=8)
def screenshot_space(height: int, width: int) -> spaces.Box:
    """The screenshot field's space, one per viewport for the whole process. A ``Box`` holds
    four arrays of its full shape (low, high and their bounded masks: 10.5 MB at 1280x720),
    so envs share them, read-only; each env takes a shallow copy for its own random state."""
    box = spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
    for array in (box.low, box.high, box.bounded_below, box.bounded_above):
        array.flags.writeable = False
    return box


class ShopText(spaces.Text):
    """``spaces.Text`` whose repr counts its characters instead of listing them: printing a
    space over CHARSET (65k characters) takes one short line. Equal to a ``spaces.Text`` with
    the same lengths and characters; sampling, ``contains`` and pickling are ``spaces.Text``'s."""

    def __repr__(self) -> str:
        n = len(self.character_set)
        return f"Text({self.min_length}, {self.max_length}, charset=<{n} characters>)"


class TextList(spaces.Sequence):
    """``spaces.Sequence(ShopText, stack=False)``: the lists of actions of an observation. A list
    has no fixed size, so it has no place in shared memory: ``AsyncVectorEnv`` with its default
    ``shared_memory=True`` is refused with one sentence that names the fix."""

    def __init__(self, max_length: int) -> None:
        super().__init__(text_space(max_length), stack=False)


@create_shared_memory.register(TextList)
def _no_shared_memory(space: TextList, n: int = 1, ctx: Any = None) -> None:
    raise TypeError(
        "WebGym observations hold lists of actions, which shared memory cannot hold: pass "
        "vector_kwargs={'shared_memory': False} to gym.make_vec, or shared_memory=False to "
        "AsyncVectorEnv"
    )


@functools.cache
def _text_prototype(max_length: int) -> ShopText:
    return ShopText(max_length, min_length=0, charset=CHARSET)


def text_space(max_length: int) -> ShopText:
    """A Text space over CHARSET. Its lookup tables (~10 MB for 65k characters) are built once
    per process and shared by shallow copies; each copy keeps its own RNG."""
    space = copy.copy(_text_prototype(max_length))
    space._np_random = None
    return space


class Timings(Mapping):
    """Wall-clock seconds per phase of a step or reset, in ``info["timings"]`` (read it like a
    dict; ``dict(t)`` for JSON).

    Two Timings compare equal when they time the same phases: timings measure the machine, not
    the episode, so determinism checks (Gymnasium's ``check_env``) look through them.
    """

    def __init__(self, **seconds: float) -> None:
        self._seconds = seconds

    def __getitem__(self, key: str) -> float:
        return self._seconds[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seconds)

    def __len__(self) -> int:
        return len(self._seconds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timings) and self.keys() == other.keys()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Timings({self._seconds!r})"


@dataclass(frozen=True)
class IOCall:
    """One I/O request of the episode logic: ``target.method(*args, **kwargs)``, ``target``
    being ``"page"`` (the env's page) or ``"client"`` (its shop client)."""

    target: str
    method: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def io(target: str, method: str, *args: Any, **kwargs: Any) -> Generator[IOCall, Any, Any]:
    """``result = yield from io("page", "goto", url)``: ask the driver for one I/O call."""
    return (yield IOCall(target, method, args, kwargs))


class ShoppingLogic:
    """What the sync and the async environment share, written once: construction, the page
    bookkeeping, observations, info, and reset / step / snapshot / restore as generators of
    :class:`IOCall` (sans-I/O). ``ShoppingEnv`` drives them with blocking calls;
    ``webgym.envs.async_shopping.AsyncShoppingEnv`` awaits the same calls. An exception an I/O
    call raises is thrown back into the generator at its ``yield``, so error handling is the
    generators' too."""

    # Both modes' render modes; each env's own metadata lists its mode's (RENDER_MODES).
    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 2}

    def __init__(
        self,
        mode: str = "browser",
        *,
        split: str = "test",
        task_ids: list[str] | None = None,
        viewport: tuple[int, int] = (1280, 720),
        screenshot: bool = True,
        html: bool = True,
        axtree: bool = True,
        effect_thresholds: EffectThresholds | dict | None = None,
        headless: bool = True,
        shop_url: str | None = None,
        catalog: str | None = None,
        chromium_path: str | None = None,
        shared_context: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if mode not in ("browser", "text"):
            raise ValueError(f"mode must be 'browser' or 'text', not {mode!r}")
        # Per env: what gymnasium.utils.env_checker.check_env renders with is this mode's list.
        self.metadata = {**type(self).metadata, "render_modes": list(RENDER_MODES[mode])}
        if mode == "text" and render_mode == "rgb_array":
            raise ValueError(
                "text mode has no pixels: use render_mode='ansi' (the text page) "
                "or WebGym-Shopping-v0 for screenshots"
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.mode = mode
        self.render_mode = render_mode
        self._session: dict | None = None
        self._client: ShopClient | None = None
        self._closing = ExitStack()  # what close() releases, last opened first
        self.split = split
        self.viewport = (int(viewport[0]), int(viewport[1]))
        self.screenshot_on = screenshot and mode == "browser"
        self.html_on, self.axtree_on = html, axtree
        if isinstance(effect_thresholds, dict):
            effect_thresholds = EffectThresholds(**effect_thresholds)
        self.thresholds = effect_thresholds or EffectThresholds()

        # The shop (the process's embedded one, or an external server) and the page over it.
        self._tab = self._host = None  # the browser's, in browser mode (for diagnostics)
        try:
            transport = self._connect(shop_url, catalog)
            self._client = ShopClient(transport)  # the JSON API, in both modes
            tasks = self._client.tasks(split)
            self.split_hash = tasks["hash"]
            self._split_tasks = frozenset(tasks["task_ids"])
            self.task_ids = list(task_ids) if task_ids else list(tasks["task_ids"])
            self._check_tasks(self.task_ids)
            self._page: Page = self._open_page(transport, headless, chromium_path, shared_context)
        except ShopRequestError as e:
            self._closing.close()
            raise ValueError(str(e.payload.get("error", e))) from None
        except Exception:
            self._closing.close()  # release the shop before reporting (e.g. Chromium not found)
            raise

        self.action_space = text_space(MAX_ACTION_LENGTH)
        text = text_space(MAX_TEXT)
        fields: dict[str, spaces.Space] = {
            "goal": text,
            "url": text,
            "text": text,
            "available_actions": TextList(MAX_ACTION_LENGTH),
            "clickable_actions": TextList(MAX_ACTION_LENGTH),
            "last_action": text,
            "last_action_error": text,
            "step": spaces.Box(0, np.iinfo(np.int64).max, shape=(), dtype=np.int64),
        }
        if self.screenshot_on:
            w, h = self.viewport
            fields["screenshot"] = copy.copy(screenshot_space(h, w))
        if html:
            fields["html"] = text
        if axtree:
            fields["axtree"] = text
        self.observation_space = spaces.Dict(fields)

        self._goal: dict | None = None
        self._view: PageView | None = None
        self._view_html: str | None = None
        self._url = ""
        self._pixels: np.ndarray | None = None
        self._purchase: Purchase | None = None
        self._history: list[str] = []
        self._step = 0
        self._done = False
        self._ended: tuple[bool, bool] = (False, False)  # (terminated, truncated) of the end

    def _check_tasks(self, task_ids: list[str]) -> None:
        """``ValueError`` unless every task id is one of this env's split (the constructor's,
        reset's and restore's check: another split's task is never played under this one's
        name)."""
        unknown = sorted(t for t in set(task_ids) if t not in self._split_tasks)
        if unknown:
            raise ValueError(f"tasks not in split {self.split!r}: {unknown[:5]}")

    # ---- the one place the modes differ: how the shop is reached, and which page drives it --
    def _connect(self, shop_url: str | None, catalog: str | None) -> Transport:
        """The shop: an external server, or the process's embedded one (called in-process in
        text mode, served on loopback for Chromium in browser mode)."""
        if shop_url is not None:
            transport = make_transport(shop_url.rstrip("/"))
        else:
            shop = acquire_shop(catalog, split=self.split)
            self._closing.callback(release_shop, shop)
            if self.mode == "text":
                transport = make_transport(shop.app)
            else:
                transport = make_transport(shop.start_http())
                self._closing.callback(shop.stop_http)
        self._closing.callback(transport.close)
        return transport

    def _open_page(
        self, transport: Transport, headless: bool, chromium_path: str | None, shared: bool
    ) -> Page:
        """The in-process page over ``transport``, or a tab of this thread's Chromium."""
        if self.mode == "text":
            return InProcessPage(transport)
        from webgym.browser import BrowserConfig, BrowserHost

        config = BrowserConfig(
            headless=headless,
            viewport=self.viewport,
            **({"executable_path": chromium_path} if chromium_path else {}),
        )
        self._host = BrowserHost.acquire(config)
        # One browser context per env by default; shared_context=True gives each env a page in
        # one shared context instead (~16 MB PSS per env instead of ~65 MB).
        self._tab = self._host.new_tab(self.viewport, shared_context=shared)
        self._closing.callback(self._tab.close)
        return self._tab

    # ---- the page -------------------------------------------------------------------------
    def _session_path(self) -> str:
        return f"/s/{self._session['session_id']}"

    def _public_url(self, url: str) -> str:
        """The URL with the session id replaced: equal starts give equal observations."""
        return url.replace(self._session_path(), f"/s/{SESSION_PLACEHOLDER}") if url else url

    def _load(self, cap: PageCapture) -> None:
        """The page after a navigation or an action: observed once per served document."""
        if self._view is None or self._view_html is not cap.html:
            self._view, self._view_html = observe_page(cap.html, cap.url), cap.html
        self._url, self._pixels, self._purchase = cap.url, cap.screenshot, cap.purchase
        path = self._relative(cap.url)
        if not self._history or self._history[-1] != path:
            self._history.append(path)

    @staticmethod
    def _relative(url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _goto_io(self, path: str):
        url = self._client.base_url + path
        self._load((yield from io("page", "goto", url, screenshot=self.screenshot_on)))

    def _execute_io(self, step):
        if step.name == "go_back":  # back through the episode's own history (kept by snapshots)
            if len(self._history) < 2:
                raise ActionError("there is no previous page to go back to")
            self._history.pop()
            yield from self._goto_io(self._history.pop())
            return
        self._load((yield from io("page", "execute", step, screenshot=self.screenshot_on)))

    def _observation(self, last_action: str, error: str) -> dict[str, Any]:
        view = self._view
        obs: dict[str, Any] = {
            "goal": self._goal["instruction_text"],
            "url": self._public_url(self._url),
            "text": view.text,
            "available_actions": tuple(view.available_actions),
            "clickable_actions": tuple(view.clickable_actions),
            "last_action": last_action,
            "last_action_error": error,
            "step": np.array(self._step, dtype=np.int64),
        }
        if self.screenshot_on:
            obs["screenshot"] = self._pixels.copy()  # users keep observations: never share
        if self.html_on:
            obs["html"] = view.html_pruned
        if self.axtree_on:
            obs["axtree"] = view.axtree
        for key, value in obs.items():
            if isinstance(value, str):
                obs[key] = observable_text(value)
            elif key in ("available_actions", "clickable_actions"):
                obs[key] = tuple(observable_text(a) for a in value)
        return obs

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {
            "task_id": self._goal["task_id"],
            "split": self.split,
            "split_hash": self.split_hash,
            **extra,
        }

    @property
    def session_id(self) -> str | None:
        """The shop session of the current episode (observations show it as SESSION)."""
        return self._session["session_id"] if self._session else None

    # ---- the episode, as generators of I/O calls (driven by the sync and the async env) ------
    def _io_method(self, call: IOCall, client: Any) -> Any:
        """The bound method ``call`` names: on the env's page, or on ``client`` (the driver's
        shop client: the blocking one, or the async env's `InThread` of it)."""
        return getattr(self._page if call.target == "page" else client, call.method)

    def _reset_io(self, options: dict | None):
        """Reset (after seeding): the task of ``options`` or one drawn with ``np_random``."""
        options = options or {}
        if "split" in options and options["split"] != self.split:
            raise ValueError(
                f"this env serves split {self.split!r}; make another env for "
                f"split {options['split']!r}"
            )
        task_id = options.get("task_id")
        if task_id is None:
            task_id = self.task_ids[int(self.np_random.integers(len(self.task_ids)))]
        elif not isinstance(task_id, str):
            raise ValueError(f"options['task_id'] must be a task id (a string), not {task_id!r}")
        else:
            self._check_tasks([task_id])
        t0 = time.perf_counter()
        yield from io("page", "recover", if_dead=True)
        yield from self._drop_session_io()
        try:
            self._session = yield from io("client", "create_session", task_id)
        except ShopRequestError as e:
            raise ValueError(str(e.payload.get("error", e))) from None
        self._goal = self._session["goal"]
        self._history, self._step, self._done = [], 0, False
        self._ended = (False, False)
        yield from self._goto_io(self._session["url"])
        info = self._info(timings=Timings(reset_s=time.perf_counter() - t0))
        return self._observation("", ""), info

    def _step_io(self, action: str):
        if self._session is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return (yield from self._after_end(action))
        t0 = time.perf_counter()
        self._step += 1
        before_text, before_pixels = self._view.axtree, self._pixels
        error, info_extra = "", {}
        reward, terminated, truncated = 0.0, False, False
        try:
            parsed = parse_action(action, self.mode)
            if parsed.name == "send_msg_to_user":
                info_extra["message_to_user"] = parsed.args[0]
            for step in self._view.resolve(parsed):
                yield from self._execute_io(step)
        except InvalidAction as e:  # the agent's mistake: reported, the episode goes on
            error = str(e)
        except Exception as e:  # noqa: BLE001 - machine trouble ends the episode, never raises
            truncated, self._done = True, True
            self._ended = (False, True)
            info_extra["error"] = f"{type(e).__name__}: {e}"
            yield from io("page", "recover")
            error = str(e)
        act_s = time.perf_counter() - t0
        purchase = self._purchase  # the shop's, carried by the page that shows it
        if not truncated and purchase is not None:
            reward, terminated, self._done = float(purchase["reward"]), True, True
            self._ended = (True, False)
            info_extra.update(
                reward_info=purchase["info"],
                purchased_asin=purchase["asin"],
                purchased_options=purchase["options"],
            )
        obs = self._observation(str(action)[:MAX_ACTION_LENGTH], error)
        effect = action_effect(
            before_text, self._view.axtree, before_pixels, self._pixels, self.thresholds
        )
        info = self._info(
            action_effect=effect,
            timings=Timings(action_s=act_s, step_s=time.perf_counter() - t0),
            **info_extra,
        )
        return obs, reward, terminated, truncated, info

    def _after_end(self, action: str):
        """A step after the episode ended (a purchase, or machine trouble): nothing is done and
        nothing is paid. Reward 0, the end's terminated / truncated again, the step count
        unchanged, ``last_action_error`` says so. A generator like the others (no I/O)."""
        yield from ()
        obs = self._observation(str(action)[:MAX_ACTION_LENGTH], EPISODE_OVER)
        text, pixels = self._view.axtree, self._pixels
        effect = action_effect(text, text, pixels, pixels, self.thresholds)
        info = self._info(action_effect=effect, timings=Timings(action_s=0.0, step_s=0.0))
        terminated, truncated = self._ended
        return obs, 0.0, terminated, truncated, info

    def _snapshot_io(self):
        if self._session is None:
            raise RuntimeError("call reset() before snapshot()")
        state = yield from io("client", "session", self._session["session_id"])
        strip = self._session_path()
        return {
            "version": 1,
            "split": self.split,
            "task_id": self._goal["task_id"],
            "session": {
                k: state[k]
                for k in ("goal", "history", "last_search", "current_asin", "options", "purchase")
            },
            "history": [p.replace(strip, f"/s/{SESSION_PLACEHOLDER}") for p in self._history],
            "step": self._step,
            "done": self._done,
        }

    def _restore_io(self, snapshot: dict[str, Any]):
        if not isinstance(snapshot, dict) or snapshot.get("split") != self.split:
            got = snapshot.get("split") if isinstance(snapshot, dict) else snapshot
            raise ValueError(f"this env serves split {self.split!r}; the snapshot is of {got!r}")
        self._check_tasks([snapshot.get("task_id")])
        yield from io("page", "recover", if_dead=True)
        yield from self._drop_session_io()
        self._session = yield from io("client", "restore_session", snapshot["session"])
        self._goal = self._session["goal"]
        mine = self._session_path()
        history = [p.replace(f"/s/{SESSION_PLACEHOLDER}", mine) for p in snapshot["history"]]
        yield from self._goto_io(history[-1])
        self._history = history
        self._step, self._done = int(snapshot["step"]), bool(snapshot["done"])
        bought = self._session.get("purchase") is not None
        self._ended = (bought, not bought) if self._done else (False, False)
        return self._observation("", ""), self._info()

    def _drop_session_io(self):
        if self._session is not None:
            try:
                yield from io("client", "delete_session", self._session["session_id"])
            except Exception:  # noqa: BLE001 - the server may be gone; nothing to free then
                log.debug("could not delete shop session %s", self._session["session_id"])
            self._session = None


class ShoppingEnv(ShoppingLogic, gym.Env[dict, str]):
    """The shopping environment; ``mode="browser"`` (Chromium) or ``mode="text"`` (in-process)."""

    def _drive(self, gen: Generator[IOCall, Any, Any]) -> Any:
        """Run one of the episode's generators with blocking calls on the page and client."""
        return sansio.drive(gen, self._perform)

    def _perform(self, call: IOCall) -> sansio.Outcome:
        try:
            return self._io_method(call, self._client)(*call.args, **call.kwargs), None
        except Exception as e:  # noqa: BLE001 - handed to the generator, which decides
            return None, e

    def _goto(self, path: str) -> None:
        self._drive(self._goto_io(path))

    # ---- Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._drive(self._reset_io(options))

    def step(self, action: str):
        return self._drive(self._step_io(action))

    def render(self):
        if self.render_mode == "rgb_array":
            if self._pixels is None and self._session is not None:
                return self._page.capture(screenshot=True).screenshot  # observations skip pixels
            return None if self._pixels is None else self._pixels.copy()
        if self.render_mode == "ansi":
            return self._view.text if self._view else ""
        return None

    # ---- snapshots ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A small JSON-serialisable state from which ``restore`` continues this episode."""
        return self._drive(self._snapshot_io())

    def restore(self, snapshot: dict[str, Any]):
        """Continue from ``snapshot`` in a new server session (a fork); returns (obs, info).
        This env alone: the wrappers ``gym.make`` added keep their own step count. Fork a
        wrapped env with ``webgym.envs.restore(env, snapshot)``, which sets it too."""
        return self._drive(self._restore_io(snapshot))

    # ---- lifecycle ------------------------------------------------------------------------
    def _drop_session(self) -> None:
        self._drive(self._drop_session_io())

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if getattr(self, "_client", None) is not None:
            self._drop_session()
        if getattr(self, "_closing", None) is not None:
            self._closing.close()  # the tab, the transport, the HTTP server, the shop
        self._tab = None
        super().close()
