"""The LM policy and the ``lm`` agent on the tiny random-init Llama and the real text env."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import webgym  # noqa: F401  (registers the environments)
from webgym.actions import parse_action
from webgym_agents import make_agent
from webgym_agents.models import BackboneMismatch, Generation, load_backbone
from webgym_agents.observation import product_header, result_products
from webgym_agents.policies.lm_agent import (
    LEGACY_SYSTEM_PROMPT,
    LMAgent,
    LMPolicy,
    PromptConfig,
    build_prompt,
)
from webgym_agents.policies.lm_critic import LMCritic

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


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
        head = "Back to Search [SEP]" if field == "text" else "RootWebArea 'Results for"
        assert head in prompt and "lorem ipsum" in prompt


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
        assert d.scores is not None and d.scores.shape == (len(d.candidates),)
        assert torch.all(d.scores <= 0)
        assert d.logprob is not None and d.logprob <= 0


def test_choice_scores_equal_action_logprobs(policy, pages):
    obs = pages["item"]
    d = policy.decide(obs, mode="choice", temperature=0.0)
    with torch.no_grad():
        ref = policy.action_logprobs([d.prompt] * len(d.candidates), d.candidates)
    torch.testing.assert_close(d.scores, ref, atol=1e-4, rtol=1e-4)
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
    assert info["backbone"] == "tiny-lm" and info["format_version"] == 2
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
    with pytest.raises(ValueError, match=r"not a checkpoint \(it has no policy.json\).*LMPolicy"):
        make_agent("lm", checkpoint=str(tmp_path))  # refused before anything is loaded
    with pytest.raises(FileNotFoundError, match="has no policy.json. Make one with LMPolicy"):
        LMPolicy.load(tmp_path)
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


def test_the_agent_explains_its_last_act_as_a_run_records_it(policy, pages):
    """What the harness records as a step's ``decision`` (webgym_benchmarks.runner.explain)."""
    from webgym_benchmarks.runner import explain

    writer = LMAgent(policy=policy, mode="generate", temperature=0.0)
    assert explain(writer) is None  # nothing acted yet
    writer.reset(pages["item"]["goal"], seed=0)
    action = writer.act(pages["item"])
    said = explain(writer)
    assert said["text"] == writer.last_decisions[-1].raw[:4000]
    assert ("reason" in said) == (not writer.last_decisions[-1].valid)
    assert "candidates" not in said

    chooser = LMAgent(policy=policy, mode="choice", temperature=0.0)
    chooser.reset(pages["results"]["goal"], seed=0)
    action = chooser.act(pages["results"])
    said = explain(chooser)
    cands = said["candidates"]
    n = len(chooser.last_decisions[-1].candidates)
    assert len(cands) == min(5, n) and cands[0]["action"] == action  # greedy: the likeliest
    probs = [c["prob"] for c in cands]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-3
    scores = chooser.last_decisions[-1].scores.double()
    assert probs[0] == pytest.approx(float(torch.softmax(scores, 0).max()), abs=1e-4)


# ---- the shopper prompt ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chosen_option(env):
    """An item page after choosing its first option."""
    obs, _ = env.reset(seed=0)
    results, *_ = env.step(f"search[{obs['goal'].split(', and price')[0]}]")
    env.step(next(a for a in results["available_actions"] if "item_" in a))
    item, *_ = env.step("click('opt_0_0')")
    return item


def test_shopper_prompt_labels_products_with_title_and_price(policy, pages):
    obs = pages["results"]
    products = result_products(obs)
    assert len(products) == sum("item_" in a for a in obs["available_actions"]) > 0
    prompt = build_prompt(obs, policy.backbone, PromptConfig(max_prompt_tokens=512))
    for p in products:
        assert f"click('{p.bid}') # {p.title} | {p.price}" in prompt
    assert "click('back_to_search')\n" in prompt  # its name says nothing its id does not
    # The actions come before the page text, which is what gets cut.
    assert prompt.index("Available actions:") < prompt.index("Page:")


def test_shopper_prompt_item_page_header_and_selected_option(policy, chosen_option):
    prompt = build_prompt(chosen_option, policy.backbone, PromptConfig(max_prompt_tokens=256))
    header = product_header(chosen_option)
    assert header is not None and header.price
    assert f"Product: {header.title}\nPrice: {header.price}" in prompt
    assert len(policy.backbone.encode_text(prompt)) <= 256
    roomy = build_prompt(chosen_option, policy.backbone, PromptConfig(max_prompt_tokens=1024))
    assert re.search(r"click\('opt_0_0'\) # \w[^\n]*: [^\n]+ \(selected\)\n", roomy)
    other = next(x for x in roomy.splitlines() if x.startswith("click('opt_0_1') # "))
    assert not other.endswith("(selected)")


def test_shopper_prompt_shortens_titles_but_keeps_every_price(policy, pages):
    obs = pages["results"]
    prompt = build_prompt(obs, policy.backbone, PromptConfig(max_prompt_tokens=384))
    assert len(policy.backbone.encode_text(prompt)) <= 384
    assert "Page:" not in prompt  # the page text goes first
    for p in result_products(obs):
        line = next(x for x in prompt.splitlines() if x.startswith(f"click('{p.bid}')"))
        assert line.endswith(f" | {p.price}")
        shown = line.split(" # ", 1)[1].removesuffix(f" | {p.price}")
        # Whole, or its tail of whole words after an ellipsis.
        assert shown == p.title or (shown.startswith("… ") and p.title.endswith(shown[2:]))
    for action in obs["available_actions"]:
        assert action in prompt


def test_format_one_prompt_config_keeps_its_layout():
    old = {"max_prompt_tokens": 384, "page_field": "text", "system_prompt": LEGACY_SYSTEM_PROMPT}
    assert PromptConfig.from_dict(old).layout == "page-first"
    assert PromptConfig.from_dict({**old, "layout": "shopper"}).layout == "shopper"
    assert PromptConfig().layout == "shopper"
    with pytest.raises(ValueError, match="layout"):
        PromptConfig(layout="sideways")


# ---- the probability of what was done -----------------------------------------------------


def _manual_query_logprob(policy, prompt, ids, temperature):
    """sum_j log softmax(logits / T)[q_j] from one plain forward pass of the whole model."""
    bb = policy.backbone
    context = bb.encode_text(prompt + "search[")
    with torch.no_grad():
        logits = bb.model(input_ids=torch.tensor([context + list(ids)])).logits[0].float()
    logp = torch.log_softmax(logits / temperature, -1)
    return float(sum(logp[len(context) - 1 + j, t] for j, t in enumerate(ids)))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_choice_logprob_is_the_acting_softmax_and_recomputes(policy, pages, temperature):
    rng = np.random.default_rng(3)
    ds = policy.decide_batch(
        [pages["results"], pages["item"]], mode="choice", temperature=temperature, rng=rng
    )
    for d in ds:
        expect = torch.log_softmax(d.scores / temperature, 0)[d.index]
        assert d.logprob == pytest.approx(float(expect), abs=1e-6)
        assert d.temperature == temperature and d.query_ids is None
        assert d.logprobs is d.scores  # the old name of the candidates' scores
    lp = policy.decision_logprobs(
        [d.prompt for d in ds], [d.candidates for d in ds], [d.index for d in ds], temperature
    )
    assert lp.requires_grad
    torch.testing.assert_close(
        lp.detach(), torch.tensor([d.logprob for d in ds]), atol=1e-5, rtol=0
    )
    by_name = policy.decision_logprobs(
        [d.prompt for d in ds], [d.candidates for d in ds], [d.action for d in ds], temperature
    )
    torch.testing.assert_close(by_name.detach(), lp.detach(), atol=0, rtol=0)
    policy.model.zero_grad(set_to_none=True)
    lp.sum().backward()
    assert policy.model.get_input_embeddings().weight.grad is not None
    policy.model.zero_grad(set_to_none=True)


def test_greedy_choice_is_a_point_mass(policy, pages):
    d = policy.decide(pages["item"], mode="choice", temperature=0.0)
    assert d.logprob == 0.0 and d.index == int(torch.argmax(d.scores))
    with pytest.raises(ValueError, match="temperature"):
        policy.decision_logprobs([d.prompt], [d.candidates], [d.index], 0.0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chosen_search_adds_its_query_logprob(policy, pages, monkeypatch, temperature):
    bb = policy.backbone
    plain = bb.score_candidates_and_state

    def favour_search(prompt, candidates, **kw):  # makes the search the likely choice
        scores, state = plain(prompt, candidates, **kw)
        bonus = torch.tensor([1000.0 if c.startswith("search[") else 0.0 for c in candidates])
        return scores + bonus, state

    monkeypatch.setattr(bb, "score_candidates_and_state", favour_search)
    obs = pages["search"]
    d = policy.decide(obs, mode="choice", temperature=temperature, rng=np.random.default_rng(0))
    assert d.action.startswith("search[") and d.query_ids
    choice = float(torch.log_softmax(d.scores / temperature, 0)[d.index])
    manual = _manual_query_logprob(policy, d.prompt, d.query_ids, temperature)
    assert d.query_logprob == pytest.approx(manual, abs=1e-4)
    assert d.logprob == pytest.approx(choice + d.query_logprob, abs=1e-6)
    assert d.query_logprob < 0
    again = policy.decision_logprobs(
        [d.prompt], [d.candidates], [d.index], temperature, query_ids=[d.query_ids]
    )
    assert float(again[0]) == pytest.approx(d.logprob, abs=1e-5)
    # Choosing the listed click instead leaves the query's probability out.
    click = d.candidates.index("click('search_button')")
    other = policy.decision_logprobs(
        [d.prompt], [d.candidates], [click], temperature, query_ids=[d.query_ids]
    )
    expect = float(torch.log_softmax(d.scores / temperature, 0)[click])
    assert float(other[0]) == pytest.approx(expect, abs=1e-5)


def test_generate_logprob_is_the_sampled_tokens(policy, pages):
    d = policy.decide(pages["item"], mode="generate", temperature=1.0, seed=4)
    assert d.token_ids and len(d.token_ids) <= policy.max_new_tokens
    with torch.no_grad():
        toks, sums = policy.backbone.sequence_logprobs([d.prompt], [d.token_ids])
    assert toks[0].shape == (len(d.token_ids),)  # no end-of-turn token added
    assert d.logprob == pytest.approx(float(sums[0]), abs=1e-5)
    ev = policy.evaluate_decisions([d])
    assert float(ev.logprobs[0]) == pytest.approx(d.logprob, abs=1e-5) and ev.values is None
    assert policy.decide(pages["item"], mode="generate", temperature=0.0).logprob == 0.0


def test_add_eos_is_never_scored_on_token_ids(policy, pages):
    prompt = policy.prompt(pages["item"])
    ids = policy.backbone.encode_text("click('buy")  # a generation cut at max_new_tokens
    assert policy.add_eos
    toks = policy.token_logprobs([prompt, prompt], [ids, "click('buy_now')"])
    assert toks[0].shape == (len(ids),)
    assert toks[1].shape == (len(policy.backbone.encode_text("click('buy_now')")) + 1,)


def test_query_stops_at_the_bracket_and_placeholder_falls_back(policy, pages, monkeypatch):
    assert LMPolicy.clean_query("<query>]  # type <query> into the box") == ""
    assert LMPolicy.clean_query(" red  shoes] and more") == "red shoes"
    assert LMPolicy.clean_query("<query> red shoes]") == "red shoes"
    assert LMPolicy.clean_query("...]") == ""
    seen = {}
    bb = policy.backbone
    ids = bb.encode_text("<query>]")

    def copycat(prompts, **kw):
        seen.update(kw)
        return [Generation("<query>", ids, False, "]") for _ in prompts]

    monkeypatch.setattr(bb, "generate_with_ids", copycat)
    before = policy.stats["fallback_queries"]
    cands = policy.candidates(pages["search"])
    assert "]" in seen["stop_strings"]
    goal = pages["search"]["goal"].split(", and price")[0]
    assert cands[-1] == f"search[{goal}]"
    assert policy.stats["fallback_queries"] == before + 1


# ---- the value head -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def valued():
    policy = LMPolicy(
        load_backbone("tiny-lm", seed=2), PromptConfig(max_prompt_tokens=384), max_new_tokens=8
    )
    head = policy.add_value_head(mlp_hidden=16)
    with torch.no_grad():  # a head that does not output zeros
        for p in head.parameters():
            p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape))
    return policy


def test_value_comes_from_the_scoring_pass(valued, pages):
    obs = [pages["results"], pages["item"], pages["search"]]
    ds = valued.decide_batch(obs, mode="choice", temperature=1.0, rng=np.random.default_rng(1))
    with torch.no_grad():
        separate = valued.values([d.prompt for d in ds])
    for d, v in zip(ds, separate.tolist(), strict=True):
        assert d.value is not None and d.value == pytest.approx(v, abs=1e-5)
    ev = valued.evaluate_decisions(ds)
    assert ev.values.requires_grad and ev.logprobs.requires_grad
    torch.testing.assert_close(
        ev.values.detach(), torch.tensor([d.value for d in ds]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        ev.logprobs.detach(), torch.tensor([d.logprob for d in ds]), atol=1e-5, rtol=0
    )
    assert torch.all(ev.entropies >= 0)
    gen = valued.decide(pages["item"], mode="generate", temperature=0.0)
    assert gen.value == pytest.approx(float(separate[1]), abs=1e-5)
    # The head trains with the policy: its parameters are among the policy's.
    assert any(p is next(valued.value_head.parameters()) for p in valued.parameters())


def test_value_head_checkpoint_round_trip(valued, pages, tmp_path):
    valued.save(tmp_path / "v")
    info = json.loads((tmp_path / "v" / "policy.json").read_text())
    assert info["value_head"]["fingerprint"] == valued.backbone.checkpoint_fingerprint()
    loaded = LMPolicy.load(tmp_path / "v")
    prompts = [valued.prompt(pages["item"]), valued.prompt(pages["results"])]
    with torch.no_grad():
        torch.testing.assert_close(loaded.values(prompts), valued.values(prompts), atol=0, rtol=0)
    # A head recorded for another backbone is refused, like the weights.
    bad = json.loads(json.dumps(info))
    bad["value_head"]["fingerprint"]["config_hash"] = "0" * 16
    (tmp_path / "v" / "policy.json").write_text(json.dumps(bad))
    with pytest.raises(BackboneMismatch, match="value head"):
        LMPolicy.load(tmp_path / "v")
    bad["value_head"] = dict(
        info["value_head"], config={**info["value_head"]["config"], "hidden_size": 8}
    )
    (tmp_path / "v" / "policy.json").write_text(json.dumps(bad))
    with pytest.raises(BackboneMismatch, match="features"):
        LMPolicy.load(tmp_path / "v")
    # Saving without a head removes a stale head file.
    LMPolicy(valued.backbone, valued.config).save(tmp_path / "v")
    assert not (tmp_path / "v" / "value_head.safetensors").exists()
    assert LMPolicy.load(tmp_path / "v").value_head is None


def test_format_one_checkpoint_loads_without_a_head(checkpoint, tmp_path, pages):
    """A checkpoint written before format 2 (the recorded bc run's): no head, page-first."""
    info = json.loads((checkpoint / "policy.json").read_text())
    info["format_version"] = 1
    info.pop("value_head", None)
    info["prompt_config"].pop("layout")
    info["prompt_config"]["system_prompt"] = LEGACY_SYSTEM_PROMPT
    (tmp_path / "policy.json").write_text(json.dumps(info))
    (tmp_path / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    old = LMPolicy.load(tmp_path)
    assert old.value_head is None and old.config.layout == "page-first"
    prompt = old.prompt(pages["results"])
    assert prompt.index("Page:") < prompt.index("Available actions:")
    assert "# link 'Back to Search'" in prompt
    assert old.act(pages["results"], temperature=0.0) in pages["results"]["available_actions"]


# ---- the LM critic (policies/lm_critic.py) ----------------------------------------------------


def test_lm_critic_reads_the_prompt_boundary_only_and_learns_apart_from_the_policy(policy, pages):
    critic = LMCritic.from_policy(policy)
    prompt = critic.prompt(pages["item"])
    assert prompt == policy.prompt(pages["item"])
    with torch.no_grad():
        assert float(critic.values([prompt])[0]) == 0.0  # a zero-initialised head
        for p in critic.value_head.parameters():
            p.copy_(torch.linspace(-0.3, 0.3, p.numel()).reshape(p.shape))
        v = float(critic.values([prompt])[0])
        # two different responses after the same prompt: the value read is the same
        ids = [critic.backbone.encode_text(t) for t in ("click('prev')", "search[red shoes]")]
        _, ev = critic.evaluate_generations([prompt, prompt], ids, temperature=1.0)
    assert ev.values[0] == pytest.approx(v, abs=1e-5) and ev.values[1] == pytest.approx(v, abs=1e-5)
    # a critic step moves the critic's copy of the LM, never the policy's
    before = [p.detach().clone() for p in policy.backbone.model.parameters()]
    opt = torch.optim.SGD(critic.param_groups(1e-2, 1e-2))
    (critic.values([prompt])[0] - 1.0).pow(2).backward()
    opt.step()
    assert any(
        not torch.equal(a, b)
        for a, b in zip(before, critic.backbone.model.parameters(), strict=True)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(before, policy.backbone.model.parameters(), strict=True)
    )


def test_lm_critic_checkpoint_round_trip_and_refusals(policy, pages, checkpoint, tmp_path):
    critic = LMCritic.from_policy(policy, mlp_hidden=8)
    with torch.no_grad():
        for p in critic.value_head.parameters():
            p.copy_(torch.linspace(-0.2, 0.2, p.numel()).reshape(p.shape))
    critic.save(tmp_path / "c", metadata={"trained_by": "test"})
    info = json.loads((tmp_path / "c" / "policy.json").read_text())
    assert info["kind"] == "lm-critic"
    assert info["value_head"]["fingerprint"] == critic.backbone.checkpoint_fingerprint()
    loaded = LMCritic.load(tmp_path / "c")
    prompts = [critic.prompt(pages["results"]), critic.prompt(pages["search"])]
    with torch.no_grad():
        torch.testing.assert_close(loaded.values(prompts), critic.values(prompts), atol=0, rtol=0)
    with pytest.raises(ValueError, match="not an LM critic"):
        LMCritic.load(checkpoint)  # a policy checkpoint
    info["fingerprint"]["config_hash"] = "0" * 16
    (tmp_path / "c" / "policy.json").write_text(json.dumps(info))
    with pytest.raises(BackboneMismatch):
        LMCritic.load(tmp_path / "c")
