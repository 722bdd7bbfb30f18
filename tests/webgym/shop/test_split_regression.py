"""The embedded catalog's train / validation / test tasks and searches are what they were.

Recorded runs, the leaderboard and trained checkpoints depend on the exact goals of the fixed
splits (their hashes) and on what the shop's search returns for them. These are the values of
the code before the ``ood`` split was added (``search_results_before.json`` captured from the
code of that time by ``python -m tests.webgym.shop.test_split_regression --capture``): adding a
split, or anything else to the synthetic generator, must leave all of them unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from webgym.shop.catalog import SEARCH_RETURN_N, Catalog, default_catalog
from webgym.shop.synthetic import generate_products
from webgym.shop.tasks import generate_goals

FIXTURE = Path(__file__).with_name("search_results_before.json")
SPLIT_HASHES = {"train": "a6cd81f862c65645", "validation": "fc27fbdb5ad6aae0",
                "test": "d01b3ca8317f94f2"}  # fmt: skip
SPLIT_SIZES = {"train": 2000, "validation": 250, "test": 500}
CONTENT_HASH = "57dfc35f612f972b"  # the embedded catalog's, recorded by every run's manifest
# 50 test and 50 train goals, spread over each split
SAMPLE = [f"test-{i:04d}" for i in range(0, 500, 10)] + [
    f"train-{i:04d}" for i in range(0, 2000, 40)
]


def searches(catalog: Catalog) -> dict[str, dict[str, list[str]]]:
    """Each sampled goal's search hits (all result pages: ``SEARCH_RETURN_N`` asins) for its
    instruction (what the rule agent types) and for its product type's query."""
    out = {}
    for task_id in SAMPLE:
        goal = catalog.task(task_id)
        out[task_id] = {
            "instruction": catalog.search(goal["instruction_text"], SEARCH_RETURN_N),
            "query": catalog.search(goal["query"], SEARCH_RETURN_N),
        }
    return out


def test_the_generated_splits_keep_their_hashes():
    splits = generate_goals(generate_products(10_000, seed=0), seed=0)
    assert {name: s.hash for name, s in splits.items()} == SPLIT_HASHES
    assert {name: s.size for name, s in splits.items()} == SPLIT_SIZES


def test_the_embedded_catalog_keeps_its_splits_and_content(catalog):
    assert {name: s.hash for name, s in catalog.splits().items()} == SPLIT_HASHES
    assert catalog.meta["split_hashes"] == SPLIT_HASHES
    assert len(catalog) == 10_000
    assert catalog.content_hash == CONTENT_HASH


def test_search_results_for_existing_goals_are_what_they_were(catalog):
    before = json.loads(FIXTURE.read_text())
    assert list(before) == SAMPLE
    now = searches(catalog)
    for task_id, was in before.items():
        for kind in ("instruction", "query"):
            assert now[task_id][kind] == was[kind], (task_id, kind)
    assert all(len(v["instruction"]) == SEARCH_RETURN_N for v in before.values())


if __name__ == "__main__" and "--capture" in sys.argv:
    with default_catalog() as embedded:
        results = searches(embedded)
    lines = ",\n".join(
        f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in results.items()
    )
    FIXTURE.write_text("{\n" + lines + "\n}\n")  # one line per goal: readable diffs
    print(f"wrote {FIXTURE}")
