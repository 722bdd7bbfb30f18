"""The outer loop of the on-policy trainers, the bookkeeping around the paper's algorithm box
that each algorithm file writes as its own ``for it in iterations:`` (CleanRL's shape):
iteration 0's validation row, each iteration's metrics row, validation every ``eval_every``
iterations, checkpoints every ``checkpoint_every``, the metrics' mean over data-parallel
processes.

Imports webgym_agents.toolkit only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from webgym_agents.toolkit import data_parallel
from webgym_agents.toolkit.onpolicy import OnPolicyConfig, validate
from webgym_agents.toolkit.starting import Policy
from webgym_agents.toolkit.training import TrainRun

__all__ = ["Iterations", "row_text"]


class Iterations:
    """The outer loop every on-policy trainer writes in its own file::

        iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
        for it in iterations:
            ...  # collect, advantages, the loss, the optimizer steps
            iterations.report({"train_score": ..., "loss": ...})

    Before the first iteration it validates the starting policy (iteration 0's row); after each
    :meth:`report` it adds validation every ``eval_every`` iterations, writes the metrics row
    (data-parallel: each metric's mean over the processes) and calls ``save(it)`` every
    ``checkpoint_every``. An iteration that ends without a report is an error."""

    def __init__(
        self,
        config: OnPolicyConfig,
        run: TrainRun,
        start: int,
        policy: Policy,
        val_ids: Sequence[str],
        save: Callable[[int], None],
    ) -> None:
        self.config, self.run, self.start = config, run, start
        self.policy, self.val_ids, self.save = policy, val_ids, save
        self._metrics: dict[str, Any] | None = None

    def report(self, metrics: dict[str, Any]) -> None:
        """The iteration's training metrics (train_env_steps counts toward env_steps)."""
        self._metrics = metrics

    def __iter__(self) -> Iterator[int]:
        config, run = self.config, self.run
        if data_parallel.enabled():  # rank 0 has trimmed metrics.csv on resume: all read the same
            data_parallel.barrier()
            run.log(f"data-parallel: {data_parallel.world_size()} processes")
        # iteration 0: the starting policy, written with the first iteration's columns (the first
        # row of metrics.csv fixes them)
        first = (
            validate(self.policy, self.val_ids, config)
            if self.start == 0 and not run.metrics()
            else None
        )
        env_steps = int(float(run.metrics()[-1].get("env_steps") or 0)) if run.metrics() else 0
        saved = False
        with run.progress(config.iterations, self.start, run.trainer) as progress:
            for it in range(self.start + 1, config.iterations + 1):
                t0 = time.perf_counter()
                self._metrics = None
                yield it
                if self._metrics is None:
                    raise RuntimeError(f"iteration {it} ended without Iterations.report(metrics)")
                row: dict[str, Any] = {"iteration": it} | _mean_over_processes(self._metrics)
                env_steps += int(row.get("train_env_steps", 0))
                row["env_steps"] = env_steps
                if it % config.eval_every == 0 or it == config.iterations:
                    row |= validate(self.policy, self.val_ids, config)
                row["iteration_s"] = time.perf_counter() - t0
                if first is not None:
                    zero = dict.fromkeys(row) | {"iteration": 0, "env_steps": 0} | first
                    run.log_metrics({k: zero.get(k) for k in row} | zero)
                    run.say(row_text({k: v for k, v in zero.items() if v is not None}))
                    first = None
                run.log_metrics(row)
                run.say(row_text(row))
                if it % config.checkpoint_every == 0 or it == config.iterations:
                    self.save(it)
                    saved = True
                progress(1, f"val SR {row.get('val_success_rate', float('nan')):.2f}")
        if not saved and run.latest_checkpoint() is None:
            self.save(config.iterations)
        data_parallel.barrier()


def _mean_over_processes(metrics: dict[str, Any]) -> dict[str, Any]:
    """Data-parallel: each metric's mean over the processes (a value they agree on stays)."""
    if not data_parallel.enabled():
        return metrics
    every = data_parallel.all_gather(metrics)
    out = {}
    for key, value in metrics.items():
        values = [m.get(key) for m in every]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if all(v == value for v in values) or not numeric:
            out[key] = value
        else:
            out[key] = sum(float(v) for v in values) / len(values)
    return out


def row_text(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
