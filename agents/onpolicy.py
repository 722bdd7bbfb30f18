"""The plumbing every on-policy trainer shares (archer, grpo, reinforce): config, start, batches,
validation, checkpoints. The algorithm files hold only their algorithm.

- :class:`OnPolicyConfig`: the fields every on-policy trainer's config extends.
- :func:`start_policy`: the policy (and optionally a critic) from ``init_checkpoint`` (the
  ``bc`` checkpoint of the same backbone) or fresh, resumed from the run's latest checkpoint.
- :func:`iteration_tasks`: the train tasks of one iteration, a function of (seed, iteration)
  only, so a resumed run draws the tasks it would have drawn.
- :class:`TurnBatch`: the valid rollouts' turns as flat lists, for minibatch updates.
- :func:`validate`: greedy (temperature 0) play on the first validation tasks.
- :func:`save_checkpoint`: policy (+ critic) + optimizers through :class:`TrainRun`.

Imports agents only; never benchmarks or leaderboards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.rollouts import Rollout, collect_rollouts, rollout_stats
from agents.scorer_policy import ScorerCritic, ScorerPolicy, read_info
from agents.training import TrainRun
from webgym.envs import MAX_EPISODE_STEPS

__all__ = [
    "OnPolicyConfig",
    "TurnBatch",
    "iteration_tasks",
    "minibatches",
    "save_checkpoint",
    "start_policy",
    "validate",
]

CRITIC_DIR = "critic"


@dataclass
class OnPolicyConfig:
    """Hyper-parameters shared by the on-policy trainers (each trainer's config extends it)."""

    # model
    backbone: str = "minilm"  # an encoder (the candidate scorer, agents/scorer_policy.py)
    init_checkpoint: str = ""  # the starting policy (the bc checkpoint); "" = fresh head
    device: str = "cpu"
    torch_threads: int = 0  # 0: agents.models.threads' rule (all usable cores for one process)
    seed: int = 0
    max_length: int = 96  # tokens of one (state, candidate) pair
    # rollouts
    iterations: int = 20
    tasks_per_iteration: int = 32
    group_size: int = 1  # rollouts per task from the identical start
    n_envs: int = 8  # envs stepped in lockstep
    temperature: float = 1.0  # sampling temperature while collecting
    max_steps: int = MAX_EPISODE_STEPS
    # optimisation
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    minibatch_size: int = 32  # turns per optimizer step
    # validation and checkpoints
    val_tasks: int = 50  # greedy validation episodes after each eval_every iterations
    eval_every: int = 1
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    eval_episodes: int = 0  # harness validation episodes after training (webgym-bench train)


def _configure(config: OnPolicyConfig) -> None:
    from agents.models.threads import configure_torch_threads

    configure_torch_threads(config.torch_threads or None)


def start_policy(
    config: OnPolicyConfig, run: TrainRun, *, critic: bool = False
) -> tuple[ScorerPolicy, ScorerCritic | None]:
    """The policy (and critic) to train: the run's latest checkpoint, else ``init_checkpoint``,
    else a fresh head on ``backbone``. A fresh critic copies the policy's encoder weights."""
    _configure(config)
    torch.manual_seed(config.seed)  # fresh heads (policy, critic) are a function of the seed
    latest = run.latest_checkpoint()
    source = latest or (Path(config.init_checkpoint) if config.init_checkpoint else None)
    if source is not None:
        kind = read_info(source).get("kind")
        if kind != "scorer-policy":
            raise ValueError(
                f"{source} holds a {kind!r} checkpoint; on-policy trainers start from a "
                "scorer-policy checkpoint (webgym-bench train --agent bc with an encoder backbone)"
            )
        policy = ScorerPolicy.load(source)
        if policy.backbone.name != config.backbone:
            raise ValueError(
                f"{source} was trained on {policy.backbone.name}, the config says {config.backbone}"
            )
    else:
        policy = ScorerPolicy.from_backbone_name(
            config.backbone, seed=config.seed, max_length=config.max_length
        )
    policy.max_length, policy.max_steps = config.max_length, config.max_steps
    policy.eval()  # no dropout: the ratio of an unchanged policy is exactly 1
    value_fn = None
    if critic:
        critic_dir = latest / CRITIC_DIR if latest is not None else None
        if critic_dir is not None and critic_dir.is_dir():
            value_fn = ScorerCritic.load(critic_dir)
        else:
            import copy

            value_fn = ScorerCritic(copy.deepcopy(policy.backbone), max_length=config.max_length)
        value_fn.eval()
    return policy, value_fn


def iteration_tasks(train_ids: Sequence[str], config: OnPolicyConfig, iteration: int) -> list[str]:
    """The ``tasks_per_iteration`` train tasks of ``iteration`` (1-based), drawn without
    replacement from a generator seeded by (seed, iteration)."""
    gen = np.random.default_rng([config.seed, iteration])
    n = min(config.tasks_per_iteration, len(train_ids))
    return [train_ids[i] for i in gen.choice(len(train_ids), size=n, replace=False)]


@dataclass
class TurnBatch:
    """Every turn of the valid rollouts, flattened; ``episode[i]`` indexes ``rollouts``."""

    rollouts: list[Rollout]
    states: list[str]
    cands: list[Any]  # agents.scorer_policy.Candidates of each turn
    chosen: list[int]
    old_logp: torch.Tensor
    temperature: list[float]
    episode: list[int]
    turn: list[int]

    @classmethod
    def of(cls, rollouts: Sequence[Rollout]) -> TurnBatch:
        valid = [r for r in rollouts if r.valid]
        states, cands, chosen, old, temps, ep, tt = [], [], [], [], [], [], []
        for i, r in enumerate(valid):
            for t, turn in enumerate(r.turns):
                d = turn.decision
                states.append(d.state)
                cands.append(d.candidates)
                chosen.append(d.index)
                old.append(d.logprob)
                temps.append(d.temperature)
                ep.append(i)
                tt.append(t)
        return cls(valid, states, cands, chosen, torch.tensor(old), temps, ep, tt)

    def __len__(self) -> int:
        return len(self.states)

    def logprobs(self, policy: ScorerPolicy, idx: Sequence[int]) -> torch.Tensor:
        """log pi_theta(a_t | s_t) of the turns ``idx`` at each turn's acting temperature."""
        temps = {self.temperature[i] for i in idx}
        if len(temps) == 1:
            return policy.logprobs(
                [self.states[i] for i in idx],
                [self.cands[i] for i in idx],
                [self.chosen[i] for i in idx],
                temperature=temps.pop(),
            )
        return torch.cat([self.logprobs(policy, [i]) for i in idx])


def minibatches(n: int, size: int, gen: np.random.Generator) -> list[np.ndarray]:
    """A random partition of range(n) into chunks of ``size`` (the last may be smaller)."""
    order = gen.permutation(n)
    return [order[i : i + size] for i in range(0, n, max(1, size))]


def validate(
    policy: ScorerPolicy, val_ids: Sequence[str], config: OnPolicyConfig
) -> dict[str, float]:
    """Greedy play on ``val_ids`` (validation split): ``val_score``, ``val_success_rate``."""
    t0 = time.perf_counter()
    rollouts = collect_rollouts(
        policy,
        val_ids,
        split="validation",
        n_envs=config.n_envs,
        seed=config.seed,
        temperature=0.0,
        max_steps=config.max_steps,
    )
    stats = rollout_stats(rollouts)
    return {
        "val_score": stats["score"],
        "val_success_rate": stats["success_rate"],
        "val_avg_steps": stats["avg_steps"],
        "val_s": time.perf_counter() - t0,
    }


def save_checkpoint(
    run: TrainRun,
    iteration: int,
    policy: ScorerPolicy,
    optimizer: torch.optim.Optimizer,
    *,
    critic: ScorerCritic | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Policy (+ critic in ``critic/``) with both optimizers' states, through ``run``."""
    meta = {"trained_by": run.trainer, "iteration": iteration, **(metadata or {})}

    def save(folder: Path) -> None:
        policy.save(folder, metadata=meta)
        if critic is not None:
            critic.save(folder / CRITIC_DIR, metadata=meta)
            if critic_optimizer is not None:
                torch.save(critic_optimizer.state_dict(), folder / CRITIC_DIR / "optimizer.pt")

    return run.save_checkpoint(iteration, save, optimizer, metadata=meta)


def restore_critic_optimizer(run: TrainRun, optimizer: torch.optim.Optimizer) -> None:
    latest = run.latest_checkpoint()
    path = latest / CRITIC_DIR / "optimizer.pt" if latest is not None else None
    if path is not None and path.is_file():
        optimizer.load_state_dict(torch.load(path, weights_only=True))


def adamw(module: torch.nn.Module, config: OnPolicyConfig) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def clip_and_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip the global gradient norm to ``clip``, step, zero; returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def run_iterations(
    config: OnPolicyConfig,
    run: TrainRun,
    start: int,
    step: Callable[[int], dict[str, Any]],
    save: Callable[[int], None],
    policy: ScorerPolicy,
    val_ids: Sequence[str],
) -> None:
    """The outer loop: iteration 0's validation row (the starting policy), then for each
    iteration ``step(it)`` -> metrics, validation, a metrics row, a checkpoint."""
    # iteration 0: the starting policy, written with the first iteration's columns (the first
    # row of metrics.csv fixes them)
    first = validate(policy, val_ids, config) if start == 0 and not run.metrics() else None
    env_steps = int(float(run.metrics()[-1].get("env_steps") or 0)) if run.metrics() else 0
    with run.progress(config.iterations, start, run.trainer) as progress:
        for it in range(start + 1, config.iterations + 1):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"iteration": it} | step(it)
            env_steps += int(row.get("train_env_steps", 0))
            row["env_steps"] = env_steps
            if it % config.eval_every == 0 or it == config.iterations:
                row |= validate(policy, val_ids, config)
            row["iteration_s"] = time.perf_counter() - t0
            if first is not None:
                zero = dict.fromkeys(row) | {"iteration": 0, "env_steps": 0} | first
                run.log_metrics({k: zero.get(k) for k in row} | zero)
                run.say(_row_text({k: v for k, v in zero.items() if v is not None}))
                first = None
            run.log_metrics(row)
            run.say(_row_text(row))
            if it % config.checkpoint_every == 0 or it == config.iterations:
                save(it)
            progress(1, f"val SR {row.get('val_success_rate', float('nan')):.2f}")
    if run.latest_checkpoint() is None:
        save(config.iterations)


def _row_text(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def split_task_ids(split: str) -> list[str]:
    """The task ids of ``split`` of the embedded catalog, in order."""
    from webgym.shop.catalog import open_catalog

    catalog = open_catalog()
    try:
        return list(catalog.split(split).task_ids)
    finally:
        catalog.close()
