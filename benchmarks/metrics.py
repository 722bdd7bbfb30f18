"""Metrics of a run, computed from its episode records (never from a stored aggregate).

- Score = mean reward x 100 (WebShop's), with the standard error of the mean
  (sample standard deviation / sqrt(n), x 100);
- success rate = share of episodes with reward exactly 1.0, in [0, 1], with the binomial
  standard error sqrt(p (1 - p) / n);
- average steps, invalid-action rate (steps with a ``last_action_error`` / all steps),
  action-effect rate (steps with effect label 1 / all steps), errors (episodes that failed
  after every retry: they count as reward 0, as AgentLab counts them);
- the same Score and success rate by goal difficulty and by category.

Episodes are a pandas DataFrame, one row per complete episode (:func:`episodes_frame`); saved
as ``results.parquet`` and ``results.csv`` (through ``webgym.runs``). Imports nothing from
``webgym_agents``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from webgym.runs import RunDir, atomic_write_bytes

__all__ = [
    "COLUMNS",
    "compute_metrics",
    "episodes_frame",
    "paired_difference",
    "reward_loss",
    "run_reward_loss",
    "save_results",
]

COLUMNS = {
    "task_id": "string",
    "split": "string",
    "seed": "Int64",
    "difficulty": "string",
    "category": "string",
    "n_steps": "int64",
    "reward": "float64",
    "success": "bool",
    "terminated": "boolean",
    "truncated": "boolean",
    "error": "string",
    "attempts": "Int64",
    "n_invalid_actions": "int64",
    "n_effect": "int64",
    "purchased_asin": "string",
    "reset_s": "float64",
    "episode_s": "float64",
    "agent_s": "float64",
    "env_s": "float64",
    "finished": "string",
}


def episodes_frame(episodes: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per episode summary, with the columns of :data:`COLUMNS` (missing -> NA)."""
    rows = []
    for e in episodes:
        timings = e.get("timings") or {}
        row = {
            k: e.get(k) for k in COLUMNS if k not in ("reset_s", "episode_s", "agent_s", "env_s")
        }
        row.update({k: timings.get(k) for k in ("reset_s", "episode_s", "agent_s", "env_s")})
        row["reward"] = float(e.get("reward") or 0.0)
        row["success"] = row["reward"] == 1.0
        row["n_steps"] = int(e.get("n_steps") or 0)
        row["n_invalid_actions"] = int(e.get("n_invalid_actions") or 0)
        row["n_effect"] = int(e.get("n_effect") or 0)
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS)


def _group(df: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, g in df.groupby(df[column].fillna("unknown"), sort=True):
        n = len(g)
        out[str(name)] = {
            "n": n,
            "score": round(float(g["reward"].mean()) * 100, 4),
            "success_rate": round(float(g["success"].mean()), 6),
        }
    return out


def compute_metrics(
    df: pd.DataFrame, *, n_expected: int | None = None, wall_time_s: float | None = None
) -> dict[str, Any]:
    """The run's metrics (the fields of ``summary.json``, docs/run-format.md)."""
    n = len(df)
    n_expected = n if n_expected is None else n_expected
    steps = int(df["n_steps"].sum()) if n else 0
    if n:
        mean = float(df["reward"].mean())
        p = float(df["success"].mean())
        sd = float(df["reward"].std(ddof=1)) if n > 1 else float("nan")
        score_se = sd / math.sqrt(n) * 100 if n > 1 else None
        success_se = math.sqrt(p * (1 - p) / n)
    else:
        mean = p = float("nan")
        score_se = success_se = None
    return {
        "n_episodes": n,
        "n_expected": n_expected,
        "complete": n >= n_expected,
        "score": _num(mean * 100),
        "score_se": _num(score_se),
        "success_rate": _num(p),
        "success_se": _num(success_se),
        "avg_steps": _num(steps / n) if n else None,
        "invalid_action_rate": _num(df["n_invalid_actions"].sum() / steps) if steps else None,
        "effect_rate": _num(df["n_effect"].sum() / steps) if steps else None,
        "n_steps_total": steps,
        "n_errors": int(df["error"].notna().sum()) if n else 0,
        "by_difficulty": _group(df, "difficulty") if n else {},
        "by_category": _group(df, "category") if n else {},
        "wall_time_s": _num(wall_time_s),
    }


def paired_difference(baseline: pd.DataFrame, other: pd.DataFrame) -> dict[str, Any]:
    """``other`` minus ``baseline`` on the tasks both played (paired by task id).

    For each metric m (reward x 100 for Score, success in %) the difference d_i = m_i(other) -
    m_i(baseline) per task, its mean, and the standard error of that mean, sd(d) / sqrt(n):
    the paired standard error, smaller than the two runs' errors combined when they agree on
    which tasks are easy. ``beats`` says the mean difference exceeds two standard errors.
    """
    a = baseline.drop_duplicates("task_id").set_index("task_id")
    b = other.drop_duplicates("task_id").set_index("task_id")
    common = a.index.intersection(b.index)
    n = len(common)
    out: dict[str, Any] = {"n_common": n}
    for name, column, scale in (("score", "reward", 100.0), ("success_rate", "success", 100.0)):
        d = (b.loc[common, column].astype(float) - a.loc[common, column].astype(float)) * scale
        mean = float(d.mean()) if n else float("nan")
        se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
        out[name] = {"diff": _num(mean), "se": _num(se), "beats": bool(n > 1 and mean > 2 * se)}
    return out


def reward_loss(
    episodes: list[dict[str, Any]],
    actions: dict[str, list[str]] | None = None,
    targets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Where reward is lost, as shares of the episodes (WebShop's reward components, from each
    summary's ``reward_info``):

    - ``no_purchase``: ended without Buy Now (truncated, errored);
    - ``miss_option`` / ``miss_attribute`` / ``miss_price`` / ``miss_type``: bought, with
      ``r_option`` < 1 / ``r_att`` < 1 / ``r_price`` false / ``r_type`` < 1;
    - ``bought_target``: bought the task's target product (``targets``: task id -> asin);
    - ``avg_steps`` and ``results_opened`` (mean clicks on a result per episode, from
      ``actions``: task id -> the episode's actions).
    Shares are fractions in [0, 1]; a column that cannot be computed is None.
    """
    n = len(episodes)
    if not n:
        return {"n": 0}

    def share(pred) -> float:
        return round(sum(1 for e in episodes if pred(e)) / n, 6)

    def info(e: dict[str, Any]) -> dict[str, Any]:
        return e.get("reward_info") or {}

    def bought(e: dict[str, Any]) -> bool:
        return bool(e.get("purchased_asin"))

    out: dict[str, Any] = {
        "n": n,
        "no_purchase": share(lambda e: not bought(e)),
        "miss_option": share(lambda e: bought(e) and float(info(e).get("r_option", 1)) < 1),
        "miss_attribute": share(lambda e: bought(e) and float(info(e).get("r_att", 1)) < 1),
        "miss_price": share(lambda e: bought(e) and info(e).get("r_price", True) is False),
        "miss_type": share(lambda e: bought(e) and float(info(e).get("r_type", 1)) < 1),
        "bought_target": None,
        "avg_steps": round(sum(int(e.get("n_steps") or 0) for e in episodes) / n, 4),
        "results_opened": None,
    }
    if targets:
        out["bought_target"] = share(
            lambda e: bought(e) and e.get("purchased_asin") == targets.get(e["task_id"])
        )
    if actions is not None:
        opened = [
            sum(1 for a in actions.get(e["task_id"], []) if a.startswith("click('item_"))
            for e in episodes
        ]
        out["results_opened"] = round(sum(opened) / n, 4)
    return out


def run_reward_loss(run_path: Path | str) -> dict[str, Any]:
    """:func:`reward_loss` of a run directory: its complete episodes, their ``steps.jsonl``
    actions, and the target products of its split (from the catalog it names, when it opens)."""
    from webgym.runs import load_run

    records = load_run(run_path, check_steps=False)
    actions = {
        e["task_id"]: [str(s.get("action", "")) for s in records.by_task[e["task_id"]].steps]
        for e in records.episodes
    }
    targets = None
    try:
        from webgym.shop.catalog import open_catalog

        split = str(records.manifest.get("split"))
        catalog = open_catalog(split=split)
        try:
            targets = {g["task_id"]: g["asin"] for g in catalog.split(split).goals}
        finally:
            catalog.close()
    except Exception:  # noqa: BLE001 - a run of a catalog not on this machine: no target column
        targets = None
    return reward_loss(records.episodes, actions, targets)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def save_results(df: pd.DataFrame, run_path: Path | str) -> None:
    """Write ``results.parquet`` and ``results.csv`` into the run directory, atomically."""
    import io

    parquet, csv = RunDir(run_path).results_paths
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(parquet, buf.getvalue())
    atomic_write_bytes(csv, df.to_csv(index=False).encode())
