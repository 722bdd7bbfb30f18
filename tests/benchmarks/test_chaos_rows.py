"""The fast rows of the chaos suite's attacks on run files, servers and the board pass
(``python -m webgym_benchmarks.perf.chaos --fast`` prints them; each row runs real components)."""

from __future__ import annotations

import pytest

from webgym_benchmarks.perf import chaos_board, chaos_files, chaos_servers

SCENARIOS = chaos_files.scenarios() + chaos_servers.scenarios(True) + chaos_board.scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: getattr(s, "__name__", "row"))
def test_chaos_row_passes(scenario):
    row = scenario()
    assert row.ok, f"{row.scenario}: {row.figures}"
