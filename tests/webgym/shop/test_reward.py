"""WebShop's reward (webgym.shop.reward) on hand-made products and goals."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from webgym.shop.reward import (
    COLOR_SET,
    fuzzy_ratio,
    get_attribute_reward,
    get_option_reward,
    get_reward,
    get_type_reward,
    normalize_color,
    title_nouns,
)
from webgym.shop.schema import Goal, Product, as_product

SHAMPOO_CATEGORY = "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos"
OTHER_CATEGORY = "Electronics › Computers & Accessories › Mice"


def make_product(**overrides: Any) -> Product:
    """A shampoo listing; keyword arguments replace fields."""
    raw: dict[str, Any] = {
        "asin": "B000SHAMP1",
        "name": "Moisturizing Shampoo for Dry Hair",
        "category": "beauty",
        "product_category": SHAMPOO_CATEGORY,
        "query": "shampoo",
        "pricing": [12.99],
        "options": {"size": ["8 fl oz", "16 fl oz"], "scent": ["lavender", "coconut"]},
        "Attributes": ["sulfate free", "paraben free", "color safe"],
        "BulletPoints": ["Gentle daily cleanser", "Made with argan oil"],
        "Description": "A rich lather for soft, shiny locks.",
        "Reviews": [],
        "Rating": 4.5,
        "MainImage": None,
    }
    raw.update(overrides)
    if "name" in overrides:
        raw.pop("Title", None)
    return as_product(raw)


def make_goal(product: Product | None = None, **overrides: Any) -> Goal:
    """A goal targeting ``product`` (the default shampoo); keyword arguments replace fields."""
    product = product or make_product()
    goal: dict[str, Any] = {
        "task_id": "test-0000",
        "split": "test",
        "asin": product["asin"],
        "category": product["category"],
        "query": product["query"],
        "name": product["name"],
        "product_category": product["product_category"],
        "instruction_text": "i need a sulfate free shampoo, and price lower than 20.00 dollars",
        "attributes": ["sulfate free", "paraben free"],
        "goal_options": {"size": "16 fl oz", "scent": "lavender"},
        "price_upper": 20.0,
        "weight": 1.0,
        "difficulty": "easy",
    }
    goal.update(overrides)
    return goal  # type: ignore[return-value]


EXACT_OPTIONS = {"size": "16 fl oz", "scent": "lavender"}


# ------------------------------------------------------------------ whole reward


def test_exact_match_gives_one():
    reward, info = get_reward(make_product(), make_goal(), 12.99, EXACT_OPTIONS, verbose=True)
    assert reward == 1.0
    assert info["r_type"] == 1.0
    assert info["r_att"] == 1.0
    assert info["r_option"] == 1.0
    assert info["r_price"] is True


def test_non_verbose_returns_a_float():
    reward = get_reward(make_product(), make_goal(), 12.99, EXACT_OPTIONS)
    assert isinstance(reward, float)
    assert reward == 1.0


def test_partial_attribute_match_gives_the_fraction():
    goal = make_goal(attributes=["sulfate free", "paraben free", "long lasting", "travel size"])
    r_attr, n = get_attribute_reward(make_product(), goal)
    assert (r_attr, n) == (0.5, 2)
    reward = get_reward(make_product(), goal, 12.99, EXACT_OPTIONS)
    assert reward == pytest.approx((2 + 2 + 1) / (4 + 2 + 1))


def test_price_above_ceiling_loses_exactly_one_share():
    goal = make_goal()
    d = len(goal["attributes"]) + len(goal["goal_options"]) + 1
    reward, info = get_reward(make_product(), goal, 25.0, EXACT_OPTIONS, verbose=True)
    assert reward == pytest.approx(1.0 - 1.0 / d)
    assert info["r_price"] is False
    assert get_reward(make_product(), goal, 20.0, EXACT_OPTIONS) == 1.0  # ceiling inclusive


def test_no_price_ceiling_counts_zero_and_is_left_out_of_info():
    goal = make_goal(price_upper=0)
    reward, info = get_reward(make_product(), goal, 5.0, EXACT_OPTIONS, verbose=True)
    assert reward == pytest.approx(4 / 5)  # 2 attrs + 2 options matched, D = 5
    assert "r_price" not in info and "w_price" not in info


def test_verbose_info_fields_and_weights_sum_to_one():
    goal = make_goal(attributes=["sulfate free", "paraben free", "long lasting"])
    reward, info = get_reward(make_product(), goal, 12.99, EXACT_OPTIONS, verbose=True)
    expected = {
        "r_type",
        "r_att",
        "w_att",
        "query_match",
        "category_match",
        "title_score",
        "r_option",
        "w_option",
        "r_price",
        "w_price",
    }
    assert set(info) == expected
    assert info["w_att"] == pytest.approx(3 / 6)
    assert info["w_option"] == pytest.approx(2 / 6)
    assert info["w_price"] == pytest.approx(1 / 6)
    assert info["w_att"] + info["w_option"] + info["w_price"] == pytest.approx(1.0)
    weighted = info["w_att"] * info["r_att"] + info["w_option"] * info["r_option"]
    weighted += info["w_price"] * info["r_price"]
    assert reward == pytest.approx(info["r_type"] * weighted)
    assert info["query_match"] is True and info["category_match"] is True
    assert info["title_score"] == 1.0


def test_empty_goal_options_drop_out_of_the_denominator():
    goal = make_goal(goal_options={}, attributes=["sulfate free", "long lasting"])
    reward, info = get_reward(make_product(), goal, 12.99, {}, verbose=True)
    assert reward == pytest.approx((1 + 1) / (2 + 1))
    assert "r_option" not in info and "w_option" not in info
    assert info["w_att"] + info["w_price"] == pytest.approx(1.0)
    assert get_option_reward(make_product(), {}, EXACT_OPTIONS) == (None, 0)
    assert get_option_reward(make_product(), [], ["lavender"]) == (None, 0)


def test_empty_goal_attributes_do_not_divide_by_zero():
    goal = make_goal(attributes=[])
    assert get_attribute_reward(make_product(), goal) == (None, 0)
    reward, info = get_reward(make_product(), goal, 12.99, EXACT_OPTIONS, verbose=True)
    assert reward == 1.0
    assert info["r_att"] is None and info["w_att"] == 0.0


def test_empty_purchased_options():
    goal = make_goal()
    assert get_option_reward(make_product(), goal["goal_options"], {}) == (0.0, 0)
    assert get_option_reward(make_product(), goal["goal_options"], []) == (0.0, 0)
    reward = get_reward(make_product(), goal, 12.99, {})
    assert reward == pytest.approx((2 + 0 + 1) / 5)


def test_type_mismatch_gives_zero_even_when_everything_else_matches():
    mouse = make_product(
        asin="B000MOUSE1",
        name="Wireless Computer Mouse",
        query="computer mouse",
        product_category=OTHER_CATEGORY,
    )
    reward, info = get_reward(mouse, make_goal(), 12.99, EXACT_OPTIONS, verbose=True)
    assert info["r_att"] == 1.0 and info["r_option"] == 1.0 and info["r_price"] is True
    assert info["title_score"] == 0.0
    assert info["r_type"] == 0.0
    assert reward == 0.0


# ------------------------------------------------------------------ type reward


def test_r_type_half_when_no_signal_is_strong_enough():
    goal = make_goal(name="Moisturizing Lavender Shampoo for Dry Hair")
    dryer = make_product(
        name="Hair Dryer with Diffuser", query="hair dryer", product_category=OTHER_CATEGORY
    )
    assert len(title_nouns(goal["name"])) == 5  # the tagger finds five nouns; "hair" is shared
    t = get_type_reward(dryer, goal)
    assert t["title_score"] == pytest.approx(0.2)  # 1/5: not above 0.2
    assert (t["query_match"], t["category_match"]) == (False, False)
    assert t["r_type"] == 0.5
    # any one signal restores 1.0
    assert get_type_reward(make_product(name=dryer["name"]), goal)["r_type"] == 1.0


def test_r_type_category_match_needs_two_shared_levels():
    goal = make_goal(name="Moisturizing Lavender Shampoo for Dry Hair")
    two = make_product(
        name="Hair Dryer with Diffuser",
        query="hair dryer",
        product_category="Beauty & Personal Care › Hair Care › Styling Tools",
    )
    one = make_product(
        name="Hair Dryer with Diffuser",
        query="hair dryer",
        product_category="Beauty & Personal Care ›Tools",
    )
    assert get_type_reward(two, goal)["category_match"] is True
    assert get_type_reward(two, goal)["r_type"] == 1.0
    assert get_type_reward(one, goal)["category_match"] is False
    assert get_type_reward(one, goal)["r_type"] == 0.5


def test_r_type_tenth_when_title_overlap_is_below_a_tenth():
    kitchen = (
        "Kitchen Towel Set with Hook, Cotton Dish Cloth, Apron, Oven Mitt, Pot Holder, "
        "Sponge, Scrubber, Brush, Tray and Basket"
    )
    goal = make_goal(name=kitchen, query="shampoo")
    blanket = make_product(name="Cotton Beach Blanket")  # same query and category as the goal
    t = get_type_reward(blanket, goal)
    assert t["title_score"] == pytest.approx(1 / len(title_nouns(kitchen)))
    assert 0 < t["title_score"] < 0.1
    assert t["query_match"] and t["category_match"]
    assert t["r_type"] == 0.1


def test_title_score_counts_repeated_goal_nouns_like_webshop():
    goal = make_goal(name="Shampoo Bar and Shampoo Brush Set")
    assert title_nouns(goal["name"]).count("shampoo") == 2
    t = get_type_reward(make_product(name="Shampoo"), goal)
    assert t["title_score"] == pytest.approx(1 / 5)  # a set denominator would give 1/4


def test_goal_name_without_nouns_scores_point_two():
    goal = make_goal(name="")
    t = get_type_reward(make_product(), goal)
    assert t["title_score"] == 0.2
    assert t["r_type"] == 1.0  # query and category still match


def test_title_nouns_are_cached():
    title_nouns.cache_clear()
    title_nouns("Organic Green Tea Bags")
    title_nouns("Organic Green Tea Bags")
    info = title_nouns.cache_info()
    assert (info.hits, info.misses) == (1, 1)


# The nouns of a sample of the embedded catalog's product titles and goal names, with and
# without torch in the process (its own process each: the tagger is loaded once per process).
_NOUNS_SCRIPT = """
import json, sys
if sys.argv[1] == "torch":
    import torch
from webgym.shop.catalog import open_catalog
from webgym.shop.reward import title_nouns
con = open_catalog(None, split="test")._conn()
docs = con.execute("SELECT doc FROM products WHERE id % 50 = 0").fetchall()
docs += con.execute("SELECT doc FROM tasks WHERE position % 25 = 0").fetchall()
nouns = [title_nouns(json.loads(d)["name"]) for (d,) in docs]
had_torch = "torch" in sys.modules
import torch  # importable after the tagger has loaded
print(json.dumps({"nouns": nouns, "had_torch": had_torch, "torch": torch.__name__}))
"""


def test_the_tagger_loads_without_torch_and_tags_as_with_it():
    """spaCy is imported without torch unless the process holds torch already (a second or
    two less per process: see ``_torch_unseen``); the tags are the same either way, and torch
    imports normally afterwards."""
    pytest.importorskip("torch")

    def nouns(torch: str) -> dict:
        run = [sys.executable, "-c", _NOUNS_SCRIPT, torch]
        return json.loads(subprocess.run(run, capture_output=True, check=True, text=True).stdout)

    without, with_torch = nouns("none"), nouns("torch")
    assert without["had_torch"] is False and with_torch["had_torch"] is True
    assert without["torch"] == "torch"
    assert len(without["nouns"]) > 250 and any(without["nouns"])
    assert without["nouns"] == with_torch["nouns"]


# ------------------------------------------------------------------ attributes


@pytest.mark.parametrize("goal_attr", ["sulfate-free", "free sulfate", "Sulfate Free"])
def test_fuzzy_attribute_match(goal_attr):
    product = make_product(Attributes=["sulfate free"])
    assert get_attribute_reward(product, make_goal(attributes=[goal_attr])) == (1.0, 1)
    # control: the same goal attribute is not found when the product lacks it
    bare = make_product(Attributes=["paraben free"])
    assert get_attribute_reward(bare, make_goal(attributes=[goal_attr])) == (0.0, 0)


def test_fuzzy_threshold_is_strict_and_rounded_like_thefuzz():
    assert fuzzy_ratio("sulfate-free", "sulfate free") == 100
    assert fuzzy_ratio("16 fl oz", "8 fl oz") == 83  # below 85: not a match
    product = make_product(Attributes=["8 fl oz"])
    assert get_attribute_reward(product, make_goal(attributes=["16 fl oz"])) == (0.0, 0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Moisturizing Tea Tree Shampoo for Dry Hair"),
        ("BulletPoints", ["Gentle daily cleanser", "With Tea Tree oil"]),
        ("Description", "Cooling TEA TREE lather."),
    ],
)
def test_attribute_substring_fallback(field, value):
    goal = make_goal(attributes=["tea tree"])
    assert get_attribute_reward(make_product(), goal) == (0.0, 0)  # control
    product = make_product(**{field: value})
    assert get_attribute_reward(product, goal) == (1.0, 1)


# ------------------------------------------------------------------ options


def test_normalize_color_follows_color_set_order():
    assert COLOR_SET.index("blue") < COLOR_SET.index("dark") < COLOR_SET.index("navy")
    assert normalize_color("dark navy blue") == "blue"
    assert normalize_color("navy") == "navy"
    assert normalize_color("violet lavender") == "lavender"
    assert normalize_color("123alabaster") == "alabaster"
    assert normalize_color("16 fl oz") == "16 fl oz"
    assert normalize_color("") == ""


def test_colour_normalisation_changes_the_match():
    shirt = make_product(
        name="Women's Cotton Crew Neck T-Shirt",
        Attributes=[],
        BulletPoints=["Soft cotton"],
        Description="A basic tee.",
    )
    # without normalisation the fuzzy ratio would accept it ...
    assert fuzzy_ratio("navy", "dark navy blue") == 100
    # ... but "dark navy blue" normalises to "blue" and "navy" stays "navy"
    assert get_option_reward(shirt, {"color": "navy"}, {"color": "dark navy blue"}) == (0.0, 0)
    # both sides normalise to "blue"
    assert get_option_reward(shirt, {"color": "navy blue"}, {"color": "dark navy blue"}) == (
        1.0,
        1,
    )


def test_size_is_matched_exactly():
    goal_options = {"size": "small"}
    assert fuzzy_ratio("small", "x-small") == 100  # fuzzy would accept it
    assert get_option_reward(make_product(), goal_options, {"size": "x-small"}) == (0.0, 0)
    assert get_option_reward(make_product(), goal_options, {"size": " Small "}) == (1.0, 1)
    # other dimensions stay fuzzy
    assert get_option_reward(make_product(), {"pack": "small"}, {"pack": "x-small"}) == (1.0, 1)
    # with lists the dimension is unknown, so the size is matched fuzzily
    assert get_option_reward(make_product(), ["small"], ["x-small"]) == (1.0, 1)


def test_option_substring_fallback():
    goal_options = {"size": "16 fl oz"}
    assert get_option_reward(make_product(), goal_options, {"size": "8 fl oz"}) == (0.0, 0)
    product = make_product(Description="Now in a bigger 16 fl oz bottle.")
    assert get_option_reward(product, goal_options, {"size": "8 fl oz"}) == (1.0, 1)


def test_partial_option_match():
    r_option, n = get_option_reward(
        make_product(), {"size": "16 fl oz", "scent": "lavender"}, {"size": "16 fl oz"}
    )
    assert (r_option, n) == (0.5, 1)
    reward = get_reward(
        make_product(), make_goal(), 12.99, {"size": "16 fl oz", "scent": "coconut"}
    )
    assert reward == pytest.approx((2 + 1 + 1) / 5)


def test_options_count_goal_options_not_purchased_ones():
    # WebShop's loop over purchased options could count 2 matches for 1 goal option
    r_option, n = get_option_reward(
        make_product(), ["lavender"], {"scent": "lavender", "color": "lavender"}
    )
    assert (r_option, n) == (1.0, 1)


def test_list_form_goal_options_human_goals():
    goal = make_goal(goal_options=["lavender", "16 fl oz"])
    assert get_option_reward(make_product(), goal["goal_options"], EXACT_OPTIONS) == (1.0, 2)
    assert get_option_reward(make_product(), goal["goal_options"], ["16 fl oz", "lavender"]) == (
        1.0,
        2,
    )
    reward, info = get_reward(
        make_product(), goal, 12.99, {"scent": "lavender", "size": "8 fl oz"}, verbose=True
    )
    assert info["r_option"] == 0.5
    assert info["w_option"] == pytest.approx(2 / 5)
    assert reward == pytest.approx((2 + 1 + 1) / 5)
