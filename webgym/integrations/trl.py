"""WebGym for TRL: an ``environment_factory`` for ``GRPOTrainer`` and its dataset.

    from trl import GRPOConfig, GRPOTrainer
    from webgym.integrations.trl import WebGymToolEnv, task_dataset

    trainer = GRPOTrainer(
        model=model,
        args=GRPOConfig(...),
        train_dataset=task_dataset("train"),      # prompt + task_id per row
        environment_factory=WebGymToolEnv,        # one instance per rollout, reused across resets
    )

TRL (1.x) builds one instance per rollout with no arguments, calls ``reset(**row)`` with the
dataset row (its ``task_id`` names the task) and appends the returned text to the prompt; every
public method other than ``reset`` and ``get_reward`` is a tool whose JSON schema TRL builds
from the type hints and the ``Args:`` section of its docstring. Each tool here is one kind of
action of the one grammar (``webgym.actions``), executed by a ``ShoppingEnv`` step; it returns
the page as text, and an invalid action returns the error as text (the episode goes on, as in
the env). ``get_reward()`` is WebShop's reward of the episode's purchase (0 without one).

The env is the browserless text mode by default (``functools.partial(WebGymToolEnv,
mode="browser")`` for Chromium, used from the thread that made it). Imports only ``webgym``.
"""

from __future__ import annotations

import weakref
from typing import Any

from webgym.envs import MAX_EPISODE_STEPS

__all__ = ["SYSTEM_PROMPT", "WebGymToolEnv", "task_dataset"]

SYSTEM_PROMPT = (
    "You are shopping in a web shop for the user. Each tool acts on the current page and "
    "returns the next page: its text, then the ids you can click. Search for the product, open "
    "the one that matches, choose the options the user asks for, then click Buy Now. "
    "The episode ends with the purchase; the reward says how well it matches the request."
)
MAX_AVAILABLE = 40  # clickable ids listed per page (the page text carries the rest)


def _q(value: Any) -> str:
    """A tool argument as a string literal of the action grammar."""
    return repr(str(value))


def render_page(obs: dict[str, Any]) -> str:
    """One observation as the text a language model reads."""
    lines = []
    if obs["last_action_error"]:
        lines.append(f"Error: {obs['last_action_error']}")
    lines.append(f"Page: {obs['text']}")
    actions = list(obs["available_actions"])
    ids = [a[len("click('") : -2] for a in actions if a.startswith("click('")]
    more = f" (+{len(ids) - MAX_AVAILABLE} more)" if len(ids) > MAX_AVAILABLE else ""
    lines.append("Clickable ids: " + ", ".join(ids[:MAX_AVAILABLE]) + more)
    return "\n".join(lines)


class WebGymToolEnv:
    """One shopping episode at a time, played through tools (see the module docstring).

    Args:
        mode: "text" (no browser, the default) or "browser" (Chromium).
        split: the task split the dataset rows come from.
        max_steps: tool calls per episode before it is cut (the env's step limit).
        **env_kwargs: more ``ShoppingEnv`` keywords (``shop_url``, ``catalog``, ...).
    """

    def __init__(
        self,
        mode: str = "text",
        split: str = "train",
        max_steps: int = MAX_EPISODE_STEPS,
        **env_kwargs: Any,
    ) -> None:
        self._mode, self._split, self._max_steps = mode, split, max_steps
        self._env_kwargs = {"screenshot": False, "html": False, **env_kwargs}
        self._env = None  # made at the first reset (TRL probes one instance at start-up)
        self._reward = 0.0
        self._done = True
        self._steps = 0
        self.task_id: str | None = None

    def _environment(self):
        if self._env is None:
            from webgym.envs.shopping import ShoppingEnv

            self._env = ShoppingEnv(self._mode, split=self._split, **self._env_kwargs)
            self._finalizer = weakref.finalize(self, self._env.close)
        return self._env

    def _close(self) -> None:
        """Release the env (its shop session, its browser context); a later reset reopens."""
        if self._env is not None:
            self._finalizer()
            self._env = None

    def __enter__(self) -> WebGymToolEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    # ---- TRL's protocol --------------------------------------------------------------------
    def reset(self, task_id: str | None = None, seed: int | None = None, **row: Any) -> str:
        """Start the task of the dataset row; return its first page as text."""
        obs, info = self._environment().reset(
            seed=seed, options={"task_id": task_id} if task_id else None
        )
        self.task_id = info["task_id"]
        self._reward, self._done, self._steps = 0.0, False, 0
        return f"Task: {obs['goal']}\n{render_page(obs)}"

    def get_reward(self) -> float:
        """WebShop's reward of this episode's purchase (0.0 until something is bought)."""
        return self._reward

    def _act(self, action: str) -> str:
        if self._env is None or self.task_id is None:
            return "Error: no episode is running (the environment was not reset)"
        if self._done:
            return f"The episode is over (reward {self._reward:.2f}); no more actions count."
        obs, reward, terminated, truncated, info = self._env.step(action)
        self._steps += 1
        page = render_page(obs)
        if terminated:
            self._reward, self._done = float(reward), True
            return f"{page}\nPurchase made. The episode is over: reward {reward:.2f}."
        if truncated or self._steps >= self._max_steps:
            self._done = True
            why = info.get("error") or f"the step limit ({self._max_steps}) was reached"
            return f"{page}\nThe episode is over without a purchase: {why}."
        return page

    # ---- tools: one per kind of action -----------------------------------------------------
    def search(self, query: str) -> str:
        """Search the shop for products (on a page with a search box).

        Args:
            query: the words to search for, e.g. "white king bed sheets deep pocket".

        Returns:
            The results page as text.
        """
        return self._act(f"search[{query}]")

    def click(self, element_id: str) -> str:
        """Click an element of the page by its id (a product, an option, a button, a link).

        Args:
            element_id: one of the page's clickable ids, e.g. "item_b0bu43vbb3" or "buy_now".

        Returns:
            The page after the click as text.
        """
        return self._act(f"click({_q(element_id)})")

    def click_text(self, text: str) -> str:
        """Click the button, link or option whose visible text is ``text``.

        Args:
            text: the visible label, e.g. "Buy Now", "Next >", "king" or "white".

        Returns:
            The page after the click as text.
        """
        return self._act(f"click[{text}]")

    def fill(self, element_id: str, text: str) -> str:
        """Type text into a text field of the page.

        Args:
            element_id: the id of the text field, e.g. "search_input".
            text: the text to type.

        Returns:
            The page after typing as text.
        """
        return self._act(f"fill({_q(element_id)}, {_q(text)})")

    def select_option(self, element_id: str, option: str) -> str:
        """Choose an option of an option group (a size, a colour) by its value or label.

        Args:
            element_id: the id of the option group.
            option: the option's value or label.

        Returns:
            The page after the choice as text.
        """
        return self._act(f"select_option({_q(element_id)}, {_q(option)})")

    def scroll(self, dy: int) -> str:
        """Scroll the page vertically.

        Args:
            dy: pixels to scroll down (negative: up).

        Returns:
            The page as text.
        """
        return self._act(f"scroll(0, {int(dy)})")

    def go_back(self) -> str:
        """Go back to the previous page of this episode.

        Returns:
            The previous page as text.
        """
        return self._act("go_back()")


def task_dataset(
    split: str = "train",
    task_ids: list[str] | None = None,
    limit: int | None = None,
    system_prompt: str = SYSTEM_PROMPT,
):
    """A ``datasets.Dataset`` of conversational prompts and task ids for ``split``: one row per
    task (``prompt``: a system and a user message; ``task_id``), in the split's order. The
    task's goal and first page are added to the prompt by ``WebGymToolEnv.reset``."""
    from datasets import Dataset

    from webgym.envs.shop_host import acquire_shop, release_shop
    from webgym.shop_client import ShopClient

    if task_ids is None:
        shop = acquire_shop(split=split)
        try:
            task_ids = list(ShopClient(shop.app).tasks(split)["task_ids"])
        finally:
            release_shop(shop)
    task_ids = list(task_ids)[:limit] if limit is not None else list(task_ids)
    user = "Buy what the task asks for."
    return Dataset.from_dict(
        {
            "prompt": [
                [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
                for _ in task_ids
            ],
            "task_id": task_ids,
        }
    )
