"""Build run directories (docs/run-format.md) for the tests of the run reader and the leaderboard.

``make_run``: without playing the env. Episodes are fake but consistent: the steps, the episode
summaries (with the seeds ``episode_seed`` gives) and the run summary agree, and the manifest
names the REAL catalog's split hash and task ids, so they pass ``validate_run`` (the file
checks); they do not replay (``verify_run``), having never been played. Everything is written
through ``webgym.runs`` (the writers the harness uses) and the run summary is computed by
``webgym_benchmarks.metrics``, as ``webgym-bench run`` computes it; only ``write_json`` (below)
writes a file by hand, for the tests that tamper with a run.

``record_run``: a real run, played by the real harness (``plan_run`` / ``execute_plan``, which
finalises it) in text mode: what ``submit`` accepts. ``refresh_run_summary`` recomputes a
tampered run's ``summary.json`` as a forger would, so that only the replay can catch it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from webgym.envs import MAX_EPISODE_STEPS
from webgym.runs import (
    EpisodeWriter,
    RunDir,
    build_manifest,
    episode_seed,
    episode_summary,
    step_counts,
    step_record,
)
from webgym.shop.tasks import TaskSplit

PROVENANCE = {
    "package_versions": {"webgym": "0.1.0", "gymnasium": "1.2.0", "python": "3.11"},
    "git_hash": "0123456789abcdef0123456789abcdef01234567",
    "git_dirty": False,
    "machine": {"hostname": "test", "platform": "linux", "cpu_count": 2, "memory_gb": 8},
}


def write_json(path: Path, doc: Any) -> None:
    """Overwrite a record by hand (the tests that corrupt or tamper with a run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _pixels(step: int, reward: float) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 180), (240, 244, 250))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, 310, 40), fill=(36, 87, 197))
    draw.text((20, 18), f"WebGym shop - step {step}", fill=(255, 255, 255))
    draw.text((20, 80), f"reward so far {reward:.2f}", fill=(20, 20, 20))
    return np.asarray(img)


def manifest(
    split: TaskSplit, task_ids: list[str], *, agent: str, run_id: str, **over: Any
) -> dict[str, Any]:
    doc = build_manifest(
        run_id=run_id,
        agent=agent,
        agent_description=f"{agent} (test fixture)",
        checkpoint=None,
        split=split.name,
        split_hash=split.hash,
        split_size=split.size,
        task_ids=task_ids,
        seed=0,
        mode="text",
        max_episode_steps=MAX_EPISODE_STEPS,
        workers=1,
        executor="local",
        catalog={"source": "synthetic", "path": "/tmp/catalog.sqlite"},
        screenshots=False,
        max_retries=2,
        command=["webgym-bench", "run", "--agent", agent],
        created="2026-11-24T10:00:00+00:00",
        provenance=PROVENANCE,
    )
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
        obs = {  # the page the action led to (only what a step record keeps of it)
            "text": f"{task_id}/{i}",
            "url": f"http://127.0.0.1:8000/s/{task_id}/{i}",
            "last_action_error": "no clickable element 'Not There'" if invalid else "",
        }
        effect = {
            "label": 0 if invalid else 1,
            "text_distance": 0.0 if invalid else 0.4,
            "pixel_distance": None,
        }
        steps.append(
            step_record(
                step=i,
                action=action,
                obs=obs,
                reward=reward if last else 0.0,
                terminated=last,
                truncated=False,
                effect=effect,
                elapsed_s=0.01,
            )
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
    from webgym_benchmarks.metrics import compute_metrics, episodes_frame

    run_id = (
        name or f"{agent}-{len(rewards)}-{hashlib.sha1(repr(rewards).encode()).hexdigest()[:6]}"
    )
    run = RunDir(Path(root) / run_id)
    task_ids = split.task_ids[: len(rewards)]
    doc = manifest(
        split, task_ids, agent=agent, run_id=run_id, screenshots=screenshots, **manifest_over
    )
    run.create_or_check(doc)
    summaries = []
    for k, (task_id, reward) in enumerate(zip(task_ids, rewards, strict=True)):
        goal = split.task(task_id)
        n_steps = 3 + k % 3
        steps = episode_steps(task_id, reward, n_steps)
        writer = EpisodeWriter(run, task_id)
        if screenshots:
            writer.screenshot(0, _pixels(0, 0.0))
        for st in steps:
            writer.step(st)
            if screenshots:
                writer.screenshot(st["step"], _pixels(st["step"], st["reward"]))
        summary = episode_summary(
            task_id=task_id,
            split=split.name,
            seed=episode_seed(0, task_id),
            difficulty=goal["difficulty"],
            category=goal["category"],
            **step_counts(steps),
            reward=reward,
            reward_info={"r_type": 1.0},
            terminated=True,
            truncated=False,
            attempts=1,
            purchased_asin=goal["asin"] if reward == 1.0 else None,
            timings={"reset_s": 0.01, "episode_s": 0.1, "agent_s": 0.01, "env_s": 0.09},
            finished=f"2026-11-24T10:00:{k % 60:02d}+00:00",
        )
        writer.finish(summary)
        summaries.append(summary)
    if write_run_summary:
        frame = episodes_frame(summaries)
        run.write_summary(compute_metrics(frame, n_expected=len(summaries)))
    return run.path


def record_run(
    out: Path,
    *,
    agent: str = "rule",
    episodes: int | None = None,
    task_ids: list[str] | None = None,
    seed: int = 0,
    split: str = "test",
) -> Path:
    """Play a real run with the harness, in text mode, into ``out``; returns ``out``."""
    from webgym_benchmarks.runner import execute_plan, plan_run

    plan = plan_run(
        agent=agent, split=split, episodes=episodes, task_ids=task_ids, seed=seed, out=out
    )
    outcome = execute_plan(plan)
    assert outcome.status == "complete", outcome
    return Path(out)


def refresh_run_summary(run: Path) -> None:
    """Recompute ``summary.json`` from the episode records (a forger's last step: the file
    checks then agree with whatever the episodes were made to say)."""
    from webgym.runs import load_run
    from webgym_benchmarks.metrics import compute_metrics, episodes_frame

    records = load_run(run)
    frame = episodes_frame(records.episodes)
    RunDir(run).write_summary(compute_metrics(frame, n_expected=records.n_expected))
