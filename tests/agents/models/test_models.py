"""Backbone interface tests, on the tiny random-init models only (never the 135M weights)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from webgym_agents.models import (  # noqa: E402
    BackboneMismatch,
    ModelNotPrepared,
    NotACausalLM,
    ValueHead,
    list_models,
    load_backbone,
)

PROMPT_SYS = "You are a shopping agent. Answer with one action."
PROMPT_USER = "Instruction: buy red running shoes under 50 dollars.\nPage: search"


@pytest.fixture(scope="module")
def lm():
    return load_backbone("tiny-lm")


@pytest.fixture(scope="module")
def enc():
    return load_backbone("tiny-encoder")


@pytest.fixture(scope="module")
def prompt(lm):
    return lm.render_prompt(system=PROMPT_SYS, user=PROMPT_USER)


def test_tiny_lm_shape_and_prompt(lm, prompt):
    assert lm.kind == "causal-lm"
    assert (lm.hidden_size, lm.n_layers) == (64, 2)
    assert prompt.startswith("<|im_start|>system\n" + PROMPT_SYS)
    assert prompt.endswith("<|im_start|>assistant\n")
    msgs = [{"role": "system", "content": PROMPT_SYS}, {"role": "user", "content": PROMPT_USER}]
    assert lm.render_prompt(msgs) == prompt


def test_seeded_init_is_deterministic(lm):
    again = load_backbone("tiny-lm")
    for a, b in zip(lm.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    other = load_backbone("tiny-lm", seed=1)
    w = lm.model.get_input_embeddings().weight
    assert not torch.equal(w, other.model.get_input_embeddings().weight)


def test_generate_returns_strings_and_is_seeded(lm, prompt):
    prompts = [prompt, lm.render_prompt(user="hello")]
    a = lm.generate(prompts, max_new_tokens=6, temperature=1.0, top_p=0.9, seed=7)
    b = lm.generate(prompts, max_new_tokens=6, temperature=1.0, top_p=0.9, seed=7)
    assert len(a) == 2 and all(isinstance(x, str) for x in a)
    assert a == b
    gens = lm.generate_with_ids([prompt], max_new_tokens=5, seed=3)
    assert 1 <= len(gens[0].token_ids) <= 5
    greedy = lm.generate([prompt], max_new_tokens=5, temperature=0)
    assert greedy == lm.generate([prompt], max_new_tokens=5, temperature=0)


def test_generated_ids_can_be_scored(lm, prompt):
    g = lm.generate_with_ids([prompt], max_new_tokens=5, seed=11)[0]
    with torch.no_grad():
        lps, sums = lm.sequence_logprobs([prompt], [g.token_ids])
    assert lps[0].shape == (len(g.token_ids),)
    assert torch.all(lps[0] <= 0)


def test_sequence_logprobs_matches_manual_computation(lm, prompt):
    completion = "click[Buy Now]"
    with torch.no_grad():
        lps, sums = lm.sequence_logprobs([prompt], [completion])
        p = lm.encode_text(prompt)
        c = lm.tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + c])
        logits = lm.model(input_ids=ids).logits[0]
        logp = F.log_softmax(logits.float(), -1)
        manual = torch.stack([logp[len(p) - 1 + j, t] for j, t in enumerate(c)])
    assert lps[0].shape == (len(c),)
    torch.testing.assert_close(lps[0], manual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sums[0], lps[0].sum())


def test_sequence_logprobs_padding_invariance(lm, prompt):
    prompts = [prompt, lm.render_prompt(user="a much shorter prompt")]
    comps = ["search[red running shoes men size 10]", "click[< Prev]"]
    with torch.no_grad():
        batch_lps, batch_sums = lm.sequence_logprobs(prompts, comps)
        for i in range(2):
            one_lps, one_sums = lm.sequence_logprobs([prompts[i]], [comps[i]])
            torch.testing.assert_close(batch_lps[i], one_lps[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch_sums[i], one_sums[0], atol=1e-5, rtol=1e-5)


def test_sequence_logprobs_gradients_flow(lm, prompt):
    lm.model.zero_grad()
    with torch.enable_grad():
        _, sums = lm.sequence_logprobs([prompt, prompt], ["click[Buy Now]", "click[Next >]"])
        sums.sum().backward()
    g = lm.model.get_input_embeddings().weight.grad
    assert g is not None and g.abs().sum() > 0
    lm.model.zero_grad(set_to_none=True)


def test_score_candidates_equals_sequence_logprobs(lm, prompt):
    cands = ["click[Buy Now]", "search[red shoes]", "click[Next >]", "x"]
    with torch.no_grad():
        scores = lm.score_candidates(prompt, cands)
        _, sums = lm.sequence_logprobs([prompt] * len(cands), cands)
    assert scores.shape == (len(cands),)
    torch.testing.assert_close(scores, sums, atol=1e-4, rtol=1e-5)


def test_score_candidates_learns(prompt):
    bb = load_backbone("tiny-lm", seed=3)
    cands = ["click[Buy Now]", "click[Description]", "search[blue hat]", "click[Next >]"]
    target = "search[blue hat]"
    with torch.no_grad():
        before = bb.score_candidates(prompt, cands)
    assert int(torch.argmax(before)) != cands.index(target)  # not already the favourite
    opt = torch.optim.SGD(bb.model.parameters(), lr=0.05)
    bb.model.train()
    for _ in range(5):
        opt.zero_grad()
        _, s = bb.sequence_logprobs([prompt], [target])
        (-s.sum()).backward()
        opt.step()
    bb.model.eval()
    with torch.no_grad():
        after = bb.score_candidates(prompt, cands)
    i = cands.index(target)
    assert after[i] > before[i] + 5.0
    assert int(torch.argmax(after)) == i


def test_score_candidates_is_differentiable(lm, prompt):
    lm.model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        s = lm.score_candidates(prompt, ["click[Buy Now]", "click[Next >]"])
        torch.log_softmax(s, 0)[0].backward()
    assert lm.model.get_input_embeddings().weight.grad is not None
    lm.model.zero_grad(set_to_none=True)


def test_hidden_states_shapes_and_positions(lm, prompt):
    texts = [prompt, "short text"]
    with torch.no_grad():
        last = lm.hidden_states(texts, [0, 1, -1], "last")
        mean = lm.hidden_states(texts, [1], "mean")
        lastk = lm.hidden_states(texts, [1], "last_k", last_k=10)
        idx = lm.hidden_states(texts, [-1], [-1, -1])
        alone = lm.hidden_states([texts[1]], [-1], "last")
    assert last.shape == (2, 3, 64)
    assert mean.shape == lastk.shape == (2, 1, 64)
    torch.testing.assert_close(idx[:, 0], last[:, 2])
    torch.testing.assert_close(alone[0], last[1, 2:], atol=1e-5, rtol=1e-5)
    n = len(lm.encode_text(texts[1]))
    if n <= 10:  # a text shorter than k: last_k is the mean over all of it
        torch.testing.assert_close(lastk[1], mean[1], atol=1e-6, rtol=1e-5)


def test_score_sequences_features_one_pass(lm, prompt):
    with torch.no_grad():
        s = lm.score_sequences(
            [prompt], ["click[Buy Now]"], entropies=True, feature_layers=[1], last_k=10
        )
        direct = lm.hidden_states([prompt], [1], "last_k", last_k=10)
    assert s.prompt_features.shape == s.completion_features.shape == (1, 1, 64)
    torch.testing.assert_close(s.prompt_features, direct, atol=1e-5, rtol=1e-5)
    assert s.token_entropies[0].shape == s.token_logprobs[0].shape
    assert torch.all(s.token_entropies[0] > 0)


def test_value_head_shapes_and_gradients(lm, prompt):
    for head in (ValueHead(lm.hidden_size), ValueHead(lm.hidden_size, mlp_hidden=32)):
        lm.model.zero_grad(set_to_none=True)
        v = lm.values([prompt, "other state"], head)
        assert v.shape == (2,)
        F.mse_loss(v, torch.tensor([1.0, 0.0])).backward()
        assert all(p.grad is not None for p in head.parameters())
        assert lm.model.get_input_embeddings().weight.grad is not None
        assert head(torch.zeros(3, 5, lm.hidden_size)).shape == (3, 5)
    lm.model.zero_grad(set_to_none=True)


def test_tiny_encoder(enc):
    assert enc.kind == "encoder" and enc.hidden_size == 64
    assert enc.render_prompt(system="a", user="b") == "a\nb"
    with torch.no_grad():
        h = enc.hidden_states(["red shoes", "a blue hat, size 9"], [0, -1], "first")
        m = enc.hidden_states(["red shoes", "a blue hat, size 9"], [-1], "mean")
        e = enc.encode(["red shoes", "blue hat"])
        v = enc.values(["red shoes"], ValueHead(64), position="mean")
    assert h.shape == (2, 2, 64) and m.shape == (2, 1, 64)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))
    assert v.shape == (1,)
    with pytest.raises(NotACausalLM, match="encoder"):
        enc.generate(["x"])
    with pytest.raises(NotACausalLM):
        enc.sequence_logprobs(["x"], ["y"])


def test_fingerprint_mismatch(lm, enc):
    fp = lm.checkpoint_fingerprint()
    assert fp["backbone"] == "tiny-lm"
    lm.check_fingerprint(fp)
    load_backbone("tiny-lm", seed=5).check_fingerprint(fp)  # same architecture, other init
    foreign = dict(fp, backbone="smollm2-135m")
    with pytest.raises(BackboneMismatch) as err:
        lm.check_fingerprint(foreign)
    assert str(err.value) == "checkpoint was trained on smollm2-135m; this backbone is tiny-lm"
    with pytest.raises(BackboneMismatch, match="config"):
        lm.check_fingerprint(dict(fp, config_hash="0" * 16))
    assert enc.config_hash() != lm.config_hash()


def test_missing_cache_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBGYM_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelNotPrepared) as err:
        load_backbone("smollm2-135m")
    msg = str(err.value)
    assert "SmolLM2-135M-Instruct is not prepared" in msg
    assert "`webgym-bench models fetch`" in msg
    status = {s.name: s for s in list_models()}
    assert status["smollm2-135m"].status == "missing"
    assert status["smollm2-135m"].command == "webgym-bench models fetch"
    assert status["smollm2-135m"].path.startswith(str(tmp_path))
    assert status["tiny-lm"].status == "built-in"


def test_unknown_backbone():
    with pytest.raises(KeyError, match="tiny-lm"):
        load_backbone("gpt-17")


# ---- stop strings, temperature, token ids --------------------------------------------------


def test_generation_stops_at_a_stop_string(lm, prompt):
    # Seeded sampling (the random model's greedy text is all newlines); a stop draws nothing.
    kw = dict(max_new_tokens=12, temperature=1.0, seed=1)
    full = lm.generate_with_ids([prompt], **kw)[0]
    tok = lm.tokenizer
    for k in range(2, len(full.token_ids)):  # a character first seen in token k
        before = tok.decode(full.token_ids[: k - 1], skip_special_tokens=True)
        upto = tok.decode(full.token_ids[:k], skip_special_tokens=True)
        new = [c for c in upto[len(before) :] if c.strip() and c not in before]
        if upto.startswith(before) and new:
            break
    else:
        pytest.skip("the greedy generation offers no fresh character to stop at")
    stop = new[0]
    g = lm.generate_with_ids([prompt], **kw, stop_strings=[stop])[0]
    assert g.token_ids == full.token_ids[:k]
    assert g.stop == stop and not g.finished
    assert g.text == upto[: upto.index(stop)]
    assert lm.generate([prompt], **kw, stop_strings=["\x00"]) == [full.text]
    # In a batch each row stops on its own; the others run on.
    prompts = [prompt, lm.render_prompt(user="hello there"), lm.render_prompt(user="a b c")]
    rows = lm.generate_with_ids(prompts, **kw)
    stopped = lm.generate_with_ids(prompts, **kw, stop_strings=[stop])
    for row, st in zip(rows, stopped, strict=True):
        k = next(
            (
                j
                for j in range(1, len(row.token_ids) + 1)
                if stop in tok.decode(row.token_ids[:j], skip_special_tokens=True)
            ),
            None,
        )
        assert st.token_ids == (row.token_ids if k is None else row.token_ids[:k])
        assert st.stop == (None if k is None else stop)


def test_token_ids_are_scored_as_given(lm, prompt):
    ids = lm.encode_text("click('buy")
    with torch.no_grad():
        as_ids, _ = lm.sequence_logprobs([prompt], [ids], add_eos=True)
        as_text, _ = lm.sequence_logprobs([prompt], ["click('buy"], add_eos=True)
    assert as_ids[0].shape == (len(ids),)
    assert as_text[0].shape == (len(ids) + 1,)  # text gets the end-of-turn token
    torch.testing.assert_close(as_ids[0], as_text[0][:-1], atol=1e-5, rtol=0)


def test_sequence_logprobs_at_a_temperature(lm, prompt):
    completion = "click[Buy Now]"
    with torch.no_grad():
        lps, _ = lm.sequence_logprobs([prompt], [completion], temperature=0.5)
        p = lm.encode_text(prompt)
        c = lm.tokenizer(completion, add_special_tokens=False)["input_ids"]
        logits = lm.model(input_ids=torch.tensor([p + c])).logits[0].float()
        logp = F.log_softmax(logits / 0.5, -1)
        manual = torch.stack([logp[len(p) - 1 + j, t] for j, t in enumerate(c)])
    torch.testing.assert_close(lps[0], manual, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        lm.sequence_logprobs([prompt], [completion], temperature=0)


def test_score_candidates_and_state_one_pass(lm, prompt):
    cands = ["click[Buy Now]", "search[red shoes]", "x"]
    with torch.no_grad():
        scores, state = lm.score_candidates_and_state(prompt, cands)
        alone = lm.score_candidates(prompt, cands)
        boundary = lm.hidden_states([prompt], [-1], "last")[0, 0]
        seq = lm.score_sequences([prompt], ["x"])
    assert state.shape == (lm.hidden_size,)
    torch.testing.assert_close(scores, alone, atol=0, rtol=0)
    torch.testing.assert_close(state, boundary, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seq.prompt_states[0], boundary, atol=1e-5, rtol=1e-5)
    empty, state2 = lm.score_candidates_and_state(prompt, [])
    assert empty.shape == (0,)
    torch.testing.assert_close(state2.detach(), state, atol=1e-6, rtol=0)


# ---- the encoder: [CLS] and the kept end -----------------------------------------------------


def test_encoder_keeps_the_end_and_reads_cls(enc):
    long_state = "page words " * 600
    ids = enc.encode_text(long_state + " click buy now")
    assert len(ids) == 512 and ids[0] == enc.tokenizer.cls_token_id
    tail = enc.tokenizer("click buy now", add_special_tokens=False)["input_ids"]
    assert ids[-len(tail) - 1 : -1] == tail  # the action placed last survives
    head = enc.tokenizer("page words", add_special_tokens=False)["input_ids"]
    assert ids[1 : 1 + len(head)] == head  # and so does the text's head
    pair = enc.encode_text(long_state, pair="click buy now")
    assert len(pair) == 512 and pair[-len(tail) - 1 : -1] == tail
    short = enc.encode_text("red shoes", pair="click buy now")
    assert short == enc.tokenizer("red shoes", "click buy now")["input_ids"]
    head_v = ValueHead(enc.hidden_size)
    with torch.no_grad():
        v = enc.values(["red shoes", "a blue hat"], head_v)
        cls = head_v(enc.hidden_states(["red shoes", "a blue hat"], [-1], "first")[:, 0])
        with_pair = enc.hidden_states(["red shoes"], [-1], "first", pairs=["click buy now"])
        manual = enc.tokenizer("red shoes", "click buy now", return_tensors="pt")
        ref = enc.model(**manual).last_hidden_state[:, 0]
    torch.testing.assert_close(v, cls, atol=0, rtol=0)
    torch.testing.assert_close(with_pair[:, 0], ref, atol=1e-5, rtol=1e-5)


def test_value_head_config_round_trip():
    head = ValueHead(64, mlp_hidden=16, dropout=0.1)
    again = ValueHead.from_config(head.config())
    assert again.config() == {"hidden_size": 64, "mlp_hidden": 16, "dropout": 0.1}
    again.load_state_dict(head.state_dict())
    assert set(ValueHead(64).state_dict()) == {"net.1.weight", "net.1.bias"}


# ---- threads --------------------------------------------------------------------------------


def test_thread_rule(monkeypatch):
    from webgym_agents.models import threads

    assert threads.usable_cores() >= 1
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.torch_threads_for() == 8  # one process: every usable core
    assert threads.torch_threads_for(None, workers=2) == 4
    assert threads.torch_threads_for(0, workers=16) == 1  # never below one
    assert threads.torch_threads_for(3, workers=4) == 3  # explicit wins
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.torch_threads_for(None, workers=1) == 2
    assert threads.torch_threads_for(5) == 5
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(ValueError, match=threads.ENV_VAR):
        threads.torch_threads_for()
    with pytest.raises(ValueError):
        threads.torch_threads_for(1, workers=0)
    monkeypatch.delenv(threads.ENV_VAR)
    before = torch.get_num_threads()
    try:
        assert threads.configure_torch_threads(None, workers=8) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
