"""REINFORCE (agents/algos/reinforce.py): the smoke preset trains and writes its curve. Its
returns and value loss are the toolkit's (tests/agents/toolkit/test_losses_returns.py); a killed
REINFORCE run resuming is tests/agents/toolkit/test_onpolicy.py's."""

from __future__ import annotations


def test_smoke_preset_trains_and_writes_a_curve(tmp_path, smoke_trains_and_writes_a_curve):
    smoke_trains_and_writes_a_curve("reinforce", tmp_path)
