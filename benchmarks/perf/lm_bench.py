"""LM policy speed and memory on this CPU, per backbone, one table.

    python -m webgym_benchmarks.perf.lm_bench [--models tiny-lm minilm smollm2-135m] [--reps 3]
                                       [--train-reps 2] [--model-cache DIR] [--json out.json]

The parent plays the first steps of one text-mode task (``WebGym-ShoppingText-v0``, seed 0: the
search page, the results page of the instruction's query, the first item's page), writes those
observations to a file and measures each backbone in a FRESH subprocess, so that each peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that model's alone.

Causal LMs (``tiny-lm``, ``smollm2-135m``), through
:class:`webgym_agents.policies.lm_agent.LMPolicy` with
the default :class:`~webgym_agents.policies.lm_agent.PromptConfig` (1024-token budget, page text):

* ``choice`` latency: ``policy.act(obs, mode="choice", temperature=0)`` on the results page and
  on the item page (prompt + every real available action scored, one key/value-shared pass);
  one warm-up call, then the median of ``--reps``;
* ``generate`` latency: ``policy.act(obs, mode="generate", temperature=0)`` on the item page with
  ``max_new_tokens=32``; the table shows how many tokens were actually produced (an early
  end-of-turn token stops generation before 32);
* training throughput: samples/s of one forward + backward of ``policy.action_logprobs`` on a
  batch of 8 (prompt, action) pairs drawn from the three pages (median of ``--train-reps``,
  no warm-up: the first step is timed too).

Encoders (``minilm``) cannot generate nor score likelihoods: for them the "choice" columns are
the latency of one feature-extraction forward (``Backbone.hidden_states``, [CLS] position, no
grad) of the same page's prompt (plain text, cut at 512 tokens), "generate" is n/a, and the
training column is forward + backward of a value-head regression (``ValueHead`` on [CLS], MSE)
on batches of 8 of the same prompts. The table says so in its ``op`` column.

A real model that is not prepared (``webgym models fetch``) is reported and skipped.
``--model-cache`` points the children at another WebGym cache for the model files only (the
observations always come from the parent's env). The machine's load average is printed: other
processes on a 2-core machine slow every number down.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = ("tiny-lm", "minilm", "smollm2-135m")
PAGES = ("search", "results", "item")


# -------------------------------------------------------------------------------- observations


def _jsonable(obs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in obs.items():
        if k in ("screenshot", "html"):
            continue
        if hasattr(v, "tolist"):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def collect_observations(seed: int = 0) -> dict[str, Any]:
    """The search, results and item pages of one task, and 8 (page, action) training pairs."""
    import gymnasium as gym

    import webgym  # noqa: F401
    from webgym_agents.observation import goal_without_price

    env = gym.make("WebGym-ShoppingText-v0")
    try:
        search, _ = env.reset(seed=seed)
        query = " ".join(goal_without_price(search["goal"]).split())
        results, *_ = env.step(f"search[{query}]")
        item_action = next(a for a in results["available_actions"] if "item_" in a)
        item, *_ = env.step(item_action)
    finally:
        env.close()
    pages = {"search": search, "results": results, "item": item}
    pairs = [
        ("search", f"search[{query}]"),
        ("results", item_action),
        ("results", "click('next_page')"),
        ("item", item["available_actions"][2]),
        ("item", "click('buy_now')"),
        ("search", "search[" + " ".join(query.split()[:3]) + "]"),
        ("results", results["available_actions"][-1]),
        ("item", "click('tab_features')"),
    ]
    return {"pages": {k: _jsonable(v) for k, v in pages.items()}, "pairs": pairs}


# -------------------------------------------------------------------------------- child


def _timed(fn, reps: int, warmup: int = 1) -> tuple[float, Any]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(name: str, obs_file: str, reps: int, train_reps: int) -> dict[str, Any]:
    import torch

    from webgym_agents.models import ValueHead, load_backbone
    from webgym_agents.policies.lm_agent import LMPolicy, PromptConfig, build_prompt

    data = json.loads(Path(obs_file).read_text())
    pages, pairs = data["pages"], data["pairs"]
    t0 = time.perf_counter()
    backbone = load_backbone(name)
    load_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "model": name,
        "kind": backbone.kind,
        "params_m": sum(p.numel() for p in backbone.model.parameters()) / 1e6,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
    }
    if backbone.is_causal:
        policy = LMPolicy(backbone, PromptConfig(), max_new_tokens=32)
        prompts = {k: policy.prompt(v) for k, v in pages.items()}
        row["prompt_tokens"] = {k: len(backbone.encode_text(p)) for k, p in prompts.items()}
        row["n_actions"] = {k: len(v["available_actions"]) for k, v in pages.items()}
        row["op"] = "act(choice) / act(generate) / action_logprobs fwd+bwd"
        for page in ("results", "item"):
            s, _ = _timed(lambda p=page: policy.act(pages[p], mode="choice", temperature=0.0), reps)
            row[f"choice_{page}_s"] = s
        s, _ = _timed(lambda: policy.decide(pages["item"], mode="generate", temperature=0.0), reps)
        row["generate_s"] = s
        gens = backbone.generate_with_ids([prompts["item"]], max_new_tokens=32, temperature=0.0)
        row["generate_tokens"] = len(gens[0].token_ids)
        batch_p = [prompts[p] for p, _ in pairs]
        batch_a = [a for _, a in pairs]
        backbone.model.train()

        def step():
            lp = policy.action_logprobs(batch_p, batch_a)
            (-lp.mean()).backward()
            backbone.model.zero_grad(set_to_none=True)

        s, _ = _timed(step, train_reps, warmup=0)
        row["train_step_s"] = s
        row["train_samples_per_s"] = len(batch_p) / s
    else:
        cfg = PromptConfig(max_prompt_tokens=512)
        prompts = {k: build_prompt(v, backbone, cfg) for k, v in pages.items()}
        row["prompt_tokens"] = {k: len(backbone.encode_text(p)) for k, p in prompts.items()}
        row["n_actions"] = {k: len(v["available_actions"]) for k, v in pages.items()}
        row["op"] = "encoder: hidden_states fwd / n/a / value-head regression fwd+bwd"
        for page in ("results", "item"):
            with torch.no_grad():
                s, _ = _timed(
                    lambda p=page: backbone.hidden_states([prompts[p]], [-1], "first"), reps
                )
            row[f"choice_{page}_s"] = s
        row["generate_s"] = None
        head = ValueHead(backbone.hidden_size)
        texts = [prompts[p] for p, _ in pairs]
        targets = torch.linspace(0, 1, len(texts))
        backbone.model.train()

        def step():
            v = backbone.values(texts, head, "first")
            loss = 0.5 * ((v - targets) ** 2).mean()
            loss.backward()
            backbone.model.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)

        s, _ = _timed(step, train_reps, warmup=0)
        row["train_step_s"] = s
        row["train_samples_per_s"] = len(texts) / s
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


# -------------------------------------------------------------------------------- parent


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def print_table(rows: list[dict[str, Any]], skipped: list[str]) -> None:
    head = [
        "model",
        "kind",
        "params",
        "prompt tok r/i",
        "choice results",
        "choice item",
        "generate 32",
        "train fwd+bwd bs8",
        "peak RSS",
        "load",
    ]
    lines = []
    for r in rows:
        gen = _fmt_s(r["generate_s"])
        if r["generate_s"] is not None:
            gen += f" ({r['generate_tokens']} tok)"
        pt = r["prompt_tokens"]
        lines.append(
            [
                r["model"],
                r["kind"],
                f"{r['params_m']:.1f} M",
                f"{pt['results']}/{pt['item']}",
                _fmt_s(r["choice_results_s"]) + f" ({r['n_actions']['results']} a)",
                _fmt_s(r["choice_item_s"]) + f" ({r['n_actions']['item']} a)",
                gen,
                f"{r['train_samples_per_s']:.2f} samples/s ({_fmt_s(r['train_step_s'])}/step)",
                f"{r['peak_rss_mb']:.0f} MB",
                _fmt_s(r["load_s"]),
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]

    def fmt(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(fmt(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print(fmt(line))
    print()
    for r in rows:
        print(f"  {r['model']}: {r['op']}; torch threads {r['threads']}")
    print(
        "  choice = act(mode='choice', temperature=0) over the page's real available actions "
        "(n a); encoders: one feature-extraction forward of the same prompt instead."
    )
    print("  generate = act(mode='generate', temperature=0), max_new_tokens=32 (tokens produced).")
    for s in skipped:
        print(f"  skipped {s}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--reps", type=int, default=3, help="timed act() calls per measure")
    ap.add_argument("--train-reps", type=int, default=2, help="timed training steps")
    ap.add_argument("--model-cache", default=None, help="WEBGYM_CACHE_DIR for model files")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--obs", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        row = child(args.child, args.obs, args.reps, args.train_reps)
        print("ROW " + json.dumps(row))
        return 0

    child_env = dict(os.environ)
    child_env.setdefault("HF_HUB_OFFLINE", "1")
    if args.model_cache:
        child_env["WEBGYM_CACHE_DIR"] = args.model_cache
    from webgym_agents.models import list_models

    old = os.environ.get("WEBGYM_CACHE_DIR")
    if args.model_cache:
        os.environ["WEBGYM_CACHE_DIR"] = args.model_cache
    status = {m.name: m for m in list_models()}
    if args.model_cache:
        if old is None:
            del os.environ["WEBGYM_CACHE_DIR"]
        else:
            os.environ["WEBGYM_CACHE_DIR"] = old

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    data = collect_observations()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        obs_file = Path(tmp) / "obs.json"
        obs_file.write_text(json.dumps(data))
        for name in args.models:
            st = status.get(name)
            if st is None:
                skipped.append(f"{name}: unknown backbone")
                continue
            if st.status not in ("ready", "built-in"):
                print(f"{name}: {st.detail}; skipped", flush=True)
                skipped.append(f"{name}: {st.detail}")
                continue
            print(f"measuring {name} in a fresh subprocess ...", flush=True)
            cmd = [
                sys.executable,
                "-m",
                "webgym_benchmarks.perf.lm_bench",
                "--child",
                name,
                "--obs",
                str(obs_file),
                "--reps",
                str(args.reps),
                "--train-reps",
                str(args.train_reps),
            ]
            proc = subprocess.run(
                cmd, cwd=REPO, env=child_env, capture_output=True, text=True, check=False
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("ROW ")), None)
            if proc.returncode != 0 or line is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                skipped.append(f"{name}: failed (rc {proc.returncode}): {' / '.join(tail)}")
                continue
            rows.append(json.loads(line[4:]))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print_table(rows, skipped)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
