"""Scripted episodes for tests: action lists that buy a task's target (reward 1.0) or miss it
in known ways, built from the task's goal (``catalog.task(task_id)``)."""

from __future__ import annotations


def oracle_actions(goal: dict) -> list[str]:
    """Search the target's name, open it, choose the goal's options, buy: reward 1.0."""
    options = [f"click[{value}]" for value in dict(goal["goal_options"]).values()]
    return [
        f"search[{goal['name']}]",
        f"click('item_{goal['asin'].lower()}')",
        *options,
        "click[Buy Now]",
    ]


def script_variants(goal: dict) -> list[list[str]]:
    """Eight scripts for one task with different outcomes: the oracle, the oracle with a bad
    action and a go_back on the way, the target without its options, with one option, a
    scroll, a search by the goal's query, and two that buy nothing."""
    oracle = oracle_actions(goal)
    search, item, *options, buy = oracle
    return [
        oracle,
        [search, "click('no_such_id')", item, "go_back()", item, *options, buy],
        [search, item, buy],
        [search, item, *options[:1], buy],
        [search, "scroll(0, 300)", item, *options[::-1], buy],
        [f"search[{goal['query']}]", "click('next_page')", "go_back()", search, item, buy],
        [search, item, *options],
        [search, "noop()", "click('no_such_id')"],
    ]
