"""The reader's variants (``python -m webgym_benchmarks.reader_variants``) play whole episodes
and each does what it says on a real text env."""

from __future__ import annotations

import gymnasium as gym

import webgym  # noqa: F401
from webgym_agents.toolkit.onpolicy import split_task_ids
from webgym_benchmarks import reader_variants as rv


def test_every_variant_plays_whole_episodes():
    for name, make in rv.VARIANTS.items():
        row = rv.play(make, "validation", 3)
        assert 0.0 <= row["score"] <= 100.0 and 0.0 <= row["sr"] <= 100.0, name
        assert 3 <= row["steps"] <= 15, name  # search, open, buy at least


def test_the_attributes_variant_reads_the_tab_and_leaves_products_that_lack_a_word():
    env = gym.make("WebGym-ShoppingText-v0", split="validation")
    read = left_after_reading = 0
    try:
        for task_id in split_task_ids("validation")[:12]:
            obs, _ = env.reset(options={"task_id": task_id})
            agent = rv.AttributesTab(7)
            agent.reset(obs["goal"])
            actions, done = [], False
            while not done:
                actions.append(agent.act(obs))
                obs, _, terminated, truncated, _ = env.step(actions[-1])
                done = terminated or truncated
            for i, a in enumerate(actions):
                if a == "click('tab_attributes')":
                    read += 1
                    # back to the product page; then either buy there or leave it
                    assert actions[i + 1] == "click('prev')"
                    left_after_reading += actions[i + 2 : i + 3] == ["click('prev')"]
    finally:
        env.close()
    assert read > 0 and left_after_reading > 0


def test_the_query_variants_drop_the_request_words_and_the_option_names():
    goal = "i need easy install dash cam, with color: ivory, and price lower than 120.00 dollars"
    assert rv.Query("bare").query(goal) == "easy install dash cam, with color: ivory"
    assert rv.Query("values").query(goal) == "easy install dash cam ivory"
    assert rv.ReaderAgent().query(goal) == "i need easy install dash cam, with color: ivory"
