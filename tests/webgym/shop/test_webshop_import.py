"""Importing WebShop's raw files, over small JSON files in WebShop's schema."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from webgym.shop.catalog import Catalog
from webgym.shop.schema import PRICE_RANGE
from webgym.shop.tasks import NO_PRICE_LIMIT
from webgym.shop.webshop_import import (
    assign_splits,
    import_webshop,
    iter_json_array,
    parse_pricing,
)


def _raw(asin: str, name: str, pricing: str, **extra) -> dict:
    raw = {
        "asin": asin,
        "name": name,
        "full_description": f"{name} description",
        "small_description": f"{name} bullet",
        "pricing": pricing,
        "customization_options": None,
        "images": [f"https://img.example/{asin}.jpg"],
        "query": " Shampoo ",
        "category": "beauty",
        "product_category": "Beauty & Personal Care › Hair Care › Shampoo",
        "brand": "Acme",  # extra keys WebShop drops
        "list_price": "$99",
    }
    raw.update(extra)
    return raw


def _files(tmp_path: Path, n_extra: int = 20) -> dict[str, Path]:
    products = [
        _raw(
            "B000000001",
            "Lavender Shampoo",
            "$12.99",
            customization_options={
                "Color": [{"value": " Navy/Blue ", "image": "c.jpg"}, {"value": "RED"}],
                "Size": [{"value": "XL", "image": None}],
                "Style": None,
            },
        ),
        _raw("B000000002", "Range Conditioner", "$10.99$20.99", small_description=["a", "b"]),
        _raw("B000000003", "Free Soap", "", images=[]),
        _raw("nan", "Bad Asin", "$1.00"),
        _raw("B0000000011X", "Too Long Asin", "$1.00"),
        _raw("B000000001", "Duplicate Of One", "$5.00"),
    ]
    products += [_raw(f"C{i:09d}", f"Extra Item {i}", f"${5 + i}.50") for i in range(n_extra)]
    attributes = {
        "B000000001": {
            "attributes": ["sulfate free", "lavender scent"],
            "instruction": "i want a sulfate free shampoo",
            "instruction_attributes": ["sulfate free"],
        },
        "B000000002": {
            "attributes": ["silicone free"],
            "instruction": "i need a silicone free conditioner",
            "instruction_attributes": ["silicone free"],
        },
    }
    for i in range(n_extra):
        attributes[f"C{i:09d}"] = {
            "attributes": ["extra"],
            "instruction": f"find extra item {i}",
            "instruction_attributes": ["extra"],
        }
    human = {
        "B000000001": [
            {
                "instruction": "i need a lavender shampoo in navy blue.",
                "instruction_attributes": ["lavender scent"],
                "instruction_options": ["navy | blue", "xl"],
            },
            {
                "instruction": "no attributes here",
                "instruction_attributes": [],
                "instruction_options": [],
            },
            {
                "instruction": "another lavender goal",
                "instruction_attributes": ["sulfate free"],
                "instruction_options": ["red"],
            },
        ],
        "B000000002": [
            {
                "instruction": "a silicone free conditioner",
                "instruction_attributes": ["silicone free"],
                "instruction_options": [],
            }
        ],
        "NOTINSHOP0": [
            {"instruction": "x", "instruction_attributes": ["x"], "instruction_options": []}
        ],
    }
    for i in range(n_extra):
        human[f"C{i:09d}"] = [
            {
                "instruction": f"extra item {i} please",
                "instruction_attributes": ["extra"],
                "instruction_options": [],
            }
        ]
    reviews = [
        {
            "asin": "B000000001",
            "reviews": [
                {"title": "Great", "stars": "5.0 out of 5 stars", "review": "love it"},
                {"title": "Meh", "score": 3, "body": "ok"},
            ],
            "average_rating": 4.5,
        },
        {"asin": "B000000002", "reviews": [], "rating": "3.5"},
    ]
    paths = {}
    for name, data in [
        ("products", products),
        ("attributes", attributes),
        ("human", human),
        ("reviews", reviews),
    ]:
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    return paths


@pytest.fixture()
def human_catalog(tmp_path):
    files = _files(tmp_path)
    messages: list[str] = []
    path = import_webshop(
        files["products"],
        files["attributes"],
        tmp_path / "out",
        human_goals_json=files["human"],
        reviews_json=files["reviews"],
        seed=3,
        progress=messages.append,
    )
    assert path.parent == tmp_path / "out" and path.is_file()
    assert messages
    with Catalog.open(path) as c:
        yield c


def test_parse_pricing():
    assert parse_pricing("$12.99") == [12.99]
    assert parse_pricing("$10.99$20.99") == [10.99, 20.99]
    assert parse_pricing("$1,299.00") == [1299.0]
    assert parse_pricing("") == [100.0]
    assert parse_pricing(None) == [100.0]
    assert parse_pricing("$") == [100.0]
    assert parse_pricing([3, 4.5]) == [3.0, 4.5]


def test_products(human_catalog):
    c = human_catalog
    assert len(c) == 3 + 20  # nan, too long and the duplicate skipped
    assert c.meta["skipped_bad_asin"] == 2 and c.meta["skipped_duplicate"] == 1
    assert c.source == "webshop"
    one = c.get("B000000001")
    assert one["name"] == one["Title"] == "Lavender Shampoo"  # the first, not the duplicate
    assert one["pricing"] == [12.99] and one["Price"] == "$12.99"
    assert one["options"] == {"color": ["navy | blue", "red"], "size": ["xl"]}
    assert one["Attributes"] == ["sulfate free", "lavender scent"]
    assert one["BulletPoints"] == ["Lavender Shampoo bullet"]
    assert one["Description"] == "Lavender Shampoo description"
    assert one["query"] == "shampoo"
    assert one["MainImage"] == "https://img.example/B000000001.jpg"
    assert one["Rating"] == 4.5
    assert one["Reviews"] == [
        {"title": "Great", "score": 5, "body": "love it"},
        {"title": "Meh", "score": 3, "body": "ok"},
    ]
    assert "brand" not in one and "list_price" not in one
    two = c.get("B000000002")
    assert two["pricing"] == [10.99, 20.99] and two["Price"] == "$10.99 to $20.99"
    assert two["BulletPoints"] == ["a", "b"] and two["Rating"] == 3.5 and two["Reviews"] == []
    three = c.get("B000000003")
    assert three["pricing"] == [100.0]
    assert three["Attributes"] == ["DUMMY_ATTR"]
    assert three["options"] == {} and three["MainImage"] is None
    assert three["Rating"] == "N.A." and three["Reviews"] == []
    assert c.get("nan") is None and "B0000000011X" not in c
    assert c.search("lavender shampoo")[0] == "B000000001"


def test_human_goals(human_catalog):
    c = human_catalog
    goals = [g for s in c.splits().values() for g in s.goals]
    assert len(goals) == 3 + 20  # the goal without attributes, and the unknown asin, skipped
    by_text = {g["instruction_text"].split(",")[0]: g for g in goals}
    g = by_text["i need a lavender shampoo in navy blue"]  # trailing '.' stripped
    assert g["goal_options"] == ["navy | blue", "xl"]
    assert g["attributes"] == ["lavender scent"]
    assert g["price_upper"] in PRICE_RANGE and 12.99 < g["price_upper"] <= 50.0
    assert g["instruction_text"].endswith(f", and price lower than {g['price_upper']:.2f} dollars")
    assert g["asin"] == "B000000001" and g["name"] == "Lavender Shampoo"
    assert g["query"] == "shampoo" and g["weight"] == 1.0
    assert g["difficulty"] == "medium"  # 1 attribute + 2 options + price
    for goal in goals:
        assert isinstance(goal["goal_options"], list)
        assert goal["price_upper"] < NO_PRICE_LIMIT
        assert goal["task_id"].startswith(goal["split"] + "-")
        assert c.task(goal["task_id"]) == goal
    assert len({g["task_id"] for g in goals}) == len(goals)


def test_splits_disjoint_by_asin(human_catalog):
    splits = human_catalog.splits()
    assert set(splits) == {"train", "validation", "test"}
    asins = {name: {g["asin"] for g in s.goals} for name, s in splits.items()}
    assert not asins["train"] & asins["test"]
    assert not asins["train"] & asins["validation"]
    assert not asins["test"] & asins["validation"]
    assert splits["test"].size >= 1 and splits["validation"].size >= 1
    for name, s in splits.items():
        assert human_catalog.meta["split_hashes"][name] == s.hash


def test_deterministic(tmp_path):
    files = _files(tmp_path)
    kwargs = {"human_goals_json": files["human"], "seed": 7}
    a = import_webshop(files["products"], files["attributes"], tmp_path / "a", **kwargs)
    b = import_webshop(files["products"], files["attributes"], tmp_path / "b", **kwargs)
    with Catalog.open(a) as ca, Catalog.open(b) as cb:
        assert ca.meta["split_hashes"] == cb.meta["split_hashes"]


def test_synthetic_goals(tmp_path):
    files = _files(tmp_path, n_extra=5)
    path = import_webshop(files["products"], files["attributes"], tmp_path / "out")
    with Catalog.open(path) as c:
        goals = {g["asin"]: g for s in c.splits().values() for g in s.goals}
        assert len(goals) == 2 + 5  # products with an instruction in the attributes file
        g = goals["B000000001"]
        assert set(g["goal_options"]) == {"color", "size"}
        assert g["goal_options"]["size"] == "xl"
        assert g["instruction_text"].startswith("i want a sulfate free shampoo with color: ")
        assert "price lower than" in g["instruction_text"]
        assert g["attributes"] == ["sulfate free"]
        assert goals["C000000000"]["weight"] == pytest.approx(1 / 5)
        assert c.meta["goals"] == "synthetic"


def test_assign_splits_webshop_sizes():
    rng = random.Random(0)
    drafts = [{"asin": f"A{rng.randrange(2000):05d}", "i": i} for i in range(4000)]
    out = assign_splits(drafts, seed=0)
    assert sum(map(len, out.values())) == 4000
    assert 500 <= len(out["test"]) < 560
    assert 1000 <= len(out["validation"]) < 1100
    sets = [{d["asin"] for d in g} for g in out.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert assign_splits(drafts, seed=0) == out and assign_splits(drafts, seed=1) != out


def test_iter_json_array(tmp_path):
    data = [{"a": i, "s": "x, ] [ {" * (i % 7), "n": None} for i in range(300)] + [1, "two", []]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data, indent=1))
    assert list(iter_json_array(path, chunk_size=7)) == data
    path.write_text(" [ ] ")
    assert list(iter_json_array(path)) == []
    path.write_text('{"not": "an array"}')
    with pytest.raises(ValueError):
        list(iter_json_array(path))
    path.write_text('[{"a": 1}, {"b":')
    with pytest.raises(ValueError):
        list(iter_json_array(path, chunk_size=4))
