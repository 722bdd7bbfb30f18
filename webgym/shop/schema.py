"""The product and goal records every part of the shop passes around.

They follow WebShop's in-memory schema (``web_agent_site/engine/engine.py::load_products`` and
``engine/goal.py``), so WebShop's reward functions and WebShop's own data work unchanged.
This module imports nothing from the rest of WebGym.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict


class Review(TypedDict):
    title: str
    score: int  # 1-5 stars
    body: str


class Product(TypedDict, total=False):
    asin: str  # 10 characters, unique
    name: str  # the listing title
    Title: str  # same as name (WebShop keeps both)
    category: str  # top-level shop category, e.g. "beauty"
    product_category: str  # breadcrumb "a › b › c" (U+203A between levels)
    query: str  # the lower-case search query the product belongs to, e.g. "shampoo"
    pricing: list[float]  # [price] or [low, high]
    Price: str  # "$12.99" or "$10.99 to $20.99"
    options: dict[str, list[str]]  # dimension (lower case) -> values (lower case)
    Attributes: list[str]  # short lower-case attribute phrases, e.g. "sulfate free"
    BulletPoints: list[str]
    Description: str
    Reviews: list[Review]
    Rating: float | str  # 1.0-5.0, or "N.A."
    MainImage: str | None  # URL of the main image, None for a generated thumbnail


class Goal(TypedDict, total=False):
    task_id: str  # "<split>-<n>", e.g. "test-0042"
    split: str  # "train" | "validation" | "test" | "ood"
    asin: str  # the target product
    category: str
    query: str
    name: str  # the target product's name (the type reward compares nouns with it)
    product_category: str
    instruction_text: str  # what the agent reads
    attributes: list[str]  # goal attributes, each matched against the bought product
    goal_options: dict[str, str] | list[str]  # dimension -> value (synthetic) or values (human)
    price_upper: float
    weight: float
    difficulty: str  # "easy" | "medium" | "hard"


class Purchase(TypedDict):
    """What Buy Now records in the session, reward included (WebShop's ``get_reward`` info)."""

    asin: str
    title: str
    price: float
    options: dict[str, str]
    reward: float
    info: dict[str, Any]


# The done page carries its session's purchase in this response header (JSON, ASCII), so a
# client learns the reward from the same response as the page: a browser and the in-process
# page read it from the document they were served, with no second request.
PURCHASE_HEADER = "x-webgym-purchase"


def purchase_header(purchase: Purchase) -> dict[str, str]:
    """The response header that carries ``purchase``."""
    return {PURCHASE_HEADER: json.dumps(purchase, separators=(",", ":"))}


def purchase_from_headers(headers: Mapping[str, str]) -> Purchase | None:
    """The purchase a response carries (header names lower-case), or None."""
    value = headers.get(PURCHASE_HEADER)
    return json.loads(value) if value else None


PRICE_RANGE = [10.0 * i for i in range(1, 100)]  # WebShop's price ceilings
CATEGORY_SEPARATOR = "›"


def price_tag(pricing: list[float]) -> str:
    """WebShop's display price: "$12.99" or "$10.99 to $20.99"."""
    if len(pricing) == 1:
        return f"${pricing[0]:.2f}"
    return f"${pricing[0]:.2f} to ${pricing[1]:.2f}"


def as_product(raw: dict[str, Any]) -> Product:
    """Fill the derived fields (Title, Price) of a product record that has the primary ones."""
    product: Product = dict(raw)  # type: ignore[assignment]
    product.setdefault("Title", product["name"])
    product.setdefault("Price", price_tag(product["pricing"]))
    return product
