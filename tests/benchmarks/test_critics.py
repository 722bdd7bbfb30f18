"""``webgym-bench critics``: the measurements on hand-made values, and the whole report on a
tiny policy in the real text env (test and ood splits)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from webgym_agents.algos.digiq import CRITIC_FILE, CriticHeads, save_critic
from webgym_agents.algos.poise import PROBE_DIR, Probe
from webgym_agents.policies.scorer_policy import ScorerCritic, ScorerPolicy
from webgym_agents.toolkit.critic_diagnostics import calibration, explained_variance, pool_accuracy
from webgym_benchmarks.critics import (
    ReportConfig,
    collect_trajectories,
    leave_one_out_means,
    run_report,
)


def test_leave_one_out_group_mean_never_sees_the_rollout_itself():
    frame = pd.DataFrame({
        "episode": [0, 0, 1, 2, 3, 3, 4],
        "task_id": ["a", "a", "a", "a", "b", "b", "c"],
        "reward": [1.0, 1.0, 0.0, 0.5, 0.2, 0.2, 0.7],
    })  # fmt: skip
    v = leave_one_out_means(frame)
    assert v[:2] == pytest.approx([0.25, 0.25])  # episode 0: mean of 0.0 and 0.5
    assert v[2] == pytest.approx(0.75) and v[3] == pytest.approx(0.5)
    assert np.isnan(v[4:]).all()  # a task played once has no sibling


def test_calibration_and_explained_variance_on_hand_values():
    v = np.array([0.05, 0.05, 0.95, 0.95])
    g = np.array([0.0, 0.0, 1.0, 1.0])
    cal = calibration(v, g)
    assert cal["ece"] == pytest.approx(0.05)
    assert [c for _, _, c in cal["bins"]] == [2, 2]
    assert explained_variance(g, g) == pytest.approx(1.0)
    assert explained_variance(np.full(4, 0.5), g) == pytest.approx(0.0)
    assert calibration(np.array([2.0, -1.0]), np.array([1.0, 0.0]))["ece"] == 0.0  # clipped


def test_pool_accuracy_skips_pools_with_equal_outcomes():
    rng = np.random.default_rng(0)
    right = (np.array([0.1, 0.9, 0.2]), np.array([0.0, 1.0, 0.0]))
    flat = (np.array([0.3, 0.2]), np.array([0.5, 0.5]))
    all_pools = pool_accuracy([right, flat], (2,), 10, rng)
    informative = pool_accuracy([right, flat], (2,), 10, rng, informative_only=True)
    assert all_pools["rank_pools_2"] == 20
    assert 0 < informative["rank_pools_2"] < 10  # flat is skipped; right's pool {0, 2} too
    assert informative["rank_acc_2"] == 1.0 and informative["rank_chance_2"] == 0.5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("critics")
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0)
    policy.save(root / "policy")
    ScorerCritic(copy.deepcopy(policy.backbone)).save(root / "reinforce" / "critic")
    h = policy.backbone.hidden_size
    rng = np.random.default_rng(0)
    probe = Probe.fit(rng.normal(size=(40, 2 * h + 5)), rng.uniform(size=40), hidden=h)
    (root / "poise" / PROBE_DIR).mkdir(parents=True)
    probe.save(root / "poise" / PROBE_DIR / "probe.npz")
    # a digiq checkpoint as its trainer lays it out: run/config.json, run/checkpoints/latest
    digiq = root / "digiq-run" / "checkpoints" / "latest"
    digiq.mkdir(parents=True)
    (root / "digiq-run" / "config.json").write_text(json.dumps(
        {"config": {"critic_backbone": "tiny-encoder", "critic_max_length": 64}}
    ))  # fmt: skip
    save_critic(digiq / CRITIC_FILE, CriticHeads(h, hidden=16), {"encoder_dir": None})
    return root


def test_report_on_test_and_ood(checkpoints, tmp_path):
    cfg = ReportConfig(
        policy=str(checkpoints / "policy"), splits=("test", "ood"), tasks=2, group_size=2,
        k_forks=2, rank_states=2, n_envs=4, max_steps=6,
        checkpoints={"reinforce": str(checkpoints / "reinforce"),
                     "poise": str(checkpoints / "poise"),
                     "digiq": str(checkpoints / "digiq-run" / "checkpoints" / "latest")},
    )  # fmt: skip
    rows = run_report(cfg, tmp_path, say=lambda m: None)
    names = {r["estimator"] for r in rows}
    assert names == {"group-mean (grpo)", "vine-forks K=2 (vineppo)", "reinforce critic",
                     "poise probe", "digiq heads"}  # fmt: skip
    assert {r["split"] for r in rows} == {"test", "ood"}
    for r in rows:
        assert r["n"] > 0 and np.isfinite(r["mse"]) and r["seconds_per_estimate"] >= 0
    for name in ("critics.csv", "critics.json", "reliability-test.png", "reliability-ood.png",
                 "critics.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "critics.csv")) == 10
    # a re-run reuses every estimate (forks included) and gives the same table
    assert len(list((tmp_path / "estimates").glob("*.json"))) == 10
    again = run_report(cfg, tmp_path, say=lambda m: None)
    assert [r["mse"] for r in again] == [r["mse"] for r in rows]
    kinds = {(r["estimator"], r["q_kind"]) for r in rows}
    assert ("digiq heads", "native") in kinds and ("reinforce critic", "lookahead") in kinds
    assert ("group-mean (grpo)", "-") in kinds and ("poise probe", "-") in kinds

    # the trajectories: G rollouts of a task from identical starts; the forks reached s'
    frame = collect_trajectories(None, "test", cfg, tmp_path / "trajectories-test.parquet")
    firsts = frame[frame["t"] == 0].groupby("task_id")["obs"].agg(list)
    assert all(len(obs) == 2 and obs[0] == obs[1] for obs in firsts)
    forks = json.loads((tmp_path / "forks-test.json").read_text())
    assert forks and all(len(f["candidates"]) >= 2 for f in forks)

    # poise's value of a rollout is the probe on its sibling's features, never its own
    probe = Probe.load(checkpoints / "poise" / PROBE_DIR / "probe.npz")
    ep = frame.groupby("episode").agg(task=("task_id", "first"), x=("poise_x", "first"))
    from webgym_benchmarks.critics import PoiseProbe

    est = PoiseProbe(str(checkpoints / "poise")).estimate(frame, [], None)
    for e, (task, _x) in ep.iterrows():
        sib = [j for j in ep.index[ep["task"] == task] if j != e][0]
        want = probe.predict(np.asarray(ep.loc[sib, "x"], dtype=np.float32)[None])[0]
        got = est.values[(frame["episode"] == e).to_numpy()]
        assert got == pytest.approx(np.full(len(got), want), abs=1e-6)


def test_cli_refuses_a_malformed_checkpoint_option(checkpoints):
    from typer.testing import CliRunner

    from webgym_benchmarks.cli import app

    res = CliRunner().invoke(
        app, ["critics", "--policy", str(checkpoints / "policy"), "--checkpoint", "poise"]
    )
    assert res.exit_code == 2 and "KIND=DIR" in res.output
    res = CliRunner().invoke(
        app, ["critics", "--policy", str(checkpoints / "policy"), "--checkpoint", "nope=/tmp"]
    )
    assert res.exit_code == 1 and "unknown estimator kind" in res.output


def test_digiq_heads_with_critic_features_read_the_scorers_features(tmp_path):
    """A digiq critic trained with ``critic_features`` reads [phi(s), max of the candidates'
    features]; the report's adapter builds that input from the stored observation."""
    from webgym_agents.policies.scorer_inputs import FEATURES, candidates, state_text
    from webgym_agents.toolkit.onpolicy import split_task_ids
    from webgym_agents.toolkit.rollouts import make_env
    from webgym_benchmarks.critics import DigiQHeads

    torch.manual_seed(0)
    run = tmp_path / "digiq-run"
    latest = run / "checkpoints" / "latest"
    latest.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {
        "critic_backbone": "tiny-encoder", "critic_max_length": 64, "critic_features": True,
    }}))  # fmt: skip
    h = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0).backbone.hidden_size
    heads = CriticHeads(h + len(FEATURES), hidden=16, behaviour_v=True)
    save_critic(latest / CRITIC_FILE, heads, {"encoder_dir": None})
    critic = DigiQHeads(str(latest))
    assert critic.n_features == len(FEATURES)
    env = make_env("test", split_task_ids("test")[:1], max_steps=15)
    try:
        obs, _ = env.reset(seed=0)
        first = candidates(obs, 15).actions[0]
        nxt, *_ = env.step(first)
    finally:
        env.close()
    observations = [obs, nxt]
    states = [state_text(o, 15) for o in observations]
    got = critic._v(states, [json.dumps(o, default=str) for o in observations])
    with torch.no_grad():
        phi = critic.enc.state_features(states)
        feats = [np.max(np.array(candidates(o, 15).features, dtype=np.float32), 0) for o in
                 observations]  # fmt: skip
        want = critic.heads.us(torch.cat([phi, torch.from_numpy(np.stack(feats))], 1))
    assert got.shape == (2,)
    assert np.allclose(got, want.min(0).values.numpy(), atol=1e-5)
