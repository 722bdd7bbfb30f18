"""The learning curve (``toolkit/curves.py``): from a ``metrics.csv`` with the columns trainers
log, which panels are drawn and which columns in each; the figure a training run writes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from webgym_agents.toolkit.curves import (
    Panel,
    curve_panels,
    draw_learning_curve,
    metric_columns,
    read_metrics,
)
from webgym_agents.toolkit.training import CommonConfig, TrainRun

# gigpo's columns (runs/gigpo-*/metrics.csv), plus archer's explained variance and critic loss
COLUMNS = [
    "iteration", "train_score", "train_success_rate", "train_avg_steps", "train_env_steps",
    "errored", "dropped_rollout_frac", "probes", "probe_success_rate", "loss", "critic_loss",
    "explained_variance", "clip_frac", "approx_kl", "kl_ref", "adv_mean", "grad_norm",
    "collect_s", "env_steps", "iteration_s", "val_score", "val_success_rate", "val_avg_steps",
    "val_s",
]  # fmt: skip


def gigpo_rows(n: int = 13, val_every: int = 6) -> list[dict[str, str]]:
    """``n`` iterations as a trainer logs them: iteration 0 validation only, the validation
    columns every ``val_every`` iterations, blank between."""
    rows = []
    for i in range(n):
        row = dict.fromkeys(COLUMNS, "")
        row["iteration"] = str(i)
        if i:
            row.update(
                train_score=f"{60 + i + math.sin(i):.3f}",
                train_success_rate=f"{0.1 + 0.01 * i:.3f}",
                train_avg_steps="5",  # constant: left out (and no panel of its own anyway)
                train_env_steps=str(500 + i),
                errored="0",  # constant
                dropped_rollout_frac=f"{0.4 - 0.01 * i:.3f}",
                probes=str(50 + i),
                probe_success_rate=f"{0.12 + 0.002 * i:.4f}",
                loss=f"{0.2 * math.cos(i):.4f}",
                critic_loss=f"{1 / i:.4f}",
                explained_variance=f"{0.1 * i - 0.5:.3f}",
                clip_frac=f"{0.05 * i:.3f}",
                approx_kl=f"{0.01 * i:.4f}",
                kl_ref="0",  # no reference model: constant
                adv_mean=f"{0.01 * i:.3f}",
                grad_norm=f"{1 + 0.1 * i:.3f}",
                collect_s="9.5",
                env_steps=str(500 * i),
                iteration_s=f"{10 + i}",
            )
        if i % val_every == 0:
            row.update(
                val_score=f"{70 + i}",
                val_success_rate=f"{0.2 + 0.01 * i}",
                val_avg_steps="4.5",
                val_s="25",
            )
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_figures_that_move_are_drawn_a_few_panels(tmp_path):
    path = write_csv(tmp_path / "metrics.csv", gigpo_rows())
    panels = curve_panels(metric_columns(read_metrics(path)))
    assert panels == [
        Panel("Score", ("train_score", "val_score")),
        Panel("Success rate", ("train_success_rate", "probe_success_rate", "val_success_rate")),
        Panel("Loss", ("loss", "critic_loss")),
        Panel("Explained variance", ("explained_variance",)),
        Panel("KL", ("approx_kl",)),  # kl_ref is constant
    ]
    png = tmp_path / "learning_curve.png"
    assert draw_learning_curve(read_metrics(path), png, title="gigpo") == panels
    assert png_size(png) == (3 * 414, 2 * 288)  # five panels: 3 to a row, 2 rows (90 dpi)


def test_columns_with_fewer_than_three_values_are_left_out(tmp_path):
    rows = gigpo_rows(n=10, val_every=6)  # validation at iterations 0 and 6 only
    panels = curve_panels(metric_columns(rows))
    assert Panel("Score", ("train_score",)) in panels
    assert Panel("Success rate", ("train_success_rate", "probe_success_rate")) in panels
    early = gigpo_rows(n=3)  # two training iterations: nothing has three values yet
    assert curve_panels(metric_columns(early)) == []
    png = tmp_path / "early.png"
    assert draw_learning_curve(early, png) == []
    assert png_size(png) == (414, 288)  # one figure that says so


def test_behaviour_cloning_columns_and_a_trainer_of_its_own():
    bc = [
        {"iteration": str(i), "update": str(10 * i), "epoch": str(i // 4), "loss": str(2 / i),
         "grad_norm": "1.5", "heldout_nll": str(2.5 / i), "heldout_acc": str(0.5 + 0.03 * i),
         "samples_per_s": str(100 + i), "elapsed_s": str(3 * i)}
        for i in range(1, 8)
    ]  # fmt: skip
    assert curve_panels(metric_columns(bc)) == [
        Panel("Accuracy", ("heldout_acc",)),
        Panel("Loss", ("loss", "heldout_nll")),
    ]
    own = [
        {"iteration": str(i), "wiggle": str(i % 3), "flat": "1", "q_gap": str(i)} for i in range(5)
    ]
    assert curve_panels(metric_columns(own)) == [
        Panel("wiggle", ("wiggle",)),
        Panel("q_gap", ("q_gap",)),
    ]


def test_a_training_run_redraws_its_curve_after_each_row(tmp_path):
    run = TrainRun(tmp_path / "run", CommonConfig(), trainer="gigpo", show_progress=False)
    for row in gigpo_rows(n=2):
        run.log_metrics({k: v for k, v in row.items()})
    assert png_size(run.curve_path) == (414, 288)  # nothing moves yet
    for row in gigpo_rows(n=13)[2:]:
        run.log_metrics(row)
    assert png_size(run.curve_path) == (3 * 414, 2 * 288)
