"""A scripted shopper over real HTTP: what ``webgym demo`` (the README's first command) runs.

It plays WebShop's rule baseline by hand, as a person with curl would: search the instruction,
open the first hit, pick the options the instruction names, buy, and read the reward from the
session API. It proves the whole shop path works end to end; real agents use the environment.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from webgym.shop.server import ShopServer

_RESULT_RE = re.compile(r'data-asin="([^"]+)"')
_OPTION_RE = re.compile(r'<button bid="opt_[^"]+" type="submit" name="([^"]+)" value="([^"]+)"')


def _request(url: str, data: bytes | None = None, json_body: bool = False) -> tuple[str, str]:
    headers = {"Content-Type": "application/json"} if json_body else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:  # follows the 303 redirects
        return resp.geturl(), resp.read().decode()


def play_scripted_episodes(n: int, catalog: Path | None, console: Console) -> list[dict]:
    """Play ``n`` test tasks with the rule script; print each step and a summary table."""
    import html

    results = []
    with ShopServer(catalog) as shop:
        console.print(f"shop at {shop.url} ({len(shop.catalog)} products)")
        tasks = shop.catalog.split("test").goals[:n]
        for goal in tasks:
            _, body = _request(
                f"{shop.url}/api/sessions", json.dumps({"task_id": goal["task_id"]}).encode(), True
            )
            sid = json.loads(body)["session_id"]
            root = f"{shop.url}/s/{sid}"
            console.rule(f"{goal['task_id']} [{goal.get('difficulty', '')}]")
            console.print(f"instruction: {goal['instruction_text']}")
            query = goal["instruction_text"].split(", and price")[0]
            _, page = _request(f"{root}/search?{urllib.parse.urlencode({'q': query})}")
            hits = _RESULT_RE.findall(page)
            console.print(f"  search[{query}] -> {len(hits)} hits on page 1")
            if not hits:
                results.append({"task_id": goal["task_id"], "reward": 0.0, "title": "-"})
                continue
            _, page = _request(f"{root}/item/{hits[0]}")
            console.print(f"  click[{hits[0]}]")
            instruction = goal["instruction_text"].lower()
            for dim, value in _OPTION_RE.findall(page):
                value = html.unescape(value)
                if value.lower() in instruction:
                    _request(
                        f"{root}/item/{hits[0]}/option",
                        urllib.parse.urlencode({html.unescape(dim): value}).encode(),
                    )
                    console.print(f"  click[{value}]")
            url, _ = _request(f"{root}/item/{hits[0]}/buy", b"")
            console.print(f"  click[Buy Now] -> {urllib.parse.urlparse(url).path}")
            _, body = _request(f"{shop.url}/api/sessions/{sid}")
            purchase = json.loads(body)["purchase"]
            console.print(f"  bought {purchase['title'][:70]!r}: reward {purchase['reward']:.3f}")
            results.append(
                {
                    "task_id": goal["task_id"],
                    "reward": purchase["reward"],
                    "title": purchase["title"],
                }
            )
    table = Table(title="scripted episodes (WebShop rule baseline, by hand)")
    table.add_column("task")
    table.add_column("reward", justify="right")
    for r in results:
        table.add_row(r["task_id"], f"{r['reward']:.3f}")
    mean = sum(r["reward"] for r in results) / max(1, len(results))
    table.add_row("Score (mean x 100)", f"{100 * mean:.1f}")
    console.print(table)
    return results
