"""The plumbing every on-policy trainer shares (archer, grpo, gigpo, genac, poise, reinforce,
vineppo): config, start, batches, optimizer steps, the iteration loop's bookkeeping
(:class:`webgym_agents.toolkit.loop.Iterations`: validation, metrics rows, checkpoints),
data parallelism. Each algorithm
file writes its own ``for it in iterations:`` with its collection, advantages and loss.

- :class:`OnPolicyConfig`: the fields every on-policy trainer's config extends (itself an
  :class:`webgym_agents.toolkit.training.CommonConfig`).
- :func:`start_policy`: the policy (and optionally a critic) from ``init_checkpoint`` (the
  ``bc`` checkpoint of the same backbone) or fresh, resumed from the run's latest checkpoint
  (agents/toolkit/starting.py; this module hands the names on).
- :func:`iteration_tasks`: the train tasks of one iteration, a function of (seed, iteration)
  only, so a resumed run draws the tasks it would have drawn.
- :func:`collect`: an iteration's rollouts, played in this process or, with ``ray`` set (``train
  --ray``), on Ray workers (agents/toolkit/ray_rollouts.py); the same rollouts either way.
- :class:`TurnBatch`: the valid rollouts' turns as flat lists, for minibatch updates.
- :func:`validate`: greedy (temperature 0) play on the first validation tasks.
- :func:`save_checkpoint`: policy (+ critic) + optimizers through :class:`TrainRun`.
- the optimizer side (minibatches, the ratio's denominators, the data-parallel optimizer step,
  the PPO turn update) is agents/toolkit/updates.py; this module hands its names on.

**Data-parallel training** (``accelerate launch --multi_gpu --num_processes N -m webgym_bench
train ...``, or ``torchrun``; agents/toolkit/data_parallel.py) needs nothing of an algorithm file.
With N processes:

- every process builds the same policy and critic; :func:`start_policy` copies rank 0's weights
  to the others;
- :func:`webgym_agents.toolkit.rollouts.collect_rollouts` (training batches and
  :func:`validate` alike) plays every N-th episode in each process and gathers them, so every
  process holds the iteration's whole batch, in the order one process would;
- :func:`minibatches` hands out the same minibatches as one process would, N at a time: an
  optimizer step takes one per process (with fewer than N left, the processes share them), and
  :func:`clip_and_step` all-reduces the gradients before clipping and stepping, each process's
  weighted so that a step's gradient is the mean over its distinct minibatches. One step
  therefore sees N minibatches: a batch is taken in 1/N of the steps, each N times larger;
- :class:`webgym_agents.toolkit.loop.Iterations` averages each metric over the processes
  (rollout statistics agree already) and only rank 0 writes the run directory;
  :func:`save_checkpoint` checks that every process holds the same weights (their digests go
  to ``train.log``) and fails if not.

With one process all of this is skipped, and training is exactly what it was.

Imports webgym_agents only; never webgym_benchmarks or webgym_leaderboards.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from webgym_agents.policies.scorer_policy import (
    critic_state_text,
)
from webgym_agents.toolkit import data_parallel
from webgym_agents.toolkit.rollouts import Rollout, collect_rollouts, rollout_stats
from webgym_agents.toolkit.starting import (
    CRITIC_DIR,
    Critic,
    Policy,
    fresh_policy,
    load_policy,
    start_policy,
)
from webgym_agents.toolkit.training import CommonConfig, TrainRun
from webgym_agents.toolkit.updates import (
    adamw,
    as_rows,
    clip_and_step,
    forced_turns,
    minibatches,
    old_logprobs,
    ppo_turn_update,
)

__all__ = [
    "CRITIC_DIR",
    "BACK_ACTIONS",
    "back_probe_forks",
    "back_probes",
    "forced_turns",
    "probe_stats",
    "with_probes",
    "Critic",
    "Policy",
    "fresh_policy",
    "load_policy",
    "CriticConfig",
    "Learner",
    "OnPolicyConfig",
    "TurnBatch",
    "old_logprobs",
    "collect",
    "iteration_tasks",
    "minibatches",
    "adamw",
    "as_rows",
    "clip_and_step",
    "ppo_turn_update",
    "save_checkpoint",
    "critic_values",
    "start_learner",
    "start_policy",
    "validate",
]

BUFFER_FILE = "buffer.json"
ConfigT = TypeVar("ConfigT", bound="OnPolicyConfig")


@dataclass
class OnPolicyConfig(CommonConfig):
    """Hyper-parameters shared by the on-policy trainers (each trainer's config extends it);
    seed, torch_threads, device, max_steps, eval_episodes (harness validation episodes after
    training), checkpoint_every and keep_checkpoints are :class:`CommonConfig`'s."""

    supports_data_parallel: ClassVar[bool] = True  # runs under accelerate launch (module docstring)
    placement_fields: ClassVar[frozenset[str]] = frozenset({"ray", "ray_workers"})

    # model
    backbone: str = "minilm"  # an encoder (the candidate scorer, agents/policies/scorer_policy.py)
    init_checkpoint: str = ""  # the starting policy: a folder, or released:bc; "" = fresh head
    max_length: int = 96  # tokens of one (state, candidate) pair
    # rollouts
    iterations: int = 20
    tasks_per_iteration: int = 32
    group_size: int = 1  # rollouts per task from the identical start
    n_envs: int = 8  # envs stepped in lockstep
    temperature: float = 1.0  # sampling temperature while collecting
    explore: float = 0.0  # epsilon: share of training decisions drawn uniformly (scorer only)
    # the learner's objective R = score_weight * r + success_bonus * 1[r = 1] (:func:`objective`;
    # Score and SR are always of r). Buying a product that lacks a named option still earns
    # 0.6-0.8 of r, about what going back and looking on earns under bc; weighting the exact
    # purchase, which only going back can reach, above a near miss makes the way back pay
    score_weight: float = 1.0
    success_bonus: float = 0.0
    ray: str = ""  # "": collect here; "local": a local Ray; else a cluster address (train --ray)
    ray_workers: int = 2  # Ray actors collecting, one CPU and one torch thread each
    train_encoder: bool = True  # False: only the policy's scoring heads learn (bc's encoder)
    # optimisation
    lr: float = 1e-5
    # the scorer's linear feature path (w . features; policies/scorer_policy.py) at its own rate:
    # its weights start at 0 on features bc never needed and must outweigh bc's confident MLP
    # margin (~6 logits between Buy Now and "< Prev") before the policy ever goes back
    feature_lr: float | None = None  # None: lr
    # exploration with exact credit (grpo, gigpo): the share of rollouts that fork a probe from
    # one of their product pages, "< Prev" taken there and the policy after it; each probe
    # joins its task's group (:func:`back_probes`)
    back_probes: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    minibatch_size: int = 32  # turns per optimizer step
    # validation
    val_tasks: int = 50  # greedy validation episodes after each eval_every iterations
    eval_every: int = 1


@dataclass
class CriticConfig(OnPolicyConfig):
    """An on-policy trainer with a learned state value V_phi(s) (archer, reinforce): a copy of
    the policy's encoder with a scalar head, fitted to MC returns G_t = gamma^(T-1-t) R."""

    gamma: float = 0.95  # discount of the critic's MC targets
    critic_lr: float = 1e-4  # the critic's trainable encoder layers
    critic_head_lr: float = 3e-3  # its value head
    critic_epochs: int = 2  # passes of the critic over each batch
    critic_train_layers: int = 0  # the critic's top layers that learn (0: all); fewer is faster
    # what the critic reads: "state" (the scorer's state text, an LM's prompt) or "facts" (the
    # scorer's state text + the page facts a return depends on: scorer_policy.critic_state_text)
    critic_input: str = "state"


@dataclass
class Learner:
    """What an on-policy trainer optimises, resumed from the run's latest checkpoint."""

    policy: Policy
    optimizer: torch.optim.Optimizer
    start: int  # the first iteration to run
    train_ids: list[str]
    val_ids: list[str]  # the first val_tasks validation tasks
    critic: Critic | None = None
    critic_optimizer: torch.optim.Optimizer | None = None
    # (state, target) pairs the critic keeps fitting to, a list per past iteration (archer's
    # critic_buffer); saved in the checkpoint so a resumed run fits the same data
    critic_buffer: list[list[tuple[str, float]]] = field(default_factory=list)

    def save(
        self, run: TrainRun, iteration: int, extra: Callable[[Path], None] | None = None
    ) -> Path:
        return save_checkpoint(
            run, iteration, self.policy, self.optimizer, critic=self.critic,
            critic_optimizer=self.critic_optimizer, critic_buffer=self.critic_buffer, extra=extra,
        )  # fmt: skip


def start_learner(config: OnPolicyConfig, run: TrainRun) -> Learner:
    """The policy, its AdamW and (a :class:`CriticConfig`) the critic with its own: from
    :func:`start_policy`, their optimizer states restored when resuming."""
    with_critic = isinstance(config, CriticConfig)
    policy, critic = start_policy(
        config, run, critic=with_critic,
        critic_train_layers=config.critic_train_layers if with_critic else 0,
    )  # fmt: skip
    if not config.train_encoder:
        policy.encoder.requires_grad_(False)
    optimizer = adamw(policy, config)
    start = run.restore(optimizer)
    critic_opt, buffer = None, []
    if critic is not None:
        critic_opt = torch.optim.AdamW(critic.param_groups(config.critic_lr, config.critic_head_lr))
        restore_critic_optimizer(run, critic_opt)
        buffer = restore_critic_buffer(run)
    return Learner(
        policy, optimizer, start, split_task_ids("train"),
        split_task_ids("validation")[: config.val_tasks], critic, critic_opt, buffer,
    )  # fmt: skip


def critic_values(critic: Critic, states: Sequence[str], chunk: int = 64) -> torch.Tensor:
    """V(s) of each state, without gradients, ``chunk`` states per forward pass."""
    with torch.no_grad():
        return torch.cat(
            [critic.values(states[i : i + chunk]) for i in range(0, len(states), chunk)]
        )


def objective(rollout: Rollout, config: OnPolicyConfig) -> float:
    """R = score_weight * r + success_bonus * 1[r = 1]; NaN for an errored rollout (left out of
    group statistics)."""
    if not rollout.valid:
        return float("nan")
    success = float(rollout.reward == 1.0)
    return config.score_weight * rollout.reward + config.success_bonus * success


def iteration_tasks(train_ids: Sequence[str], config: OnPolicyConfig, iteration: int) -> list[str]:
    """The ``tasks_per_iteration`` train tasks of ``iteration`` (1-based), drawn without
    replacement from a generator seeded by (seed, iteration)."""
    gen = np.random.default_rng([config.seed, iteration])
    n = min(config.tasks_per_iteration, len(train_ids))
    return [train_ids[i] for i in gen.choice(len(train_ids), size=n, replace=False)]


@dataclass
class TurnBatch:
    """Every turn of the valid rollouts, flattened; ``episode[i]`` indexes ``rollouts``.

    ``states`` is what the policy read: the scorer's state text, or an LM policy's prompt;
    ``critic_states`` what the critic reads: the same, or with ``critic_input`` "facts" the
    facts text (an LM critic's value is read at the prompt's last token, its boundary)."""

    rollouts: list[Rollout]
    states: list[str]
    cands: list[
        Any
    ]  # webgym_agents.policies.scorer_policy.Candidates (or an LM's candidate strings) per turn
    chosen: list[int]
    old_logp: torch.Tensor
    temperature: list[float]
    episode: list[int]
    turn: list[int]
    decisions: list[Any] = field(default_factory=list)  # each turn's decision, as made
    critic_states: list[str] = field(default_factory=list)  # what the critic reads, per turn

    @classmethod
    def of(
        cls, rollouts: Sequence[Rollout], critic_input: str = "state", max_steps: int | None = None
    ) -> TurnBatch:
        """``critic_input`` "facts": the critic reads ``critic_state_text(obs, max_steps)``."""
        if critic_input not in ("state", "facts"):
            raise ValueError(f"critic_input must be 'state' or 'facts', not {critic_input!r}")
        valid = [r for r in rollouts if r.valid]
        states, cands, chosen, old, temps, ep, tt, ds = [], [], [], [], [], [], [], []
        critic_states = []
        for i, r in enumerate(valid):
            for t, turn in enumerate(r.turns):
                d = turn.decision
                states.append(d.state if hasattr(d, "state") else d.prompt)
                critic_states.append(
                    critic_state_text(turn.obs, max_steps)
                    if critic_input == "facts"
                    else states[-1]
                )
                cands.append(d.candidates)
                chosen.append(d.index)
                old.append(d.logprob)
                temps.append(d.temperature)
                ep.append(i)
                tt.append(t)
                ds.append(d)
        return cls(
            valid, states, cands, chosen, torch.tensor(old), temps, ep, tt, ds, critic_states
        )

    def __len__(self) -> int:
        return len(self.states)

    def logprobs(self, policy: Policy, idx: Sequence[int]) -> torch.Tensor:
        """log pi_theta(a_t | s_t) of the turns ``idx`` at each turn's acting temperature (an
        LM policy: its choice over the candidates, the generated query's tokens included)."""
        if hasattr(policy, "evaluate_decisions"):
            chosen = [self.decisions[i] for i in idx]
            return policy.evaluate_decisions(chosen, with_values=False).logprobs
        temps = {self.temperature[i] for i in idx}
        if len(temps) == 1:
            return policy.logprobs(
                [self.states[i] for i in idx],
                [self.cands[i] for i in idx],
                [self.chosen[i] for i in idx],
                temperature=temps.pop(),
            )
        return torch.cat([self.logprobs(policy, [i]) for i in idx])


_RAY: dict[tuple[str, int], Any] = {}  # (address, workers) -> RayCollector, kept for the run


def collect(
    config: OnPolicyConfig,
    policy: Policy,
    task_ids: Sequence[str],
    *,
    seed: int,
    rng: np.random.Generator | None = None,
    group_size: int = 1,
    split: str = "train",
    temperature: float | None = None,
    snapshots: bool = False,
    starts: Sequence[dict[str, Any]] | None = None,
    **forks: Any,
) -> list[Rollout]:
    """``collect_rollouts`` with the config's envs, temperature and step limit; on Ray workers
    when ``config.ray`` is set (started on first use, closed at exit). ``snapshots`` and
    ``starts``: ``collect_rollouts``' forks (each turn's env state kept; play from snapshots);
    ``forks``: their ``start_actions`` / ``first_actions``."""
    greedy = temperature == 0.0  # validation plays the policy as it is, without exploring
    kwargs = dict(
        split=split, group_size=group_size, seed=seed, n_envs=config.n_envs,
        temperature=config.temperature if temperature is None else temperature,
        max_steps=config.max_steps, snapshots=snapshots, starts=starts,
        explore=0.0 if greedy else config.explore, **forks,
    )  # fmt: skip
    rng = rng if rng is not None else np.random.default_rng(seed)
    if not config.ray:
        return collect_rollouts(policy, task_ids, rng=rng, **kwargs)
    key = (config.ray, config.ray_workers)
    if key not in _RAY:
        import atexit

        # with --ray only: Ray is no part of a run in one process
        from webgym_agents.toolkit.ray_rollouts import RayCollector

        _RAY[key] = RayCollector(config.ray_workers, config.ray)
        atexit.register(_RAY[key].close)
    return _RAY[key](policy, task_ids, rng=rng, **kwargs)


BACK_ACTIONS = ("click('prev')", "click('back_to_search')")
"""The actions that leave a product page without buying."""


def reference_policy(config: OnPolicyConfig, policy: Policy) -> Policy | None:
    """pi_ref of the KL penalty when ``config.beta`` > 0 (else None): the starting policy
    (``init_checkpoint``, or a copy of the fresh one), frozen; never the resumed one."""
    if not config.beta:
        return None
    start = (
        load_policy(Path(config.init_checkpoint), config) if config.init_checkpoint
        else copy.deepcopy(policy)
    )  # fmt: skip
    return start.eval().requires_grad_(False)


def collect_groups(
    config: OnPolicyConfig, policy: Policy, tasks: list[str], it: int, rng: np.random.Generator
) -> tuple[list[Rollout], list[Rollout]]:
    """An iteration's ``group_size`` rollouts of each task (GRPO's groups, adjacent) and, with
    ``back_probes`` > 0, their ``< Prev`` probes (:func:`back_probes`)."""
    probing = config.back_probes > 0
    rollouts = collect(
        config, policy, tasks, seed=config.seed + it, rng=rng, group_size=config.group_size,
        snapshots=probing,
    )  # fmt: skip
    probes = back_probes(config, policy, rollouts, rng, config.seed + it) if probing else []
    return rollouts, probes


def back_probe_forks(
    rollouts: Sequence[Rollout], share: float, rng: np.random.Generator
) -> list[tuple[Rollout, int]]:
    """For each valid rollout with probability ``share``: (rollout, t) for one of its
    product-page turns t where it did not go back, drawn uniformly (the turn's snapshot kept):
    where a ``< Prev`` probe forks (:func:`back_probes`; Digi-Q's behaviour data)."""
    picks = []
    for r in rollouts:
        if not r.valid or rng.random() >= share:
            continue
        turns = [
            t for t, turn in enumerate(r.turns)
            if "click('buy_now')" in (turn.obs.get("available_actions") or ())
            and "click('prev')" in (turn.obs.get("available_actions") or ())
            and turn.action not in BACK_ACTIONS and turn.snapshot is not None
        ]  # fmt: skip
        if turns:
            picks.append((r, turns[int(rng.integers(len(turns)))]))
    return picks


def back_probes(
    config: OnPolicyConfig,
    policy: Any,
    rollouts: list[Rollout],
    rng: np.random.Generator,
    seed: int,
    snapshots: bool = False,
) -> list[Rollout]:
    """For each rollout with probability ``config.back_probes``: one of its product-page turns
    where it did not go back (:func:`back_probe_forks`), played again from that state (its
    snapshot and its episode memory) with ``< Prev`` first and the policy after. Returns the
    probes, whose turns start at the fork (each turn with its own snapshot when ``snapshots``,
    for VinePPO's forks). The probe is exploration with exact credit: with GiGPO's anchors that
    page then holds both "buy or choose here" and "go back from here"."""
    picks = back_probe_forks(rollouts, config.back_probes, rng)
    if not picks:
        return []
    return collect(
        config, policy, [r.task_id for r, _ in picks], seed=seed, rng=rng, snapshots=snapshots,
        starts=[r.turns[t].snapshot for r, t in picks],
        start_actions=[[x.action for x in r.turns[:t]] for r, t in picks],
        first_actions=["click('prev')"] * len(picks),
    )  # fmt: skip


def probe_stats(probes: Sequence[Rollout]) -> dict[str, float]:
    """The metrics of an iteration's probes (:func:`back_probes`): how many, and the share that
    ended in a success."""
    return {
        "probes": len(probes),
        "probe_success_rate": float(np.mean([p.success for p in probes])) if probes else 0.0,
    }


def with_probes(
    rollouts: Sequence[Rollout], probes: Sequence[Rollout], group_size: int
) -> list[list[Rollout]]:
    """The groups of ``rollouts`` (``group_size`` adjacent, one task each), each with the probes
    (:func:`back_probes`) of its task appended."""
    groups = [list(rollouts[g : g + group_size]) for g in range(0, len(rollouts), group_size)]
    of_task = {group[0].task_id: group for group in groups if group}
    for probe in probes:
        of_task[probe.task_id].append(probe)
    return groups


def validate(policy: Policy, val_ids: Sequence[str], config: OnPolicyConfig) -> dict[str, float]:
    """Greedy play on ``val_ids`` (validation split): ``val_score``, ``val_success_rate``."""
    t0 = time.perf_counter()
    rollouts = collect(
        config, policy, val_ids, split="validation", seed=config.seed, temperature=0.0
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
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    *,
    critic: Critic | None = None,
    critic_optimizer: torch.optim.Optimizer | None = None,
    critic_buffer: list[list[tuple[str, float]]] | None = None,
    metadata: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Policy (+ critic in ``critic/``, with its buffer) with both optimizers' states, through
    ``run``; ``extra(folder)`` writes a trainer's own state into the same folder before it is
    renamed into place (poise's probe and its buffer), so a resume finds all of it or none.

    Data-parallel: first checks that every process holds the same weights (the digests go to
    ``train.log``; different ones raise ``RuntimeError``); rank 0 writes (every process's
    buffer: each fitted its own share of the rollouts)."""
    if data_parallel.enabled():
        _check_processes_agree(run, iteration, policy, critic)
    buffers = data_parallel.all_gather(critic_buffer or [])
    meta = {"trained_by": run.trainer, "iteration": iteration, **(metadata or {})}

    def save(folder: Path) -> None:
        policy.save(folder, metadata=meta)
        if critic is not None:
            critic.save(folder / CRITIC_DIR, metadata=meta)
            if critic_optimizer is not None:
                torch.save(critic_optimizer.state_dict(), folder / CRITIC_DIR / "optimizer.pt")
            if any(buffers):
                (folder / CRITIC_DIR / BUFFER_FILE).write_text(json.dumps(buffers))
        if extra is not None:
            extra(folder)

    return run.save_checkpoint(iteration, save, optimizer, metadata=meta)


def _check_processes_agree(
    run: TrainRun, iteration: int, policy: Policy, critic: Critic | None
) -> None:
    mine = {"policy": data_parallel.state_digest(policy)}
    if critic is not None:
        mine["critic"] = data_parallel.state_digest(critic)
    every = data_parallel.all_gather(mine)
    run.log(
        f"data-parallel: {len(every)} processes at iteration {iteration}: "
        + "; ".join(f"{key} weights {' '.join(d[key] for d in every)}" for key in mine)
    )
    if any(d != mine for d in every):
        raise RuntimeError(
            f"data-parallel processes hold different weights at iteration {iteration}: {every}"
        )


def restore_critic_optimizer(run: TrainRun, optimizer: torch.optim.Optimizer) -> None:
    latest = run.latest_checkpoint()
    path = latest / CRITIC_DIR / "optimizer.pt" if latest is not None else None
    if path is not None and path.is_file():
        optimizer.load_state_dict(torch.load(path, weights_only=True))


def restore_critic_buffer(run: TrainRun) -> list[list[tuple[str, float]]]:
    """This process's critic buffer from the run's latest checkpoint ([] if none)."""
    latest = run.latest_checkpoint()
    path = latest / CRITIC_DIR / BUFFER_FILE if latest is not None else None
    if path is None or not path.is_file():
        return []
    buffers = json.loads(path.read_text())
    mine = buffers[data_parallel.rank()] if data_parallel.rank() < len(buffers) else []
    return [[(str(s), float(g)) for s, g in part] for part in mine]


def actor_critic_presets(config_class: Callable[..., ConfigT]) -> dict[str, ConfigT]:
    """The presets beyond the CPU that archer and reinforce share (an actor with a learned
    V(s); their configs take the same fields): the candidate scorer on a large GPU (from bc
    --preset scorer-gpu), the decoder path (SmolLM2-135M acting in choice mode, an LM critic,
    policies/lm_critic.py; from bc --preset gpu; too slow for a CPU, docs/results.md: ~130
    episodes an hour) and the decoder path on a random-init 2-layer LM (tests)."""
    return {
        "scorer-gpu": config_class(
            device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
            tasks_per_iteration=256, n_envs=32, val_tasks=250, minibatch_size=128,
        ),
        "gpu": config_class(
            backbone="smollm2-135m", device="cuda", init_checkpoint="trained:bc/gpu",
            iterations=100, tasks_per_iteration=64, n_envs=32, val_tasks=250, lr=1e-6,
            critic_train_layers=6,
        ),
        "lm-smoke": config_class(
            backbone="tiny-lm", iterations=2, tasks_per_iteration=2, n_envs=2, max_steps=4,
            val_tasks=2, lr=1e-3, minibatch_size=8,
        ),
    }  # fmt: skip


def split_task_ids(split: str) -> list[str]:
    """The task ids of ``split`` of the embedded catalog, in order."""
    from webgym.shop.catalog import open_catalog  # on use only: it opens the shop's database

    catalog = open_catalog(split=split)  # the ood split lives in the companion file
    try:
        return list(catalog.split(split).task_ids)
    finally:
        catalog.close()
