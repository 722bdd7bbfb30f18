"""webgym.integrations.trl: TRL's schema builder takes every tool, scripted tool calls buy the
target (reward 1.0), instances are reused across resets, errors come back as text, and one GRPO
step runs offline with a tiny random-init model whose chat template renders tool calls."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import pytest

from webgym.integrations.trl import WebGymToolEnv, task_dataset

pytest.importorskip("trl")

TOKENIZER = Path(__file__).resolve().parents[3] / "agents/models/assets/smollm2_tokenizer"
TOOLS = {"search", "click", "click_text", "fill", "select_option", "scroll", "go_back"}


def trl_tools(env) -> list:
    """The tools TRL's GRPOTrainer finds on an environment (its own rule, as in its source)."""
    return [
        getattr(env, name)
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


def tool_tokenizer():
    """The vendored SmolLM2 tokenizer with TRL's Qwen2.5 chat template (renders tool calls)."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import add_response_schema, qwen2_5_chat_template

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    tok.chat_template = qwen2_5_chat_template
    return add_response_schema(tok)


def test_trl_schema_builder_accepts_every_tool():
    from transformers.utils import get_json_schema
    from trl.chat_template_utils import supports_tool_calling

    env = WebGymToolEnv(split="test")
    tools = trl_tools(env)
    assert {t.__name__ for t in tools} == TOOLS
    for tool in tools:
        schema = get_json_schema(tool)["function"]
        assert schema["description"]
        for name, prop in schema["parameters"].get("properties", {}).items():
            assert prop["description"] and prop["type"] in ("string", "integer"), name
    tok = tool_tokenizer()
    assert supports_tool_calling(tok)
    text = tok.apply_chat_template(
        task_dataset("test", limit=1)[0]["prompt"], tools=tools, tokenize=False
    )
    assert all(f'"name": "{name}"' in text for name in TOOLS)


def test_task_dataset_has_a_prompt_and_task_id_per_task(catalog):
    ds = task_dataset("test", limit=5)
    assert ds.column_names == ["prompt", "task_id"]
    assert list(ds["task_id"]) == [f"test-{i:04d}" for i in range(5)]
    assert ds[0]["prompt"][-1]["role"] == "user"


def test_scripted_tool_calls_buy_the_target_and_instances_are_reused(catalog):
    env = WebGymToolEnv(split="test")
    with env:
        for row in task_dataset("test", task_ids=["test-0001", "test-0002", "test-0007"]):
            goal = catalog.task(row["task_id"])
            first = env.reset(**row)
            assert goal["instruction_text"] in first and env.get_reward() == 0.0
            page = env.search(goal["name"])
            assert f"item_{goal['asin'].lower()}" in page
            env.click(f"item_{goal['asin'].lower()}")
            for value in goal["goal_options"].values():
                assert not env.click_text(value).startswith("Error")
            assert "reward 1.00" in env.click_text("Buy Now")
            assert env.get_reward() == 1.0 and env.task_id == row["task_id"]
            assert "episode is over" in env.go_back()


def test_bad_tool_calls_come_back_as_text():
    env = WebGymToolEnv(split="test")
    assert env.click("x").startswith("Error: no episode")  # before any reset
    with env:
        env.reset(task_id="test-0003")
        assert env.click("no_such_id").startswith("Error: no element with id 'no_such_id'")
        assert env.select_option("search_input", "red").startswith("Error:")
        assert env.go_back().startswith("Error:")
        page = env.search("tent")  # the episode went on
        assert "Error" not in page.splitlines()[0] and env.get_reward() == 0.0


def test_one_grpo_step_runs_offline_with_tool_calls(catalog, tmp_path, monkeypatch):
    """A real GRPOTrainer step: TRL renders the tools, generates with a tiny random-init Qwen2
    (no download: the vendored tokenizer, a config), parses the tool calls, runs them on
    WebGymToolEnv and scores the rollouts with get_reward. A random model emits no tool call,
    so generation is steered with GenerationConfig's ``sequence_bias`` towards one completion
    that makes the oracle's calls; everything after generation is TRL's own loop."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    tok = tool_tokenizer()
    goal = catalog.task("test-0001")
    calls = [
        ("search", {"query": goal["name"]}),
        ("click", {"element_id": f"item_{goal['asin'].lower()}"}),
    ]
    calls += [("click_text", {"text": v}) for v in goal["goal_options"].values()]
    calls += [("click_text", {"text": "Buy Now"})]
    completion = (
        "".join(
            f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>\n"
            for n, a in calls
        ).rstrip("\n")
        + "<|im_end|>"
    )
    ids = tok(completion, add_special_tokens=False)["input_ids"]
    # The longest matching prefix wins: a bias growing with the length of the sequence.
    bias = [[ids[: k + 1], 50.0 * (k + 1)] for k in range(len(ids))]

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    steps = []

    class RecordingEnv(WebGymToolEnv):
        def _act(self, action: str) -> str:
            steps.append(action)
            return super()._act(action)

    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        num_generations=2,
        max_steps=1,
        max_completion_length=4096,
        max_tool_calling_iterations=1,
        learning_rate=1e-4,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        logging_steps=1,
        generation_kwargs={"sequence_bias": bias},
    )
    trainer = GRPOTrainer(
        model=Qwen2ForCausalLM(config),
        processing_class=tok,
        args=args,
        train_dataset=task_dataset("test", task_ids=["test-0001"] * 2),
        environment_factory=functools.partial(RecordingEnv, split="test"),
    )
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["tools/call_frequency"] > 0 and log["tools/failure_frequency"] == 0
    assert steps.count("click[Buy Now]") == 2  # both rollouts bought
    assert log["rewards/RecordingEnv/mean"] == 1.0
