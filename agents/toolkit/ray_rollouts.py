"""Rollouts on Ray workers: :func:`webgym_agents.toolkit.rollouts.collect_rollouts` split
over N actors.

``webgym-bench train --agent NAME --ray`` (a local Ray with ``ray_workers`` CPUs) or ``--ray
ADDRESS`` (a cluster) makes an on-policy trainer collect this way. Each worker is a Ray actor
that owns its environments for the whole run and one torch thread; every iteration it gets the
policy's current weights (one ``ray.put`` shared by all workers) and plays part k of n of the
jobs, exactly as data-parallel process k would (jobs k, k + n, ..., sampling stream k drawn from
the caller's generator). The caller's generator then advances as that process's does, so with
greedy play the rollouts equal one process's, and with sampling they do not depend on which
worker finished first.

Imports webgym_agents only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from webgym_agents.toolkit.rollouts import Rollout, collect_rollouts

log = logging.getLogger(__name__)

__all__ = ["RayCollector", "RolloutWorker"]


class RolloutWorker:
    """One Ray actor: plays its part of a batch of jobs with the policy it is sent."""

    def __init__(self, torch_threads: int = 1):
        # in the Ray worker's own process, which imports this module afresh
        from webgym_agents.models.threads import configure_torch_threads

        configure_torch_threads(torch_threads)

    def play(
        self, policy: Any, task_ids: Sequence[str], part: tuple[int, int], kwargs: dict[str, Any]
    ) -> list[Rollout]:
        policy.eval()
        return collect_rollouts(policy, task_ids, part=part, **kwargs)


class RayCollector:
    """``collect_rollouts`` on ``workers`` Ray actors, started once and kept for the run.

    ``address`` is ``"local"`` (start a local Ray with ``workers`` CPUs, unless one is running)
    or a cluster address (``"auto"``, ``"ray://host:10001"``). Use it as a context manager, or
    call :meth:`close`: it kills the actors and shuts down a Ray it started.
    """

    def __init__(self, workers: int = 2, address: str = "local"):
        import ray

        if workers < 1:
            raise ValueError(f"ray_workers must be at least 1, not {workers}")
        self.workers = int(workers)
        self._started_ray = False
        if not ray.is_initialized():
            if address == "local":
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._started_ray = True
        actor = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self._actors = [actor.remote(1) for _ in range(self.workers)]
        log.info("collecting rollouts on %d Ray worker(s)", self.workers)

    def __call__(
        self,
        policy: Any,
        task_ids: Sequence[str],
        *,
        rng: np.random.Generator,
        on_rollout=None,
        **kwargs: Any,
    ) -> list[Rollout]:
        """The rollouts ``collect_rollouts(policy, task_ids, rng=rng, **kwargs)`` returns in one
        process, played by the workers; ``on_rollout`` is called here, as each part arrives."""
        import ray

        n = self.workers
        shared = ray.put(policy)  # one copy of the weights in the object store, read by all
        futures = [
            a.play.remote(shared, list(task_ids), (k, n), {**kwargs, "rng": rng})
            for k, a in enumerate(self._actors)
        ]
        rng.integers(0, 2**63, size=n)  # advance as a data-parallel process's generator does
        parts = ray.get(futures)
        jobs = sum(len(p) for p in parts)
        out: list[Rollout | None] = [None] * jobs
        for k, played in enumerate(parts):  # part k holds jobs k, k + n, ... in order
            for i, rollout in enumerate(played):
                out[k + i * n] = rollout
                if on_rollout is not None:
                    on_rollout(rollout)
        return [r for r in out if r is not None]

    def close(self) -> None:
        import ray

        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
