"""Prompt coverage: does the LM policy's prompt still show what a shopper needs at a budget?

    python -m webgym_benchmarks.perf.prompt_coverage [--tasks 40] [--agents rule random]
                                              [--budgets 256 384 512] [--layout both]
                                              [--page-field text] [--json out.json]

Plays the agents (``rule`` and ``random`` by default; ``random`` with one seed per task) on the
first ``--tasks`` train tasks in text mode (``WebGym-ShoppingText-v0``), builds the ``lm``
policy's prompt (:func:`webgym_agents.policies.lm_agent.build_prompt`) of every observation at every
budget,
and prints, per page kind and budget, the share of prompts that show **every candidate product's
title and price**. Only the tokenizer and chat template matter here: the prompts are built with
``tiny-lm``, which is SmolLM2's vendored tokenizer and template
(``agents/models/assets/smollm2_tokenizer``) on random 2-layer weights that are never run, so no
model weights are read.

What the page offers is read from the observation's accessibility tree by this script's own
parser (not the prompt builder's):

* ``results``: every ``listitem`` with an ``item_...`` link: its title (the link's name) and its
  price (the ``$...`` text of the same list item);
* ``item``: the product's heading and its ``Price: ...`` text;
* ``sub-page`` (Description / Features / Reviews / Attributes): the product's heading; these
  pages show no price, so only the title is required;
* ``search``: no product; the share is vacuous (100 %) and shown as ``-``.

A product is *shown* when its title occurs in the prompt within 40 characters of an occurrence
of its price (either order: ``Title [SEP] $19.49`` in page text, ``Title | $19.49`` in an action
label); where the page has no price, when its title occurs. A prompt counts when every product
of its page is shown (``title+price``). The table also gives the shares of prompts with every
price shown (anywhere) and with every title shown (anywhere), the share of all the pages'
products that are shown (``products``), and the mean prompt length in tokens.

``--layout`` picks the prompt layout (:class:`~webgym_agents.policies.lm_agent.PromptConfig`
``layout``):
``shopper`` (the default: product titles and prices inside the action labels, a product header on
item pages, the page text after them), ``page-first`` (the layout and system message of format-1
checkpoints, i.e. the prompts of the recorded ``bc`` run: the page first, then the action list),
or ``both``. Deterministic: the same arguments print the same
table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Any

KINDS = ("search", "results", "item", "sub-page")
PAIR_WINDOW = 40  # characters between a title and its price for the pair to count as shown
MAX_STEPS = 15

_LINE = re.compile(
    r"^(?P<depth>\t*)(?:\[(?P<bid>[^\]]+)\] )?(?P<role>\S+)(?: '(?P<name>(?:[^'\\]|\\.)*)')?"
)


@dataclass(frozen=True)
class Product:
    title: str
    price: str | None  # None: the page shows no price (sub-pages)


def _nodes(axtree: str) -> list[tuple[int, str | None, str, str]]:
    out = []
    for line in axtree.splitlines():
        m = _LINE.match(line)
        if m:
            name = (m.group("name") or "").replace("\\'", "'").replace("\\\\", "\\")
            out.append((len(m.group("depth")), m.group("bid"), m.group("role"), name))
    return out


def page_kind(obs: dict[str, Any]) -> str:
    """``search`` / ``results`` / ``item`` / ``sub-page`` / ``other``, from the URL's path."""
    path = str(obs.get("url") or "").split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if "item" in parts:
        return "item" if parts[-2:-1] == ["item"] else "sub-page"
    if parts and parts[-1] == "search":
        return "results"
    if any(role in ("textbox", "searchbox") for _, _, role, _ in _nodes(obs.get("axtree", ""))):
        return "search"
    return "other"


def page_products(obs: dict[str, Any], kind: str) -> list[Product]:
    """The candidate products a shopper must see on this page (see the module docstring)."""
    nodes = _nodes(str(obs.get("axtree") or ""))
    if kind == "results":
        products, current, depth = [], None, -1
        for d, bid, role, name in nodes:
            if current is not None and d <= depth:
                products.append(current)
                current = None
            if role == "listitem":
                current, depth = {"title": None, "price": None}, d
            elif current is not None:
                if bid and bid.startswith("item_") and current["title"] is None:
                    current["title"] = name
                elif role == "StaticText" and name.startswith("$") and current["price"] is None:
                    current["price"] = name
        if current is not None:
            products.append(current)
        return [Product(p["title"], p["price"]) for p in products if p["title"]]
    if kind in ("item", "sub-page"):
        title = next((name for _, _, role, name in nodes if role == "heading" and name), None)
        price = next(
            (
                name.removeprefix("Price:").strip()
                for _, _, role, name in nodes
                if role == "StaticText" and name.startswith("Price:")
            ),
            None,
        )
        return [Product(title, price)] if title else []
    return []


def _positions(text: str, needle: str) -> list[int]:
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


def shown(prompt: str, product: Product) -> tuple[bool, bool, bool]:
    """``(title and price together, price anywhere, title anywhere)`` for one product."""
    titles = _positions(prompt, product.title)
    if product.price is None:
        return bool(titles), True, bool(titles)
    prices = _positions(prompt, product.price)
    together = any(
        (0 <= p - (t + len(product.title)) <= PAIR_WINDOW)
        or (0 <= t - (p + len(product.price)) <= PAIR_WINDOW)
        for t in titles
        for p in prices
    )
    return together, bool(prices), bool(titles)


def collect(n_tasks: int, agent_names: list[str]) -> list[dict[str, Any]]:
    """Every observation (before each action) of each agent's episode on train tasks."""
    import gymnasium as gym

    import webgym  # noqa: F401  (registers the environments)
    from webgym_agents import make_agent

    env = gym.make("WebGym-ShoppingText-v0")
    seen: list[dict[str, Any]] = []
    try:
        for name in agent_names:
            agent = make_agent(name)
            for t in range(n_tasks):
                obs, _ = env.reset(options={"task_id": f"train-{t:04d}"})
                agent.reset(obs["goal"], seed=t)
                for _ in range(MAX_STEPS):
                    seen.append(dict(obs))
                    obs, _, terminated, truncated, _ = env.step(agent.act(obs))
                    if terminated or truncated:
                        break
    finally:
        env.close()
    return seen


def measure(
    observations: list[dict[str, Any]],
    budgets: list[int],
    layouts: list[str | None],
    page_field: str,
) -> list[dict[str, Any]]:
    from webgym_agents.models import load_backbone
    from webgym_agents.policies.lm_agent import PromptConfig, build_prompt

    backbone = load_backbone("tiny-lm")  # SmolLM2's tokenizer and chat template
    has_layout = "layout" in {f.name for f in fields(PromptConfig)}
    try:  # page-first prompts as format-1 checkpoints were trained on them
        from webgym_agents.policies.lm_agent import LEGACY_SYSTEM_PROMPT
    except ImportError:
        LEGACY_SYSTEM_PROMPT = None
    rows = []
    acc: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for obs in observations:
        kind = page_kind(obs)
        if kind not in KINDS:
            continue
        products = page_products(obs, kind)
        for layout in layouts:
            for budget in budgets:
                kw: dict[str, Any] = {"max_prompt_tokens": budget, "page_field": page_field}
                if has_layout and layout is not None:
                    kw["layout"] = layout
                    if layout == "page-first" and LEGACY_SYSTEM_PROMPT is not None:
                        kw["system_prompt"] = LEGACY_SYSTEM_PROMPT
                prompt = build_prompt(obs, backbone, PromptConfig(**kw))
                marks = [shown(prompt, p) for p in products]
                a = acc[(layout or "current", kind, budget)]
                a["n"] += 1
                a["products"] += len(products)
                a["together"] += all(m[0] for m in marks)
                a["price"] += all(m[1] for m in marks)
                a["title"] += all(m[2] for m in marks)
                a["shown_products"] += sum(m[0] for m in marks)
                a["tokens"] += len(backbone.encode_text(prompt))
    for (layout, kind, budget), a in sorted(
        acc.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]), kv[0][2])
    ):
        n = a["n"]
        rows.append(
            {
                "layout": layout,
                "kind": kind,
                "budget": budget,
                "prompts": int(n),
                "products_per_prompt": a["products"] / n,
                "title_and_price": a["together"] / n,
                "every_price": a["price"] / n,
                "every_title": a["title"] / n,
                "products_shown": a["shown_products"] / a["products"] if a["products"] else 1.0,
                "mean_tokens": a["tokens"] / n,
            }
        )
    return rows


def _pct(x: float, vacuous: bool) -> str:
    return "-" if vacuous else f"{100 * x:5.1f}%"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'layout':<10} {'page':<9} {'budget':>6} {'prompts':>7} {'prod/p':>6} "
        f"{'title+price':>11} {'every price':>11} {'every title':>11} {'products':>8} "
        f"{'tokens':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        vac = r["products_per_prompt"] == 0
        print(
            f"{r['layout']:<10} {r['kind']:<9} {r['budget']:>6} {r['prompts']:>7} "
            f"{r['products_per_prompt']:>6.1f} {_pct(r['title_and_price'], vac):>11} "
            f"{_pct(r['every_price'], vac):>11} {_pct(r['every_title'], vac):>11} "
            f"{_pct(r['products_shown'], vac):>8} {r['mean_tokens']:>6.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=40, help="first N train tasks per agent")
    ap.add_argument("--agents", nargs="+", default=["rule", "random"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[256, 384, 512])
    ap.add_argument("--layout", choices=["shopper", "page-first", "both"], default="both")
    ap.add_argument("--page-field", choices=["text", "axtree"], default="text")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    layouts: list[str | None] = (
        ["page-first", "shopper"] if args.layout == "both" else [args.layout]
    )
    t0 = time.perf_counter()
    observations = collect(args.tasks, args.agents)
    rows = measure(observations, args.budgets, layouts, args.page_field)
    print(
        f"{len(observations)} observations ({', '.join(args.agents)} on train-0000.."
        f"train-{args.tasks - 1:04d}, text mode), page field {args.page_field!r}, "
        f"SmolLM2 tokenizer; {time.perf_counter() - t0:.0f} s"
    )
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
