"""``random``: a uniform choice among the page's available actions; a floor for every metric.

On most pages the agent clicks one of ``observation["available_actions"]`` uniformly. A page
with a search bar is the exception: clicking Search with an empty box only leads to an empty
results page, and a random agent needs *some* query to ever leave the search page. There it
types ``search[<query>]``, the query being a random subset of the instruction's words
(the price clause left out): ``k`` words, ``k`` uniform in 1..``max_query_words``, kept in
the instruction's order. Other useful actions on such a page (anything but the Search
button) are drawn uniformly together with the search.

Every draw comes from ``random.Random(seed)`` created in :meth:`RandomAgent.reset`, so one seed
gives one action sequence. Imports only ``webgym_agents``; never ``webgym_benchmarks`` or
``webgym_leaderboards``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from webgym_agents.base import Agent, register_agent
from webgym_agents.observation import axtree_nodes, goal_without_price

__all__ = ["RandomAgent"]

_WORD_RE = re.compile(r"\w[\w'&.-]*\w|\w")


DESCRIPTION = (
    "uniform over the page's available actions; on the search page, a search for a "
    "random subset of the instruction's words"
)


@register_agent("random", description=DESCRIPTION)
class RandomAgent(Agent):
    """Uniform over ``available_actions``; searches a random subset of the goal's words."""

    name = "random"
    description = DESCRIPTION
    deterministic = False

    def __init__(self, max_query_words: int = 5) -> None:
        super().__init__()
        if max_query_words < 1:
            raise ValueError(f"max_query_words must be >= 1, not {max_query_words}")
        self.max_query_words = max_query_words
        self.rng = random.Random()

    def reset(self, goal: str, *, seed: int | None = None) -> None:
        super().reset(goal, seed=seed)
        self.rng = random.Random(seed)

    def random_query(self, goal: str) -> str | None:
        """A few words of ``goal`` drawn with the episode's generator (None: it has none)."""
        words = _WORD_RE.findall(goal_without_price(goal))
        if not words:
            return None
        k = self.rng.randint(1, min(self.max_query_words, len(words)))
        keep = sorted(self.rng.sample(range(len(words)), k))
        return " ".join(words[i] for i in keep)

    def act(self, observation: dict[str, Any]) -> str:
        actions = list(observation["available_actions"])
        nodes = axtree_nodes(observation)
        if any(n.role in ("textbox", "searchbox") and n.bid is not None for n in nodes):
            # The Search button itself is not useful: an empty query finds nothing.
            search_buttons = {
                f"click({n.bid!r})"
                for n in nodes
                if n.role == "button" and n.name.casefold() == "search"
            }
            query = self.random_query(observation.get("goal") or self.goal)
            if query is not None:
                actions = [a for a in actions if a not in search_buttons] + [f"search[{query}]"]
        if not actions:
            return "noop()"
        return actions[self.rng.randrange(len(actions))]
