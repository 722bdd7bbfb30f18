"""The benchmark runner: the episode loop, workers (processes or Ray), retries and resume.

One episode: ``env.reset(seed=s, options={"task_id": t})``, ``agent.reset(goal, seed=s)``,
then ``agent.act`` / ``env.step`` until terminated or truncated, every step appended to
``steps.jsonl`` as it happens and ``summary.json`` written last (docs/run-format.md). The
episode seed ``s`` is derived from (run seed, task id) alone, so results do not depend on
which worker ran an episode, nor in which order.

An attempt that raises (agent or env exception) or that the env ends with ``info["error"]``
(the browser failed; the env truncates) is retried from scratch, with a fresh env and agent,
up to ``max_retries`` times; after that the episode is recorded with reward 0 and ``error``
set, as AgentLab does.

Workers: ``workers == 1`` runs in this process; ``workers > 1`` starts that many spawned
processes (``ProcessPoolExecutor``), each with its own env (and Chromium, in browser mode);
``ray`` runs the same :class:`EpisodeRunner` as Ray actors. Workers write their episodes
straight into the run directory (one episode folder belongs to one worker); the parent only
receives a small result per episode for the progress bar. Imports ``webgym`` and ``agents``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.records import (
    FORMAT_VERSION,
    EpisodeWriter,
    RunDir,
    sha256_file,
    utc_now,
)

__all__ = [
    "EpisodeRunner",
    "RunSpec",
    "SetupError",
    "build_manifest",
    "episode_seed",
    "execute",
]

ENV_IDS = {"browser": "WebGym-Shopping-v0", "text": "WebGym-ShoppingText-v0"}


class SetupError(RuntimeError):
    """The run cannot start or go on (bad agent, env that cannot be built): not an episode
    failure, so not retried per episode."""


class EpisodeFailed(RuntimeError):
    """The env reported a failure (``info["error"]``) and truncated the episode."""


def episode_seed(seed: int, task_id: str) -> int:
    """The episode's env and agent seed: a hash of (run seed, task id), in [0, 2**31)."""
    digest = hashlib.sha256(f"webgym-bench:{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to play episodes of a run (picklable)."""

    run_path: str
    agent: str
    checkpoint: str | None
    split: str
    task_ids: tuple[str, ...]
    seed: int
    mode: str
    max_episode_steps: int
    screenshots: bool = False
    max_retries: int = 2
    task_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # difficulty, category


# ----------------------------------------------------------------------------------------------
# One worker's episodes


class EpisodeRunner:
    """A worker's env and agent (built lazily, rebuilt after a failed attempt)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.run = RunDir(spec.run_path)
        self.env = None
        self.agent = None

    def _build(self) -> None:
        import gymnasium as gym

        import webgym  # noqa: F401 - registers the env ids
        from agents import make_agent

        if self.env is None:
            self.env = gym.make(
                ENV_IDS[self.spec.mode],
                split=self.spec.split,
                task_ids=list(self.spec.task_ids),
                max_episode_steps=self.spec.max_episode_steps,
                disable_env_checker=True,
            )
        if self.agent is None:
            try:
                self.agent = make_agent(self.spec.agent, checkpoint=self.spec.checkpoint)
            except Exception as e:
                raise SetupError(
                    f"cannot build agent {self.spec.agent!r}: {type(e).__name__}: {e}"
                ) from e

    def _discard(self) -> None:
        for obj in (self.agent, self.env):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001 - a broken env may fail to close; drop it anyway
                pass
        self.env = self.agent = None

    def close(self) -> None:
        self._discard()

    def run_episode(self, task_id: str) -> dict[str, Any]:
        """Play ``task_id`` (with retries), write its records, return a small result."""
        last_error, n_steps = None, 0
        attempts = self.spec.max_retries + 1
        for attempt in range(1, attempts + 1):
            self.run.log(f"episode start {task_id} attempt {attempt}")
            writer = None
            try:
                self._build()
                writer = EpisodeWriter(self.run, task_id)
                summary = self._attempt(task_id, writer)
                summary["attempts"] = attempt
                summary["error"] = None
                writer.finish(summary)
                self.run.log(
                    f"episode end {task_id} attempt {attempt} "
                    f"reward={summary['reward']} steps={summary['n_steps']}"
                )
                return _result(summary)
            except SetupError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of an attempt is retried
                last_error = f"{type(e).__name__}: {e}"
                n_steps = getattr(writer, "n_steps", 0)
                if writer is not None:
                    writer.close()
                self.run.log(
                    f"episode error {task_id} attempt {attempt}: {last_error.splitlines()[0][:300]}"
                )
                self._discard()
        meta = self.spec.task_meta.get(task_id, {})
        seed = episode_seed(self.spec.seed, task_id)
        summary = {
            "task_id": task_id,
            "split": self.spec.split,
            "seed": seed,
            "difficulty": meta.get("difficulty"),
            "category": meta.get("category"),
            "n_steps": n_steps,
            "reward": 0.0,
            "success": False,
            "reward_info": {},
            "terminated": False,
            "truncated": True,
            "error": last_error,
            "attempts": attempts,
            "n_invalid_actions": 0,
            "n_effect": 0,
            "purchased_asin": None,
            "timings": {},
            "finished": utc_now(),
        }
        from benchmarks.records import atomic_write_json

        atomic_write_json(self.run.episode_path(task_id) / "summary.json", summary)
        self.run.log(f"episode end {task_id} error after {attempts} attempts")
        return _result(summary)

    def _attempt(self, task_id: str, writer: EpisodeWriter) -> dict[str, Any]:
        spec, env, agent = self.spec, self.env, self.agent
        seed = episode_seed(spec.seed, task_id)
        t_start = time.perf_counter()
        obs, info = env.reset(seed=seed, options={"task_id": task_id})
        reset_s = time.perf_counter() - t_start
        agent.reset(obs["goal"], seed=seed)
        if spec.screenshots and obs.get("screenshot") is not None:
            writer.screenshot(0, obs["screenshot"])
        agent_s = env_s = 0.0
        n_steps = n_invalid = n_effect = 0
        reward, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            t0 = time.perf_counter()
            action = agent.act(obs)
            t1 = time.perf_counter()
            obs, reward, terminated, truncated, info = env.step(action)
            t2 = time.perf_counter()
            agent_s += t1 - t0
            env_s += t2 - t1
            n_steps += 1
            effect = info.get("action_effect") or {}
            error = obs.get("last_action_error") or ""
            n_invalid += bool(error)
            n_effect += effect.get("label") == 1
            writer.step(
                {
                    "step": n_steps,
                    "action": action,
                    "reward": float(reward),
                    "terminated": bool(terminated),
                    "truncated": bool(truncated),
                    "last_action_error": error,
                    "effect_label": effect.get("label"),
                    "text_distance": effect.get("text_distance"),
                    "pixel_distance": effect.get("pixel_distance"),
                    "obs_digest": hashlib.sha256(str(obs.get("text", "")).encode()).hexdigest(),
                    "url": obs.get("url"),
                    "elapsed_s": round(t2 - t_start, 6),
                }
            )
            if spec.screenshots and obs.get("screenshot") is not None:
                writer.screenshot(n_steps, obs["screenshot"])
            if info.get("error"):
                raise EpisodeFailed(f"the environment failed at step {n_steps}: {info['error']}")
        meta = spec.task_meta.get(task_id, {})
        reward = float(reward)
        return {
            "task_id": task_id,
            "split": spec.split,
            "seed": seed,
            "difficulty": meta.get("difficulty"),
            "category": meta.get("category"),
            "n_steps": n_steps,
            "reward": reward,
            "success": reward == 1.0,
            "reward_info": info.get("reward_info") or {},
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "n_invalid_actions": n_invalid,
            "n_effect": n_effect,
            "purchased_asin": info.get("purchased_asin"),
            "timings": {
                "reset_s": round(reset_s, 6),
                "episode_s": round(time.perf_counter() - t_start, 6),
                "agent_s": round(agent_s, 6),
                "env_s": round(env_s + reset_s, 6),
            },
            "finished": utc_now(),
        }


def _result(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("task_id", "reward", "success", "n_steps", "error")}


# ----------------------------------------------------------------------------------------------
# Process workers

_WORKER: EpisodeRunner | None = None


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive the run's process: a killed run is resumed by a new process,
    and an orphan still writing episodes would run them twice."""
    try:  # Linux: the kernel kills us the moment the parent dies
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the watchdog below does it
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def _init_worker(spec: RunSpec, parent: int) -> None:
    global _WORKER
    _die_with_parent(parent)
    _WORKER = EpisodeRunner(spec)


def _worker_run(task_id: str) -> dict[str, Any]:
    assert _WORKER is not None
    return _WORKER.run_episode(task_id)


def _run_local(spec: RunSpec, todo: list[str]) -> Iterator[dict[str, Any]]:
    runner = EpisodeRunner(spec)
    try:
        for tid in todo:
            yield runner.run_episode(tid)
    finally:
        runner.close()


def _run_processes(spec: RunSpec, todo: list[str], workers: int) -> Iterator[dict[str, Any]]:
    import multiprocessing as mp

    pending = list(todo)
    restarts = 0
    while pending:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(pending)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(spec, os.getpid()),
        ) as pool:
            futures = {pool.submit(_worker_run, tid): tid for tid in pending}
            not_done = set(futures)
            try:
                while not_done:
                    done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                    for fut in done:
                        result = fut.result()  # SetupError propagates
                        pending.remove(futures[fut])
                        yield result
            except BrokenProcessPool:
                restarts += 1
                if restarts > spec.max_retries:
                    raise SetupError(f"worker processes died {restarts} times; giving up") from None
                RunDir(spec.run_path).log(f"worker pool broke; restarting ({restarts})")
                continue
            except BaseException:
                for fut in not_done:
                    fut.cancel()
                raise


def _run_ray(
    spec: RunSpec, todo: list[str], workers: int, address: str | None
) -> Iterator[dict[str, Any]]:
    import ray

    started = False
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(EpisodeRunner)
        actors = [actor_cls.remote(spec) for _ in range(min(workers, len(todo)))]
        pool = ray.util.ActorPool(actors)
        for tid in todo:
            pool.submit(lambda a, t: a.run_episode.remote(t), tid)
        while pool.has_next():
            try:
                yield pool.get_next_unordered()
            except ray.exceptions.RayTaskError as e:
                cause = e.as_instanceof_cause()
                if isinstance(cause, SetupError):
                    raise SetupError(str(cause).splitlines()[-1]) from None
                raise
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------------------------
# The manifest


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _machine() -> dict[str, Any]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(mem, 1) if mem else None,
    }


def build_manifest(
    *,
    run_id: str,
    agent: str,
    agent_description: str,
    checkpoint: str | None,
    split: str,
    split_hash: str,
    split_size: int,
    task_ids: list[str],
    seed: int,
    mode: str,
    max_episode_steps: int,
    workers: int,
    executor: str,
    catalog: dict[str, Any],
    screenshots: bool,
    max_retries: int,
    command: list[str],
) -> dict[str, Any]:
    git_hash, git_dirty = _git()
    return {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "created": utc_now(),
        "agent": agent,
        "agent_description": agent_description,
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint else None,
        "split": split,
        "split_hash": split_hash,
        "split_size": split_size,
        "task_ids": task_ids,
        "seed": seed,
        "mode": mode,
        "max_episode_steps": max_episode_steps,
        "workers": workers,
        "executor": executor,
        "screenshots": screenshots,
        "max_retries": max_retries,
        "catalog": catalog,
        "package_versions": {
            "webgym": _version("webgym"),
            "gymnasium": _version("gymnasium"),
            "playwright": _version("playwright"),
            "torch": _version("torch"),
            "ray": _version("ray") if executor == "ray" else None,
            "python": platform.python_version(),
        },
        "git_hash": git_hash,
        "git_dirty": git_dirty,
        "machine": _machine(),
        "command": command,
    }


# ----------------------------------------------------------------------------------------------
# A run


@dataclass
class RunProgress:
    """What the parent has seen during this invocation (for the progress bar)."""

    done: int = 0
    successes: int = 0
    steps: int = 0
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: dict[str, Any]) -> None:
        self.done += 1
        self.successes += bool(result["success"])
        self.steps += int(result["n_steps"])
        self.errors += result["error"] is not None


def execute(
    spec: RunSpec,
    todo: list[str],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunProgress:
    """Play the episodes ``todo`` of the run ``spec`` and record them; returns the tally."""
    progress = RunProgress()
    if not todo:
        return progress
    if use_ray:
        results = _run_ray(spec, todo, workers, ray_address)
    elif workers > 1:
        results = _run_processes(spec, todo, workers)
    else:
        results = _run_local(spec, todo)
    for result in results:
        progress.add(result)
        if on_result is not None:
            on_result(result)
    return progress


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    return asdict(spec)


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
