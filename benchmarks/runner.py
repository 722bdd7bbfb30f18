"""The benchmark runner: planning a run, the episode loop, workers (processes or Ray), retries
and resume.

A run is planned (:func:`plan_run`: options, agent, split and tasks checked, the manifest
built, the run directory checked for a resume; nothing written), then executed
(:func:`execute_plan`: the manifest written, the episodes still to do played and recorded,
and, once every episode is done, the run finalised by :func:`finalise_run`: the metrics
recomputed from the records and written as ``summary.json``). The command ``webgym-bench run``
(benchmarks/cli.py) is these calls and the printing around them.
Records are written through ``webgym.runs`` (docs/run-format.md).

One episode: ``env.reset(seed=s, options={"task_id": t})``, ``agent.reset(goal, seed=s)``,
then ``agent.act`` / ``env.step`` until terminated or truncated, every step appended to
``steps.jsonl`` as it happens (with the agent's ``explain()``, when it has one: why it acted)
and every page text to ``observations.jsonl``, and ``summary.json`` written last
(docs/run-format.md). The
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
receives a small result per episode for the progress bar. Imports ``webgym`` and ``webgym_agents``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webgym.envs import MAX_EPISODE_STEPS, env_id_for_mode
from webgym.runs import (
    EpisodeScan,
    EpisodeWriter,
    RunDir,
    RunLock,
    build_manifest,
    decision_record,
    episode_seed,
    episode_summary,
    folder_problem,
    step_counts,
    step_record,
    steps_digest,
)

__all__ = [
    "EpisodeRunner",
    "PlanError",
    "RunOutcome",
    "RunPlan",
    "RunResults",
    "RunSpec",
    "SetupError",
    "execute",
    "execute_plan",
    "finalise_run",
    "lock_run",
    "plan_run",
    "select_tasks",
]


class SetupError(RuntimeError):
    """The run cannot start or go on (bad agent, env that cannot be built): not an episode
    failure, so not retried per episode."""


class EpisodeFailed(RuntimeError):
    """The env reported a failure (``info["error"]``) and truncated the episode."""


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
    # a ``module:factory`` agent: the folder it was named from, where workers import it too
    agent_path: str | None = None


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
        from webgym_agents import make_agent

        if self.env is None:
            self.env = gym.make(
                env_id_for_mode(self.spec.mode),
                split=self.spec.split,
                task_ids=list(self.spec.task_ids),
                max_episode_steps=self.spec.max_episode_steps,
                disable_env_checker=True,
            )
        if self.agent is None:
            path = self.spec.agent_path
            if path is not None and path not in sys.path:
                sys.path.append(path)
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
                summary = self._attempt(task_id, writer, attempt)
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
        if writer is None:  # the last attempt failed before it wrote: drop an earlier one's steps
            self.run.clear_episode(task_id)
        digest = writer.steps_digest if writer is not None else steps_digest([])
        meta = self.spec.task_meta.get(task_id, {})
        summary = episode_summary(
            task_id=task_id,
            split=self.spec.split,
            seed=episode_seed(self.spec.seed, task_id),
            difficulty=meta.get("difficulty"),
            category=meta.get("category"),
            n_steps=n_steps,
            reward=0.0,
            terminated=False,
            truncated=True,
            error=last_error,
            attempts=attempts,
            n_invalid_actions=0,
            n_effect=0,
            steps_digest=digest,
        )
        self.run.write_episode_summary(task_id, summary)
        self.run.log(f"episode end {task_id} error after {attempts} attempts")
        return _result(summary)

    def _attempt(self, task_id: str, writer: EpisodeWriter, attempt: int) -> dict[str, Any]:
        spec, env, agent = self.spec, self.env, self.agent
        seed = episode_seed(spec.seed, task_id)
        t_start = time.perf_counter()
        obs, info = env.reset(seed=seed, options={"task_id": task_id})
        reset_s = time.perf_counter() - t_start
        agent.reset(obs["goal"], seed=seed)
        writer.observation(0, obs)
        if spec.screenshots and obs.get("screenshot") is not None:
            writer.screenshot(0, obs["screenshot"])
        agent_s = env_s = 0.0
        records: list[dict[str, Any]] = []
        reward, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            t0 = time.perf_counter()
            action = agent.act(obs)
            decision = explain(agent)
            t1 = time.perf_counter()
            obs, reward, terminated, truncated, info = env.step(action)
            t2 = time.perf_counter()
            agent_s += t1 - t0
            env_s += t2 - t1
            record = step_record(
                step=len(records) + 1,
                action=action,
                obs=obs,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                effect=info.get("action_effect"),
                elapsed_s=t2 - t_start,
                decision=decision,
            )
            records.append(record)
            writer.step(record)
            writer.observation(len(records), obs)
            if spec.screenshots and obs.get("screenshot") is not None:
                writer.screenshot(len(records), obs["screenshot"])
            if info.get("error"):
                raise EpisodeFailed(
                    f"the environment failed at step {len(records)}: {info['error']}"
                )
        meta = spec.task_meta.get(task_id, {})
        return episode_summary(
            task_id=task_id,
            split=spec.split,
            seed=seed,
            difficulty=meta.get("difficulty"),
            category=meta.get("category"),
            **step_counts(records),
            reward=float(reward),
            reward_info=info.get("reward_info") or {},
            terminated=terminated,
            truncated=truncated,
            attempts=attempt,
            purchased_asin=info.get("purchased_asin"),
            timings={
                "reset_s": round(reset_s, 6),
                "episode_s": round(time.perf_counter() - t_start, 6),
                "agent_s": round(agent_s, 6),
                "env_s": round(env_s + reset_s, 6),
            },
        )


def explain(agent: Any) -> dict[str, Any] | None:
    """Why ``agent`` took its last action, as a step record's ``decision``
    (``webgym.runs.decision_record`` of what its ``explain()`` returns); None for an agent
    without ``explain`` or one that says nothing. An ``explain()`` that raises is recorded as
    the reason, not as the episode's failure: the action was taken."""
    method = getattr(agent, "explain", None)
    if not callable(method):
        return None
    try:
        return decision_record(method())
    except Exception as e:  # noqa: BLE001 - an agent's explanation must not end its episode
        return decision_record(f"explain() raised {type(e).__name__}: {e}")


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
# Playing the episodes of a run


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


# ----------------------------------------------------------------------------------------------
# Planning a run: what `webgym-bench run` (and `train`'s evaluation) checks and decides before
# playing anything. Reads the catalog and the run directory; writes nothing.


class PlanError(ValueError):
    """A run that cannot be planned: the message says why, in words for the person who asked.
    ``code`` is the exit code a command gives (2: bad input; 1: the catalog cannot be opened)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RunPlan:
    """A checked run: its directory and manifest, what is already done, what a worker needs."""

    run: RunDir
    manifest: dict[str, Any]
    spec: RunSpec
    scan: EpisodeScan  # the episodes already complete, corrupt, interrupted, not started
    resuming: bool  # the directory already holds this run
    workers: int
    ray: str | None = None  # None: no Ray; "local": a local Ray; else a cluster address

    @property
    def out(self) -> Path:
        return self.run.path

    @property
    def task_ids(self) -> list[str]:
        return list(self.spec.task_ids)

    @property
    def todo(self) -> list[str]:
        return self.scan.todo

    @property
    def use_ray(self) -> bool:
        return self.ray is not None

    @property
    def executor(self) -> str:
        return "ray" if self.use_ray else "local"


def select_tasks(
    all_ids: list[str], split: str, *, episodes: int | None, task_ids: list[str] | None
) -> list[str]:
    """The tasks of a run: the split's first ``episodes``, or ``task_ids`` (each in the split,
    none twice), or the whole split; :class:`PlanError` otherwise."""
    chosen = list(task_ids or [])
    if episodes is not None and chosen:
        raise PlanError("give --episodes or --task-ids, not both")
    if episodes is not None:
        if episodes < 1:
            raise PlanError(f"--episodes must be at least 1, not {episodes}")
        if episodes > len(all_ids):
            raise PlanError(
                f"--episodes {episodes} is beyond split {split!r}, which has {len(all_ids)} tasks"
            )
        return list(all_ids[:episodes])
    if chosen:
        known = set(all_ids)
        unknown = [t for t in chosen if t not in known]
        if unknown:
            shown = ", ".join(unknown[:10]) + (
                f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
            )
            raise PlanError(f"tasks not in split {split!r}: {shown} (ids look like {all_ids[0]!r})")
        if len(set(chosen)) != len(chosen):
            raise PlanError("--task-ids lists a task more than once")
        return chosen
    return list(all_ids)


def _shipped(agent: str, checkpoint: Path | None) -> Any:
    """The shipped checkpoint this run plays (agents/release.py): the agent's own when no
    checkpoint is given, or the shipped folder given as ``--checkpoint``; else None."""
    from webgym_agents.release import Release, find_release, is_release

    if checkpoint is None:
        return find_release(agent)
    return Release(checkpoint) if is_release(checkpoint) else None


def plan_run(
    *,
    agent: str,
    checkpoint: Path | str | None = None,
    split: str = "test",
    episodes: int | None = None,
    task_ids: list[str] | None = None,
    seed: int = 0,
    workers: int = 1,
    mode: str = "text",
    out: Path | str | None = None,
    screenshots: bool = False,
    ray: str | None = None,
    max_retries: int = 2,
    max_steps: int = MAX_EPISODE_STEPS,
    catalog: Any = None,
) -> RunPlan:
    """Check the options of a run and plan it; :class:`PlanError` says what is wrong.

    ``out`` defaults to ``runs/<agent>-<split>-<UTC time>``; an ``out`` that holds this run
    resumes it, one that holds another run is refused. ``catalog`` (an open
    ``webgym.shop.catalog.Catalog``) defaults to ``open_catalog(split=split)`` (the embedded
    catalog that holds the split), closed again on return. With no ``checkpoint``, an agent
    that has a shipped checkpoint (agents/release.py) plays it: its files are checked against
    their hashes, and the manifest records it (``release``: name, content hash, results row;
    ``checkpoint_sha256`` is that content hash).
    Nothing is written: :func:`execute_plan` writes the manifest and plays the episodes.
    """
    from webgym_agents.base import (
        AgentLoadError,
        agent_source,
        check_agent,
        check_external_agent,
        is_agent_spec,
        load_agent_factory,
    )

    if mode not in ("browser", "text"):
        raise PlanError(f"--mode must be 'browser' or 'text', not {mode!r}")
    if workers < 1:
        raise PlanError(f"--workers must be at least 1, not {workers}")
    if max_retries < 0:
        raise PlanError(f"--max-retries must be >= 0, not {max_retries}")
    if max_steps < 1:
        raise PlanError(f"--max-steps must be at least 1, not {max_steps}")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    agent_path = None
    if is_agent_spec(agent):  # imported from where it was named, here and in the workers
        agent_path = os.getcwd()
        try:
            load_agent_factory(agent, path=agent_path)
        except AgentLoadError as e:
            raise PlanError(str(e)) from None
    release = None if agent_path is not None else _shipped(agent, checkpoint)
    if release is not None:
        checkpoint = release.path
    try:
        info = check_agent(agent, str(checkpoint) if checkpoint is not None else None)
    except ValueError as e:  # UnknownAgentError and AgentLoadError are ones too
        message = str(e)
        if checkpoint is None and "needs a checkpoint" in message:
            from webgym_agents.release import list_releases

            shipped = ", ".join(r.name for r in list_releases()) or "none"
            message += f" (no checkpoint of {agent} ships with webgym; shipped: {shipped})"
        raise PlanError(message) from None
    if checkpoint is not None and not checkpoint.exists():
        raise PlanError(f"checkpoint {checkpoint} does not exist")
    source = agent_source(agent)
    if source is not None:  # an agent from outside WebGym: it gives an agent, before any run
        try:
            check_external_agent(agent, str(checkpoint) if checkpoint is not None else None)
        except AgentLoadError as e:
            raise PlanError(str(e)) from None
    shipped = None
    if release is not None:
        try:
            release.verify()
        except ValueError as e:  # ReleaseError: a damaged or replaced file, named
            raise PlanError(str(e)) from None
        shipped = {"name": release.name, "sha256": release.sha256, "results": release.results}

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", ".", agent)  # module:factory makes no folder name
    out = Path(out) if out is not None else Path("runs") / f"{safe_name}-{split}-{stamp}"
    why = folder_problem(out)  # before anything is created: a file where a folder must go
    if why:
        raise PlanError(f"--out {out}: {why}; choose another --out")

    own_catalog = catalog is None
    if own_catalog:
        from webgym.shop.catalog import open_catalog

        try:
            catalog = open_catalog(split=split)
        except Exception as e:  # noqa: BLE001 - shown to the user as it is
            raise PlanError(f"cannot open the catalog: {e}", 1) from None
    try:
        try:
            task_split = catalog.split(split)
        except KeyError as e:
            raise PlanError(str(e.args[0]) if e.args else str(e)) from None
        run_ids = select_tasks(task_split.task_ids, split, episodes=episodes, task_ids=task_ids)
        manifest = build_manifest(
            run_id=out.name,
            agent=agent,
            agent_description=info.description,
            checkpoint=str(checkpoint) if checkpoint else None,
            split=split,
            split_hash=task_split.hash,
            split_size=task_split.size,
            task_ids=run_ids,
            seed=seed,
            mode=mode,
            max_episode_steps=max_steps,
            workers=workers,
            executor="ray" if ray is not None else "local",
            catalog={
                "source": catalog.source,
                "path": str(catalog.path),
                "content_hash": catalog.content_hash,
            },
            screenshots=screenshots,
            max_retries=max_retries,
            command=command_line(),
        )
        if source is not None:
            manifest["agent_source"] = source
        if shipped is not None:  # what played: the shipped checkpoint's content hash
            manifest["checkpoint_sha256"] = shipped["sha256"]
            manifest["release"] = shipped
        goals = {g["task_id"]: g for g in task_split.goals}
    finally:
        if own_catalog:
            catalog.close()

    run = RunDir(out)
    try:
        existing = run.check(manifest)
    except ValueError as e:  # ManifestMismatch, CorruptRecord
        raise PlanError(str(e)) from None
    spec = RunSpec(
        run_path=str(out.resolve()),
        agent=agent,
        checkpoint=str(checkpoint.resolve()) if checkpoint else None,
        split=split,
        task_ids=tuple(run_ids),
        seed=seed,
        mode=mode,
        max_episode_steps=max_steps,
        screenshots=screenshots,
        max_retries=max_retries,
        task_meta={
            t: {"difficulty": goals[t].get("difficulty"), "category": goals[t].get("category")}
            for t in run_ids
        },
        agent_path=agent_path,
    )
    return RunPlan(
        run=run,
        manifest=existing if existing is not None else manifest,
        spec=spec,
        scan=run.scan(run_ids, check_steps=True),
        resuming=existing is not None,
        workers=workers,
        ray=ray,
    )


# ----------------------------------------------------------------------------------------------
# Executing a plan, and the run's results


@dataclass(frozen=True)
class RunOutcome:
    """How one invocation of a run ended: ``complete``, ``failed`` (``message`` says why; the
    complete episodes are kept) or ``interrupted``. ``results``: the run's metrics, written as
    ``summary.json`` and ``results.*`` (:func:`finalise_run`) when it ended complete."""

    status: str
    message: str | None
    episodes_run: int
    wall_s: float
    results: RunResults | None = None


def execute_plan(
    plan: RunPlan,
    *,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    lock: RunLock | None = None,
) -> RunOutcome:
    """Take the run directory's writer lock, write the plan's manifest (a new run) and play
    its episodes still to do, logging the invocation in ``run.log`` and ``invocations.jsonl``;
    a run that ends complete is finalised (:func:`finalise_run`: ``summary.json`` and
    ``results.*`` written, the metrics in ``outcome.results``), so that it can be verified and
    submitted as it is.

    :class:`webgym.runs.RunLocked` when another live process writes the directory (nothing is
    written then); ``on_note`` hears that a stale lock was taken over. ``lock``: the caller
    already holds it (:func:`lock_run`) and releases it. A :class:`SetupError` or a
    ``KeyboardInterrupt`` ends the invocation (``status`` says which), never the process.
    """
    run = plan.run
    with contextlib.nullcontext(lock) if lock is not None else lock_run(plan) as held:
        if held.note and lock is None and on_note is not None:
            on_note(held.note)
        run.create_or_check(plan.manifest)
        # what is left to do, seen under the lock (a writer may have finished since planning)
        todo = run.scan(plan.task_ids, check_steps=True).todo
        outcome = _play_locked(plan, todo, on_result)
        if outcome.status != "complete":
            return outcome
        return replace(outcome, results=finalise_run(run.path))


def lock_run(plan: RunPlan) -> RunLock:
    """The plan's run directory's writer lock (``webgym.runs.RunLock``), taken now; a stale
    lock taken over is logged in ``run.log`` (and in ``.note``). :class:`RunLocked` while
    another live process holds it."""
    lock = plan.run.lock(command_line())
    if lock.note:
        plan.run.log(lock.note)
    return lock


def _play_locked(
    plan: RunPlan, todo: list[str], on_result: Callable[[dict[str, Any]], None] | None
) -> RunOutcome:
    run = plan.run
    t0, started = time.perf_counter(), datetime.now(UTC).isoformat()
    run.log(
        f"run start: {len(todo)} episodes to run, workers={plan.workers}, executor={plan.executor}"
    )
    status, message = "complete", None
    try:
        execute(
            plan.spec,
            todo,
            workers=plan.workers,
            use_ray=plan.use_ray,
            ray_address=None if plan.ray in (None, "local") else plan.ray,
            on_result=on_result,
        )
    except SetupError as e:
        status, message = "failed", str(e)
    except KeyboardInterrupt:
        status, message = "interrupted", "interrupted"
    wall = time.perf_counter() - t0
    # the episodes this invocation recorded, counted on disk: an interrupted or failed one
    # played some too (and a worker may have finished one the parent had not heard of yet)
    episodes_run = len(run.scan(todo, check_steps=True).complete)
    run.log(f"run {status}: {episodes_run} episodes run, wall {wall:.1f}s")
    run.append_invocation(
        {
            "started": started,
            "finished": datetime.now(UTC).isoformat(),
            "status": status,
            "wall_s": round(wall, 3),
            "episodes_run": episodes_run,
            "workers": plan.workers,
            "executor": plan.executor,
            "command": command_line(),
        }
    )
    return RunOutcome(status, message, episodes_run, wall)


@dataclass(frozen=True)
class RunResults:
    """A run's metrics recomputed from its records (:func:`finalise_run`)."""

    records: Any  # webgym.runs.RunRecords
    metrics: dict[str, Any]
    write_error: str | None = None  # why results.* / summary.json could not be written


def finalise_run(run_path: Path | str) -> RunResults:
    """Recompute the run's metrics from its records and write ``results.*`` and
    ``summary.json`` (a read-only run, someone else's, is only read). :func:`execute_plan`
    calls it when a run ends complete; ``webgym-bench run`` and ``show`` also call it on a run
    that is not (its ``summary.json`` then says ``complete: false``)."""
    from webgym.runs import load_run
    from webgym_benchmarks.metrics import compute_metrics, episodes_frame, save_results

    records = load_run(run_path)
    df = episodes_frame(records.episodes)
    metrics = compute_metrics(df, n_expected=records.n_expected, wall_time_s=records.wall_time_s)
    write_error = None
    try:
        save_results(df, run_path)
        RunDir(run_path).write_summary(metrics)
    except OSError as e:
        write_error = f"could not write results into {run_path}: {e}"
    return RunResults(records, metrics, write_error)
