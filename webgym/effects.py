"""Action-effect labels: did the action change the state? y = 1[d(s, s') >= eps].

Digi-Q fine-tunes its critic's representation on this label before any TD learning. Two
distances, both reported on every step:

- ``pixel``: Digi-Q's: the mean squared difference of the two screenshots downscaled to a
  quarter of the pixels (half width, half height, box-averaged), on the 0-255 scale, over all
  channels. Browser mode only.
- ``text``: 1 - the normalised Indel similarity (rapidfuzz ``ratio`` / 100) of the two
  accessibility-tree texts, which carry the page's text and element states (a chosen option
  shows ``checked``), in [0, 1]. Both modes.

The label is the pixel label in browser mode (Digi-Q's definition) and the text label in text
mode. Pages are rendered deterministically, so an action without effect gives exactly 0 on both
distances: a no-op, a failed action, scrolling a page that cannot scroll, a click on an inert
target (a heading, a text, an image: ``obs["clickable_actions"]`` less ``available_actions``).
In the browser a click on an inert target below the fold scrolls it into view first (Playwright
clicks so), which moves pixels: label 1 there, 0 in text mode.
``benchmarks/perf/effect_balance.py`` measures how often the label is 1 per page type when a
behaviour mixes random clicks on every click target into the rule agent's actions. The default
thresholds come from ``benchmarks/perf/effect_thresholds.py``, which measures the distances of
no-ops, failed actions, option choices and navigations over real episodes; ``EffectThresholds``
quotes the figures. Imports nothing from WebGym.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Indel


@dataclass(frozen=True)
class EffectThresholds:
    """eps for each distance. Measured by ``python -m webgym_benchmarks.perf.effect_thresholds``
    (browser mode, 1280x720, 12 test tasks, 2026-11-25):

    | kind                      | pixel min / median / max | text min / median / max |
    |---------------------------|--------------------------|-------------------------|
    | no-op, failed action      | 0 / 0 / 0                | 0 / 0 / 0               |
    | same option chosen again  | 0 / 0 / 0                | 0 / 0 / 0               |
    | option choice             | 43.3 / 63.0 / 87.1       | 0.0029 / 0.0030 / 0.0044|
    | navigation                | 264 / 801 / 1013         | 0.197 / 0.339 / 0.378   |

    Digi-Q's pixel eps of 30 separates them (the smallest real effect, an option choice, is
    43), so we keep it. The text eps sits between 0 and the smallest option choice. A scroll
    changes pixels but not the text: label 1 in browser mode, 0 in text mode.
    """

    pixel: float = 30.0
    text: float = 1e-3


def downscale_sum(screenshot: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 blocks (a quarter of the pixels): 4x the box average, as int16 (<= 1020).

    Integer strided sums rather than a float reshape-mean: about 10x faster on 1280x720."""
    h, w = screenshot.shape[0] // 2 * 2, screenshot.shape[1] // 2 * 2
    x = screenshot[:h, :w].astype(np.int16)
    return x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]


def pixel_distance(before: np.ndarray, after: np.ndarray) -> float:
    """Mean squared difference of the half-size (box-averaged) screenshots, 0-255 scale."""
    if before.shape != after.shape:
        return float("inf")  # a different viewport is a different state
    if np.array_equal(before, after):
        return 0.0  # every no-op: skip the arithmetic
    diff = (downscale_sum(before) - downscale_sum(after)).astype(np.float64).ravel()
    return float(np.dot(diff, diff)) / diff.size / 16.0  # exact: integers far below 2**53


def text_distance(before: str, after: str) -> float:
    """1 - normalised Indel similarity: 0 for identical texts, 1 for nothing in common."""
    return float(Indel.normalized_distance(before, after))


def action_effect(
    before_text: str,
    after_text: str,
    before_pixels: np.ndarray | None = None,
    after_pixels: np.ndarray | None = None,
    thresholds: EffectThresholds = EffectThresholds(),
) -> dict:
    """The ``info["action_effect"]`` record of one transition."""
    d_text = text_distance(before_text, after_text)
    effect: dict = {
        "text_distance": d_text,
        "text_eps": thresholds.text,
        "text_label": int(d_text >= thresholds.text),
    }
    if before_pixels is not None and after_pixels is not None:
        d_pixel = pixel_distance(before_pixels, after_pixels)
        effect.update(
            pixel_distance=d_pixel,
            pixel_eps=thresholds.pixel,
            pixel_label=int(d_pixel >= thresholds.pixel),
        )
        effect["label"] = effect["pixel_label"]
    else:
        effect["label"] = effect["text_label"]
    return effect
