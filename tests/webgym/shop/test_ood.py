"""The ``ood`` split: product types that no other split has, in a catalog of their own.

The ood companion of the embedded catalog holds the embedded products unchanged, then those of
``OOD_PRODUCT_TYPES``, and the one split ``ood``; its goals target only the new types, whose
vocabulary no embedded product uses, so the split is disjoint from train by type and by asin.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.webgym.shop.test_split_regression import SAMPLE
from webgym.shop.catalog import (
    SEARCH_RETURN_N,
    STOP_WORDS,
    SYNTHETIC_OOD,
    Catalog,
    default_catalog,
    ood_catalog,
    open_catalog,
    stems,
)
from webgym.shop.synthetic import (
    OOD_CATEGORIES,
    OOD_PRODUCT_TYPES,
    PRODUCT_TYPES,
    generate_ood_products,
    generate_products,
)
from webgym.shop.tasks import OOD_SPLIT, OOD_SPLIT_SIZE, generate_ood_goals

OOD_HASH = "693474db8c578f4a"  # the ood split's version (a regression fixture, as the others)


@pytest.fixture(scope="module")
def ood() -> Catalog:
    return ood_catalog()


@pytest.fixture(scope="module")
def ood_split(ood):
    return ood.split(OOD_SPLIT)


def _stems(text: str) -> set[str]:
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOP_WORDS]
    return {s for word_stems in stems(words) for s in word_stems}


def test_the_ood_split_is_named_sized_and_hashed_like_the_others(ood, ood_split):
    assert list(ood.splits()) == [OOD_SPLIT]
    assert ood_split.size == OOD_SPLIT_SIZE == 500
    assert ood_split.task_ids == [f"ood-{i:04d}" for i in range(500)]
    assert all(g["split"] == "ood" for g in ood_split)
    assert ood_split.hash == OOD_HASH == ood.meta["split_hashes"]["ood"]
    assert ood.source == SYNTHETIC_OOD
    assert {g["difficulty"] for g in ood_split} == {"easy", "medium", "hard"}


def test_the_ood_split_is_deterministic():
    embedded = generate_products()
    again = generate_ood_products(69, exclude_asins=[p["asin"] for p in embedded])
    assert generate_ood_goals(again).hash == OOD_HASH
    assert generate_ood_goals(again, seed=1).hash != OOD_HASH


def test_the_ood_split_is_disjoint_from_train_by_product_type_and_asin(catalog, ood_split):
    ood_queries = {g["query"] for g in ood_split}
    assert ood_queries == {t.query for t in OOD_PRODUCT_TYPES}
    for name in ("train", "validation", "test"):
        split = catalog.split(name)
        assert ood_queries.isdisjoint(g["query"] for g in split), name
        assert {g["asin"] for g in ood_split}.isdisjoint(g["asin"] for g in split), name
    assert ood_queries.isdisjoint(p["query"] for p in catalog.products())
    assert all(g["asin"] not in catalog for g in ood_split)
    assert {g["category"] for g in ood_split} == set(OOD_CATEGORIES)
    assert set(OOD_CATEGORIES).isdisjoint(catalog.categories())


def test_the_ood_catalog_is_the_embedded_one_plus_the_new_types(catalog, ood):
    assert len(ood) == len(catalog) + 10 * 69 and ood.meta["ood_products"] == 690
    both = zip(catalog.products(), ood.products(), strict=False)
    assert all(a == b for a, b in both)  # the first 10,000, in order
    new = list(ood.products())[len(catalog) :]
    assert {p["query"] for p in new} == {t.query for t in OOD_PRODUCT_TYPES}
    assert len(OOD_PRODUCT_TYPES) == 10 and len(PRODUCT_TYPES) == 145


def test_no_word_of_the_new_types_is_a_word_of_an_embedded_product(catalog):
    embedded: set[str] = set()
    for p in catalog.products():
        embedded |= _stems(" ".join([json.dumps(p)]))
    ours = set()
    for category, (root, shared, specs) in OOD_CATEGORIES.items():
        ours |= _stems(f"{category} {root} {shared}")
        for spec in specs:
            sub, title, _, attributes, _ = spec.split("|")
            ours |= _stems(f"{sub} {title} {attributes}")
    for ptype in OOD_PRODUCT_TYPES:
        ours |= _stems(" ".join(ptype.brands + ptype.adjectives))
    assert ours and ours.isdisjoint(embedded), sorted(ours & embedded)


def test_searches_for_existing_goals_never_return_an_ood_product(catalog, ood):
    new = {p["asin"] for p in list(ood.products())[len(catalog) :]}
    for task_id in SAMPLE:
        goal = catalog.task(task_id)
        for text in (goal["instruction_text"], goal["query"]):
            assert new.isdisjoint(ood.search(text, SEARCH_RETURN_N)), (task_id, text)


def test_a_search_for_an_ood_goal_finds_its_type(ood, ood_split):
    for goal in list(ood_split)[::10]:
        hits = [ood[a] for a in ood.search(goal["instruction_text"], 10)]
        assert hits and all(p["query"] == goal["query"] for p in hits[:3]), goal["task_id"]


def test_open_catalog_picks_the_catalog_that_holds_the_split(monkeypatch):
    monkeypatch.delenv("WEBGYM_CATALOG", raising=False)
    with open_catalog(split="ood") as a, open_catalog(split="test") as b, open_catalog() as c:
        assert a.path == ood_catalog().path and b.path == c.path == default_catalog().path
    with open_catalog(default_catalog().path, split="ood") as named:  # a named file wins
        with pytest.raises(KeyError, match="ood companion"):
            named.split("ood")
    with pytest.raises(KeyError, match=r"valid: ood\).*embedded catalog"):
        ood_catalog().split("test")


def test_webshop_catalogs_have_no_ood_split_and_say_so(tmp_path):
    from webgym.shop.catalog import build_catalog
    from webgym.shop.tasks import generate_goals

    products = generate_products(60, seed=5)
    path = build_catalog(
        products, generate_goals(products), tmp_path / "w.sqlite", source="webshop"
    )
    with Catalog(path) as webshop, pytest.raises(KeyError, match="WebShop's data has no ood"):
        webshop.split("ood")
