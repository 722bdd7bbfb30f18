"""``rule``: WebShop's rule baseline (search the instruction, take the first hit, buy it).

WebShop (Yao et al., 2022; ``baseline_models/test.py`` with ``rule=True``) scripts three
moves: on the search page it searches the instruction itself (``search[<instruction, lower
case>]``, price clause included), on a results page it clicks the first item, and on the item
page it clicks Buy Now without choosing any option. The paper reports SR 9.6 for it.

This agent makes the same moves, with two defaults of our own (both switchable):

- ``query_mode="instruction"``: the query is the instruction up to ``", and price lower
  than"``, since the price words only add noise to a text search; ``"full"`` searches the whole
  lower-cased instruction as WebShop does.
- ``choose_options=True``: on the item page, before buying, it clicks for each option
  dimension (radiogroup, in page order) the value whose text appears in the instruction as a
  whole word or phrase, the longest when several do (``"light pink"`` before ``"pink"``), never
  one already checked; dimensions with no such value are left alone. ``False`` buys at once,
  as WebShop's rule does.

The action is a function of the observation alone (no episode state, no randomness), so the agent is
deterministic and ``act_batch`` may mix episodes. ``explain()`` gives the one-line reason of the
last action (which page it took the observation for, and which rule applied). It needs at most ``3 +
number of option dimensions`` steps; with the step budget almost spent (``max_steps``) it buys at
once. Off its path it steps back: ``< Prev`` from an item's sub-page, Back to Search from a results
page without items. The options are read from the observation's accessibility tree
(:mod:`webgym_agents.observation`).
"""

from __future__ import annotations

import re
from typing import Any

from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.base import Agent, register_agent
from webgym_agents.observation import (
    OptionGroup,
    RadioOption,
    goal_without_price,
    has_search_bar,
    item_actions,
    option_groups,
)

__all__ = ["RuleAgent", "chosen_options"]

DESCRIPTION = (
    "WebShop's rule baseline: search the instruction, click the first result, pick "
    "the options the instruction names, buy"
)
QUERY_MODES = ("instruction", "full")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _mentions(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (both already normalised)."""
    return bool(phrase) and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def chosen_options(goal: str, groups: list[OptionGroup]) -> list[tuple[OptionGroup, RadioOption]]:
    """For each option dimension, the value the instruction names (longest match first)."""
    text = _norm(goal_without_price(goal))
    chosen = []
    for group in groups:
        hits = [o for o in group.options if _mentions(text, _norm(o.label))]
        if hits:
            best = max(hits, key=lambda o: len(_norm(o.label)))  # max keeps the first of ties
            chosen.append((group, best))
    return chosen


@register_agent("rule", description=DESCRIPTION)
class RuleAgent(Agent):
    """WebShop's rule baseline, choosing the instruction's options (see the module docstring)."""

    name = "rule"
    description = DESCRIPTION
    deterministic = True

    def __init__(
        self,
        *,
        query_mode: str = "instruction",
        choose_options: bool = True,
        max_steps: int = MAX_EPISODE_STEPS,
    ) -> None:
        super().__init__()
        if query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode must be one of {QUERY_MODES}, not {query_mode!r}")
        self.query_mode = query_mode
        self.choose_options = choose_options
        self.max_steps = max_steps
        self.reason: str | None = None  # why the last act chose its action

    def explain(self) -> str | None:
        return self.reason

    def query(self, goal: str) -> str:
        """The search query for the instruction ``goal`` (one line)."""
        text = goal.lower() if self.query_mode == "full" else goal_without_price(goal)
        return " ".join(text.split())

    def act(self, observation: dict[str, Any]) -> str:
        action, self.reason = self._decide(observation)
        return action

    def _decide(self, observation: dict[str, Any]) -> tuple[str, str]:
        """The action and the reason for it."""
        actions = observation["available_actions"]
        goal = observation.get("goal") or self.goal
        if "click('buy_now')" in actions:  # the item page
            steps_left = self.max_steps - int(observation.get("step", 0))
            if self.choose_options and steps_left > 1:
                for group, option in chosen_options(goal, option_groups(observation)):
                    if not option.checked:
                        return (
                            f"click({option.bid!r})",
                            f"item page: the instruction names {group.name} "
                            f"'{option.label}', not chosen yet",
                        )
                return "click('buy_now')", "item page: every option the instruction names is set"
            if not self.choose_options:
                return "click('buy_now')", "item page: buy at once (options are left alone)"
            return "click('buy_now')", f"item page: {steps_left} step(s) left, buy now"
        items = item_actions(observation)
        if items:  # a results page
            return items[0], f"results page: the first of {len(items)} results"
        if has_search_bar(observation):
            return f"search[{self.query(goal)}]", "search page: search the instruction"
        for back in ("click('prev')", "click('back_to_search')"):  # off the path: step back
            if back in actions:
                return back, "off the path (no item, results or search): step back"
        return "noop()", "nothing to do on this page"
