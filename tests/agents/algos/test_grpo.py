"""GRPO (agents/algos/grpo.py): the smoke preset trains and writes its curve. Its group
advantages and loss are the toolkit's, checked against TRL's code in
tests/agents/toolkit/test_losses_returns.py."""

from __future__ import annotations


def test_smoke_preset_trains_and_writes_a_curve(tmp_path, smoke_trains_and_writes_a_curve):
    smoke_trains_and_writes_a_curve("grpo", tmp_path)
