"""Deterministic product thumbnails drawn with Pillow (no image files, no network).

The picture depends only on the product's asin, category and query, so the same product always
looks the same in a screenshot. Imports only ``webgym.shop.schema``.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from webgym.shop.schema import Product

SIZE = 160
_PALETTE = [
    (232, 93, 74),
    (242, 153, 74),
    (242, 201, 76),
    (111, 207, 151),
    (39, 174, 96),
    (45, 156, 219),
    (47, 128, 237),
    (155, 81, 224),
    (187, 107, 217),
    (235, 87, 150),
    (130, 130, 130),
    (86, 204, 242),
    (33, 150, 83),
    (242, 110, 134),
    (160, 120, 90),
]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@lru_cache(maxsize=4096)
def thumbnail_png(asin: str, category: str, query: str) -> bytes:
    """A 160x160 PNG: a category-coloured card, a product-shaped glyph and the type's name."""
    d = _digest(asin)
    base = _PALETTE[_digest(category)[0] % len(_PALETTE)]
    accent = _PALETTE[d[1] % len(_PALETTE)]
    img = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle(
        (6, 6, SIZE - 6, SIZE - 6), radius=14, fill=tuple(c // 3 + 170 for c in base)
    )
    cx, cy, r = SIZE // 2, 66, 30 + d[2] % 14
    shape = d[3] % 4
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == 0:
        draw.ellipse(box, fill=accent, outline=base, width=4)
    elif shape == 1:
        draw.rounded_rectangle(box, radius=10, fill=accent, outline=base, width=4)
    elif shape == 2:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=accent, outline=base)
    else:  # a bottle
        draw.rounded_rectangle((cx - r // 2, cy - r, cx + r // 2, cy + r), radius=8, fill=accent)
        draw.rectangle((cx - r // 5, cy - r - 12, cx + r // 5, cy - r), fill=base)
    for i in range(3):  # a few deterministic stripes so that siblings differ
        y = cy - r // 2 + i * r // 2
        if d[4 + i] % 2:
            draw.line((cx - r // 2, y, cx + r // 2, y), fill=(255, 255, 255), width=3)
    font = ImageFont.load_default()
    label = query[:22]
    width = draw.textlength(label, font=font)
    draw.text(((SIZE - width) / 2, 122), label, fill=(40, 40, 40), font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def product_thumbnail(product: Product) -> bytes:
    return thumbnail_png(product["asin"], product.get("category", ""), product.get("query", ""))
