"""``reader``: a scripted shopper that reads each product page before buying (a reference point).

The ``rule`` agent buys the first result. This one reads what the page shows and steps back
when the product is not it, as a careful human shopper does:

- search page: search the instruction up to its price clause (``rule``'s query);
- results page: open the first result it has not opened yet in this episode and that is no
  lookalike of one it left (the same title: the shop's variants of one product offer the same
  options), preferring those whose listed price is within the instruction's budget; when every
  listed result was opened or is a lookalike, the next page;
- product page: if the page does not offer an option value the instruction names, or its price
  is over the budget, go back (``< Prev``) while a retry still fits in the steps left and fewer
  than ``max_results`` results were opened; otherwise choose the named options (``rule``'s
  choice) and buy.

Everything comes from the observation (the instruction text, the page's options, prices and
links) and the agent's own memory of what it opened; nothing from the task record. It reads
neither the Description/Features/Attributes tabs nor the reviews, so the instruction's
attributes are left to the search. Not a learner and not a start for one: the learners start
from ``bc``, which clones ``rule``; ``reader`` shows what reading options and price is worth.

Imports ``webgym``, ``webgym_agents.base``, ``webgym_agents.observation`` and the ``rule`` agent
it builds on; never a policy, the toolkit or an algorithm (no torch).
"""

from __future__ import annotations

from typing import Any

from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.base import Agent, register_agent
from webgym_agents.observation import (
    PREVIOUS_ACTIONS,
    axtree_nodes,
    goal_without_price,
    has_search_bar,
    instruction_budget,
    item_actions,
    listed_prices,
    lookalike_items,
    missing_goal_options,
    option_groups,
    result_products,
    visited_items,
    with_history,
)
from webgym_agents.scripted.rule_agent import chosen_options

__all__ = ["ReaderAgent"]

DESCRIPTION = (
    "a scripted shopper that opens results in turn, goes back from products lacking the "
    "instruction's options or budget, and buys the first that fits (a reference point)"
)

RETRY_STEPS = 5  # "< Prev", open another result, up to two option clicks, Buy Now


@register_agent("reader", description=DESCRIPTION)
class ReaderAgent(Agent):
    """The scripted reader (see the module docstring)."""

    name = "reader"
    description = DESCRIPTION
    deterministic = True

    def __init__(self, *, max_results: int = 10, max_steps: int = MAX_EPISODE_STEPS) -> None:
        super().__init__()
        self.max_results = max_results
        self.max_steps = max_steps
        self._history: list[str] = []

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self._history = []

    def act(self, observation: dict[str, Any]) -> str:
        if PREVIOUS_ACTIONS not in observation:  # its own memory unless the caller keeps it
            observation = with_history(observation, self._history)
        action = self._choose(observation)
        self._history.append(action)
        return action

    def _choose(self, obs: dict[str, Any]) -> str:
        actions = obs["available_actions"]
        goal = obs.get("goal") or self.goal
        budget = instruction_budget(goal)
        opened = visited_items(obs)
        if "click('buy_now')" in actions:  # a product page
            groups = option_groups(obs)
            price = next((n.name for n in axtree_nodes(obs) if n.name.startswith("Price:")), "")
            over = budget is not None and any(p > budget for p in listed_prices(price)[:1])
            steps_left = self.max_steps - int(obs.get("step", 0) or 0)
            lacks = over or bool(missing_goal_options(goal, groups))
            if (
                lacks and steps_left >= RETRY_STEPS and len(opened) < self.max_results
                and "click('prev')" in actions
            ):  # fmt: skip
                return "click('prev')"
            if steps_left > 1:
                for _group, option in chosen_options(goal, groups):
                    if not option.checked:
                        return f"click({option.bid!r})"
            return "click('buy_now')"
        items = item_actions(obs)
        if items:  # a results page
            listed = {p.bid: p for p in result_products(obs)}
            alike = lookalike_items(obs, budget)
            asin = lambda action: action[len("click('item_") : -2]  # noqa: E731
            unseen = [a for a in items if asin(a) not in opened]
            fresh = [a for a in unseen if asin(a) not in alike]
            if not fresh and "click('next_page')" in actions:
                return "click('next_page')"
            fresh = fresh or unseen or items

            def within(action: str) -> bool:
                line = listed.get(action[len("click('") : -2])
                prices = listed_prices(line.price or "" if line else "")
                return budget is None or (bool(prices) and min(prices) <= budget)

            return self.open_next(obs, [a for a in fresh if within(a)], fresh)
        if has_search_bar(obs):
            return f"search[{self.query(goal)}]"
        for back in ("click('prev')", "click('back_to_search')"):  # off the path: step back
            if back in actions:
                return back
        return "noop()"

    def query(self, goal: str) -> str:
        """The search query: the instruction up to its price clause (``rule``'s)."""
        return " ".join(goal_without_price(goal).split())

    def open_next(self, obs: dict[str, Any], within: list[str], fresh: list[str]) -> str:
        """The result to open: the first within budget, else the first (``fresh``: the results
        not opened and no lookalike of one left, in page order; ``within``: those whose listed
        price fits the budget)."""
        return (within or fresh)[0]
