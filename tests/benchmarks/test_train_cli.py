"""``webgym-bench train``: a smoke training run end to end, its resume, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.benchmarks.helpers import cli


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_train_smoke_writes_metrics_curve_checkpoint_and_a_validation_run(tmp_path):
    out = tmp_path / "bc"
    result = cli("train", "--agent", "bc", "--preset", "smoke", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Validation (5 episodes): Score" in result.output
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,update,epoch,loss,grad_norm,heldout_nll,heldout_acc")
    assert len(rows) >= 3
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    latest = out / "checkpoints" / "latest"
    assert latest.is_symlink() and (latest / "model.safetensors").is_file()
    training = json.loads((latest / "training.json").read_text())
    assert training["trained_by"] == "bc" and training["n_demos"] > 0
    assert json.loads((latest / "policy.json").read_text())["metadata"]["trained_by"] == "bc"
    config = json.loads((out / "config.json").read_text())
    assert config["trainer"] == "bc" and config["preset"] == "smoke"

    eval_dir = out / "eval-validation"
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["n_episodes"] == 5 and summary["complete"]
    manifest = json.loads((eval_dir / "manifest.json").read_text())
    assert manifest["agent"] == "bc" and manifest["split"] == "validation"
    assert manifest["checkpoint"] == str(latest.resolve())
    assert cli("show", eval_dir).exit_code == 0

    # Re-running the same command resumes: no iteration is redone, no episode re-played.
    log_lines = len((out / "train.log").read_text().splitlines())
    again = cli("train", "--agent", "bc", "--preset", "smoke", "--out", out)
    assert again.exit_code == 0, again.output
    assert "(resuming)" in again.output and "5 already complete, 0 to run" in again.output
    assert (out / "metrics.csv").read_text().splitlines() == rows
    new_log = (out / "train.log").read_text().splitlines()[log_lines:]
    assert not [line for line in new_log if "iteration=" in line or "checkpoint " in line]


def test_train_refuses_an_unknown_trainer_listing_the_trainable_agents(tmp_path):
    result = cli("train", "--agent", "rule", "--out", tmp_path / "x")
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    trainable = "archer, bc, digiq, genac, gigpo, grpo, poise, reinforce, vineppo"
    assert f"no trainer for agent 'rule'; trainable agents: {trainable}" in out


def test_train_refuses_an_unknown_config_key_and_an_unknown_preset(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    result = cli("train", "--agent", "bc", "--preset", "smoke", "--config", bad)
    assert result.exit_code == 2 and "unknown key(s) epochz" in result.output
    result = cli("train", "--agent", "bc", "--preset", "huge", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "presets: smoke, cpu, gpu" in result.output


def _one_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output.strip()


def test_train_refuses_an_output_that_is_a_file_before_anything(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("")
    text = _one_line(cli("train", "--agent", "bc", "--preset", "smoke", "--out", blocker))
    assert f"--out {blocker}: {blocker} is a file, not a folder; choose another --out" in text
    text = _one_line(cli("train", "--agent", "bc", "--preset", "smoke", "--out", blocker / "x"))
    assert "is a file, not a folder" in text
    assert [p.name for p in tmp_path.iterdir()] == ["FILE"]
