"""Fixtures shared by the trainers' tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from webgym_agents.toolkit.trainers import get_trainer
from webgym_agents.toolkit.training import TrainRun


def _smoke_preset_trains_and_writes_a_curve(name: str, tmp_path: Path) -> None:
    """Trainer ``name``'s smoke preset trains: a metrics row per iteration (and iteration 0's
    validation), a checkpoint, the learning curve, and an agent of that name plays it."""
    info = get_trainer(name)
    cfg = info.presets["smoke"]
    run = TrainRun(tmp_path / name, cfg, trainer=name, preset="smoke", show_progress=False)
    latest = info.train_fn(cfg, run)
    rows = run.metrics()
    assert [int(r["iteration"]) for r in rows] == list(range(cfg.iterations + 1))
    assert rows[0]["val_score"] != "" and rows[-1]["val_success_rate"] != ""
    assert (latest / "policy.json").is_file()
    assert run.curve_path.is_file()
    from webgym_agents import make_agent

    agent = make_agent(name, checkpoint=str(latest))
    assert agent.name == name


@pytest.fixture
def smoke_trains_and_writes_a_curve():
    """The check every on-policy trainer's smoke preset passes: ``check(name, tmp_path)``."""
    return _smoke_preset_trains_and_writes_a_curve


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Trainers set torch's thread count (``torch_threads``): restore it after each test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
