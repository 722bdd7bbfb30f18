"""Digi-Q on tiny models: TD targets from the target heads, Polyak by hand, Best-of-N on
hand-made Q/V, the logged action among the candidates, a frozen encoder that gets no gradient
and a cache that is read, not recomputed, and the smoke preset end to end (text and browser)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from webgym_agents.algos.digiq import (
    PRESETS,
    BehaviourPolicy,
    CriticHeads,
    behaviour_scorer,
    best_of_n,
    cache_features,
    load_critic,
    load_critic_encoder,
    load_transitions,
    polyak_update,
    td_targets,
    train_digiq,
    train_td_on_cache,
    trajectories,
)
from webgym_agents.toolkit.onpolicy import split_task_ids
from webgym_agents.toolkit.rollouts import collect_rollouts
from webgym_agents.toolkit.training import TrainRun

CHROMIUM = os.environ.get("WEBGYM_CHROMIUM", "/usr/bin/chromium")
SMOKE = PRESETS["smoke"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run, shared: (run, checkpoint)."""
    out = tmp_path_factory.mktemp("digiq") / "smoke"
    run = TrainRun(out, SMOKE, trainer="digiq", preset="smoke", show_progress=False)
    return run, train_digiq(SMOKE, run)


@pytest.fixture(scope="module")
def labelled(smoke_run):
    """The whole dataset: trajectory rows and label probes."""
    run, _ = smoke_run
    return load_transitions(run.dir / "data" / "transitions.parquet")


@pytest.fixture(scope="module")
def frame(labelled):
    return trajectories(labelled)


def test_td_targets_come_from_the_target_heads():
    torch.manual_seed(0)
    online, target = CriticHeads(8, 16), CriticHeads(8, 16)  # different random weights
    f_sa, f_s2 = torch.randn(5, 8), torch.randn(5, 8)
    r = torch.tensor([0.0, 1.0, 0.0, 0.5, 0.0])
    done = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    y_q, y_v = td_targets(target, f_sa, f_s2, r, done, 0.95)
    with torch.no_grad():
        want_q = r + 0.95 * (1 - done) * torch.stack(
            [target.v[i](f_s2).squeeze(-1) for i in (0, 1)]
        )
        want_v = torch.stack([target.q[i](f_sa).squeeze(-1) for i in (0, 1)])
        online_q = r + 0.95 * (1 - done) * online.vs(f_s2)
    assert torch.allclose(y_q, want_q) and torch.allclose(y_v, want_v)
    assert not torch.allclose(y_q, online_q)  # the online heads are not what the target reads
    assert torch.equal(y_q[:, 1], r[[1, 1]]) and torch.equal(y_q[:, 3], r[[3, 3]])  # done: r only
    _, y_min = td_targets(target, f_sa, f_s2, r, done, 0.95, v_target="min")
    assert torch.allclose(y_min[0], want_v.min(0).values) and torch.equal(y_min[0], y_min[1])
    assert not y_q.requires_grad and not y_v.requires_grad


def test_polyak_update_by_hand():
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, 2.0]]))
        online.bias.fill_(4.0)
        target.weight.copy_(torch.tensor([[0.0, -2.0]]))
        target.bias.fill_(0.0)
    polyak_update(target, online, 0.1)  # 0.9 * target + 0.1 * online
    assert torch.allclose(target.weight, torch.tensor([[0.1, -1.6]]))
    assert torch.allclose(target.bias, torch.tensor([0.4]))
    polyak_update(target, online, 0.1)
    assert torch.allclose(target.weight, torch.tensor([[0.19, -1.24]]))
    assert torch.equal(online.weight, torch.tensor([[1.0, 2.0]]))  # the online net is untouched


def test_best_of_n_takes_the_argmax_advantage_among_playable_candidates():
    q = [0.30, 0.55, 0.90, 0.52]
    # the best Q (index 2) is a critic-only candidate (an exploratory inert click)
    assert best_of_n(q, 0.51, [True, True, False, True], 0.05) == (1, pytest.approx(0.04), False)
    k, adv, kept = best_of_n(q, 0.40, [True, True, False, True], 0.05)
    assert (k, kept) == (1, True) and adv == pytest.approx(0.15)
    k, adv, kept = best_of_n(q, 0.40, [True] * 4, 0.05)
    assert (k, kept) == (2, True) and adv == pytest.approx(0.50)
    assert best_of_n(q, 0.0, [False] * 4, 0.05)[0] == -1
    assert best_of_n(q, 1.0, [True] * 4, 0.05)[2] is False  # every A < 0: nothing to imitate


def test_the_logged_action_is_always_among_the_candidates(frame):
    assert len(frame) > 0
    for row in frame.itertuples():
        assert row.cand_actions[row.logged_index] == row.action
        assert row.cand_texts[row.logged_index] == row.action_text
        assert len(row.cand_actions) <= SMOKE.n_candidates
        k = row.cand_policy_index[row.logged_index]
        assert k == -1 or row.policy_actions[k] == row.action
        assert k >= 0 or row.explored  # only an exploratory click falls outside the scorer's
    assert frame["explored"].any()  # explore_eps 0.3 over ~50 steps


def test_label_probes_are_forks_of_visited_states_and_leave_the_trajectories_alone(
    smoke_run, labelled, frame, tmp_path
):
    from webgym_agents.algos.digiq import collect_offline_data
    from webgym_agents.toolkit.rollouts import make_env

    probes = labelled[labelled["probe"]]
    assert len(probes) > 0 and set(probes["effect_label"]) == {0, 1}  # inert and effective
    by_turn = {(r.episode, r.t): r for r in frame.itertuples()}
    for (episode, t), group in probes.groupby(["episode", "t"]):
        turn = by_turn[(episode, t)]  # every probe forks a visited state
        assert len(group) <= SMOKE.effect_probes and group["action"].is_unique
        assert (group["state"] == turn.state).all() and turn.action not in set(group["action"])
    # a probe's label and s' are what the click gives after re-playing the episode to s_t
    env = make_env("train", sorted(set(probes["task_id"])), max_steps=SMOKE.max_steps)
    try:
        for p in probes.iloc[:: max(1, len(probes) // 6)].itertuples():
            env.reset(seed=int(p.seed), options={"task_id": p.task_id})
            episode = frame[frame["episode"] == p.episode].sort_values("t")
            for a in episode["action"].iloc[: int(p.t)]:
                env.step(a)
            nxt, _, _, _, info = env.step(p.action)
            assert info["action_effect"]["label"] == p.effect_label, p.action
            from webgym_agents.policies.scorer_policy import state_text

            assert state_text(nxt, SMOKE.max_steps) == p.next_state
    finally:
        env.close()
    # the same first part collected without probes has the same trajectory rows
    cfg = replace(SMOKE, n_episodes=SMOKE.episodes_per_part, effect_probes=0)
    bare = TrainRun(tmp_path / "bare", cfg, trainer="digiq", preset="smoke", show_progress=False)
    path, _ = collect_offline_data(cfg, bare)
    alone = load_transitions(path)
    assert not alone["probe"].any()
    mine = frame[frame["episode"] < SMOKE.episodes_per_part].reset_index(drop=True)
    cols = ["episode", "t", "state", "action", "reward", "next_state", "effect_label"]
    assert alone[cols].equals(mine[cols])


def test_inverse_dynamics_loss_masks_repeated_actions_and_can_be_learnt():
    from webgym_agents.algos.digiq import inverse_dynamics_loss

    torch.manual_seed(0)
    enc = load_critic_encoder(SMOKE)
    enc.add_inverse_heads()
    f_s, f_next = torch.randn(4, enc.dim), torch.randn(4, enc.dim)
    # one action repeated: every other entry is masked, the diagonal alone remains: loss 0
    same = inverse_dynamics_loss(enc, f_s, f_next, ["link 'Next'"] * 4, 0.1)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    actions = ["link 'Next'", "button 'Buy Now'", "search 'red shoes'", "StaticText '$9.99'"]
    params = [*enc.inverse_head.parameters(), *enc.proj_a.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    first = inverse_dynamics_loss(enc, f_s, f_next, actions, 0.1)
    assert 0 < first.item() and torch.isfinite(first)
    for _ in range(30):
        opt.zero_grad()
        inverse_dynamics_loss(enc, f_s, f_next, actions, 0.1).backward()
        opt.step()
    assert inverse_dynamics_loss(enc, f_s, f_next, actions, 0.1).item() < first.item() / 2


def test_a_label_probe_whose_fork_fails_is_skipped_and_the_others_kept():
    from webgym_agents.algos.digiq import probes_of
    from webgym_agents.toolkit.rollouts import make_env

    policy = BehaviourPolicy(behaviour_scorer(SMOKE), 0.0, SMOKE.max_steps)
    ids = split_task_ids("train")[:1]
    (rollout,) = collect_rollouts(
        policy, ids, n_envs=1, seed=0, temperature=1.0, rng=np.random.default_rng(0),
        max_steps=4, snapshots=True,
    )  # fmt: skip
    assert len(rollout.turns) >= 2
    env = make_env("train", ids, max_steps=4)
    try:
        whole = probes_of(rollout, 0, SMOKE, False, env, np.random.default_rng(0))
        assert 0 in {r["t"] for r in whole}  # s_0 has probes when its fork works
        rollout.turns[0].snapshot = copy.deepcopy(rollout.turns[0].snapshot)
        rollout.turns[0].snapshot["session"]["goal"] = {"task_id": "no-such-task"}  # a 400
        rows = probes_of(rollout, 0, SMOKE, False, env, np.random.default_rng(0))
    finally:
        env.close()
    assert rows and {r["t"] for r in rows} <= set(range(1, len(rollout.turns)))
    assert all(r["probe"] and r["effect_label"] in (0, 1) for r in rows)


def test_one_step_exploration_explores_at_one_turn_per_episode_and_bc_elsewhere():
    scorer = behaviour_scorer(SMOKE)
    policy = BehaviourPolicy(scorer, 0.6, SMOKE.max_steps, explore="one_step", horizon=3, salt=7)
    rollouts = collect_rollouts(
        policy, split_task_ids("train")[:8], n_envs=4, seed=0, temperature=1.0,
        rng=np.random.default_rng(0), max_steps=SMOKE.max_steps,
    )  # fmt: skip
    n_explored = 0
    for r in rollouts:
        t_star = policy.explore_turn(r.goal)
        assert 0 <= t_star < 3
        explored = [t for t, turn in enumerate(r.turns) if turn.decision.explored]
        assert explored == ([t_star] if t_star < len(r.turns) else [])
        n_explored += len(explored)
        for t, turn in enumerate(r.turns):
            d = turn.decision
            if t != t_star:  # pi_b is the softmax alone: log pi_b(a|s) = log p_soft(a)
                assert d.index >= 0
                assert d.logprob == pytest.approx(np.log(d.probs[d.index]))
    assert n_explored > 0
    with pytest.raises(ValueError, match="explore must be one of"):
        BehaviourPolicy(scorer, 0.6, 6, explore="sometimes")


def test_frozen_td_reads_the_cache_and_gives_the_encoder_no_gradient(smoke_run, frame):
    run, _ = smoke_run
    data_hash = json.loads((run.dir / "data" / "data.json").read_text())["sha256"]
    cfg = replace(SMOKE, critic_mode="frozen", td_updates=20)
    enc = load_critic_encoder(cfg).requires_grad_(False)
    calls = []
    enc.encoder.register_forward_hook(lambda *a: calls.append(1))
    root = run.dir / "test-cache"
    first = cache_features(enc, frame, data_hash, root)
    assert first.computed == len(first.states) + len(first.pairs) and len(calls) > 0
    calls.clear()
    second = cache_features(load_critic_encoder(cfg).requires_grad_(False), frame, data_hash, root)
    assert second.computed == 0 and second.key == first.key
    assert torch.equal(first.pairs, second.pairs) and torch.equal(first.states, second.states)
    # the (s, a) features depend on the action: the candidates of a state differ
    row = next(i for i, ix in enumerate(first.cand_idx) if len(ix) > 1)
    assert not torch.equal(first.pairs[first.cand_idx[row][0]], first.pairs[first.cand_idx[row][1]])
    calls.clear()
    before = copy.deepcopy(enc.encoder.state_dict())
    heads, td, _ = train_td_on_cache(cfg, run, second, frame, 10_000, 0.0)
    assert calls == []  # no encoder forward pass in the TD phase
    assert all(p.grad is None for p in enc.parameters())
    assert all(torch.equal(v, before[k]) for k, v in enc.encoder.state_dict().items())
    assert any(p.grad is not None for p in heads.parameters())
    assert td["td_updates_per_s"] > 0


def test_smoke_preset_writes_data_critic_and_a_playable_policy(smoke_run):
    run, latest = smoke_run
    data = json.loads((run.dir / "data" / "data.json").read_text())
    balance = json.loads((run.dir / "data" / "label_balance.json").read_text())
    assert balance["all"]["n"] == data["transitions"] + data["label_probes"]
    assert data["transitions"] > 0 and data["label_probes"] > 0
    assert balance["all"]["probes"] == data["label_probes"]
    import hashlib

    digest = hashlib.sha256((run.dir / "data" / "transitions.parquet").read_bytes()).hexdigest()
    assert digest == data["sha256"]
    meta = json.loads((latest / "training.json").read_text())
    assert meta["data_sha256"] == digest and meta["options"]["critic_mode"] == "finetune_freeze"
    heads, info = load_critic(latest)
    assert info["data_sha256"] == digest and isinstance(heads, CriticHeads)
    phases = {int(float(r["phase"])) for r in run.metrics()}
    assert phases == {1, 2, 3, 4}
    report = json.loads((run.dir / "diagnostics.json").read_text())
    assert np.isfinite(report["v_mc_mse_heldout"]) and report["action_sensitivity"] >= 0
    # the policy changed from where it started (filtered BC took steps)
    from webgym_agents.policies.scorer_policy import ScorerPolicy

    fresh = ScorerPolicy.from_backbone_name(SMOKE.backbone, seed=SMOKE.seed)
    trained = ScorerPolicy.load(latest)
    assert not torch.equal(fresh.head[2].weight, trained.head[2].weight)
    assert torch.equal(
        fresh.encoder.embeddings.word_embeddings.weight,
        trained.encoder.embeddings.word_embeddings.weight,
    )  # heads only


def test_a_second_run_reuses_the_data_and_the_cache(smoke_run, tmp_path):
    run, _ = smoke_run
    cfg = replace(SMOKE, data=str(run.dir / "data"), critic_mode="frozen", val_tasks=0)
    other = TrainRun(tmp_path / "frozen", cfg, trainer="digiq", preset="smoke", show_progress=False)
    train_digiq(cfg, other)
    assert not (other.dir / "data" / "transitions.parquet").exists()  # read from the first run
    data_hash = json.loads((run.dir / "data" / "data.json").read_text())["sha256"]
    assert json.loads((other.latest_path / "training.json").read_text())["data_sha256"] == data_hash
    # resuming a finished run collects, encodes and trains nothing again
    lines = len(other.log_path.read_text().splitlines())
    again = TrainRun(tmp_path / "frozen", cfg, trainer="digiq", preset="smoke", show_progress=False)
    n_rows = len(again.metrics())
    train_digiq(cfg, again)
    assert len(again.metrics()) == n_rows
    new_lines = again.log_path.read_text().splitlines()[lines:]
    assert any("(0 encoded now" in line for line in new_lines), new_lines


def test_a_threshold_sweep_keeps_the_policy_best_on_validation(smoke_run, tmp_path):
    from webgym_agents.policies.scorer_policy import ScorerPolicy

    run, _ = smoke_run
    cfg = replace(
        SMOKE, data=str(run.dir / "data"), critic_mode="frozen", threshold_sweep=(1e9, -1.0)
    )
    other = TrainRun(tmp_path / "sweep", cfg, trainer="digiq", preset="smoke", show_progress=False)
    latest = train_digiq(cfg, other)
    state = json.loads((latest / "trainer_state.json").read_text())
    sweep = state["threshold_sweep"]
    assert [e["threshold"] for e in sweep] == [1e9, -1.0]
    assert sweep[0]["kept_states"] == 0 < sweep[1]["kept_states"]
    scores = [e["val_score"] for e in sweep]
    first_best = scores.index(max(scores))  # ties go to the first threshold, the strictest
    assert state["threshold"] == sweep[first_best]["threshold"]
    assert state["kept_states"] == sweep[first_best]["kept_states"]
    fresh = ScorerPolicy.from_backbone_name(SMOKE.backbone, seed=SMOKE.seed)
    unchanged = torch.equal(fresh.head[2].weight, ScorerPolicy.load(latest).head[2].weight)
    assert unchanged == (first_best == 0)  # nothing kept: the saved policy is the behaviour
    with pytest.raises(ValueError, match="needs val_tasks"):
        train_digiq(replace(cfg, val_tasks=0), TrainRun(tmp_path / "x", cfg, trainer="digiq"))


def test_a_second_round_collects_with_the_first_rounds_policy_and_extracts_from_it(
    smoke_run, tmp_path
):
    from webgym_agents.algos.digiq.train import ROUND_POLICY
    from webgym_agents.policies.scorer_policy import ScorerPolicy

    run, _ = smoke_run
    cfg = replace(
        SMOKE, data=str(run.dir / "data"), critic_mode="frozen", rounds=2, later_v_expectile=0.55
    )
    out = tmp_path / "rounds"
    two = TrainRun(out, cfg, trainer="digiq", preset="smoke", show_progress=False)
    latest = train_digiq(cfg, two)
    first = out / ROUND_POLICY  # round 1's policy, round 2's behaviour
    facts = json.loads((out / "round-2" / "data" / "data.json").read_text())
    assert facts["facts"]["behaviour_checkpoint"] == str(first)
    assert facts["label_probes"] == 0 < SMOKE.effect_probes  # round 1's encoder: no fine-tuning
    second_hash = facts["sha256"]
    assert second_hash != json.loads((run.dir / "data" / "data.json").read_text())["sha256"]
    state = json.loads((latest / "trainer_state.json").read_text())
    assert (state["phase_done"], state["round"]) == (8, 2)
    assert json.loads((latest / "training.json").read_text())["data_sha256"] == second_hash
    # round 2's V learns its own expectile (round 1's is the run's v_expectile)
    assert state["critic_info"]["v_expectile"] == 0.55 != cfg.v_expectile
    # round 2 extracts from round 1's policy (smoke keeps every state: it moves the heads)
    assert not torch.equal(
        ScorerPolicy.load(first).head[2].weight, ScorerPolicy.load(latest).head[2].weight
    )
    # resuming the finished run plays no round again
    again = TrainRun(out, cfg, trainer="digiq", preset="smoke", show_progress=False)
    n_rows = len(again.metrics())
    train_digiq(cfg, again)
    assert len(again.metrics()) == n_rows
    with pytest.raises(ValueError, match="rounds must be"):
        train_digiq(replace(cfg, rounds=0), TrainRun(tmp_path / "x", cfg, trainer="digiq"))


def test_make_agent_plays_a_whole_text_episode(smoke_run):
    from webgym_agents import make_agent
    from webgym_agents.toolkit.rollouts import make_env

    _, latest = smoke_run
    agent = make_agent("digiq", checkpoint=str(latest))
    assert agent.name == "digiq"
    env = make_env("test", max_steps=6)
    obs, _ = env.reset(seed=0)
    agent.reset(obs["goal"], seed=0)
    steps, done = 0, False
    while not done:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs))
        steps, done = steps + 1, terminated or truncated
    env.close()
    assert 1 <= steps <= 6


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_make_agent_plays_a_browser_episode(smoke_run):
    from webgym_agents import make_agent
    from webgym_agents.toolkit.rollouts import make_env

    _, latest = smoke_run
    agent = make_agent("digiq", checkpoint=str(latest))
    env = make_env("test", mode="browser", max_steps=4)
    try:
        obs, _ = env.reset(seed=0)
        agent.reset(obs["goal"], seed=0)
        done, steps = False, 0
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.act(obs))
            steps, done = steps + 1, terminated or truncated
            assert "pixel_distance" in info["action_effect"]
    finally:
        env.close()
    assert 1 <= steps <= 4


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed")
def test_browser_mode_collection_forks_label_probes_in_chromium(tmp_path):
    from webgym_agents.algos.digiq import collect_offline_data, label_balance

    cfg = replace(
        SMOKE, collect_mode="browser", n_episodes=2, episodes_per_part=2, n_envs=1, max_steps=3
    )
    run = TrainRun(tmp_path / "browser", cfg, trainer="digiq", preset="smoke", show_progress=False)
    labelled = load_transitions(collect_offline_data(cfg, run)[0])
    probes = labelled[labelled["probe"]]
    assert len(probes) > 0 and len(trajectories(labelled)) > 0
    # browser mode: every label, the probes' too, comes with its screenshots' pixel distance
    assert np.isfinite(labelled["pixel_distance"]).all()
    balance = label_balance(labelled)
    assert balance["all"]["n"] == len(labelled) and balance["all"]["probes"] == len(probes)


def test_end_to_end_td_trains_the_encoder_and_polyaks_its_target_copy(smoke_run, frame):
    from webgym_agents.algos.digiq import train_td_end_to_end

    run, _ = smoke_run
    cfg = replace(SMOKE, critic_mode="end_to_end", e2e_updates=3, e2e_batch_size=4, e2e_lr=1e-3)
    enc = load_critic_encoder(cfg)
    before = copy.deepcopy(enc.encoder.state_dict())
    enc, heads, td, _ = train_td_end_to_end(cfg, run, enc, frame, 10_000, 0.0)
    changed = [k for k, v in enc.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the TD loss reached the backbone
    assert td["td_updates_per_s"] > 0


def test_ranking_accuracy_forks_candidates_from_rebuilt_states(smoke_run, frame, tmp_path):
    from webgym_agents.algos.digiq import behaviour_scorer
    from webgym_agents.toolkit.critic_diagnostics import ranking_accuracy

    q_rows = [np.arange(len(a), dtype=float) for a in frame["cand_actions"]]  # Q: the last best
    out = tmp_path / "forks.json"
    got = ranking_accuracy(
        frame,
        q_rows,
        behaviour_scorer(SMOKE),
        n_states=2,
        pool_sizes=(2,),
        max_steps=SMOKE.max_steps,
        gamma=0.95,
        outcomes_path=out,
    )
    assert got["rank_states"] == 2 and 0.0 <= got["rank_acc_2"] <= 1.0
    forks = json.loads(out.read_text())
    assert len(forks) == 2
    for key, g in forks.items():
        ep, t = map(int, key.split("/"))
        row = frame[(frame["episode"] == ep) & (frame["t"] == t)].iloc[0]
        assert len(g) == len(row["cand_actions"]) and all(0.0 <= x <= 1.0 for x in g)
    again = ranking_accuracy(
        frame, q_rows, None, n_states=2, pool_sizes=(2,), outcomes_path=out
    )  # read: no policy needed
    assert again["rank_acc_2"] == got["rank_acc_2"]


def test_ablate_runs_the_three_modes_on_one_dataset(smoke_run, tmp_path):
    import csv

    from typer.testing import CliRunner

    from webgym_bench import app

    run, _ = smoke_run
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"data": str(run.dir / "data"), "val_tasks": 0}))
    out = tmp_path / "ablate"
    result = CliRunner().invoke(
        app,
        [
            "ablate",
            "digiq",
            "--preset",
            "smoke",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--test-episodes",
            "1",
            "--rank-states",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    with open(out / "ablation.csv", newline="") as f:
        rows = {r["critic_mode"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"finetune_freeze", "frozen", "end_to_end"}
    assert (
        rows["finetune_freeze"]["effect_head_acc"] != "" and rows["frozen"]["effect_head_acc"] == ""
    )
    assert all(r["probe_acc"] != "" and r["test_episodes"] == "1" for r in rows.values())
    assert float(rows["end_to_end"]["td_speedup_vs_end_to_end"]) == 1.0
    assert float(rows["frozen"]["td_updates_per_s"]) > float(rows["end_to_end"]["td_updates_per_s"])
    assert (out / "ablation.png").is_file()
    hashes = {
        json.loads((out / m / "checkpoints" / "latest" / "training.json").read_text())[
            "data_sha256"
        ]
        for m in rows
    }
    assert len(hashes) == 1


def test_expectile_loss_by_hand():
    from webgym_agents.algos.digiq import expectile_loss

    v = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([[0.0, 2.0], [0.5, 1.5]])
    # k = 0.5 is the plain MSE: mean over the batch, summed over the twin heads
    assert torch.isclose(expectile_loss(v, y, 0.5), torch.tensor((1 + 4) / 2 + (0 + 1) / 2))
    # k = 0.9: an under-estimate (y > V) weighs 2 * 0.9, an over-estimate 2 * 0.1
    want = (0.2 * 1 + 1.8 * 4) / 2 + (1.8 * 0 + 1.8 * 1) / 2
    assert torch.isclose(expectile_loss(v, y, 0.9), torch.tensor(want))


def test_behaviour_anchor_keeps_the_behaviour_action_where_the_critic_is_not_confident(
    smoke_run, frame, tmp_path
):
    from webgym_agents.algos.digiq import extract_policy
    from webgym_agents.algos.digiq.extract import _policy_candidates

    rows = [
        i for i, r in enumerate(frame.itertuples()) if not r.heldout and len(r.policy_actions) > 1
    ]
    # a* = a candidate the behaviour did NOT take, on two states
    chosen = []
    for i in rows[:2]:
        r = frame.iloc[i]
        k = next(k for k, a in enumerate(r["policy_actions"]) if a != r["action"])
        chosen.append((i, k, 0.5))
    others = []  # the behaviour's own action on the states not in ``chosen``
    for i in rows[2:]:
        r = frame.iloc[i]
        if not r["explored"] and r["action"] in list(r["policy_actions"]):
            others.append((i, list(r["policy_actions"]).index(r["action"])))
    assert others

    def behaviour_logp(anchor: float) -> float:
        cfg = replace(SMOKE, extract_anchor=anchor, extract_epochs=4, extract_batch_size=2,
                      extract_lr=3e-2, val_tasks=1)  # fmt: skip
        run = TrainRun(tmp_path / f"a{anchor}", cfg, trainer="digiq", preset="smoke",
                       show_progress=False)  # fmt: skip
        policy, _, _ = extract_policy(cfg, run, frame, chosen, 0, 0.0)
        with torch.no_grad():
            logp = policy.logprobs(
                [frame.iloc[i]["state"] for i, _ in others],
                [_policy_candidates(frame.iloc[i]) for i, _ in others],
                [k for _, k in others],
            )
        return float(logp.mean())

    # plain filtered BC moves the policy towards a* everywhere; the anchor holds a_b up
    assert behaviour_logp(5.0) > behaviour_logp(0.0)


# ----------------------------------------------------------------------------------------------
# The probe recipe: back probes as behaviour data, the success objective, critic features
# ----------------------------------------------------------------------------------------------

PROBE = replace(
    SMOKE, back_probes=1.0, score_weight=0.0, success_bonus=1.0, critic_features=True,
    extract_feature_lr=3e-2,
)  # fmt: skip


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digiq-probe") / "probe"
    run = TrainRun(out, PROBE, trainer="digiq", preset="smoke", show_progress=False)
    return run, train_digiq(PROBE, run)


def test_back_probes_fork_prev_from_the_behaviours_product_pages_and_are_trajectories(probe_run):
    run, _ = probe_run
    frame = trajectories(load_transitions(run.dir / "data" / "transitions.parquet"))
    back = frame[frame["back_probe"]]
    own = frame[~frame["back_probe"]]
    assert len(back) > 0 and not back["probe"].any()  # trajectory rows, not label probes
    assert set(back["episode"]).isdisjoint(own["episode"])  # episodes of their own
    own_states = set(own["state"])
    for _, episode in back.groupby("episode"):
        first = episode.sort_values("t").iloc[0]
        # the fork's state is a product page pi_b visited, where it did not go back
        assert first["action"] == "click('prev')" and first["explored"]
        assert first["state"] in own_states
        logged = own[own["state"] == first["state"]]["action"]
        assert "click('prev')" not in set(logged)
    meta = json.loads((run.dir / "data" / "data.json").read_text())
    assert meta["episodes"] == PROBE.n_episodes  # the data score counts pi_b's episodes only
    assert meta["back_probe_episodes"] == back["episode"].nunique()


def test_the_objective_rewrites_rewards_and_returns_for_td():
    import pandas as pd

    from webgym_agents.algos.digiq.config import with_objective

    frame = pd.DataFrame(
        {
            "reward": [0.0, 0.75, 0.0, 1.0],
            "episode_reward": [0.75, 0.75, 1.0, 1.0],
            "episode_len": [2, 2, 2, 2],
            "t": [0, 1, 0, 1],
        }
    )
    cfg = replace(PROBE, gamma=0.5)
    out = with_objective(frame, cfg)
    assert out["reward"].tolist() == [0.0, 0.0, 0.0, 1.0]  # success only
    assert out["mc_return"].tolist() == [0.0, 0.0, 0.5, 1.0]
    assert out["env_reward"].tolist() == frame["reward"].tolist()
    assert with_objective(frame, SMOKE) is frame  # r itself at the defaults


def test_critic_features_append_the_scorers_features(probe_run):
    from webgym_agents.algos.digiq.critic import with_candidate_features

    run, _ = probe_run
    frame = trajectories(load_transitions(run.dir / "data" / "transitions.parquet"))
    heads, info = load_critic(run.latest_path)
    enc = load_critic_encoder(PROBE, info.get("encoder_dir"))
    cache = cache_features(enc, frame, info["data_sha256"], run.dir / "cache")
    wide = with_candidate_features(cache, frame)
    n_f = len(frame["policy_features"].iloc[0][0])
    assert wide.pairs.shape[1] == wide.states.shape[1] == cache.pairs.shape[1] + n_f
    assert heads.dim == wide.pairs.shape[1]  # the run's heads read them
    for i in range(0, len(frame), max(1, len(frame) // 8)):
        row = frame.iloc[i]
        feats = np.array([list(f) for f in row["policy_features"]], dtype=np.float32)
        for k, p in enumerate(row["cand_policy_index"]):
            expect = feats[p] if p >= 0 else np.zeros(n_f, np.float32)
            got = wide.pairs[cache.cand_idx[i][k], -n_f:].numpy()
            assert np.allclose(got, expect)
        s = wide.states[cache.s_idx[i], -n_f:].numpy()
        assert np.all(s >= feats.max(0) - 1e-6)  # the max over the state's candidates


def test_with_critic_features_q_tells_a_mismatching_buy_now_from_a_matching_one(tmp_path):
    """Identical text features, one structural feature apart: Buy Now on a page that lacks a
    named option (buy_mismatch 1) earns 0, on one that offers them 1. TD on the cache learns the
    difference only through the appended features."""
    import pandas as pd

    from webgym_agents.algos.digiq import FeatureCache
    from webgym_agents.algos.digiq.critic import with_candidate_features
    from webgym_agents.policies.scorer_inputs import FEATURES

    n, dim, mis = 64, 8, FEATURES.index("buy_mismatch")
    feats = [[[0.0] * len(FEATURES)] for _ in range(n)]
    for i in range(0, n, 2):
        feats[i][0][mis] = 1.0
    frame = pd.DataFrame(
        {
            "reward": [0.0 if i % 2 == 0 else 1.0 for i in range(n)],
            "done": [True] * n,
            "heldout": [False] * n,
            "cand_policy_index": [[0]] * n,
            "policy_features": feats,
        }
    )
    same = torch.ones(1, dim)
    cache = FeatureCache(
        states=same.repeat(n + 1, 1), pairs=same.repeat(n, 1),
        s_idx=np.arange(n), s2_idx=np.full(n, n), cand_idx=[np.array([i]) for i in range(n)],
        logged=np.arange(n), key="synthetic",
    )  # fmt: skip
    cfg = replace(SMOKE, td_updates=300, td_batch_size=32, log_every=10**6)
    run = TrainRun(tmp_path / "td", cfg, trainer="digiq", show_progress=False)
    for c, separates in ((cache, False), (with_candidate_features(cache, frame), True)):
        heads, _, _ = train_td_on_cache(cfg, run, c, frame, 0, 0.0)
        with torch.no_grad():
            q = heads.qs(c.pairs).min(0).values.numpy()
        gap = q[1::2].mean() - q[0::2].mean()
        assert (gap > 0.5) == separates, gap


def test_behaviour_v_is_the_mean_while_an_upper_expectile_v_leans_to_the_best(tmp_path):
    """One state, two logged actions worth 0 and 1: V at expectile 0.9 leans to 1, the U heads
    (the behaviour's value, what Best-of-N subtracts) learn the mean, 0.5."""
    import pandas as pd

    from webgym_agents.algos.digiq import FeatureCache, critic_values

    n = 64
    frame = pd.DataFrame(
        {
            "reward": [float(i % 2) for i in range(n)],
            "done": [True] * n,
            "heldout": [False] * n,
        }
    )
    cache = FeatureCache(
        states=torch.ones(2, 4), pairs=torch.eye(4)[:2], s_idx=np.zeros(n, int),
        s2_idx=np.ones(n, int), cand_idx=[np.array([0, 1])] * n, logged=np.arange(n) % 2,
        key="synthetic",
    )  # fmt: skip
    cfg = replace(
        SMOKE, td_updates=1500, td_batch_size=64, log_every=10**6, v_expectile=0.9,
        behaviour_v=True, tau=0.2,
    )  # fmt: skip
    run = TrainRun(tmp_path / "td", cfg, trainer="digiq", show_progress=False)
    heads, _, _ = train_td_on_cache(cfg, run, cache, frame, 0, 0.0)
    with torch.no_grad():
        v = heads.vs(cache.states[:1]).min(0).values.item()
        u = heads.us(cache.states[:1]).min(0).values.item()
    assert v > 0.75 and abs(u - 0.5) < 0.1, (v, u)
    _, v_rows = critic_values(heads, cache)
    assert np.allclose(v_rows, u, atol=1e-5)  # Best-of-N's advantage subtracts U


def test_support_share_keeps_a_star_among_the_kinds_the_data_took():
    """The critic ranks a detail tab first on every item page, but the data never clicked one:
    with support_share a* is the best of the kinds the data took (here ``< Prev``)."""
    import pandas as pd

    from webgym_agents.algos.digiq import extraction_set
    from webgym_agents.algos.digiq.extract import action_support
    from webgym_agents.policies.scorer_inputs import FEATURES

    def onehot(kind):
        f = [0.0] * len(FEATURES)
        f[FEATURES.index(kind)] = 1.0
        return f

    actions = ["click('buy_now')", "click('prev')", "click('tab_features')"]
    feats = [onehot("buy_now"), onehot("navigation"), onehot("detail_tab")]
    n = 10
    frame = pd.DataFrame(
        {
            "heldout": [False] * n,
            "page_type": ["item page"] * n,
            "policy_actions": [actions] * n,
            "policy_features": [feats] * n,
            "cand_policy_index": [[0, 1, 2]] * n,
            "action": ["click('buy_now')"] * 7 + ["click('prev')"] * 3,
        }
    )
    support = action_support(frame)
    assert support == {("item page", "buy_now"): 0.7, ("item page", "click('prev')"): 0.3}
    q_rows = [np.array([0.0, 0.4, 0.9])] * n
    v_rows = np.zeros(n)
    assert {k for _, k, _ in extraction_set(frame, q_rows, v_rows, 0.1)} == {2}  # the tab
    kept = extraction_set(frame, q_rows, v_rows, 0.1, support_share=0.05)
    assert len(kept) == n and {k for _, k, _ in kept} == {1}  # < Prev
    assert extraction_set(frame, q_rows, v_rows, 0.1, support_share=0.5) == []  # buy: A 0
