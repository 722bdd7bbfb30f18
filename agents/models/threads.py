"""How many threads torch uses: one rule for every command that runs a model.

    from webgym_agents.models.threads import configure_torch_threads
    configure_torch_threads(args.threads, workers=n_worker_processes)   # once, at start-up

The rule (:func:`torch_threads_for`), in order:

1. an explicit ``n`` > 0 (``--threads N``, a config's ``torch_threads``) is used as given;
2. else the environment variable ``WEBGYM_TORCH_THREADS`` (> 0), so a whole run can be pinned
   from outside without touching its config;
3. else the fair share of this process: ``max(1, usable_cores // workers)``, where
   ``usable_cores`` is what this process may run on (CPU affinity, then a cgroup CPU quota,
   e.g. a container's ``--cpus``) and ``workers`` the number of processes running a model at
   once (parallel episode workers, data-parallel ranks). One process gets every usable core;
   several never oversubscribe them: on this 2-core machine two workers get ONE thread each,
   and two threads competing with a training job is what the rule exists to prevent.

``n = 0`` or ``None`` means "choose by the rule" (the old ``torch_threads: 0`` meant torch's own
default, which is the number of physical cores whatever else runs). Torch's inter-op pool is
set to the same number when that is still possible (torch allows it only before its first
parallel work), and left alone otherwise.

Only torch and the standard library are imported.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "configure_torch_threads", "torch_threads_for", "usable_cores"]

ENV_VAR = "WEBGYM_TORCH_THREADS"


def _cgroup_cpus() -> float | None:
    """The cgroup (v2, else v1) CPU quota in cores, or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (>= 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def torch_threads_for(n: int | None = None, workers: int = 1) -> int:
    """The thread count the rule gives (see the module docstring); sets nothing."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if n is not None and int(n) < 0:
        raise ValueError(f"the thread count must be >= 0 (0: choose), not {n}")
    if n:
        return int(n)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={env!r} is not an integer") from None
        if value > 0:
            return value
    return max(1, usable_cores() // workers)


def configure_torch_threads(n: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op (and, while still allowed, inter-op) thread count by the rule and
    return it. Call it once per process, before the first model is run; a worker process calls
    it itself (threads are not inherited across ``spawn``)."""
    import torch

    threads = torch_threads_for(n, workers)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # parallel work has already started in this process
        pass
    return threads
