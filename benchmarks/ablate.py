"""``webgym-bench ablate digiq``: the Digi-Q paper's three critic options on the same offline data.

    OUT/finetune_freeze/   a digiq run (collects the data)     critic_mode finetune_freeze
    OUT/frozen/            a digiq run on ../finetune_freeze/data, off-the-shelf features
    OUT/end_to_end/        a digiq run on the same data, the TD loss through the encoder
    OUT/<mode>/test/       the extracted policy's run on the test split (the harness)
    OUT/ablation.csv       one row per mode: the diagnostics of agents/toolkit/critic_diagnostics.py
    OUT/ablation.png       the same as a table

Columns: effect accuracy (the fine-tuned effect head on held-out transitions, finetune_freeze
only) and a linear effect probe on each mode's features; action sensitivity; ranking accuracy of
argmax Q among pools of 2/4/8/16 candidates against forked Monte Carlo outcomes (chance beside
it); V's MSE against MC returns on held-out tasks; TD updates per second, and the speed-up of TD
on the cache over the end-to-end run's TD (both measured in this ablation, the end-to-end run
also times TD on its own cache); kept share of Best-of-N; test Score and SR.

Every step resumes: re-running the command continues the runs and the test episodes.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = ("finetune_freeze", "frozen", "end_to_end")
COLUMNS = (
    "critic_mode", "effect_head_acc", "effect_head_balanced_acc", "probe_acc",
    "probe_balanced_acc", "action_sensitivity", "rank_acc_2", "rank_acc_4", "rank_acc_8",
    "rank_acc_16", "rank_chance_2", "rank_chance_4", "rank_chance_8", "rank_chance_16",
    "rank_states", "v_mc_mse_heldout", "td_updates_per_s", "td_speedup_vs_end_to_end",
    "cached_speedup",
    "kept_share", "test_episodes", "test_score", "test_success_rate",
)  # fmt: skip


def mode_configs(base: Any, out: Path) -> dict[str, Any]:
    """The config of each mode: the first collects the data, the others read it."""
    data = str(out / MODES[0] / "data") if not base.data else base.data
    return {
        mode: dataclasses.replace(base, critic_mode=mode, data=base.data if i == 0 else data)
        for i, mode in enumerate(MODES)
    }


def ablation_row(mode: str, report: dict[str, Any], test: dict[str, Any] | None) -> dict:
    ft = report.get("finetune") or {}
    row: dict[str, Any] = {"critic_mode": mode}
    row["effect_head_acc"] = ft.get("acc")
    row["effect_head_balanced_acc"] = ft.get("balanced_acc")
    for key in COLUMNS:
        if key in report and key not in row:
            row[key] = report[key]
    if test:
        row["test_episodes"] = test.get("n_episodes")
        row["test_score"] = test.get("score")
        row["test_success_rate"] = test.get("success_rate")
    return row


def finish_table(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """Speed-ups against the end-to-end row, then ablation.csv and ablation.png."""
    e2e = next((r for r in rows if r["critic_mode"] == "end_to_end"), None)
    for r in rows:
        if e2e and e2e.get("td_updates_per_s") and r.get("td_updates_per_s"):
            r["td_speedup_vs_end_to_end"] = r["td_updates_per_s"] / e2e["td_updates_per_s"]
    csv_path = out / "ablation.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    png_path = out / "ablation.png"
    _plot_table(rows, png_path)
    return csv_path, png_path


def format_cell(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _plot_table(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [c for c in COLUMNS if c != "critic_mode"]
    fig = Figure(figsize=(2.0 + 2.2 * len(rows), 0.32 * len(cols) + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    cells = [[format_cell(r.get(c)) for r in rows] for c in cols]
    table = ax.table(
        cellText=cells, rowLabels=cols, colLabels=[r["critic_mode"] for r in rows], loc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.15)
    ax.set_title("digiq critic ablation (Digi-Q's three options, same data)", fontsize=10)
    fig.savefig(path, dpi=110)


def run_ablation(
    base: Any,
    out: Path,
    *,
    preset: str,
    rank_states: int,
    test_episodes: int,
    play_test: Callable[[str, Path, Path, int], dict[str, Any]],
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train (or resume) the three modes, add the ranking diagnostics, play each policy on the
    test split with ``play_test(mode, checkpoint, out_dir, episodes)`` (-> the run's metrics)."""
    import json

    from webgym_agents.algos.digiq import ranking_diagnostics
    from webgym_agents.toolkit.trainers import get_trainer
    from webgym_agents.toolkit.training import TrainRun

    info = get_trainer("digiq")
    rows = []
    for mode, cfg in mode_configs(base, out).items():
        run = TrainRun(out / mode, cfg, trainer="digiq", preset=preset, keep=cfg.keep_checkpoints)
        say(f"ablate: {mode} in {run.dir}")
        checkpoint = Path(info.train_fn(cfg, run))
        report = ranking_diagnostics(run.dir, rank_states=rank_states)
        kept = json.loads((checkpoint / "trainer_state.json").read_text()).get("kept_share")
        test = (
            play_test(mode, checkpoint, out / mode / "test", test_episodes)
            if test_episodes
            else None
        )
        row = ablation_row(mode, {**report, "kept_share": kept}, test)
        row["kept_share"] = kept
        rows.append(row)
    return rows
