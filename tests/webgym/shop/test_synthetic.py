"""The embedded synthetic catalog: deterministic, WebShop's schema, families of distractors.

The product rules hold for the ood split's types too (``generate_ood_products``): the tests
that take ``any_products`` run on both."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
from rapidfuzz import fuzz

from webgym.shop.reward import normalize_color
from webgym.shop.schema import CATEGORY_SEPARATOR, price_tag
from webgym.shop.synthetic import (
    OOD_PRODUCT_TYPES,
    PRODUCT_TYPES,
    generate_ood_products,
    generate_products,
)

FIELDS = {
    "asin", "name", "Title", "category", "product_category", "query", "pricing", "Price",
    "options", "Attributes", "BulletPoints", "Description", "Reviews", "Rating", "MainImage",
}  # fmt: skip


@pytest.fixture(scope="module")
def products():
    return generate_products()


@pytest.fixture(scope="module", params=["embedded", "ood"])
def any_products(request, products):
    """The embedded catalog's products, then the ood types' (``generate_ood_products``)."""
    if request.param == "embedded":
        return products
    return generate_ood_products(exclude_asins=[p["asin"] for p in products])


def _text(product) -> str:
    parts = [product["Title"], " ".join(product["BulletPoints"]), product["Description"]]
    return " ".join(parts).lower()


def test_same_seed_gives_the_same_catalog_byte_for_byte():
    first = json.dumps(generate_products(600, seed=3))
    assert first == json.dumps(generate_products(600, seed=3))
    assert first != json.dumps(generate_products(600, seed=4))


def test_default_catalog_has_10k_products_in_20_plus_categories(products):
    assert len(products) == 10_000
    assert len({p["category"] for p in products}) >= 20
    assert len({p["query"] for p in products}) >= 100
    assert len(generate_products(37)) == 37


def test_asins_are_unique_and_well_formed(products):
    asins = [p["asin"] for p in products]
    assert len(set(asins)) == len(asins)
    assert all(re.fullmatch(r"B0[0-9A-Z]{8}", a) for a in asins)


def test_every_product_has_the_schema_fields_with_the_right_types(any_products):
    for p in any_products:
        assert set(p) == FIELDS
        assert p["name"] == p["Title"] and isinstance(p["name"], str)
        assert p["category"] == p["category"].lower()
        assert len(p["product_category"].split(f" {CATEGORY_SEPARATOR} ")) == 3
        assert p["query"] == p["query"].lower() and p["query"] in p["Title"].lower()
        assert 1 <= len(p["pricing"]) <= 2 and all(isinstance(x, float) for x in p["pricing"])
        assert p["pricing"] == sorted(p["pricing"]) and p["pricing"][0] > 0
        assert p["Price"] == price_tag(p["pricing"])
        assert len(p["options"]) <= 3
        for dim, values in p["options"].items():
            assert dim == dim.lower() and values and len(set(values)) == len(values)
            assert all(isinstance(v, str) and v == v.lower() for v in values)
        assert 3 <= len(p["Attributes"]) <= 8
        assert all(a == a.lower() for a in p["Attributes"])
        assert 3 <= len(p["BulletPoints"]) <= 5 and isinstance(p["Description"], str)
        assert 0 <= len(p["Reviews"]) <= 5
        for review in p["Reviews"]:
            assert set(review) == {"title", "score", "body"} and review["score"] in range(1, 6)
        if p["Reviews"]:
            mean = sum(r["score"] for r in p["Reviews"]) / len(p["Reviews"])
            assert p["Rating"] == round(mean, 1)
        else:
            assert p["Rating"] == "N.A."
        assert p["MainImage"] is None


def test_about_one_price_in_five_is_a_range(any_products):
    share = sum(len(p["pricing"]) == 2 for p in any_products) / len(any_products)
    assert 0.1 < share < 0.3


def test_text_never_mentions_an_attribute_the_product_lacks(any_products):
    pool = defaultdict(set)
    for p in any_products:
        pool[p["query"]].update(p["Attributes"])
    for p in any_products:
        text = _text(p)
        for attribute in pool[p["query"]] - set(p["Attributes"]):
            assert attribute not in text, (p["asin"], attribute)


def test_text_never_mentions_an_option_value(any_products):
    """WebShop's option reward also counts a goal value found in the product's text."""
    dims = {ptype.query: ptype.dims for ptype in PRODUCT_TYPES + OOD_PRODUCT_TYPES}
    for p in any_products:
        text = _text(p)
        for _, values in dims[p["query"]]:
            for value in values:
                assert value not in text and normalize_color(value) not in text, (p["asin"], value)


def test_products_come_in_families_with_near_duplicate_titles(any_products):
    by_query = defaultdict(list)
    for p in any_products:
        by_query[p["query"]].append(p)
    near = 0
    for p in any_products[::10]:
        head = p["Title"].split(",")[0]
        near += any(o is not p and o["Title"].startswith(head) for o in by_query[p["query"]])
    assert near / len(any_products[::10]) > 0.5


def test_attribute_and_option_vocabularies_are_far_apart_under_fuzzy_match():
    """WebShop matches attributes and non-size options by token-set ratio > 85."""
    for ptype in PRODUCT_TYPES + OOD_PRODUCT_TYPES:
        pools = [ptype.attributes]
        for dim, values in ptype.dims:  # the reward normalises colour words in option values
            normalized = [normalize_color(v) for v in values]
            assert len(set(normalized)) == len(values), (ptype.query, dim)
            if dim != "size":  # sizes are matched exactly
                pools.append(normalized)
        for pool in pools:
            for i, a in enumerate(pool):
                for b in pool[i + 1 :]:
                    assert fuzz.token_set_ratio(a, b) <= 85, (ptype.query, a, b)


def test_generation_is_deterministic_in_its_seed():
    # generation speed is a benchmark figure (benchmarks/perf/catalog_bench.py), not a test
    assert generate_products(2_000, seed=1) == generate_products(2_000, seed=1)
    assert generate_products(2_000, seed=1) != generate_products(2_000, seed=2)


def _indexed(product) -> str:
    """What the search index holds of a product's text: title, first bullet, description."""
    return " ".join([product["Title"], product["BulletPoints"][0], product["Description"]]).lower()


def test_only_some_attributes_are_named_in_the_indexed_text(any_products):
    named = sum(a in _indexed(p) for p in any_products for a in p["Attributes"])
    total = sum(len(p["Attributes"]) for p in any_products)
    assert 0.2 < named / total < 0.6, named / total


def test_siblings_share_option_dimensions_and_values(any_products):
    """A product's option values are offered by a same-query product whose title starts alike."""
    by_query = defaultdict(list)
    for p in any_products:
        by_query[p["query"]].append(p)
    same = 0
    sample = [p for p in any_products[::10] if p["options"]]
    for p in sample:
        head = p["Title"].split(",")[0].split(" ")[:2]
        same += any(
            o is not p and o["Title"].split(" ")[:2] == head and o["options"] == p["options"]
            for o in by_query[p["query"]]
        )
    assert same / len(sample) > 0.5, same / len(sample)


def test_a_100k_catalog_is_generated_whole_with_distinct_asins():
    # its speed is a benchmark figure (benchmarks/perf/catalog_bench.py), not a timed test
    products = generate_products(100_000, seed=2)
    assert len(products) == 100_000
    assert len({p["asin"] for p in products}) == 100_000
