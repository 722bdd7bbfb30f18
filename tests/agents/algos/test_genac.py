"""GenAC on real text envs and tiny models: the score parser never raises and counts what it
cannot read, the critic's reward is 1 - (G - v)^2, SFT targets end with round(10 G), the score
distribution is read exactly in the generation that writes the rationale, the critic is updated
before the actor and the advantages come from the updated critic, and the smoke preset trains,
resumes with its critic and actor facts, and plays through the harness."""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers import cli
from webgym_agents.algos.archer import archer_advantages
from webgym_agents.algos.genac import (
    PRESETS,
    ActorFacts,
    GenerativeCritic,
    Traces,
    genac_update,
    parse_score,
    rationale,
    score_values,
    scoring_reward,
    sft_target,
    sft_warm_start,
)
from webgym_agents.policies.scorer_policy import ScorerPolicy, critic_state_text
from webgym_agents.toolkit.onpolicy import TurnBatch, split_task_ids
from webgym_agents.toolkit.rollouts import collect_rollouts, make_env
from webgym_agents.toolkit.training import TrainRun

CONFIG = replace(PRESETS["smoke"], critic_lr=1e-2, ppo_epochs=1, critic_temperature=0.5)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def actor():
    """A fresh scorer: uniform over each page's candidates."""
    return ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=6).eval()


@pytest.fixture(scope="module")
def pages():
    """A search page, its results page and the first result's item page (a train task)."""
    ids = split_task_ids("train")[:1]
    env = make_env("train", ids, max_steps=6)
    try:
        search, _ = env.reset(seed=1, options={"task_id": ids[0]})
        results, *_ = env.step(f"search[{search['goal']}]")
        item = next(a for a in results["available_actions"] if a.startswith("click('item_"))
        product, *_ = env.step(item)
    finally:
        env.close()
    return [search, results, product]


@pytest.fixture(scope="module")
def played(actor):
    """A batch of the actor's turns on 4 train tasks and the facts of those episodes."""
    rollouts = collect_rollouts(
        actor, split_task_ids("train")[:4], n_envs=4, seed=2, max_steps=6,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    return TurnBatch.of(rollouts), ActorFacts.of([r.reward for r in rollouts])


@pytest.fixture(scope="module")
def sft_critic(played):
    """A tiny-lm critic fine-tuned on the batch's traces until some samples are well formed."""
    batch, facts = played
    critic = GenerativeCritic.fresh("tiny-lm", rationale_tokens=24, max_steps=6)
    config = replace(CONFIG, sft_epochs=10, sft_lr=3e-3, sft_minibatch=8)
    sft_warm_start(config, critic, Traces.of(batch, facts, config), np.random.default_rng(0))
    return critic.eval()


def test_the_parser_reads_scores_and_counts_malformed_outputs_without_raising():
    assert parse_score("Item page, in budget.\nScore: 7") == 7
    assert parse_score("score:10") == 10 and parse_score(" 3 ") == 3
    assert parse_score("Score: 4. Score: 4") == 4  # a repeat of one score is that score
    assert parse_score("Score: 0/10") == 0
    malformed = [
        "", "   ", "Results page, 3 of 10 in budget, best title match 0.8.",  # no score
        "Score: 11", "Score: -1", "Score: 7.5",  # out of range, not an integer
        "Score: 3\nScore: 8",  # conflicting
        "Score: seven", "Score:", "ench-----示ferred Forty 12 justices", None,
    ]  # fmt: skip
    assert [parse_score(t) for t in malformed] == [None] * len(malformed)
    v, bad = score_values([*malformed, "Score: 9"], fallback=0.42)
    assert bad == len(malformed)
    assert v.tolist() == [0.42] * len(malformed) + [0.9]


def test_a_malformed_greedy_value_takes_the_actors_mean_reward_and_is_counted(played):
    batch, _ = played
    critic = GenerativeCritic.fresh("tiny-lm", rationale_tokens=8, max_steps=6)  # random init
    facts = ActorFacts(success_rate=0.25, mean_reward=0.61, episodes=8)
    states = [critic_state_text(r.turns[0].obs, 6) for r in batch.rollouts]
    prompts, _ = critic.prompts(states, facts)
    texts = [g.text for g in critic.sample(prompts, temperature=0.0)]
    want, bad = score_values(texts, facts.mean_reward)
    assert bad > 0  # a random LM rarely writes "Score: k"
    v = critic.values(states, facts, mode="greedy")
    assert np.allclose(v, want) and critic.stats["value_fallbacks"] == bad
    assert critic.stats["estimates"] == len(states) and critic.seconds_per_estimate > 0


def test_the_critics_reward_is_one_minus_the_squared_error_and_zero_when_malformed():
    g = np.array([1.0, 0.0, 0.9025, 0.5, 0.3])
    v = np.array([0.7, 0.0, 1.0, 0.3, 0.0])
    bad = np.array([False, False, False, False, True])
    assert scoring_reward(g, v, bad) == pytest.approx([0.91, 1.0, 1 - 0.0975**2, 0.96, 0.0])


@pytest.mark.parametrize(
    "g, k",
    [(0.0, 0), (0.04, 0), (0.25, 3), (0.6, 6), (0.75, 8), (0.857375, 9), (0.9025, 9), (1.0, 10)],
)
def test_sft_targets_end_with_the_rounded_return(pages, g, k):
    for obs in pages:
        target = sft_target(critic_state_text(obs, 6), g)
        assert target.endswith(f"\nScore: {k}") and parse_score(target) == k


def test_sft_rationales_are_built_from_the_page_facts(pages):
    search, results, product = (rationale(critic_state_text(o, 6)) for o in pages)
    assert search == "Search page, nothing chosen."
    assert results.startswith("Results: ") and " in budget, best match " in results
    assert product.startswith("Item: ") and ", match " in product and "options" in product
    assert any(w in product for w in ("in budget", "over budget", "price unknown"))


def test_the_prompt_carries_the_actor_facts_and_the_end_of_a_long_state():
    critic = GenerativeCritic.fresh("tiny-lm", prompt_tokens=32)
    facts = ActorFacts(success_rate=0.25, mean_reward=0.61, episodes=40).at(2)
    state = "goal words " * 200 + "| item page | within budget: yes"
    prompt = critic.critic_prompt(state, facts)
    assert "25% of its last 40 episodes" in prompt and "mean reward 0.61" in prompt
    assert "turn 3" in prompt
    assert "within budget: yes" in prompt and prompt.count("goal words") < 20
    assert len(critic.backbone.encode_text(critic.fit_state(state))) <= 32 + 2


def test_the_score_distribution_is_read_exactly_in_the_rationales_generation(sft_critic, played):
    batch, facts = played
    traces = Traces.of(batch, facts, CONFIG)
    prompts, _ = sft_critic.prompts(traces.states[:4], traces.facts[:4])
    reader = sft_critic.score_distribution(prompts)
    probs = reader.probs()
    assert probs.shape == (4, 11) and np.allclose(probs.sum(1), 1)
    bb = sft_critic.backbone
    for i, prompt in enumerate(prompts):  # the same numbers from separate scoring passes
        base = reader.rationale[i] + (reader.prefix if reader.forced[i] else []) + [reader.space]
        one = reader.digits[1]
        comps = [base + [d] for d in reader.digits]
        comps += [base + [one, reader.eos], base + [one, reader.digits[0]]]
        with torch.no_grad():
            last = [float(x[-1]) for x in bb.score_sequences([prompt] * 12, comps).token_logprobs]
        first = np.exp(np.array(last[:10]) - max(last[:10]))
        end, zero = np.exp(last[10:]) / np.exp(last[10:]).sum()
        want = np.append(first, first[1] * zero)
        want[1] *= end
        assert np.allclose(probs[i], want / want.sum(), atol=1e-5)
    v = sft_critic.values(traces.states[:4], traces.facts[:4])
    assert np.allclose(v, probs @ (np.arange(11) / 10))


def test_the_critic_is_updated_before_the_actor_and_advantages_come_from_it(
    actor, played, sft_critic
):
    batch, facts = played
    actor, critic = copy.deepcopy(actor), copy.deepcopy(sft_critic)
    optimizer = torch.optim.AdamW(actor.parameters(), lr=1e-3)
    critic_opt = torch.optim.AdamW(
        [p for p in critic.parameters() if p.requires_grad], lr=CONFIG.critic_lr
    )
    order: list[str] = []
    critic_opt.register_step_pre_hook(lambda *_: order.append("critic"))
    optimizer.register_step_pre_hook(lambda *_: order.append("actor"))
    traces = Traces.of(batch, facts, CONFIG)
    before = critic.values(traces.states, traces.facts)
    metrics, adv = genac_update(
        CONFIG, actor, critic, optimizer, critic_opt, batch, facts, np.random.default_rng(0)
    )
    assert metrics["critic_malformed"] < metrics["critic_samples"] == len(batch)  # a gradient
    assert "critic" in order and "actor" in order
    assert order == sorted(order, key=lambda who: who == "actor")  # every critic step first
    after = critic.values(traces.states, traces.facts)
    assert not np.allclose(before, after)  # the critic was trained
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    assert torch.allclose(adv, archer_advantages(batch, as_tensor(after)), atol=1e-6)
    assert not torch.allclose(adv, archer_advantages(batch, as_tensor(before)), atol=1e-4)
    for key in ("critic_reward", "critic_mse", "explained_variance", "clip_frac", "approx_kl"):
        assert np.isfinite(metrics[key]), key


def test_a_saved_critic_reloads_to_the_same_values(sft_critic, played, tmp_path):
    batch, facts = played
    traces = Traces.of(batch, facts, CONFIG)
    sft_critic.save(tmp_path / "critic")
    again = GenerativeCritic.load(tmp_path / "critic")
    assert (again.rationale_tokens, again.max_steps) == (24, 6)
    assert np.array_equal(
        again.values(traces.states, traces.facts), sft_critic.values(traces.states, traces.facts)
    )
    with pytest.raises(ValueError, match="not a generative critic"):
        ScorerPolicy.from_backbone_name("tiny-encoder").save(tmp_path / "scorer")
        GenerativeCritic.load(tmp_path / "scorer")


def _strip(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if not k.endswith("_s") and "_s_" not in k}


def test_smoke_preset_trains_resumes_with_its_critic_and_plays(tmp_path):
    out = tmp_path / "genac"
    args = ("train", "--agent", "genac", "--preset", "smoke", "--eval-episodes", "0")
    result = cli(*args, "--out", out)
    assert result.exit_code == 0, result.output
    latest = out / "checkpoints" / "latest"
    played = tmp_path / "play"
    result = cli("run", "--agent", "genac", "--checkpoint", latest, "--split", "validation",
                 "--episodes", "2", "--mode", "text", "--out", played)  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((played / "manifest.json").read_text())
    assert manifest["agent"] == "genac" and manifest["checkpoint"] == str(latest.resolve())
    assert json.loads((played / "summary.json").read_text())["n_episodes"] == 2

    cfg = PRESETS["smoke"]
    rows = TrainRun(out, cfg, trainer="genac", preset="smoke", show_progress=False).metrics()
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    warm, ppo = rows[1], rows[2]  # critic_warmup 1: iteration 1 trains the critic only
    assert warm["clip_frac"] == "nan" and int(warm["critic_samples"]) > 0
    for key in ("critic_reward", "critic_mse", "explained_variance", "clip_frac", "approx_kl",
                "adv_mean", "adv_std", "critic_gen_s", "actor_update_s"):  # fmt: skip
        assert np.isfinite(float(ppo[key])), key
    for row in (warm, ppo):
        # critic_states 0: the critic samples every state of the batch once; at
        # critic_temperature 1 the smoke critic (tiny-lm after 4 SFT epochs) writes no
        # well-formed score, so every sample is counted malformed and gets the rule's floor, 0
        n = int(row["train_env_steps"])
        assert int(row["critic_samples"]) == int(row["critic_malformed"]) == n
        assert float(row["critic_reward"]) == 0.0
    # no values in the warm-up; then its greedy rationales write "Score:" within
    # rationale_tokens (SFT's template), so no value had to be forced
    assert warm["value_fallbacks"] == "nan" and int(ppo["value_fallbacks"]) == 0
    assert 0.0 <= float(ppo["v_mean"]) <= 1.0
    assert json.loads((latest / "policy.json").read_text())["metadata"]["trained_by"] == "genac"
    info = json.loads((latest / "critic" / "policy.json").read_text())
    assert info["kind"] == "genac-critic" and "sft" in info["metadata"]
    # the work the smoke preset sizes (what keeps it within minutes on a CPU): SFT on the
    # turns of sft_tasks episodes, then iterations of tasks_per_iteration episodes of at most
    # max_steps turns each, none errored
    assert 0 < info["metadata"]["sft"]["sft_traces"] <= cfg.sft_tasks * cfg.max_steps
    for row in rows[1:]:
        assert int(row["errored"]) == 0
        assert 0 < int(row["train_env_steps"]) <= cfg.tasks_per_iteration * cfg.max_steps
    assert (latest / "critic" / "optimizer.pt").is_file()
    rewards = json.loads((latest / "genac" / "facts.json").read_text())["rewards"]
    assert len(rewards) == cfg.facts_window  # 4 SFT + 3 + 3 episodes, the last 8 kept
    critic = GenerativeCritic.load(latest)
    assert critic.actor_facts == ActorFacts.of(rewards) and critic.max_steps == cfg.max_steps

    # killed after iteration 1, it resumes with the critic, its optimizer and the facts it had:
    # iteration 2 is the row the uninterrupted run wrote
    cut = tmp_path / "cut"
    shutil.copytree(out, cut, symlinks=True)
    shutil.rmtree(cut / "checkpoints" / "step-2")
    (cut / "checkpoints" / "latest").unlink()
    os.symlink("step-1", cut / "checkpoints" / "latest")
    result = cli(*args, "--out", cut)
    assert result.exit_code == 0, result.output
    again = TrainRun(cut, cfg, trainer="genac", preset="smoke", show_progress=False).metrics()
    assert [_strip(r) for r in again] == [_strip(r) for r in rows]
    assert "genac SFT" not in (cut / "train.log").read_text().split("resumed from")[-1]
