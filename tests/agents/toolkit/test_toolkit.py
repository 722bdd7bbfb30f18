"""The training toolkit's shape: one common config, trainers that register themselves (found by
discovery, no central list), rollouts in one home."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import webgym_agents
import webgym_agents.algos
from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.base import check_agent, unregister_agent
from webgym_agents.toolkit import rollouts, trainers, training
from webgym_agents.toolkit.trainers import get_trainer, list_trainers, register_trainer
from webgym_agents.toolkit.training import CommonConfig

COMMON = ("seed", "torch_threads", "device", "backbone", "max_steps", "eval_episodes",
          "checkpoint_every", "keep_checkpoints")  # fmt: skip


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that discovers again (the built-in trainers already in it), restored
    afterwards."""
    list_trainers()
    monkeypatch.setattr(trainers, "_TRAINERS", dict(trainers._TRAINERS))
    monkeypatch.setattr(trainers, "_discovered", False)
    yield
    for name in (
        "webgym_agents.algos.tmp_toolkit_trainer",
        "webgym_agents.algos.tmp_toolkit_helper",
        "ext_trainer",
    ):
        sys.modules.pop(name, None)
    for name in ("tmp-trainer", "ext-trainer"):
        unregister_agent(name)


def test_the_built_in_trainers_are_discovered_without_a_central_list():
    assert not hasattr(trainers, "BUILTIN_TRAINERS")
    names = {info.name for info in list_trainers()}
    assert {"archer", "bc", "grpo", "reinforce"} <= names
    for info in list_trainers():
        assert all(isinstance(cfg, CommonConfig) for cfg in info.presets.values())


def test_discovery_imports_the_modules_that_register_and_no_other(
    tmp_path, monkeypatch, fresh_registry
):
    (tmp_path / "tmp_toolkit_trainer.py").write_text(
        textwrap.dedent("""
        from webgym_agents.toolkit.training import CommonConfig
        from webgym_agents.toolkit.trainers import register_trainer

        register_trainer("tmp-trainer", lambda cfg, run: None, {"smoke": CommonConfig()})
        """)
    )
    (tmp_path / "tmp_toolkit_helper.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.setattr(
        webgym_agents.algos, "__path__", [*webgym_agents.algos.__path__, str(tmp_path)]
    )
    assert get_trainer("tmp-trainer").presets["smoke"] == CommonConfig()
    assert "webgym_agents.algos.tmp_toolkit_trainer" in sys.modules
    assert "webgym_agents.algos.tmp_toolkit_helper" not in sys.modules
    assert {"archer", "bc", "grpo", "reinforce"} <= {i.name for i in list_trainers()}
    # registering the trainer registered the agent that plays its checkpoints
    assert get_trainer("tmp-trainer").eval_agent == "tmp-trainer"
    with pytest.raises(ValueError, match="needs a checkpoint"):
        check_agent("tmp-trainer")  # found, and known to play checkpoints


def test_the_trainers_agents_register_themselves_on_first_lookup(tmp_path):
    """``import webgym_agents`` does not import the trainers (nor torch); the first lookup of a
    trained agent's name, or a listing, does, and each trainer's agent is then there."""
    code = textwrap.dedent("""
        import sys
        import webgym_agents
        assert "webgym_agents.toolkit.training" not in sys.modules and "torch" not in sys.modules
        try:
            webgym_agents.check_agent("grpo")  # the first lookup: found, and it needs a checkpoint
        except ValueError as err:
            assert "needs a checkpoint" in str(err), err
        info = next(a for a in webgym_agents.list_agents() if a.name == "grpo")
        assert info.needs_checkpoint and "grpo" in info.description, info
        names = {a.name for a in webgym_agents.list_agents()}
        assert {"archer", "bc", "grpo", "reinforce", "rule", "random"} <= names, names
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(webgym_agents.__file__).parents[1])}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_entry_points_add_trainers_and_a_broken_one_only_warns(
    tmp_path, monkeypatch, fresh_registry
):
    (tmp_path / "ext_trainer.py").write_text(
        "from webgym_agents.toolkit.training import CommonConfig\n"
        "from webgym_agents.toolkit.trainers import register_trainer\n"
        "register_trainer('ext-trainer', lambda cfg, run: None, {'cpu': CommonConfig()})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def entry_points(**kw):
        if kw.get("group") == trainers.TRAINER_ENTRY_POINTS:
            return [
                importlib.metadata.EntryPoint("ext", "ext_trainer", kw["group"]),
                importlib.metadata.EntryPoint("broken", "no_such_module_here", kw["group"]),
            ]
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with pytest.warns(RuntimeWarning, match="broken"):
        info = get_trainer("ext-trainer")
    assert list(info.presets) == ["cpu"]


def test_register_trainer_refuses_a_preset_that_is_not_a_common_config(fresh_registry):
    @dataclasses.dataclass
    class Loose:
        lr: float = 1.0

    for bad in (SimpleNamespace(seed=0), Loose()):
        with pytest.raises(TypeError, match="CommonConfig"):
            register_trainer("loose", lambda cfg, run: None, {"smoke": bad})


def test_every_trainer_config_extends_the_common_one_with_its_own_defaults():
    from webgym_agents.algos.bc import BCConfig
    from webgym_agents.toolkit.onpolicy import OnPolicyConfig

    assert tuple(f.name for f in dataclasses.fields(CommonConfig)) == COMMON
    assert CommonConfig().max_steps == MAX_EPISODE_STEPS
    for cls in (BCConfig, OnPolicyConfig):
        assert issubclass(cls, CommonConfig)
        assert tuple(f.name for f in dataclasses.fields(cls))[: len(COMMON)] == COMMON
    # the defaults each had before the common config existed
    assert (BCConfig().backbone, BCConfig().eval_episodes) == ("smollm2-135m", 100)
    assert (OnPolicyConfig().backbone, OnPolicyConfig().eval_episodes) == ("minilm", 0)
    assert OnPolicyConfig.supports_data_parallel and not BCConfig.supports_data_parallel
    assert "supports_data_parallel" not in training.config_to_dict(OnPolicyConfig())


def test_rollouts_live_in_one_module():
    for name in ("Step", "Episode", "rollout_seed", "make_env", "collect_episodes",
                 "ReplayMismatch", "replay_episode", "collect_rollouts", "Rollout", "Turn",
                 "rollout_stats"):  # fmt: skip
        assert hasattr(rollouts, name)
        assert not hasattr(training, name), f"{name} is still in agents/toolkit/training.py"


def test_every_trainer_has_smoke_cpu_gpu_and_its_other_preset_names_resolve():
    from webgym_agents.toolkit.trainers import preset_config

    for info in list_trainers():
        assert {"smoke", "cpu", "gpu"} <= set(info.presets), info.name
        for alias, preset in info.preset_aliases.items():
            assert alias not in info.presets, (info.name, alias)  # a name means one config
            name, config, note = preset_config(info, alias)
            assert (name, config) == (preset, info.presets[preset])
            assert note and alias in note and repr(preset) in note
        assert preset_config(info, "cpu") == ("cpu", info.presets["cpu"], None)
        with pytest.raises(KeyError, match="unknown preset"):
            preset_config(info, "no-such-preset")
    # the policy kind spelled out means the same in every trainer
    assert get_trainer("grpo").preset_aliases["lm-gpu"] == "gpu"
    assert get_trainer("bc").preset_aliases["lm-cpu"] == "cpu"
    assert get_trainer("gigpo").preset_aliases["scorer-gpu"] == "gpu"
