"""REINFORCE (agents/algos/reinforce.py): the smoke preset trains (with "< Prev" probes) and
writes its curve. Its returns and value loss are the toolkit's
(tests/agents/toolkit/test_losses_returns.py); a killed REINFORCE run resuming is
tests/agents/toolkit/test_onpolicy.py's."""

from __future__ import annotations

import csv


def test_smoke_preset_trains_and_writes_a_curve(tmp_path, smoke_trains_and_writes_a_curve):
    smoke_trains_and_writes_a_curve("reinforce", tmp_path)
    with open(tmp_path / "reinforce" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("probes")]
    # every rollout that reached a product page forks a probe (back_probes = 1.0 in smoke)
    assert rows and sum(int(float(r["probes"])) for r in rows) > 0
