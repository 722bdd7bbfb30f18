"""The ``webgym-bench`` command: the harness's commands and the leaderboard's, in one app.

    run, show, list-agents, train, models, perf     benchmarks/cli.py (the harness)
    verify, submit, leaderboard, view               leaderboards/cli.py (the leaderboard)

This module is the top of the layers (webgym < webgym_agents < webgym_benchmarks <
webgym_leaderboards < webgym_bench): the only place that imports both command sets, so that neither
package imports the other upwards. ``pyproject.toml`` installs it as the ``webgym-bench`` console
script.
"""

from __future__ import annotations

from webgym_benchmarks import cli as harness
from webgym_leaderboards import cli as leaderboard

__all__ = ["app"]

app = harness.BenchTyper(help="WebGym benchmarks.", no_args_is_help=True, add_completion=False)
harness.register(app)
leaderboard.register(app)

if __name__ == "__main__":
    app()
