"""POISE on real text envs and tiny models: the features come from the acting forward pass (no
extra pass), each rollout's baseline from its sibling's features only, A_i = r_i - b_i by hand,
the probe's predictions stay in [0, 1], and the smoke preset trains, resumes with its probe and
buffer, and plays through the harness."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from tests.helpers import cli
from webgym_agents.algos.poise import (
    PRESETS,
    FeatureTap,
    Probe,
    cross_rollout_baselines,
    middle_layer,
    poise_advantages,
    rollout_features,
)
from webgym_agents.toolkit.onpolicy import split_task_ids
from webgym_agents.toolkit.rollouts import collect_rollouts, make_env
from webgym_agents.toolkit.training import TrainRun

TIMING = ("collect_s", "update_s", "val_s", "iteration_s")


@pytest.fixture(scope="module")
def pages():
    """A search page and a results page (many candidates) of two train tasks."""
    ids = split_task_ids("train")[:2]
    env = make_env("train", ids, max_steps=6)
    try:
        first, _ = env.reset(seed=1, options={"task_id": ids[0]})
        results, *_ = env.step(f"search[{first['goal']}]")
        other, _ = env.reset(seed=2, options={"task_id": ids[1]})
    finally:
        env.close()
    return [first, results, other]


def _count_encoder_forwards(policy):
    calls = []
    handle = policy.encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_acting_with_the_feature_tap_costs_no_extra_forward(policy, pages):
    calls, handle = _count_encoder_forwards(policy)
    try:
        plain = policy.decide_batch(pages, temperature=1.0, rng=np.random.default_rng(3))
        n_plain = len(calls)
        tapped = FeatureTap(policy).decide_batch(
            pages, temperature=1.0, rng=np.random.default_rng(3)
        )
        n_tapped = len(calls) - n_plain
    finally:
        handle.remove()
    assert n_plain == n_tapped == 2  # the states' batch and the candidates' batch, once each
    # the tap changes nothing the policy decided, and leaves no hook or patch behind
    assert [(d.action, d.index, d.logprob) for d in plain] == [
        (d.action, d.index, d.logprob) for d in tapped
    ]
    assert "scores" not in vars(policy) and not middle_layer(policy)._forward_hooks
    assert not policy.encoder._forward_pre_hooks


def test_a_frozen_encoders_embedding_cache_leaves_the_features_unchanged(policy, pages):
    rng = lambda: np.random.default_rng(4)  # noqa: E731
    plain = FeatureTap(policy).decide_batch(pages, temperature=1.0, rng=rng())
    frozen = [p.requires_grad for p in policy.encoder.parameters()]
    policy.encoder.requires_grad_(False)  # heads-only training: embeddings come from a cache
    try:
        policy.decide_batch(pages, temperature=1.0, rng=rng())  # the cache holds every text now
        cached = FeatureTap(policy).decide_batch(pages, temperature=1.0, rng=rng())
    finally:
        for p, flag in zip(policy.encoder.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
        policy._embedding_cache.clear()
    assert "embed" not in vars(policy)
    for a, b in zip(plain, cached, strict=True):
        assert (a.action, a.index) == (b.action, b.index)
        assert a.features.prompt == pytest.approx(b.features.prompt, abs=1e-5)
        assert a.features.response == pytest.approx(b.features.response, abs=1e-5)


def test_the_features_are_the_middle_layer_and_the_acting_softmax(policy, pages):
    (d,) = FeatureTap(policy).decide_batch(
        pages[1:2], temperature=0.5, rng=np.random.default_rng(0)
    )
    f = d.features
    tok = policy.backbone.tokenizer
    n = len(policy.encoder.encoder.layer)

    def last10(text: str, max_length: int) -> np.ndarray:
        enc = tok([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hs = policy.encoder(**enc, output_hidden_states=True).hidden_states[n // 2]
        return hs[0, -10:].mean(0).double().numpy()

    assert f.prompt == pytest.approx(last10(d.state, policy.max_length), abs=1e-5)
    chosen = d.candidates.texts[d.index]
    assert f.response == pytest.approx(last10(chosen, 32), abs=1e-5)
    entropy = policy.entropies([d.state], [d.candidates], temperature=0.5).detach()
    assert f.entropy == pytest.approx(float(entropy[0]), abs=1e-5)
    probs = torch.softmax(policy.scores([d.state], [d.candidates])[0].detach() / 0.5, 0)
    assert f.max_prob == pytest.approx(float(probs.max()), abs=1e-5)
    assert len(d.candidates.actions) > 2 and 0 < f.entropy < np.log(len(d.candidates.actions))


def test_a_rollouts_feature_row_is_its_first_prompt_mean_response_and_statistics(policy):
    ids = split_task_ids("train")[:2]
    rollouts = collect_rollouts(FeatureTap(policy), ids, group_size=2, n_envs=4, seed=5,
                                max_steps=6, rng=np.random.default_rng(0))  # fmt: skip
    h = policy.backbone.hidden_size
    for r in rollouts:
        feats = [t.decision.features for t in r.turns]
        x = rollout_features(r)
        assert x.shape == (2 * h + 5,)
        assert x[:h] == pytest.approx(feats[0].prompt)
        assert x[h : 2 * h] == pytest.approx(np.mean([f.response for f in feats], 0))
        assert x[-1] == len(r.turns) and x[-4] == pytest.approx(max(f.entropy for f in feats))
    # siblings start from the identical page: the same prompt features
    assert rollout_features(rollouts[0])[:h] == pytest.approx(rollout_features(rollouts[1])[:h])


def _linear_probe(coef_prompt: float, intercept: float) -> Probe:
    """A probe on H = 1 by hand: prediction = coef_prompt * prompt + intercept, clipped."""
    eye = np.ones((1, 1))
    coef = np.zeros(7)
    coef[0] = coef_prompt
    return Probe(1, {
        "prompt_mean": np.zeros(1), "prompt_components": eye, "response_mean": np.zeros(1),
        "response_components": eye, "scale_mean": np.zeros(7), "scale": np.ones(7),
        "coef": coef, "intercept": np.asarray(intercept),
    })  # fmt: skip


def test_advantages_by_hand_rloo_then_the_probe_on_the_siblings_features():
    rewards = np.array([1.0, 0.0, 0.5, 0.5])
    x = np.zeros((4, 7))
    x[:, 0] = [0.2, 0.8, 3.0, -1.0]
    # RLOO before the probe is fitted: b_i = r_j
    rloo = cross_rollout_baselines(x, rewards, None)
    assert rloo.tolist() == [0.0, 1.0, 0.5, 0.5]
    assert poise_advantages(rewards, rloo).tolist() == [1.0, -1.0, 0.0, 0.0]
    # the probe: predictions 0.5 x + 0.1 = [0.2, 0.5, 1.6 -> 1, -0.4 -> 0]; b_i = pred(x_j)
    b = cross_rollout_baselines(x, rewards, _linear_probe(0.5, 0.1))
    assert b == pytest.approx([0.5, 0.2, 0.0, 1.0])
    assert poise_advantages(rewards, b) == pytest.approx([0.5, -0.2, 0.5, -0.5])  # no std


def test_the_cross_rollout_baseline_never_uses_a_rollouts_own_features():
    gen = np.random.default_rng(0)
    h = 8
    x = gen.normal(size=(40, 2 * h + 5))
    probe = Probe.fit(x, gen.uniform(size=40), hidden=h, prompt_dims=4, response_dims=4)
    rewards = gen.uniform(size=6)
    feats = gen.normal(size=(6, 2 * h + 5))
    before = cross_rollout_baselines(feats, rewards, probe)
    for i in range(6):
        moved = feats.copy()
        moved[i] += 5 * gen.normal(size=2 * h + 5)
        after = cross_rollout_baselines(moved, rewards, probe)
        j = i ^ 1
        assert after[i] == before[i]  # b_i does not move with x_i ...
        assert np.delete(after, j).tolist() == np.delete(before, j).tolist()
        assert after[j] != before[j]  # ... only the sibling's b_j does
        # RLOO likewise: b_i = r_j never reads r_i
        r = rewards.copy()
        r[i] += 1
        assert cross_rollout_baselines(moved, r, None)[i] == rewards[j]


def test_probe_predictions_are_clipped_to_0_1_and_survive_a_save(tmp_path):
    gen = np.random.default_rng(1)
    h = 6
    x = gen.normal(size=(5, 2 * h + 5))  # fewer rows than PCA dims: the PCA shrinks to 5
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    probe = Probe.fit(x, y, hidden=h, prompt_dims=32, response_dims=64, alpha=100.0)
    assert probe.params["prompt_components"].shape == (5, h)
    assert probe.params["response_components"].shape == (5, h)
    far = np.concatenate([x * 1e4, -x * 1e4])
    pred = probe.predict(far)
    assert pred.min() == 0.0 and pred.max() == 1.0 and ((pred >= 0) & (pred <= 1)).all()
    probe.save(tmp_path / "probe.npz")
    again = Probe.load(tmp_path / "probe.npz")
    assert again.hidden == h and np.array_equal(again.predict(far), pred)
    assert np.array_equal(again.predict(x), probe.predict(x))


def test_decoder_backbones_are_refused(tmp_path):
    from dataclasses import replace

    from webgym_agents.algos.poise import train_poise

    cfg = replace(PRESETS["smoke"], backbone="tiny-lm")
    run = TrainRun(tmp_path / "lm", cfg, trainer="poise", preset="smoke", show_progress=False)
    with pytest.raises(ValueError, match="decoder path"):
        train_poise(cfg, run)


def test_smoke_preset_trains_resumes_with_its_probe_and_plays(tmp_path):
    out = tmp_path / "poise"
    args = ("train", "--agent", "poise", "--preset", "smoke", "--eval-episodes", "0")
    result = cli(*args, "--out", out)
    assert result.exit_code == 0, result.output
    cfg = PRESETS["smoke"]
    rows = TrainRun(out, cfg, trainer="poise", preset="smoke", show_progress=False).metrics()
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2, 3]
    # the work the smoke preset sizes (what keeps it within minutes on a CPU): iterations of
    # tasks_per_iteration tasks x 2 rollouts of at most max_steps turns each, none errored
    for row in rows[1:]:
        assert int(row["errored"]) == 0 and int(row["dropped_rollouts"]) == 0
        assert 0 < int(row["train_env_steps"]) <= cfg.tasks_per_iteration * 2 * cfg.max_steps
    # 6 rows an iteration (3 tasks x 2): RLOO in iteration 1, the probe from iteration 2 on
    assert [int(r["probe_fitted"]) for r in rows[1:]] == [0, 1, 1]
    assert [float(r["rloo_frac"]) for r in rows[1:]] == [1.0, 0.0, 0.0]
    assert [int(r["probe_rows"]) for r in rows[1:]] == [0, 6, 12]
    assert all(0.0 <= float(r["baseline_mean"]) <= 1.0 for r in rows[1:])
    # back_probes 1.0: every rollout that reached a product page forked a "< Prev" probe
    assert sum(int(r["probes"]) for r in rows[1:]) > 0
    latest = out / "checkpoints" / "latest"
    assert json.loads((latest / "policy.json").read_text())["metadata"]["trained_by"] == "poise"
    with np.load(latest / "probe" / "buffer.npz") as f:
        assert f["x"].shape[0] == f["y"].shape[0] == 18
    assert (latest / "probe" / "probe.npz").is_file()

    # a run killed after iteration 2 resumes with the probe and buffer it had: iteration 3
    # is the row the uninterrupted run wrote
    cut = tmp_path / "cut"
    shutil.copytree(out, cut, symlinks=True)
    shutil.rmtree(cut / "checkpoints" / "step-3")
    (cut / "checkpoints" / "latest").unlink()
    os.symlink("step-2", cut / "checkpoints" / "latest")
    result = cli(*args, "--out", cut)
    assert result.exit_code == 0, result.output
    again = TrainRun(cut, cfg, trainer="poise", preset="smoke", show_progress=False).metrics()
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    assert [strip(r) for r in again] == [strip(r) for r in rows]

    played = tmp_path / "play"
    result = cli("run", "--agent", "poise", "--checkpoint", latest, "--split", "validation",
                 "--episodes", "2", "--mode", "text", "--out", played)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((played / "manifest.json").read_text())
    assert manifest["agent"] == "poise" and manifest["checkpoint"] == str(latest.resolve())
    assert json.loads((played / "summary.json").read_text())["n_episodes"] == 2
