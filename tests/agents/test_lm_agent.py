"""The LM policy and the ``lm`` agent on the tiny random-init Llama and the real text env."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import webgym  # noqa: F401  (registers the environments)
from agents import make_agent
from agents.lm_agent import LMAgent, LMPolicy, PromptConfig, build_prompt
from agents.models import BackboneMismatch, load_backbone
from webgym.actions import parse_action

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def env():
    e = gym.make("WebGym-ShoppingText-v0")
    yield e
    e.close()


@pytest.fixture(scope="module")
def pages(env):
    """Observations of a search page, a results page and an item page of one task."""
    obs, _ = env.reset(seed=0)
    search = obs
    goal = obs["goal"].split(", and price")[0]
    results, *_ = env.step(f"search[{goal}]")
    item, *_ = env.step(next(a for a in results["available_actions"] if "item_" in a))
    return {"search": search, "results": results, "item": item}


@pytest.fixture(scope="module")
def policy():
    # A short budget and short generations keep the suite fast on a 2-core CPU.
    return LMPolicy.from_backbone_name(
        "tiny-lm", PromptConfig(max_prompt_tokens=384), max_new_tokens=12
    )


@pytest.fixture(scope="module")
def checkpoint(policy, tmp_path_factory):
    d = tmp_path_factory.mktemp("lm-ckpt")
    policy.save(d, metadata={"note": "untrained"})
    return d


def _n_tokens(policy, text):
    return len(policy.backbone.encode_text(text))


@pytest.mark.parametrize("field", ["text", "axtree"])
@pytest.mark.parametrize("truncate", ["middle", "end"])
def test_prompt_keeps_goal_and_actions_under_a_tiny_budget(policy, pages, field, truncate):
    obs = dict(pages["results"])
    obs["text"] = obs["text"] + " [SEP] " + "lorem ipsum dolor sit amet " * 400
    obs["axtree"] = obs["axtree"] + "\n" + "\tStaticText 'lorem ipsum dolor'\n" * 400
    cfg = PromptConfig(max_prompt_tokens=700, page_field=field, truncate=truncate)
    full = build_prompt(obs, policy.backbone, PromptConfig(max_prompt_tokens=100_000))
    prompt = build_prompt(obs, policy.backbone, cfg)
    assert _n_tokens(policy, full) > 700
    assert _n_tokens(policy, prompt) <= 700
    assert obs["goal"] in prompt
    for action in obs["available_actions"]:
        assert action in prompt
    assert "tokens cut ...]" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    if truncate == "middle":  # the page's head and its tail both survive
        assert "Back to Search" in prompt and "lorem ipsum" in prompt


def test_prompt_respects_the_model_positions(policy, pages):
    cfg = PromptConfig(max_prompt_tokens=10**6)
    obs = dict(pages["item"], text=pages["item"]["text"] + " word" * 5000)
    prompt = build_prompt(obs, policy.backbone, cfg)
    assert _n_tokens(policy, prompt) <= policy.backbone.max_length - 64


def test_prompt_lists_search_on_the_search_page(policy, pages):
    assert "search[<query>]" in policy.prompt(pages["search"])
    assert "search[<query>]" not in policy.prompt(pages["results"])
    assert "# scent: " in policy.prompt(pages["item"]) or "opt_" not in str(
        pages["item"]["available_actions"]
    )


def test_candidates(policy, pages):
    cands = policy.candidates(pages["search"])
    assert cands[: len(pages["search"]["available_actions"])] == list(
        pages["search"]["available_actions"]
    )
    search = [c for c in cands if c.startswith("search[")]
    assert len(search) == 1
    assert parse_action(search[0]).name == "search"
    assert policy.candidates(pages["results"]) == list(pages["results"]["available_actions"])
    sampled = policy.candidates(pages["search"], rng=np.random.default_rng(1))
    assert any(c.startswith("search[") and len(c) > len("search[]") for c in sampled)


@pytest.mark.parametrize("page", ["search", "results", "item"])
def test_choice_mode_returns_a_candidate(policy, pages, page):
    obs = pages[page]
    greedy = policy.candidates(obs)
    a0 = policy.act(obs, mode="choice", temperature=0.0)
    assert a0 in greedy
    assert policy.act(obs, mode="choice", temperature=0.0) == a0  # deterministic
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = policy.decide(obs, mode="choice", temperature=1.0, rng=rng)
        assert d.action in d.candidates
        assert d.logprobs is not None and d.logprobs.shape == (len(d.candidates),)
        assert torch.all(d.logprobs <= 0)


def test_choice_scores_equal_action_logprobs(policy, pages):
    obs = pages["item"]
    d = policy.decide(obs, mode="choice", temperature=0.0)
    with torch.no_grad():
        ref = policy.action_logprobs([d.prompt] * len(d.candidates), d.candidates)
    torch.testing.assert_close(d.logprobs, ref, atol=1e-4, rtol=1e-4)
    assert d.index == int(torch.argmax(ref))


def test_generate_mode_never_crashes_the_env(policy, env):
    obs, _ = env.reset(seed=3)
    before = policy.stats["invalid"]
    action = policy.act(obs, mode="generate", temperature=0.0)
    assert isinstance(action, str)
    obs2, reward, terminated, truncated, info = env.step(action)
    try:
        parse_action(action)
        valid = True
    except ValueError:
        valid = False
    if valid:
        assert obs2["last_action"] == action
    else:
        assert obs2["last_action_error"]
        assert policy.stats["invalid"] == before + 1
    assert reward == 0.0 and not terminated
    sampled = policy.act(obs, mode="generate", temperature=1.0, seed=0)
    assert isinstance(sampled, str)
    assert policy.act(obs, mode="generate", temperature=1.0, seed=0) == sampled


def test_parse_generation():
    assert LMPolicy.parse_generation("click('buy_now')\nbecause") == ("click('buy_now')", True)
    assert LMPolicy.parse_generation("  search[red shoes] ") == ("search[red shoes]", True)
    assert LMPolicy.parse_generation("I think we buy") == ("I think we buy", False)


def test_action_logprobs_differentiable_and_sum_of_tokens(policy, pages):
    prompts = [policy.prompt(pages[p]) for p in ("search", "results", "item")]
    actions = ["search[leave in conditioner]", "click('next_page')", "click('buy_now')"]
    lp = policy.action_logprobs(prompts, actions)
    assert lp.shape == (3,) and lp.requires_grad
    toks = policy.token_logprobs(prompts, actions)
    torch.testing.assert_close(lp, torch.stack([t.sum() for t in toks]))
    assert toks[2].shape[0] == len(policy.backbone.encode_text(actions[2])) + 1  # + <|im_end|>
    policy.model.zero_grad()
    (-lp.mean()).backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    policy.model.zero_grad()
    alone = policy.action_logprobs(prompts[2:], actions[2:]).detach()
    torch.testing.assert_close(alone, lp[2:].detach(), atol=1e-4, rtol=1e-4)
    chunked = policy.action_logprobs(prompts, actions, batch_size=2).detach()
    torch.testing.assert_close(chunked, lp.detach(), atol=1e-4, rtol=1e-4)


def test_save_load_round_trip(policy, checkpoint, pages):
    info = json.loads((checkpoint / "policy.json").read_text())
    assert info["backbone"] == "tiny-lm" and info["format_version"] == 1
    assert info["fingerprint"] == policy.backbone.checkpoint_fingerprint()
    assert info["metadata"]["note"] == "untrained"
    # A different init proves the weights come from the file, not from the seed.
    trained = LMPolicy(load_backbone("tiny-lm", seed=7), PromptConfig(max_prompt_tokens=512))
    d = checkpoint.parent / "other"
    trained.save(d)
    loaded = LMPolicy.load(d)
    assert loaded.config == trained.config
    prompts = [trained.prompt(pages["item"])] * 2
    actions = ["click('buy_now')", "click('prev')"]
    with torch.no_grad():
        a = trained.action_logprobs(prompts, actions)
        b = loaded.action_logprobs(prompts, actions)
        c = policy.action_logprobs(prompts, actions)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)


def test_load_refuses_another_backbone(checkpoint, tmp_path):
    info = json.loads((checkpoint / "policy.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())

    def write(d):
        (tmp_path / "policy.json").write_text(json.dumps(d))

    other = json.loads(json.dumps(info))
    other["fingerprint"]["config_hash"] = "0123456789abcdef"
    write(other)
    with pytest.raises(BackboneMismatch, match="config"):
        LMPolicy.load(tmp_path)

    other = json.loads(json.dumps(info))
    other["fingerprint"]["backbone"] = "smollm2-135m"
    write(other)
    with pytest.raises(BackboneMismatch, match="smollm2-135m"):
        LMPolicy.load(tmp_path)

    write(info)  # the right file, given an encoder backbone
    with pytest.raises(BackboneMismatch, match="tiny-encoder"):
        LMPolicy.load(tmp_path, backbone=load_backbone("tiny-encoder"))
    assert LMPolicy.load(tmp_path).backbone.name == "tiny-lm"


def test_missing_policy_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="policy.json"):
        make_agent("lm", checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        make_agent("lm")


def test_lm_agent_plays_an_episode(env, checkpoint):
    agent = make_agent("lm", checkpoint=str(checkpoint), mode="choice", temperature=0.0)
    assert isinstance(agent, LMAgent) and agent.deterministic and agent.needs_checkpoint
    assert agent.policy.config.max_prompt_tokens == 384 and agent.policy.max_new_tokens == 12
    obs, _ = env.reset(seed=5)
    agent.reset(obs["goal"], seed=5)
    seen, actions = [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = agent.act(obs)
        # Choice mode: always one of the page's actions, or a search where there is a box.
        assert action in obs["available_actions"] or action.startswith("search[")
        seen.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
    assert terminated or truncated
    assert 0.0 <= reward <= 1.0 and len(actions) <= 15
    # Temperature 0 is deterministic, and act_batch (another agent, other episodes) agrees.
    again = make_agent("lm", checkpoint=str(checkpoint), temperature=0.0)
    again.reset(seen[0]["goal"], seed=123)
    picks = [0, len(seen) // 2, len(seen) - 1]
    assert again.act_batch([seen[i] for i in picks]) == [actions[i] for i in picks]
    sampler = make_agent("lm", checkpoint=str(checkpoint), temperature=1.0)
    assert not sampler.deterministic


def test_act_batch_matches_act(policy, pages):
    agent = LMAgent(policy=policy, mode="generate", temperature=0.0)
    obs = [pages["results"], pages["item"]]
    assert agent.act_batch(obs) == [agent.act(o) for o in obs]
    chooser = LMAgent(policy=policy, mode="choice", temperature=0.0)
    assert chooser.act_batch(obs) == [chooser.act(o) for o in obs]
