"""PNG plots of a run (matplotlib, Agg backend): reward histogram, success rate by category,
steps distribution. Computed from the episode records, like every other figure."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_plots"]


def write_plots(run_path: Path | str, out_dir: Path | str) -> list[Path]:
    """Write ``reward_hist.png``, ``success_by_category.png`` and ``steps_hist.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from webgym.runs import load_run
    from webgym_benchmarks.metrics import episodes_frame

    records = load_run(run_path)
    df = episodes_frame(records.episodes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{records.manifest.get('agent')} on {records.manifest.get('split')}"
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(df["reward"], bins=[i / 10 for i in range(11)], color="#4c72b0", edgecolor="white")
    ax.set(xlabel="reward", ylabel="episodes", title=f"Rewards: {name} (n={len(df)})")
    written.append(_save(fig, out_dir / "reward_hist.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    if len(df):
        by = df.groupby(df["category"].fillna("unknown"))["success"].mean().sort_values()
        ax.barh(list(by.index), list(by.values * 100), color="#55a868")
    ax.set(xlabel="success rate %", title=f"Success by category: {name}")
    written.append(_save(fig, out_dir / "success_by_category.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    top = int(df["n_steps"].max()) if len(df) else 1
    ax.hist(df["n_steps"], bins=range(0, top + 2), color="#c44e52", edgecolor="white", align="left")
    ax.set(xlabel="steps", ylabel="episodes", title=f"Episode length: {name}")
    written.append(_save(fig, out_dir / "steps_hist.png"))
    plt.close("all")
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
