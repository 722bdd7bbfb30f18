"""Shopping tasks (WebShop goals) and the fixed train / validation / test splits.

``generate_goals`` draws WebShop-style synthetic goals from a catalog, split by target product;
``generate_ood_goals`` draws the ``ood`` split's the same way from products of types no other
split has (``webgym.shop.synthetic.OOD_PRODUCT_TYPES``); ``make_goal`` builds one goal from a
product and the parts a goal states (also used to import WebShop's human instructions).
Imports only ``webgym.shop.schema``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from webgym.shop.schema import PRICE_RANGE, Goal, Product

SPLIT_NAMES = ("train", "validation", "test")  # the in-distribution splits every catalog has
OOD_SPLIT = "ood"  # held out by product type: only the synthetic ood catalog has it


@dataclass(frozen=True)
class TaskSplit:
    """A named, fixed list of goals. ``hash`` identifies its exact content (results record it)."""

    name: str
    goals: tuple[Goal, ...]
    _by_id: dict[str, Goal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {g["task_id"]: g for g in self.goals})

    @property
    def size(self) -> int:
        return len(self.goals)

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the goals, in order."""
        blob = json.dumps(list(self.goals), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def task_ids(self) -> list[str]:
        return [g["task_id"] for g in self.goals]

    def task(self, task_id: str) -> Goal:
        try:
            return self._by_id[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} in split {self.name!r}") from None

    def __len__(self) -> int:
        return len(self.goals)

    def __iter__(self) -> Iterator[Goal]:
        return iter(self.goals)


# ---------------------------------------------------------------------------------------------
# Goal generation
# ---------------------------------------------------------------------------------------------

DEFAULT_SPLIT_SIZES = {"train": 2000, "validation": 250, "test": 500}
OOD_SPLIT_SIZE = 500  # as test: the same standard errors for the in- and out-of-type figures
NO_PRICE_LIMIT = 1_000_000.0  # WebShop's price_upper when the goal states no price
OPENERS = (
    "i need", "i want", "i am looking for", "find me", "i'm looking for", "i would like",
    "get me", "i am shopping for", "help me find", "i want to buy",
)  # fmt: skip
_POSTFIX = (
    "for ",
    "with ",
    "from ",
    "in ",
    "made ",
    "to ",
    "fits ",
)  # attributes read after the noun


def difficulty(n_constraints: int, distractor_share: float) -> str:
    """The difficulty label of a goal.

    ``n_constraints`` = goal attributes + goal options + 1 if a price is stated;
    ``distractor_share`` = share of the other same-query products that fail at least one of
    them (same type, same search query, wrong item: only its item page tells). The rule:
    hard: >= 6 constraints, or >= 4 constraints and >= 97 % of same-type products are distractors;
    easy: <= 3 constraints and <= 90 % distractors (one in ten same-type products also fits);
    medium: everything else.
    """
    if n_constraints >= 6 or (n_constraints >= 4 and distractor_share >= 0.97):
        return "hard"
    if n_constraints <= 3 and distractor_share <= 0.9:
        return "easy"
    return "medium"


def make_goal(
    product: Product,
    *,
    task_id: str,
    split: str,
    instruction_text: str,
    attributes: list[str],
    goal_options: dict[str, str] | list[str],
    price_upper: float,
    difficulty: str,
    weight: float = 1.0,
) -> Goal:
    """A goal whose product fields (asin, category, query, name, ...) come from ``product``."""
    return {
        "task_id": task_id,
        "split": split,
        "asin": product["asin"],
        "category": product["category"],
        "query": product["query"],
        "name": product["name"],
        "product_category": product["product_category"],
        "instruction_text": instruction_text,
        "attributes": list(attributes),
        "goal_options": goal_options if isinstance(goal_options, list) else dict(goal_options),
        "price_upper": float(price_upper),
        "weight": float(weight),
        "difficulty": difficulty,
    }


def price_ceiling(price: float, rng: random.Random) -> float:
    """WebShop's rule: the larger of two of the first four ceilings above the price."""
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) < 2:
        return NO_PRICE_LIMIT
    return max(rng.sample(above, 2))


def instruction(
    rng: random.Random, query: str, attributes: list[str], options: dict[str, str], price: float
) -> str:
    """WebShop-style synthetic instruction text naming type, attributes, options and price."""
    before = [a for a in attributes if not a.startswith(_POSTFIX)]
    after = [a for a in attributes if a.startswith(_POSTFIX)]
    opener = rng.choice(OPENERS)
    text = " ".join(part for part in (opener, _join(before), query, _join(after)) if part)
    if options:
        text += ", with " + _join([f"{dim}: {value}" for dim, value in options.items()])
    if price < NO_PRICE_LIMIT:
        text += f", and price lower than {price:.2f} dollars"
    return text


def _join(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


class _SameQuery:
    """The products of one query, indexed to count which of them satisfy a goal's constraints."""

    def __init__(self, products: list[Product]) -> None:
        self.size = len(products)
        self.by_attribute: dict[str, set[int]] = {}
        self.by_option: dict[tuple[str, str], set[int]] = {}
        for i, product in enumerate(products):
            for attribute in product.get("Attributes", []):
                self.by_attribute.setdefault(attribute, set()).add(i)
            for dim, values in product.get("options", {}).items():
                for value in values:
                    self.by_option.setdefault((dim, value), set()).add(i)
        self.prices = [product["pricing"][0] for product in products]

    def with_options(self, options: dict[str, str]) -> set[int]:
        """The products offering every one of ``options`` (dimension, value) pairs."""
        fits = set(range(self.size))
        for item in options.items():
            fits &= self.by_option.get(item, set())
        return fits

    def n_satisfying(
        self, attributes: list[str], options: dict[str, str], price_upper: float
    ) -> int:
        """How many products have every attribute and option value and cost <= price_upper."""
        sets = [self.by_attribute.get(a, set()) for a in attributes]
        sets += [self.by_option.get(item, set()) for item in options.items()]
        sets.sort(key=len)
        fits = set(sets[0]) if sets else set(range(self.size))
        for other in sets[1:]:
            fits &= other
        return sum(self.prices[i] <= price_upper for i in fits)


def _split_sizes(n_goals: dict[str, int] | None, n_products: int) -> dict[str, int]:
    sizes = {**DEFAULT_SPLIT_SIZES, **(n_goals or {})}
    total = sum(sizes.values())
    if total > n_products:  # one goal per target product: shrink every split in proportion
        sizes = {name: size * n_products // total for name, size in sizes.items()}
    return sizes


def generate_goals(
    products: list[Product], n_goals: dict[str, int] | None = None, seed: int = 0
) -> dict[str, TaskSplit]:
    """Synthetic goals for the train / validation / test splits, deterministic in the arguments.

    Default sizes: train 2000, validation 250, test 500 (``DEFAULT_SPLIT_SIZES``); ``n_goals``
    overrides some or all. Each goal targets a distinct product, so for a catalog with fewer
    products than goals all splits shrink in proportion. Splits are disjoint by target asin:
    products are first dealt to splits (round robin over queries, so every split covers the
    product types evenly), then one goal is drawn per product with an rng seeded by split.

    A goal states 1-3 of the target's attributes (preferring those the same-query products
    offering the goal's options lack and those the target's title and indexed text do not
    name), one value of some or all of its option dimensions, and a price ceiling by WebShop's
    rule from the target's lowest price ``pricing[0]`` (WebShop samples a price within a range;
    the low end keeps the target always affordable).
    """
    sizes = _split_sizes(n_goals, len(products))
    dealt, same_query = _deal(products, random.Random(f"webgym-splits:{seed}"))
    splits, start = {}, 0
    for name in ("test", "validation", "train"):
        targets, start = dealt[start : start + sizes[name]], start + sizes[name]
        splits[name] = _split(name, targets, seed, same_query)
    return {name: splits[name] for name in SPLIT_NAMES}


def generate_ood_goals(
    products: list[Product], size: int = OOD_SPLIT_SIZE, seed: int = 0
) -> TaskSplit:
    """The ``ood`` split: ``size`` goals (fewer when there are fewer products) drawn from
    ``products`` as ``generate_goals`` draws its splits' (dealt round robin over queries, one
    goal per target product), with rngs of its own. ``products`` are the out-of-distribution
    types' only, so every distractor of the same query is one too."""
    dealt, same_query = _deal(products, random.Random(f"webgym-splits:{seed}:{OOD_SPLIT}"))
    return _split(OOD_SPLIT, dealt[: min(size, len(dealt))], seed, same_query)


def _deal(
    products: list[Product], rng: random.Random
) -> tuple[list[Product], dict[str, _SameQuery]]:
    """The products in dealing order (queries shuffled, then one product of each in turn) and
    the same-query index of each query."""
    by_query: dict[str, list[Product]] = {}
    for product in products:
        by_query.setdefault(product["query"], []).append(product)
    same_query = {query: _SameQuery(group) for query, group in by_query.items()}
    groups = [list(group) for group in by_query.values()]
    for group in groups:
        rng.shuffle(group)
    rng.shuffle(groups)
    dealt = [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]
    return dealt, same_query


def _split(
    name: str, targets: list[Product], seed: int, same_query: dict[str, _SameQuery]
) -> TaskSplit:
    """One goal per target, task ids ``<name>-0000`` on, from an rng seeded by the split."""
    split_rng = random.Random(f"webgym-goals:{seed}:{name}")
    goals = [
        _draw_goal(split_rng, p, f"{name}-{i:04d}", name, same_query[p["query"]])
        for i, p in enumerate(targets)
    ]
    return TaskSplit(name, tuple(goals))


def _indexed_text(product: Product) -> tuple[str, str]:
    """(title, title + first bullet + description), lower-cased: what search sees of a product."""
    title = (product.get("Title") or product.get("name") or "").lower()
    bullets = product.get("BulletPoints") or [""]
    rest = " ".join((bullets[0] if bullets else "", product.get("Description", "")))
    return title, f"{title} {rest.lower()}"


def _draw_goal(rng, product, task_id, split, same: _SameQuery) -> Goal:
    dims = list(product.get("options", {}))
    if dims and rng.random() >= 0.6:  # 60 % of goals name every dimension, as WebShop's do
        dims = sorted(rng.sample(dims, rng.randint(0, len(dims))), key=dims.index)
    options = {d: rng.choice(product["options"][d]) for d in dims}
    # Attributes: never one that every same-query product has (unless the target has nothing
    # else); then those the target's title does not name; then the lowest sum of: share of the
    # same-query products offering the goal's options (its family, mostly: siblings share
    # options) that have it, share of all same-query products that have it, 0.5 if the
    # target's indexed text (title, first bullet, description) names it, and a random jitter.
    # So the search ranks the target among distractors and only item pages tell them apart.
    own = product.get("Attributes", [])
    n_others = same.size - 1
    compatible = same.with_options(options)
    n_compatible = max(1, len(compatible) - 1)
    title, indexed = _indexed_text(product)

    def key(a: str) -> tuple[bool, bool, float]:
        holders = same.by_attribute[a]
        shared_by_all = len(holders) - 1 >= n_others
        share = (len(holders & compatible) - 1) / n_compatible
        rarity = (len(holders) - 1) / max(1, n_others)
        score = share + rarity + 0.5 * (a in indexed) + 0.4 * rng.random()
        return shared_by_all, a in title, score

    ranked = sorted(own, key=key)
    attributes = ranked[: min(len(own), rng.choices((1, 2, 3), (25, 45, 30))[0])]
    price_upper = price_ceiling(product["pricing"][0], rng)
    n_constraints = len(attributes) + len(options) + (price_upper < NO_PRICE_LIMIT)
    failing = n_others - (same.n_satisfying(attributes, options, price_upper) - 1)
    text = instruction(rng, product["query"], attributes, options, price_upper)
    return make_goal(
        product,
        task_id=task_id,
        split=split,
        instruction_text=text,
        attributes=attributes,
        goal_options=options,
        price_upper=price_upper,
        difficulty=difficulty(n_constraints, failing / max(1, n_others)),
    )
