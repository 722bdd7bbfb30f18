"""Write realistic run directories (docs/run-format.md) without the harness.

Episodes are fake but consistent: the steps, the episode summaries and the run summary agree,
and the manifest names the REAL catalog's split hash and task ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

from webgym.shop.tasks import TaskSplit


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _png(step: int, reward: float) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 180), (240, 244, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, 310, 40), fill=(36, 87, 197))
    draw.text((20, 18), f"WebGym shop - step {step}", fill=(255, 255, 255))
    draw.text((20, 80), f"reward so far {reward:.2f}", fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def manifest(
    split: TaskSplit, task_ids: list[str], *, agent: str, run_id: str, **over: Any
) -> dict[str, Any]:
    doc = {
        "format_version": 1,
        "run_id": run_id,
        "created": "2026-11-24T10:00:00+00:00",
        "agent": agent,
        "agent_description": f"{agent} (test fixture)",
        "checkpoint": None,
        "checkpoint_sha256": None,
        "split": split.name,
        "split_hash": split.hash,
        "split_size": split.size,
        "task_ids": task_ids,
        "seed": 0,
        "mode": "text",
        "max_episode_steps": 15,
        "workers": 1,
        "executor": "local",
        "catalog": {"source": "synthetic", "path": "/tmp/catalog.sqlite"},
        "package_versions": {"webgym": "0.1.0", "gymnasium": "1.2.0", "python": "3.11"},
        "git_hash": "0123456789abcdef0123456789abcdef01234567",
        "git_dirty": False,
        "machine": {"hostname": "test", "platform": "linux", "cpu_count": 2, "memory_gb": 8},
        "command": ["webgym-bench", "run", "--agent", agent],
    }
    doc.update(over)
    return doc


def episode_steps(task_id: str, reward: float, n_steps: int) -> list[dict[str, Any]]:
    """``n_steps`` steps ending in Buy Now (reward on the last step); step 2 is invalid."""
    steps = []
    for i in range(1, n_steps + 1):
        last = i == n_steps
        if i == 1:
            action = f"search[{task_id} red shoes]"
        elif last:
            action = "click[Buy Now]"
        elif i == 2 and n_steps > 2:
            action = "click[Not There]"
        else:
            action = f"click[B0{i:08d}]"
        invalid = action == "click[Not There]"
        steps.append(
            {
                "step": i,
                "action": action,
                "reward": reward if last else 0.0,
                "terminated": last,
                "truncated": False,
                "last_action_error": "no clickable element 'Not There'" if invalid else "",
                "effect_label": 0 if invalid else 1,
                "text_distance": 0.0 if invalid else 0.4,
                "pixel_distance": None,
                "obs_digest": hashlib.sha256(f"{task_id}/{i}".encode()).hexdigest(),
                "url": f"http://127.0.0.1:8000/s/{task_id}/{i}",
                "elapsed_s": 0.01,
            }
        )
    return steps


def make_run(
    root: Path,
    split: TaskSplit,
    *,
    rewards: list[float],
    agent: str = "rule",
    name: str | None = None,
    screenshots: bool = False,
    write_run_summary: bool = True,
    **manifest_over: Any,
) -> Path:
    """A complete run over the first ``len(rewards)`` tasks of ``split``; returns its folder."""
    run_id = (
        name or f"{agent}-{len(rewards)}-{hashlib.sha1(repr(rewards).encode()).hexdigest()[:6]}"
    )
    run = Path(root) / run_id
    task_ids = split.task_ids[: len(rewards)]
    doc = manifest(split, task_ids, agent=agent, run_id=run_id, **manifest_over)
    write_json(run / "manifest.json", doc)
    summaries = []
    for k, (task_id, reward) in enumerate(zip(task_ids, rewards, strict=True)):
        goal = split.task(task_id)
        n_steps = 3 + k % 3
        steps = episode_steps(task_id, reward, n_steps)
        ep = run / "episodes" / task_id
        ep.mkdir(parents=True)
        (ep / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
        if screenshots:
            for st in range(0, n_steps + 1):
                path = ep / "screenshots" / f"step-{st:03d}.png"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(_png(st, reward if st == n_steps else 0.0))
        summary = {
            "task_id": task_id,
            "split": split.name,
            "seed": k,
            "difficulty": goal["difficulty"],
            "category": goal["category"],
            "n_steps": n_steps,
            "reward": reward,
            "success": reward == 1.0,
            "reward_info": {"r_type": 1.0},
            "terminated": True,
            "truncated": False,
            "error": None,
            "attempts": 1,
            "n_invalid_actions": sum(1 for s in steps if s["last_action_error"]),
            "n_effect": sum(1 for s in steps if s["effect_label"] == 1),
            "purchased_asin": goal["asin"] if reward == 1.0 else None,
            "timings": {"reset_s": 0.01, "episode_s": 0.1, "agent_s": 0.01, "env_s": 0.09},
            "finished": f"2026-11-24T10:00:{k % 60:02d}+00:00",
        }
        write_json(ep / "summary.json", summary)
        summaries.append(summary)
    if write_run_summary:
        n = len(summaries)
        p = sum(s["success"] for s in summaries) / n
        write_json(
            run / "summary.json",
            {
                "n_episodes": n,
                "n_expected": n,
                "complete": True,
                "score": 100 * sum(s["reward"] for s in summaries) / n,
                "success_rate": p,
                "success_se": math.sqrt(p * (1 - p) / n),
                "avg_steps": sum(s["n_steps"] for s in summaries) / n,
                "n_errors": 0,
            },
        )
    return run
