"""Import WebShop's own data files (Yao et al., 2022) into a WebGym catalog.

Products follow WebShop's loader (``web_agent_site/engine/engine.py::load_products``):

- raw products (``items_shuffle*.json``): a list of ``{asin, name, full_description,
  small_description (str or list), pricing ("$12.99", "$10.99$20.99" or empty),
  customization_options ({name: [{value, image}]} or null), images, query, category,
  product_category}``; asins that are 'nan' or longer than 10 characters, and repeats, are
  skipped;
- ``Title`` = name, ``Description`` = full_description, ``BulletPoints`` = small_description
  as a list, ``pricing`` = the dollar amounts ([100.0] when empty), ``options`` =
  ``{name.lower(): [value.strip().replace('/', ' | ').lower()]}``, ``Attributes`` from the
  attributes file (``items_ins_v2*.json``: ``{asin: {attributes, instruction,
  instruction_attributes}}``; ``['DUMMY_ATTR']`` when absent), ``query`` lower-cased and
  stripped, ``MainImage`` = images[0];
- reviews (``items_reviews.json``, optional): a list of ``{asin, reviews: [{title, score |
  stars, body | review}], average_rating | rating}``; ``Rating`` is 'N.A.' when absent.
  WebGym's price tag is ``schema.price_tag`` ("$12.99", two decimals; WebShop prints the float).

Goals:

- with human goals (``items_human_ins.json``: ``{asin: [{instruction, instruction_attributes,
  instruction_options}]}``): WebShop's ``get_human_goals``: goals without attributes are
  skipped; the price ceiling is the larger of two of the first four ``PRICE_RANGE`` values
  above the product's price (a range's price is drawn uniformly in it, as WebShop's
  ``generate_product_prices``), with a seeded rng; the text gets ", and price lower than X
  dollars"; ``goal_options`` stays a list of values; weight 1.
- otherwise WebShop's synthetic goals (``get_synthetic_goals``) from the attributes file's
  ``instruction`` and ``instruction_attributes``. WebShop makes one goal per combination of
  the product's option values (thousands for some products); WebGym draws ONE combination per
  product with the seeded rng (``goal_options`` a dict). Weights as WebShop: the mean over the
  goal's attributes of 1 / (number of goals naming that attribute).

Splits: WebShop shuffles its goals with ``random.seed(233)`` and uses goals[:500] as test,
[500:1500] as validation and the rest as train; its splits share target products. WebGym's
are disjoint by target asin: goals are shuffled with ``seed``, grouped by asin (in the order
of each asin's first goal) and whole groups are dealt to test until it holds >= 500 goals, then
to validation until it holds >= 1,000, the rest to train (so test and validation overshoot by
less than one asin's goals). With fewer than 3,000 goals (twice 500 + 1,000) the targets are
10 % each for test and validation (at least one goal each when there are three or more).

Difficulty by number of constraints (attributes + options + 1 for a price): hard >= 6,
easy <= 3, medium otherwise (the thresholds of ``tasks.difficulty`` without its distractor
share, which WebShop's data does not give).
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from webgym.shop.catalog import SCHEMA_VERSION, CatalogBuilder
from webgym.shop.schema import PRICE_RANGE, Goal, Product, Review, price_tag
from webgym.shop.tasks import NO_PRICE_LIMIT, SPLIT_NAMES, TaskSplit, make_goal

WEBSHOP_TEST_SIZE = 500
WEBSHOP_VALIDATION_SIZE = 1000
SMALL_SPLIT_SHARE = 0.1
Progress = Callable[[str], None] | None


# ----------------------------------------------------------------------------------------------
# Reading


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """The elements of a top-level JSON array, read incrementally (WebShop's full product
    file is several GB; ``json.load`` of it would need tens of GB of RAM)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as f:
        buf = ""
        pos = 0
        eof = False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            chunk = f.read(chunk_size)
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise ValueError(f"{path}: expected a JSON array")
        pos += 1
        skip_ws()
        if pos < len(buf) and buf[pos] == "]":
            return
        while True:
            skip_ws()
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError:
                    if not fill():
                        raise
            pos = end
            yield item
            skip_ws()
            if pos >= len(buf):
                raise ValueError(f"{path}: unterminated JSON array")
            if buf[pos] == ",":
                pos += 1
            elif buf[pos] == "]":
                return
            else:
                raise ValueError(f"{path}: unexpected {buf[pos]!r} at array level")


def parse_pricing(pricing: Any) -> list[float]:
    """WebShop's price parse: "$12.99" -> [12.99], "$10.99$20.99" -> [10.99, 20.99], empty ->
    [100.0]. Lenient: commas and other characters are dropped; a list of numbers is kept."""
    if isinstance(pricing, int | float) and not isinstance(pricing, bool):
        return [float(pricing)]
    if isinstance(pricing, list):
        values = []
        for v in pricing:
            values += parse_pricing(v) if isinstance(v, str) else [float(v)]
        return values[:2] or [100.0]
    if not pricing or not isinstance(pricing, str):
        return [100.0]
    values = []
    parts = pricing.split("$")[1:] if "$" in pricing else [pricing]
    for part in parts:
        cleaned = re.sub(r"[^\d.]", "", part)
        try:
            values.append(float(Decimal(cleaned)))
        except (InvalidOperation, ValueError):
            continue
    return values[:2] or [100.0]


def _options(raw: Any) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return options
    for name, contents in raw.items():
        if contents is None:
            continue
        values = []
        for content in contents:
            value = content.get("value") if isinstance(content, dict) else content
            if isinstance(value, str):
                values.append(value.strip().replace("/", " | ").lower())
        options[str(name).lower()] = values
    return options


def _score(review: dict[str, Any]) -> int:
    raw = review.get("score", review.get("stars"))
    if isinstance(raw, int | float):
        return int(round(raw))
    m = re.search(r"\d+(?:\.\d+)?", str(raw or ""))
    return int(round(float(m.group()))) if m else 0


def _reviews(raw: list[dict[str, Any]]) -> list[Review]:
    out: list[Review] = []
    for r in raw or []:
        if not isinstance(r, dict):
            continue
        body = r.get("body", r.get("review", ""))
        out.append(
            {"title": str(r.get("title") or ""), "score": _score(r), "body": str(body or "")}
        )
    return out


def _rating(raw: Any) -> float | str:
    try:
        return float(raw) if raw not in (None, "") else "N.A."
    except (TypeError, ValueError):
        m = re.search(r"\d+(?:\.\d+)?", str(raw))
        return float(m.group()) if m else "N.A."


def load_reviews(path: Path | None) -> tuple[dict[str, list[Review]], dict[str, float | str]]:
    reviews: dict[str, list[Review]] = {}
    ratings: dict[str, float | str] = {}
    if path is None:
        return reviews, ratings
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    items = data.values() if isinstance(data, dict) else data
    for item in items:
        if not isinstance(item, dict) or "asin" not in item:
            continue
        asin = item["asin"]
        reviews[asin] = _reviews(item.get("reviews") or [])
        rating = item.get("average_rating", item.get("rating"))
        if rating is not None:
            ratings[asin] = _rating(rating)
    return reviews, ratings


def convert_product(
    p: dict[str, Any],
    attributes: dict[str, Any],
    reviews: dict[str, list[Review]],
    ratings: dict[str, float | str],
) -> Product:
    """One raw WebShop product as a WebGym ``Product`` (WebShop's ``load_products`` fields)."""
    asin = p["asin"]
    small = p.get("small_description")
    if isinstance(small, list):
        bullets = [str(b) for b in small if b is not None]
    else:
        bullets = [str(small)] if small else []
    pricing = parse_pricing(p.get("pricing"))
    attrs = attributes.get(asin)
    images = p.get("images") or []
    product: Product = {
        "asin": asin,
        "name": str(p.get("name") or ""),
        "Title": str(p.get("name") or ""),
        "category": str(p.get("category") or ""),
        "product_category": str(p.get("product_category") or ""),
        "query": str(p.get("query") or "").lower().strip(),
        "pricing": pricing,
        "Price": price_tag(pricing),
        "options": _options(p.get("customization_options")),
        "Attributes": list(attrs["attributes"])
        if isinstance(attrs, dict) and "attributes" in attrs
        else ["DUMMY_ATTR"],
        "BulletPoints": bullets,
        "Description": str(p.get("full_description") or ""),
        "Reviews": reviews.get(asin, []),
        "Rating": ratings.get(asin, "N.A."),
        "MainImage": images[0] if images else None,
    }
    return product


# ----------------------------------------------------------------------------------------------
# Goals


def _price_ceiling(price: float, rng: random.Random) -> tuple[float, str]:
    """WebShop: the larger of two of the first four PRICE_RANGE values above the price."""
    price_range = [p for p in PRICE_RANGE if p > price][:4]
    if len(price_range) >= 2:
        _, upper = sorted(rng.sample(price_range, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return NO_PRICE_LIMIT, ""


def _difficulty(n_constraints: int) -> str:
    if n_constraints >= 6:
        return "hard"
    if n_constraints <= 3:
        return "easy"
    return "medium"


def _split_limits(n_goals: int) -> tuple[int, int]:
    """Target goal counts of test and validation."""
    if n_goals >= 2 * (WEBSHOP_TEST_SIZE + WEBSHOP_VALIDATION_SIZE):
        return WEBSHOP_TEST_SIZE, WEBSHOP_VALIDATION_SIZE
    if n_goals < 3:
        return 0, 0
    share = max(1, round(n_goals * SMALL_SPLIT_SHARE))
    return share, share


def assign_splits(drafts: list[dict[str, Any]], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Shuffle goal drafts (seeded) and deal whole asins to test, validation, then train."""
    order = list(drafts)
    random.Random(f"webshop-splits:{seed}").shuffle(order)
    by_asin: dict[str, list[dict[str, Any]]] = {}
    for draft in order:  # asins in the order of their first goal in the shuffled list
        by_asin.setdefault(draft["asin"], []).append(draft)
    n_test, n_validation = _split_limits(len(order))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for group in by_asin.values():
        if len(out["test"]) < n_test:
            out["test"] += group
        elif len(out["validation"]) < n_validation:
            out["validation"] += group
        else:
            out["train"] += group
    return out


# ----------------------------------------------------------------------------------------------
# Import


def import_webshop(
    products_json: Path,
    attributes_json: Path,
    out_dir: Path,
    *,
    human_goals_json: Path | None = None,
    reviews_json: Path | None = None,
    seed: int = 0,
    progress: Progress = None,
) -> Path:
    """Import WebShop's files into ``out_dir/webshop-catalog-s{seed}-v{SCHEMA}.sqlite``."""
    say = progress or (lambda _msg: None)
    products_json, attributes_json = Path(products_json), Path(attributes_json)
    with open(attributes_json, encoding="utf-8") as f:
        attributes: dict[str, Any] = json.load(f)
    say(f"attributes: {len(attributes):,} products")
    reviews, ratings = load_reviews(Path(reviews_json) if reviews_json else None)
    if reviews_json:
        say(f"reviews: {len(reviews):,} products")
    human: dict[str, list[dict[str, Any]]] | None = None
    if human_goals_json is not None:
        with open(human_goals_json, encoding="utf-8") as f:
            human = json.load(f)
        say(f"human instructions: {len(human):,} products")

    price_rng = random.Random(f"webshop-prices:{seed}")
    goal_rng = random.Random(f"webshop-goals:{seed}")
    out = Path(out_dir) / f"webshop-catalog-s{seed}-v{SCHEMA_VERSION}.sqlite"
    stats = {"skipped_bad_asin": 0, "skipped_duplicate": 0, "skipped_no_attribute_goals": 0}
    targets: dict[str, Product] = {}  # products some goal targets (goal fields come from them)
    drafts: list[dict[str, Any]] = []

    def goal_drafts(product: Product) -> None:
        asin = product["asin"]
        pricing = product["pricing"]
        price = pricing[0] if len(pricing) == 1 else price_rng.uniform(*pricing[:2])
        if human is not None:
            for ins in human.get(asin) or []:
                attrs = list(ins.get("instruction_attributes") or [])
                if not attrs:
                    stats["skipped_no_attribute_goals"] += 1
                    continue
                upper, price_text = _price_ceiling(price, price_rng)
                opts = ins.get("instruction_options") or []
                opts = list(opts.values()) if isinstance(opts, dict) else list(opts)
                text = str(ins.get("instruction") or "").strip(".") + price_text
                drafts.append(_draft(product, text, attrs, opts, upper, 1.0))
            return
        ins = attributes.get(asin)
        if not isinstance(ins, dict) or not ins.get("instruction"):
            return
        attrs = list(ins.get("instruction_attributes") or [])
        if not attrs:
            stats["skipped_no_attribute_goals"] += 1
            return
        upper, price_text = _price_ceiling(price, price_rng)
        options = product.get("options", {})
        chosen = {name: goal_rng.choice(options[name]) for name in sorted(options) if options[name]}
        option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
        option_text = " with " + option_text if option_text else ""
        text = f"{ins['instruction']}{option_text}{price_text}"
        drafts.append(_draft(product, text, attrs, chosen, upper, 0.0))

    def products() -> Iterator[Product]:
        seen: set[str] = set()
        for i, raw in enumerate(iter_json_array(products_json)):
            if i and i % 100_000 == 0:
                say(f"products: {i:,} read")
            asin = str(raw.get("asin", "nan")) if isinstance(raw, dict) else "nan"
            if asin == "nan" or len(asin) > 10:
                stats["skipped_bad_asin"] += 1
                continue
            if asin in seen:
                stats["skipped_duplicate"] += 1
                continue
            seen.add(asin)
            product = convert_product(raw, attributes, reviews, ratings)
            before = len(drafts)
            goal_drafts(product)
            if len(drafts) > before:
                targets[asin] = product
            yield product

    out.parent.mkdir(parents=True, exist_ok=True)
    with CatalogBuilder(
        out,
        source="webshop",
        meta={"seed": seed, "goals": "human" if human is not None else "synthetic"},
    ) as builder:
        n = builder.add_products(products())
        say(
            f"products: {n:,} imported ({stats['skipped_bad_asin']} bad asins, "
            f"{stats['skipped_duplicate']} duplicates skipped)"
        )
        if human is None:  # WebShop's synthetic goal weights: rarer attributes weigh more
            count: dict[str, int] = defaultdict(int)
            for d in drafts:
                for a in d["attributes"]:
                    count[a] += 1
            for d in drafts:
                d["weight"] = sum(1.0 / count[a] for a in d["attributes"]) / len(d["attributes"])
        splits = {}
        for name, group in assign_splits(drafts, seed).items():
            goals: list[Goal] = []
            for i, d in enumerate(group):
                n_constraints = (
                    len(d["attributes"])
                    + len(d["goal_options"])
                    + (d["price_upper"] < NO_PRICE_LIMIT)
                )
                goals.append(
                    make_goal(
                        targets[d["asin"]],
                        task_id=f"{name}-{i:04d}",
                        split=name,
                        instruction_text=d["instruction_text"],
                        attributes=d["attributes"],
                        goal_options=d["goal_options"],
                        price_upper=d["price_upper"],
                        difficulty=_difficulty(n_constraints),
                        weight=d["weight"],
                    )
                )
            splits[name] = TaskSplit(name, tuple(goals))
        builder.set_splits(splits)
        builder.add_meta(stats)
        path = builder.finish()
    say("tasks: " + ", ".join(f"{s.name} {s.size:,}" for s in splits.values()))
    return path


def _draft(
    product: Product,
    text: str,
    attributes: list[str],
    goal_options: dict[str, str] | list[str],
    price_upper: float,
    weight: float,
) -> dict[str, Any]:
    return {
        "asin": product["asin"],
        "instruction_text": text,
        "attributes": attributes,
        "goal_options": goal_options,
        "price_upper": float(price_upper),
        "weight": weight,
    }
