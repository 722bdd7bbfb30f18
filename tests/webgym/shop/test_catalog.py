"""The SQLite/FTS5 catalog, over small hand-made products."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from webgym.shop import catalog as catalog_mod
from webgym.shop.catalog import (
    SCHEMA_VERSION,
    Catalog,
    build_catalog,
    fts_query,
    open_catalog,
    query_terms,
)
from webgym.shop.schema import Goal, Product, as_product
from webgym.shop.tasks import TaskSplit

NASTY = [
    "",
    "   \t\n ",
    '"',
    '""',
    '"unbalanced',
    'shampoo "lavender',
    "*",
    "sham*",
    "title:shampoo",
    "{title}: shampoo",
    "^lavender",
    "(shampoo",
    "shampoo)",
    "-shampoo",
    "+shampoo",
    "shampoo NEAR boots",
    "NEAR(shampoo boots, 2)",
    "AND",
    "OR",
    "NOT",
    "shampoo AND NOT boots OR",
    "'; DROP TABLE products; --",
    "1; DELETE FROM products",
    "🙂🚀",
    "lavender 🙂 shampoo",
    "洗发水 シャンプー 샴푸",
    "crème brûlée café naïve",
    "\x00\x01\x02",
    "%_%",
    "___",
    "a" * 10_000,
    " ".join(["shampoo"] * 5_000),
    " ".join(f"w{i}" for i in range(3_000)),
    "\\",
    "'",
    "shampoo' OR '1'='1",
]


def _product(i: int, title: str, description: str = "", **extra) -> Product:
    raw = {
        "asin": f"B{i:09d}",
        "name": title,
        "category": extra.pop("category", "beauty"),
        "product_category": "Beauty › Hair Care › Shampoo",
        "query": extra.pop("query", "shampoo"),
        "pricing": [10.0 + i],
        "options": {"size": ["small", "large"], "color": ["navy | blue"]},
        "Attributes": ["sulfate free"],
        "BulletPoints": ["gentle formula"],
        "Description": description or "a plain item",
        "Reviews": [{"title": "ok", "score": 4, "body": "fine"}],
        "Rating": 4.0,
        "MainImage": None,
    }
    raw.update(extra)
    return as_product(raw)


def _products() -> list[Product]:
    ps = [
        _product(1, "Lavender Shampoo for Dry Hair", "washes hair"),
        _product(2, "Plain Conditioner", "smells of lavender fields"),
        _product(3, "Hiking Boots, Waterproof", "tough boots", category="shoes", query="boots"),
        _product(4, "Crème Brûlée Candle", "café scent", category="home", query="candle"),
    ]
    ps += [_product(100 + i, f"Widget number {i}", "widget gadget") for i in range(60)]
    return ps


def _goal(split: str, i: int, product: Product, **extra) -> Goal:
    goal: Goal = {
        "task_id": f"{split}-{i:04d}",
        "split": split,
        "asin": product["asin"],
        "category": product["category"],
        "query": product["query"],
        "name": product["name"],
        "product_category": product["product_category"],
        "instruction_text": f"i need {product['name'].lower()}, and price lower than 50.00 dollars",
        "attributes": ["sulfate free"],
        "goal_options": {"size": "small"},
        "price_upper": 50.0,
        "weight": 1.0,
        "difficulty": "easy",
    }
    goal.update(extra)  # type: ignore[typeddict-item]
    return goal


def _splits(ps: list[Product]) -> dict[str, TaskSplit]:
    return {
        "train": TaskSplit("train", tuple(_goal("train", i, p) for i, p in enumerate(ps[4:10]))),
        "validation": TaskSplit("validation", (_goal("validation", 0, ps[2]),)),
        "test": TaskSplit(
            "test",
            (_goal("test", 0, ps[0]), _goal("test", 1, ps[1], goal_options=["navy | blue"])),
        ),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Product], dict[str, TaskSplit]]:
    ps = _products()
    splits = _splits(ps)
    path = tmp_path_factory.mktemp("cat") / "c.sqlite"
    out = build_catalog(ps, splits, path, source="handmade", meta={"note": "x"})
    assert out == path
    return path, ps, splits


@pytest.fixture()
def cat(built):
    with Catalog.open(built[0]) as c:
        yield c


def test_round_trip(built, cat):
    path, ps, _ = built
    assert len(cat) == len(ps)
    for p in ps:
        assert cat.get(p["asin"]) == p
        assert p["asin"] in cat
    assert cat.get("NOPE000000") is None
    assert "NOPE000000" not in cat and 12 not in cat
    assert list(cat.asins()) == [p["asin"] for p in ps]
    assert list(cat.products()) == ps
    assert cat.categories() == ["beauty", "home", "shoes"]
    assert cat.meta["source"] == "handmade" == cat.source
    assert cat.meta["product_count"] == len(ps)
    assert cat.meta["schema_version"] == SCHEMA_VERSION
    assert cat.meta["note"] == "x"
    assert cat.path == path
    with pytest.raises(KeyError, match="NOPE"):
        cat["NOPE000000"]


def test_no_temp_files_left(built):
    assert [p.name for p in built[0].parent.iterdir()] == ["c.sqlite"]


def test_bm25_title_beats_description(cat):
    hits = cat.search("lavender")
    assert hits[:2] == ["B000000001", "B000000002"]
    assert cat.search("boots")[0] == "B000000003"
    # porter stemming and diacritics folding
    assert cat.search("hiking boot")[0] == "B000000003"
    assert cat.search("creme brulee")[0] == "B000000004"
    assert cat.search("CAFÉ")[0] == "B000000004"


def test_or_semantics_partial_match(cat):
    # one matching word is enough, the unknown one does not empty the result
    assert cat.search("lavender zzzzunknown")[0] == "B000000001"
    assert cat.search("zzzzunknown") == []


def test_limit(cat):
    assert len(cat.search("widget")) == 50
    assert len(cat.search("widget", limit=5)) == 5
    assert cat.search("widget", limit=0) == []
    assert len(cat.search("widget", limit=1000)) == 60
    assert len(set(cat.search("widget"))) == 50


@pytest.mark.parametrize("query", NASTY, ids=range(len(NASTY)))
def test_nasty_queries_never_raise(built, cat, query):
    result = cat.search(query)
    assert isinstance(result, list)
    assert all(isinstance(a, str) for a in result)
    assert len(result) <= 50
    db = sqlite3.connect(built[0])
    try:
        assert db.execute("SELECT count(*) FROM products").fetchone()[0] == len(built[1])
    finally:
        db.close()


def test_non_string_queries(cat):
    assert cat.search(None) == []  # type: ignore[arg-type]
    assert cat.search(123) == []  # type: ignore[arg-type]
    assert cat.search("lavender", limit="x") == cat.search("lavender")  # type: ignore[arg-type]


def test_fts_query_quoting():
    assert (
        fts_query('say "hi" NEAR(x) title:y') == '"say" OR "hi" OR "near" OR "x" OR "title" OR "y"'
    )
    assert fts_query("the and of") == '"the" OR "and" OR "of"'  # only stop words: keep them
    assert fts_query("the shampoo") == '"shampoo"'
    assert fts_query("   ") is None
    assert len(query_terms(" ".join(f"w{i}" for i in range(500)))) == catalog_mod.MAX_QUERY_TERMS


def test_read_only(built, cat):
    conn = cat._conn()
    with pytest.raises(sqlite3.Error):
        conn.execute("INSERT INTO products(id, asin, doc) VALUES (999, 'X', '{}')")
    with pytest.raises(sqlite3.Error):
        conn.execute("DROP TABLE products")
    with pytest.raises(sqlite3.Error):
        conn.execute("DELETE FROM tasks")
    assert len(cat.search("lavender")) == 2
    assert cat.get("B000000001") is not None


def test_splits_round_trip(built, cat):
    _, _, splits = built
    got = cat.splits()
    assert list(got) == list(splits)
    for name, split in splits.items():
        assert got[name].goals == split.goals
        assert got[name].hash == split.hash == cat.meta["split_hashes"][name]
        assert cat.split(name) is got[name]
        assert cat.meta["split_sizes"][name] == split.size
    assert cat.task("test-0001") == splits["test"].goals[1]
    assert cat.task("test-0001")["goal_options"] == ["navy | blue"]
    assert cat.task("validation-0000")["asin"] == "B000000003"
    with pytest.raises(KeyError, match="no task 'test-9999'"):
        cat.task("test-9999")
    with pytest.raises(KeyError, match="valid: test, train, validation"):
        cat.split("dev")


def test_threads(cat):
    queries = ["lavender", "widget gadget", "boots", "creme", '"bad', "🙂"] * 20
    expected = {q: cat.search(q) for q in set(queries)}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for q in queries:
                assert cat.search(q) == expected[q]
                assert cat.get("B000000001")["name"] == "Lavender Shampoo for Dry Hair"
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cat._conns) >= 2


def test_duplicate_asin_fails_atomically(tmp_path):
    p = _product(1, "A")
    path = tmp_path / "dup.sqlite"
    with pytest.raises(ValueError, match="duplicate asin"):
        build_catalog([p, dict(p)], {}, path, source="x")
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_file(tmp_path):
    path = tmp_path / "c.sqlite"
    build_catalog([_product(1, "First")], {}, path, source="a")
    with Catalog.open(path) as c:
        assert c.search("first") == ["B000000001"] and c.splits() == {}
    build_catalog([_product(2, "Second")], {}, path, source="b")
    with Catalog.open(path) as c:
        assert c.source == "b" and c.search("second") == ["B000000002"] and len(c) == 1


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Catalog.open(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a WebGym catalog"):
        Catalog.open(junk)


def test_open_catalog_env(built, monkeypatch):
    monkeypatch.setenv("WEBGYM_CATALOG", str(built[0]))
    with open_catalog() as c:
        assert c.path == built[0]
    with open_catalog(built[0]) as c:
        assert len(c) == len(built[1])


def test_frequent_terms_are_planned(tmp_path, monkeypatch):
    """Past the postings budget: rarest terms first; a lone frequent word ranks title hits."""
    n = catalog_mod.DF_TABLE_MIN + 50
    ps = [
        _product(i, f"Common item {i}" if i % 2 else f"Item {i}", "common words everywhere")
        for i in range(n)
    ]
    ps.append(_product(n, "Rare Zebra Lamp", "common zebra"))
    path = build_catalog(ps, {}, tmp_path / "c.sqlite", source="t")
    monkeypatch.setattr(catalog_mod, "POSTINGS_BUDGET", 20)
    with Catalog.open(path) as c:
        assert c._term_df()["common"] == (n + 1, n // 2)
        match, _ = c._plan(query_terms("common zebra"))
        assert match == '"zebra"'
        assert c.search("common zebra") == [f"B{n:09d}"]
        hits = c.search("common")
        assert 0 < len(hits) <= 50
        assert all("Common" in c.get(a)["name"] for a in hits)
        assert c.search("everywhere")  # frequent, never in a title: a bounded plain search


def test_default_catalog(tmp_path, monkeypatch):
    """Uses the synthetic generator (small n)."""
    monkeypatch.setenv("WEBGYM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("WEBGYM_CATALOG", raising=False)
    with catalog_mod.default_catalog(n_products=300, seed=1) as c:
        fingerprint = catalog_mod.generator_fingerprint()
        name = f"catalog-synthetic-n300-s1-v{SCHEMA_VERSION}-{fingerprint}.sqlite"
        assert c.path == tmp_path / name and len(fingerprint) == 8
        assert len(c) == 300 and c.source == "synthetic"
        mtime = c.path.stat().st_mtime_ns
        assert sum(s.size for s in c.splits().values()) > 0
    with catalog_mod.default_catalog(n_products=300, seed=1) as c:
        assert c.path.stat().st_mtime_ns == mtime


def test_index_holds_what_webshop_indexes(tmp_path):
    """Title, description, first bullet and options are searchable; Attributes, the category,
    the query and later bullets are not (WebShop's convert_product_file_format.py)."""
    p = _product(
        1,
        "Plain Item",
        "descword",
        query="queryword",
        category="catword",
        product_category="Rootword › Subword › Typeword",
        Attributes=["attrword"],
        BulletPoints=["firstbullet", "secondbullet"],
        options={"color": ["optword"]},
    )
    path = build_catalog([p], {}, tmp_path / "c.sqlite", source="t")
    with Catalog.open(path) as c:
        for word in ("plain", "descword", "firstbullet", "optword", "color"):
            assert c.search(word) == ["B000000001"], word
        for word in ("attrword", "queryword", "catword", "typeword", "secondbullet"):
            assert c.search(word) == [], word


def test_older_schema_versions_are_refused(tmp_path):
    path = build_catalog([_product(1, "First")], {}, tmp_path / "c.sqlite", source="t")
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION - 1,))
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="rebuild it"):
        Catalog.open(path)


def test_title_nouns_table_holds_the_reward_nouns_of_every_name(tmp_path, monkeypatch):
    """A catalog built with ``title_nouns`` keeps each product and goal name's noun list as
    ``reward.title_nouns`` computes it, outside the content hash; a purchase reads it and
    tags nothing, and a file without the table (or from another tagger) is tagged as before."""
    from webgym.shop import reward

    ps, splits = _products(), _splits(_products())
    with_table = build_catalog(ps, splits, tmp_path / "n.sqlite", source="s", title_nouns=True)
    without = build_catalog(ps, splits, tmp_path / "p.sqlite", source="s")
    names = {p["name"] for p in ps} | {g["name"] for s in splits.values() for g in s.goals}
    with Catalog.open(with_table) as c, Catalog.open(without) as plain:
        assert c.content_hash == plain.content_hash
        assert c.meta["title_nouns_tagger"] == reward.tagger_version()
        assert "title_nouns_tagger" not in plain.meta
        rows = c._conn().execute("SELECT title FROM title_nouns").fetchall()
        assert {t for (t,) in rows} == names
        expected = {name: reward.title_nouns(name) for name in names}

        def no_tagger(title: str) -> tuple[str, ...]:
            raise AssertionError(f"tagged {title!r}")

        monkeypatch.setattr(reward, "title_nouns", no_tagger)
        assert {name: c.title_nouns(name) for name in names} == expected
        with pytest.raises(AssertionError, match="tagged"):
            c.title_nouns("A Title Not In The Catalog")
        with pytest.raises(AssertionError, match="tagged"):
            plain.title_nouns(ps[0]["name"])
    monkeypatch.setattr(reward, "tagger_version", lambda: "another tagger")
    with Catalog.open(with_table) as c, pytest.raises(AssertionError, match="tagged"):
        c.title_nouns(ps[0]["name"])


def test_the_embedded_catalogs_keep_the_title_nouns(catalog):
    from webgym.shop import reward

    assert catalog.meta.get("title_nouns_tagger") == reward.tagger_version()
    goal = catalog.split("test").goals[0]
    assert catalog.title_nouns(goal["name"]) == reward.title_nouns(goal["name"])
