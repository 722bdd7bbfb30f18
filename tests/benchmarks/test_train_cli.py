"""``webgym-bench train``: a smoke training run end to end, its resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_train_refuses_a_missing_starting_checkpoint_naming_the_command_that_makes_it(
    tmp_path, monkeypatch
):
    """The presets' starting folders are relative to the working directory: run elsewhere, the
    refusal names the bc run that makes the folder (and released:bc, found from anywhere), in
    one line, before the output directory exists."""
    monkeypatch.chdir(tmp_path)
    for agent, preset, field, stem in (
        ("grpo", "scorer-gpu", "init_checkpoint", "bc-scorer-gpu"),
        ("digiq", "gpu", "behaviour_checkpoint", "bc-scorer-gpu"),
    ):
        text = _one_line(cli("train", "--agent", agent, "--preset", preset, "--out", "o"))
        # the presets name their start (trained:<agent>/<preset>); the line shows its folder
        assert f"{field} trained:bc/scorer-gpu (runs/{stem}/checkpoints/latest) does not" in text
        assert f"relative to {Path.cwd()}" in text
        assert f"`webgym-bench train --agent bc --preset scorer-gpu --out runs/{stem}`" in text
        assert f'set {field} = "released:bc" in a --config file' in text
    # an LM policy (the decoder path) has no shipped counterpart: only the command is named
    text = _one_line(cli("train", "--agent", "grpo", "--preset", "gpu", "--out", "o"))
    assert "`webgym-bench train --agent bc --preset gpu --out runs/bc-gpu` makes it" in text
    assert "released:" not in text
    # a config's own folder, on a small preset: the same check
    (tmp_path / "from-my-bc.toml").write_text(
        'init_checkpoint = "runs/bc-scorer-cpu/checkpoints/latest"\nbackbone = "minilm"\n'
    )
    text = _one_line(
        cli("train", "--agent", "grpo", "--preset", "smoke", "--config", "from-my-bc.toml",
            "--out", "o")
    )  # fmt: skip
    assert "--preset scorer-cpu --out runs/bc-scorer-cpu` makes it" in text
    assert "released:bc" in text
    # a folder that is there but holds no policy is no starting point either
    (tmp_path / "runs" / "bc-scorer-cpu" / "checkpoints" / "latest").mkdir(parents=True)
    text = _one_line(
        cli("train", "--agent", "grpo", "--preset", "smoke", "--config", "from-my-bc.toml",
            "--out", "o")
    )  # fmt: skip
    assert "latest is not a checkpoint (it has no policy.json), not a policy" in text
    assert not (tmp_path / "o").exists()
