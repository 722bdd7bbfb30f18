"""A scorer policy can express "this item is not it": the instruction's options read from its
text, the item page's mismatch on Buy Now and on the way back, the agent's episode memory of
the results it opened, and old checkpoints loading with zero weight on the new features."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file, save_file

import webgym  # noqa: F401 - registers the environments
from webgym.envs import MAX_EPISODE_STEPS
from webgym.shop.tasks import instruction
from webgym_agents.observation import (
    goal_options,
    instruction_budget,
    lookalike_items,
    missing_goal_options,
    option_groups,
    result_products,
    visited_items,
    with_history,
)
from webgym_agents.policies.scorer_policy import (
    FEATURES,
    HEAD_FILE,
    N_FEATURES_V1,
    RETRY_STEPS,
    ScorerAgent,
    ScorerPolicy,
    candidates,
    search_queries,
    state_text,
)
from webgym_agents.scripted.rule_agent import chosen_options

VISITED, BUY_MISMATCH, BACK_MISMATCH, BUY_PENDING, PAGE_EXHAUSTED = (
    FEATURES.index(k)
    for k in ("visited", "buy_mismatch", "back_mismatch", "buy_pending", "page_exhausted")
)


def test_goal_options_read_back_what_the_instruction_generator_wrote():
    rng = random.Random(0)
    dims = ["color", "size", "flavor name", "count", "style"]
    values = ["white", "king", "4 person", "8 pack", "x-large", "dark brown", "12 oz", "3.5"]
    for _ in range(200):
        k = rng.randint(0, 3)
        options = {d: rng.choice(values) for d in rng.sample(dims, k)}
        price = rng.choice([30.0, 140.0, 1e9])
        text = instruction(rng, "camping tent", ["packable"], options, price)
        assert goal_options(text) == list(options.items()), text


def _item_pages(env, task_id: str, n: int = 10):
    """(results observation, item observation) for each of the first n results of the rule
    agent's query, each item reached from the results page and left by ``< Prev``."""
    obs, _ = env.reset(options={"task_id": task_id})
    results, *_ = env.step(f"search[{search_queries(obs['goal'])[0]}]")
    out = []
    for action in [a for a in results["available_actions"] if "item_" in a][:n]:
        item, *_ = env.step(action)
        out.append((action, item))
        results, *_ = env.step("click('prev')")
    return results, out


def test_buy_and_back_carry_the_item_pages_mismatch(env):
    seen = {0.0: 0, 1.0: 0}
    for task in ("test-0003", "test-0001", "test-0005", "test-0002"):
        _, items = _item_pages(env, task)
        for _, item in items:
            goal = item["goal"]
            c = candidates(item)
            buy = c.features[c.actions.index("click('buy_now')")]
            back = c.features[c.actions.index("click('prev')")]
            lacks = bool(missing_goal_options(goal, option_groups(item)))
            assert buy[BUY_MISMATCH] == back[BACK_MISMATCH]
            assert buy[BACK_MISMATCH] == back[BUY_MISMATCH] == 0.0  # each on its own kind
            fits = MAX_EPISODE_STEPS - item["step"] >= RETRY_STEPS
            if lacks:
                assert buy[BUY_MISMATCH] == float(fits), (item["step"], fits)
            seen[buy[BUY_MISMATCH]] += 1
            others = [f for a, f in zip(c.actions, c.features, strict=True) if "opt_" in a]
            assert all(f[BUY_MISMATCH] == f[BACK_MISMATCH] == 0.0 for f in others)
    assert seen[0.0] and seen[1.0], seen  # both kinds of item page were met


def test_a_result_opened_earlier_is_not_offered_again_while_others_are_left(env):
    results, items = _item_pages(env, "test-0003", n=2)
    opened = [a for a, _ in items]
    assert not any(f[VISITED] for f in candidates(results).features)  # no memory, no marks
    remembered = with_history(results, ["search[tent]", *opened])
    assert visited_items(remembered) == {a.split("item_")[1][:-2] for a in opened}
    c = candidates(remembered)
    listed = [a for a in results["available_actions"] if "item_" in a]
    offered = [a for a in c.actions if "item_" in a]
    alike = lookalike_items(remembered, instruction_budget(results["goal"]))
    # not offered again, nor a lookalike of one left
    assert offered == [a for a in listed if a not in opened and a[12:-2] not in alike]
    everything = with_history(results, listed)  # every result opened: all offered, marked
    c = candidates(everything)
    marked = [a for a, f in zip(c.actions, c.features, strict=True) if f[VISITED] == 1.0]
    assert marked == listed


def test_the_agent_remembers_its_own_actions_within_an_episode(env):
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0).eval()
    agent = ScorerAgent(policy=policy)
    seen: list[dict] = []
    original = policy.decide_batch

    def spy(observations, **kw):
        seen.extend(observations)
        return original(observations, **kw)

    policy.decide_batch = spy
    obs, _ = env.reset(options={"task_id": "test-0003"})
    agent.reset(obs["goal"], seed=0)
    actions = []
    for _ in range(3):
        actions.append(agent.act(obs))
        obs, *_ = env.step(actions[-1])
    assert [o["previous_actions"] for o in seen] == [[], actions[:1], actions[:2]]
    agent.reset(obs["goal"], seed=0)
    agent.act(obs)
    assert seen[-1]["previous_actions"] == []  # a new episode starts with no memory


def test_going_back_is_marked_only_while_a_retry_fits_in_the_steps_left(env):
    """With fewer than RETRY_STEPS steps left, buying the imperfect item beats a truncated
    episode (which pays 0): the mismatch features are 0 on the same lacking page."""
    _, items = _item_pages(env, "test-0003")
    goal = items[0][1]["goal"]
    lacking = next(it for _, it in items if missing_goal_options(goal, option_groups(it)))
    buy = lambda obs: candidates(obs).features[candidates(obs).actions.index("click('buy_now')")]  # noqa: E731
    early = {**lacking, "step": MAX_EPISODE_STEPS - RETRY_STEPS}
    late = {**lacking, "step": MAX_EPISODE_STEPS - RETRY_STEPS + 1}
    assert buy(early)[BUY_MISMATCH] == 1.0
    assert buy(late)[BUY_MISMATCH] == 0.0


def test_buy_now_carries_whether_a_named_option_is_still_unchosen(env):
    """``buy_pending`` sits on Buy Now only, and is 1 exactly while an option value the
    instruction names is offered but not chosen: choosing it clears the mark."""
    seen = set()
    for task in ("test-0001", "test-0002", "test-0003", "test-0005", "test-0007"):
        _, items = _item_pages(env, task, n=4)
        for action, item in items:
            env.reset(options={"task_id": task})
            obs, *_ = env.step(f"search[{search_queries(item['goal'])[0]}]")
            obs, *_ = env.step(action)
            c = candidates(obs)
            pending = c.features[c.actions.index("click('buy_now')")][BUY_PENDING]
            assert all(
                f[BUY_PENDING] == 0.0
                for a, f in zip(c.actions, c.features, strict=True)
                if a != "click('buy_now')"
            )
            named = chosen_options(obs["goal"], option_groups(obs))
            assert pending == float(any(not o.checked for _, o in named)), action
            seen.add(pending)
            for _, option in named:
                obs, *_ = env.step(f"click({option.bid!r})")
            c = candidates(obs)
            assert c.features[c.actions.index("click('buy_now')")][BUY_PENDING] == 0.0
    assert seen == {0.0, 1.0}, seen  # both kinds of item page were met


def test_a_policy_can_learn_to_go_back_only_from_items_that_lack_what_was_asked(env):
    """Old features give a lacking and a fitting item page of one task the same candidate
    features for Buy Now and ``< Prev``; the new ones separate them, and a few gradient steps
    on "back if it lacks, buy if it fits" move the mass apart."""
    torch.manual_seed(0)
    pages = {}
    for task in ("test-0003", "test-0001", "test-0005", "test-0002"):
        for _, item in _item_pages(env, task)[1]:
            c = candidates(item)
            pages.setdefault(c.features[c.actions.index("click('buy_now')")][BUY_MISMATCH], item)
        if len(pages) == 2:
            break
    assert set(pages) == {0.0, 1.0}
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, train_layers=0)
    policy.encoder.requires_grad_(False)
    states = [state_text(pages[1.0]), state_text(pages[0.0])]
    cands = [candidates(pages[1.0]), candidates(pages[0.0])]
    targets = [cands[0].actions.index("click('prev')"), cands[1].actions.index("click('buy_now')")]
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)

    def p_back() -> tuple[float, float]:
        with torch.no_grad():
            lack, fit = policy.scores(states, cands)
            i, j = cands[0].actions.index("click('prev')"), cands[1].actions.index("click('prev')")
            return float(torch.softmax(lack, 0)[i]), float(torch.softmax(fit, 0)[j])

    before = p_back()
    for _ in range(30):
        opt.zero_grad()
        (-policy.logprobs(states, cands, targets).sum()).backward()
        opt.step()
    lack, fit = p_back()
    assert lack > 0.5 > fit, (before, lack, fit)


def test_a_checkpoint_from_before_the_new_features_loads_and_scores_as_it_did(tmp_path, env):
    """A head saved with only the first N_FEATURES_V1 feature columns (as checkpoints trained
    before the new features are) loads, and scores every candidate as that head did."""
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0).eval()
    extra = len(FEATURES) - N_FEATURES_V1
    with torch.no_grad():
        for p in [*policy.head.parameters(), policy.feature_weights.weight]:
            p.normal_()
        policy.head[0].weight[:, -extra:] = 0  # what the old head computes
        policy.feature_weights.weight[:, -extra:] = 0
    policy.save(tmp_path)
    cut = ("head.0.weight", "feature_weights.weight")
    heads = {
        k: v[:, :-extra].contiguous() if k in cut else v
        for k, v in load_file(str(tmp_path / HEAD_FILE)).items()
    }
    save_file(heads, str(tmp_path / HEAD_FILE))

    loaded = ScorerPolicy.load(tmp_path)
    _, items = _item_pages(env, "test-0003", n=1)
    item = with_history(items[0][1], ["search[x]", items[0][0]])
    states, cands = [state_text(item)], [candidates(item)]
    assert any(f[BUY_MISMATCH] for f in cands[0].features)  # the new features are not all 0
    with torch.no_grad():
        torch.testing.assert_close(loaded.scores(states, cands)[0], policy.scores(states, cands)[0])


def test_exploration_draws_uniformly_and_keeps_the_policys_own_logprob(env):
    import numpy as np

    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0).eval()
    with torch.no_grad():
        policy.feature_weights.weight[0, FEATURES.index("buy_now")] = 5.0  # Buy Now ~certain
    _, items = _item_pages(env, "test-0003", n=1)
    item = items[0][1]
    c = candidates(item)
    with torch.no_grad():
        logp = torch.log_softmax(policy.scores([state_text(item)], [c])[0].double(), 0)
    rng = np.random.default_rng(0)
    plain = policy.decide_batch([item] * 200, temperature=1.0, rng=rng)
    assert {d.action for d in plain} == {"click('buy_now')"}
    explored = policy.decide_batch([item] * 400, temperature=1.0, rng=rng, explore=1.0)
    counts = {a: sum(d.action == a for d in explored) for a in c.actions}
    assert min(counts.values()) > 0.3 * 400 / len(c.actions)  # every candidate drawn
    for d in explored:
        assert d.logprob == pytest.approx(float(logp[d.index]))  # the policy's, not uniform


def test_the_reader_goes_back_from_a_lacking_page_while_a_retry_fits_and_then_opens_another(env):
    """The scripted ``reader`` (a reference point): back from a product page that lacks a named
    option while a retry fits, buys what it has once none does, and never reopens a result."""
    from webgym_agents.scripted.reader_agent import ReaderAgent

    results, items = _item_pages(env, "test-0003")
    goal = items[0][1]["goal"]
    action, lacking = next(
        (a, it) for a, it in items if missing_goal_options(goal, option_groups(it))
    )
    reader = ReaderAgent()
    reader.reset(goal)
    early = with_history({**lacking, "step": 2}, ["search[x]", action])
    late = with_history(
        {**lacking, "step": MAX_EPISODE_STEPS - RETRY_STEPS + 1}, ["search[x]", action]
    )
    assert reader.act(early) == "click('prev')"
    assert reader.act(late) != "click('prev')"
    after = with_history(results, ["search[x]", action, "click('prev')"])
    assert reader.act(after) != action and reader.act(after).startswith("click('item_")


def _page_with_lookalikes(env) -> dict:
    """The first test task whose rule-agent query lists two results of the same title."""
    for i in range(40):
        obs, _ = env.reset(options={"task_id": f"test-{i:04d}"})
        results, *_ = env.step(f"search[{search_queries(obs['goal'])[0]}]")
        titles = [p.title for p in result_products(results)]
        if len(set(titles)) < len(titles):
            return results
    raise AssertionError("no results page with two results of one title in 40 test tasks")


def test_a_lookalike_of_a_result_left_waits_until_no_other_is_listed_then_next_page(env):
    results = _page_with_lookalikes(env)
    products = result_products(results)
    asin = {p.bid: p.bid[len("item_") :] for p in products}
    titles = [p.title for p in products]
    first = next(p for p in products if titles.count(p.title) > 1)  # has a lookalike
    twins = {asin[p.bid] for p in products if p.title == first.title and p is not first}
    left = with_history(results, ["search[x]", f"click('{first.bid}')", "click('prev')"])
    budget = instruction_budget(results["goal"])
    alike = lookalike_items(left, budget)
    # the one left answers for its twins (unless it was left for its price and they fit)
    assert alike <= twins and alike
    assert not lookalike_items(results, budget)  # nothing opened, no lookalike
    c = candidates(left)
    offered = {a[len("click('item_") : -2] for a in c.actions if "item_" in a}
    assert not offered & alike and not offered & {asin[first.bid]}
    assert offered == {asin[p.bid] for p in products} - alike - {asin[first.bid]}
    nxt = c.features[c.actions.index("click('next_page')")]
    assert nxt[PAGE_EXHAUSTED] == 0.0  # unlike results are left on the page
    # every result unlike the one left opened too: the lookalikes come back, Next > is marked
    unlike = [f"click('item_{a}')" for a in sorted(offered)]
    everything = with_history(results, ["search[x]", f"click('{first.bid}')", *unlike])
    c = candidates(everything)
    assert {a[len("click('item_") : -2] for a in c.actions if "item_" in a} == alike
    assert c.features[c.actions.index("click('next_page')")][PAGE_EXHAUSTED] == 1.0
    others = [f for a, f in zip(c.actions, c.features, strict=True) if a != "click('next_page')"]
    assert all(f[PAGE_EXHAUSTED] == 0.0 for f in others)
