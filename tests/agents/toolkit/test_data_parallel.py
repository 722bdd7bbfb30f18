"""Data-parallel training under ``accelerate launch`` with two CPU processes (gloo): the
plumbing (sharded rollouts, all-reduced gradients, the weights check) and a whole ``train``."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """``accelerate launch`` two processes on this CPU (``--multi_gpu`` is accelerate's
    torchrun launcher; without GPUs it runs them on the CPU with gloo)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env |= {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_plumbing_shards_rollouts_and_all_reduces_gradients(tmp_path):
    _launch([str(Path(__file__).with_name("data_parallel_worker.py")), str(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}

    # rollouts: each process played its own episodes, all of them between the two, and every
    # process holds the list one process collects (greedy, so it is the same list)
    played = [r["rollouts"]["played_here"] for r in ranks]
    assert not set(played[0]) & set(played[1])
    assert sorted(played[0] + played[1]) == sorted(t for t, *_ in ranks[0]["rollouts"]["sharded"])
    assert {len(p) for p in played} == {2, 3}
    assert ranks[0]["rollouts"]["sharded"] == ranks[1]["rollouts"]["sharded"]
    assert all(r["rollouts"]["sharded_equals_one_process"] for r in ranks)

    # gradients: step 1 takes chunks 0 and 1 (one per process), step 2 shares chunk 2; every
    # step applied the mean gradient of its distinct chunks, identically in both processes
    g0, g1 = ranks[0]["gradients"], ranks[1]["gradients"]
    assert g0["steps"] == g1["steps"] == 2
    assert g0["taken"][1] == g1["taken"][1] and g0["taken"][0] != g1["taken"][0]
    assert sorted(g0["taken"][0] + g1["taken"][0] + g0["taken"][1]) == [0, 1, 2, 3, 4]
    assert g0["max_error"] < 1e-6 and g1["max_error"] < 1e-6
    assert g0["weights"] == g1["weights"]

    # the weights check passes on equal weights and fails in every process on diverged ones
    for r in ranks:
        assert r["divergence"]["raised_on_divergence"]
        assert "data-parallel: 2 processes at iteration 1" in r["divergence"]["log"][0]


def test_train_runs_data_parallel_and_its_checkpoint_loads(tmp_path):
    out = tmp_path / "run"
    proc = _launch(["-m", "webgym_bench", "train", "--agent", "reinforce", "--preset", "smoke",
                    "--out", str(out), "--eval-episodes", "0"])  # fmt: skip
    assert proc.stdout.count("Trained in") == 1  # rank 0 alone reports
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    assert all(r["val_score"] != "" for r in rows) and int(rows[-1]["env_steps"]) > 0

    # after every checkpoint both processes held the same weights: the two digests each
    # process computed of its own policy and critic, logged by rank 0 ...
    log = (out / "train.log").read_text()
    assert "data-parallel: 2 processes\n" in log
    checks = re.findall(
        r"data-parallel: 2 processes at iteration (\d+): policy weights (\w+) (\w+); "
        r"critic weights (\w+) (\w+)",
        log,
    )
    assert [c[0] for c in checks] == ["1", "2"]
    for _, p0, p1, c0, c1 in checks:
        assert p0 == p1 and c0 == c1
    assert checks[0][1] != checks[1][1]  # the policy did train between the checkpoints

    # ... and the checkpoint holds exactly those weights, and plays
    import torch

    from webgym_agents import make_agent
    from webgym_agents.policies.scorer_policy import ScorerCritic, ScorerPolicy
    from webgym_agents.toolkit.data_parallel import state_digest

    n = torch.get_num_threads()
    latest = out / "checkpoints" / "latest"
    assert latest.resolve().name == "step-2"
    assert state_digest(ScorerPolicy.load(latest)) == checks[-1][1]
    assert state_digest(ScorerCritic.load(latest / "critic")) == checks[-1][3]
    agent = make_agent("reinforce", checkpoint=str(latest))
    assert agent.name == "reinforce"
    agent.close()
    torch.set_num_threads(n)


def test_a_trainer_without_data_parallel_support_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env |= {"PYTHONPATH": str(REPO), "WORLD_SIZE": "2", "RANK": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "webgym_bench", "train", "--agent", "bc", "--preset", "smoke",
         "--out", str(tmp_path / "bc"), "--eval-episodes", "0"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "does not run data-parallel" in proc.stdout + proc.stderr
    assert not (tmp_path / "bc").exists()


@pytest.fixture(autouse=True)
def _no_launcher_here(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
