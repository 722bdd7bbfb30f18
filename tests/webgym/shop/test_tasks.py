"""Synthetic goals and splits: WebShop's goal fields, disjoint splits, distractors by design."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from rapidfuzz import fuzz

from webgym.shop.schema import PRICE_RANGE
from webgym.shop.synthetic import generate_products
from webgym.shop.tasks import (
    DEFAULT_SPLIT_SIZES,
    NO_PRICE_LIMIT,
    OPENERS,
    SPLIT_NAMES,
    difficulty,
    generate_goals,
    make_goal,
)

GOAL_FIELDS = {
    "task_id", "split", "asin", "category", "query", "name", "product_category",
    "instruction_text", "attributes", "goal_options", "price_upper", "weight", "difficulty",
}  # fmt: skip


@pytest.fixture(scope="module")
def products():
    return generate_products()


@pytest.fixture(scope="module")
def by_asin(products):
    return {p["asin"]: p for p in products}


@pytest.fixture(scope="module")
def splits(products):
    return generate_goals(products)


def test_default_split_sizes(splits):
    assert DEFAULT_SPLIT_SIZES == {"train": 2000, "validation": 250, "test": 500}
    assert list(splits) == list(SPLIT_NAMES)
    assert {name: len(split) for name, split in splits.items()} == DEFAULT_SPLIT_SIZES


def test_small_catalogs_shrink_every_split(products):
    small = generate_goals(generate_products(300, seed=2))
    sizes = {name: split.size for name, split in small.items()}
    assert sum(sizes.values()) <= 300 and all(size > 0 for size in sizes.values())
    custom = generate_goals(products, {"test": 10, "validation": 5})
    assert (custom["test"].size, custom["validation"].size, custom["train"].size) == (10, 5, 2000)


def test_goals_are_deterministic_and_depend_on_the_seed(products, splits):
    again = generate_goals(products)
    other = generate_goals(products, seed=1)
    for name in SPLIT_NAMES:
        assert again[name].hash == splits[name].hash
        assert again[name].goals == splits[name].goals
        assert other[name].hash != splits[name].hash


def test_split_hashes_differ_between_splits(splits):
    assert len({split.hash for split in splits.values()}) == 3


def test_splits_are_disjoint_by_target_product(splits):
    seen: dict[str, str] = {}
    for name, split in splits.items():
        for goal in split:
            assert seen.setdefault(goal["asin"], name) == name, goal["asin"]
    assert len(seen) == sum(split.size for split in splits.values())


def test_goal_fields_come_from_the_target_product(splits, by_asin):
    for name, split in splits.items():
        for index, goal in enumerate(split):
            product = by_asin[goal["asin"]]
            assert set(goal) == GOAL_FIELDS
            assert goal["task_id"] == f"{name}-{index:04d}" and goal["split"] == name
            for key in ("category", "query", "name", "product_category"):
                assert goal[key] == product[key]
            assert 1 <= len(goal["attributes"]) <= 3
            assert set(goal["attributes"]) <= set(product["Attributes"])
            for dim, value in goal["goal_options"].items():
                assert value in product["options"][dim]
            assert goal["weight"] == 1.0
            assert goal["difficulty"] in ("easy", "medium", "hard")
            price = goal["price_upper"]
            assert price == NO_PRICE_LIMIT or (
                price in PRICE_RANGE and price > product["pricing"][0]
            )


def test_instruction_names_type_attributes_options_and_price(splits):
    for goal in splits["test"]:
        text = goal["instruction_text"]
        assert text.startswith(OPENERS) and goal["query"] in text
        assert all(attribute in text for attribute in goal["attributes"])
        assert all(f"{dim}: {value}" in text for dim, value in goal["goal_options"].items())
        price_text = f", and price lower than {goal['price_upper']:.2f} dollars"
        assert text.endswith(price_text) == (goal["price_upper"] < NO_PRICE_LIMIT)
    assert re.search(r"lower than \d+\.00 dollars$", splits["test"].goals[0]["instruction_text"])


def test_task_lookup_by_id(splits):
    test = splits["test"]
    assert test.task("test-0042") == test.goals[42]
    with pytest.raises(KeyError):
        test.task("train-0000")


def test_every_split_has_every_difficulty(splits):
    for split in splits.values():
        assert {goal["difficulty"] for goal in split} == {"easy", "medium", "hard"}


def test_difficulty_rule():
    assert difficulty(2, 0.5) == "easy"
    assert difficulty(3, 0.95) == "medium"
    assert difficulty(4, 0.5) == "medium"
    assert difficulty(4, 0.98) == "hard"
    assert difficulty(6, 0.1) == "hard"


def test_goal_attributes_avoid_ones_every_sibling_shares(products, splits, by_asin):
    by_query = defaultdict(list)
    for p in products:
        by_query[p["query"]].append(set(p["Attributes"]))
    for goal in splits["test"]:
        shared_by_all = set.intersection(*by_query[goal["query"]])
        if set(by_asin[goal["asin"]]["Attributes"]) - shared_by_all:
            assert not set(goal["attributes"]) & shared_by_all


def _fails_one(product, goal) -> bool:
    """Whether ``product`` fails some constraint of ``goal`` under WebShop's matching rules."""
    text = " ".join([product["Title"], *product["BulletPoints"], product["Description"]]).lower()
    for attribute in goal["attributes"]:
        if attribute in text:
            continue
        if all(fuzz.token_set_ratio(attribute, a) <= 85 for a in product["Attributes"]):
            return True
    for dim, value in goal["goal_options"].items():
        values = product["options"].get(dim, [])
        if dim == "size":
            if value not in values:
                return True
        elif all(fuzz.token_set_ratio(value, v) <= 85 for v in values):
            return True
    return product["pricing"][0] > goal["price_upper"]


def test_each_goal_has_same_type_distractors(products, splits):
    by_query = defaultdict(list)
    for p in products:
        by_query[p["query"]].append(p)
    for goal in splits["test"].goals[:200]:
        others = [p for p in by_query[goal["query"]] if p["asin"] != goal["asin"]]
        assert any(_fails_one(p, goal) for p in others), goal["task_id"]


def test_make_goal_fills_the_product_fields(products):
    product = products[0]
    goal = make_goal(
        product,
        task_id="test-0000",
        split="test",
        instruction_text="i need shampoo",
        attributes=["color safe"],
        goal_options=["lavender"],
        price_upper=40.0,
        difficulty="easy",
    )
    assert set(goal) == GOAL_FIELDS
    assert goal["asin"] == product["asin"] and goal["name"] == product["name"]
    assert goal["goal_options"] == ["lavender"] and goal["weight"] == 1.0


def test_options_do_not_single_out_the_target(products, splits):
    """Siblings share option values: some same-query product also offers all goal options."""
    by_query = defaultdict(list)
    for p in products:
        by_query[p["query"]].append(p)
    sample = [g for g in splits["test"].goals[:200] if g["goal_options"]]
    covered = 0
    for goal in sample:
        others = [p for p in by_query[goal["query"]] if p["asin"] != goal["asin"]]
        covered += any(
            all(value in p["options"].get(dim, []) for dim, value in goal["goal_options"].items())
            for p in others
        )
    assert sample and covered / len(sample) >= 0.95, (covered, len(sample))


def test_goal_attributes_are_mostly_not_in_the_target_title(splits, by_asin):
    """The search shows titles; the goal's attributes are mostly checked on the item page."""
    named = total = 0
    for goal in splits["test"]:
        title = by_asin[goal["asin"]]["Title"].lower()
        named += sum(attribute in title for attribute in goal["attributes"])
        total += len(goal["attributes"])
    assert named / total < 0.15, (named, total)
