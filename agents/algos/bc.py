"""``bc``: behaviour cloning of the rule agent into an LM policy (the behaviour policy of Digi-Q).

Digi-Q (Bai et al., 2025) starts from a behaviour policy fine-tuned on demonstrations (AutoUI-SFT);
its Best-of-N extraction samples candidate actions from it. This file trains that policy, in
the CleanRL manner: :class:`BCConfig` holds every hyper-parameter, :func:`train_bc` reads top to
bottom.

1. **Demonstrations.** The ``rule`` agent (``demo_agent``) plays the first ``n_demo_tasks``
   tasks of the TRAIN split in the text env
   (:func:`webgym_agents.toolkit.rollouts.collect_episodes`); the
   steps of episodes with reward >= ``min_reward`` are kept. The default ``min_reward = 1.0``
   keeps successes only (WebShop's IL data are human successes too); a lower threshold adds
   partially right purchases, whose option clicks are then partly wrong. Episodes from run
   directories named in ``extra_runs`` (``webgym-bench run`` output on the train split, e.g. a
   better agent) are added: a run records actions but not observations, so each kept episode's
   actions are re-played in the text env from its recorded seed
   (:func:`webgym_agents.toolkit.rollouts.replay_episode`) and every rebuilt page is checked against
   the recorded ``obs_digest``; an episode that does not replay identically is skipped (and
   counted). A run on another split is refused (that would train on evaluation tasks). The run
   directory is read through ``webgym.runs`` (docs/run-format.md), which also gives the episode
   seed the harness played from (``episode_seed``) and the digest replays are checked against.
   A ``heldout_fraction`` of the demonstration TASKS is set aside to measure the policy.
2. **Supervised fine-tuning** of :class:`webgym_agents.policies.lm_agent.LMPolicy` on
   (prompt(s_t), a_t) pairs with AdamW, gradient clipping and mini-batches (accumulated over
   micro-batches); the loss is the negative log-likelihood of the demonstrated action, tokens
   of the action plus the end-of-turn token (see :func:`bc_loss`).
3. **Measurement and checkpoints.** After each iteration (``updates_per_iteration`` optimizer
   updates) the held-out steps give ``heldout_nll`` (mean -log pi of the demonstrated action)
   and ``heldout_acc`` (share of steps where the policy's argmax choice, ``LMPolicy.act(mode=
   "choice", temperature=0)``, is the demonstrated action: the agent the harness plays);
   iteration 0 is the untrained policy. A row goes to ``metrics.csv``; every
   ``checkpoint_every`` iterations a checkpoint (``LMPolicy.save`` + optimizer + RNG states,
   metadata ``trained_by: "bc"``, ``n_demos``, the train split's hash) is written through
   :class:`webgym_agents.toolkit.training.TrainRun`. Re-running resumes from the latest checkpoint.

The checkpoints are played by the ``lm`` agent, or by ``bc`` (the same agent under the name
``bc``, so that leaderboard rows say how the weights were made)::

    webgym-bench train --agent bc --preset cpu --out runs/bc-cpu
    webgym-bench run --agent bc --checkpoint runs/bc-cpu/checkpoints/latest --split test

Imports ``webgym_agents`` and ``webgym``; never ``webgym_benchmarks`` or ``webgym_leaderboards``.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym.runs import RunDir, episode_seed
from webgym_agents.base import make_agent
from webgym_agents.models.threads import configure_torch_threads
from webgym_agents.policies.lm_agent import LMPolicy, PromptConfig
from webgym_agents.policies.scorer_policy import (
    ENCODER_BACKBONES,
    ScorerPolicy,
    candidates,
    state_text,
)
from webgym_agents.toolkit.rollouts import (
    Episode,
    ReplayMismatch,
    Step,
    collect_episodes,
    make_env,
    replay_episode,
)
from webgym_agents.toolkit.training import CommonConfig, TrainerInfo, TrainRun, config_to_dict

__all__ = ["BCConfig", "bc_loss", "collect_demonstrations", "split_heldout", "train_bc"]


@dataclass
class BCConfig(CommonConfig):
    """Every hyper-parameter of behaviour cloning (presets: :data:`PRESETS`); seed,
    torch_threads, device, max_steps (demonstrations and evaluation), checkpoint_every and
    keep_checkpoints are :class:`webgym_agents.toolkit.training.CommonConfig`'s.

    ``micro_batch_size`` is 1 on a CPU: a padded batch pays for its padding and runs no faster
    there than one sequence after another (measured on this CPU: SmolLM2 forward of 8 x 512 tokens
    8.7 s, of one 1.1 s); a GPU takes bigger micro-batches.
    """

    # model
    backbone: str = "smollm2-135m"  # webgym_agents.models.load_backbone name (a causal LM)
    max_prompt_tokens: int = 512  # PromptConfig.max_prompt_tokens: the page is cut to fit
    page_field: str = "text"  # PromptConfig.page_field: "text" or "axtree"
    # demonstrations
    demo_agent: str = "rule"
    demo_split: str = "train"
    n_demo_tasks: int = 400  # the first N tasks of demo_split
    min_reward: float = 1.0  # keep episodes with reward >= this (1.0: successes only)
    extra_runs: list[str] = field(default_factory=list)  # run dirs on demo_split to add
    heldout_fraction: float = 0.1  # share of demonstration tasks kept out of training
    max_heldout_steps: int = 24  # held-out steps measured per iteration
    train_layers: int = 0  # encoder (scorer) backbones: train only the top N layers (0: all)
    # optimisation
    epochs: int = 2
    batch_size: int = 8  # demonstration steps per optimizer update
    micro_batch_size: int = (
        1  # steps per forward/backward (gradients accumulate); see the docstring
    )
    updates_per_iteration: int = 10  # one metrics row (and checkpoint) per iteration
    lr: float = 2e-5
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global L2 norm of the gradient
    # evaluation
    eval_episodes: int = 100  # validation episodes played through the harness after training


PRESETS: dict[str, BCConfig] = {
    # Checks an install: a random-init 2-layer model, a few demonstrations, a 3-episode
    # evaluation; well under 3 minutes on 2 CPU cores.
    "smoke": BCConfig(
        backbone="tiny-lm",
        torch_threads=1,
        max_prompt_tokens=256,
        n_demo_tasks=30,  # the rule agent succeeds on ~30 % of tasks: ~9 demo episodes
        heldout_fraction=0.2,
        max_heldout_steps=4,
        epochs=2,
        max_steps=10,
        batch_size=4,
        updates_per_iteration=2,
        lr=1e-3,
        weight_decay=0.0,
        eval_episodes=5,
    ),
    # A real run on a 2-core CPU (hours): SmolLM2-135M on ~1,300 demonstration steps, twice.
    "cpu": BCConfig(),
    # A lent accelerator: the whole train split, longer prompts, bigger batches.
    "gpu": BCConfig(
        device="cuda",
        max_prompt_tokens=1024,
        n_demo_tasks=2000,
        max_heldout_steps=128,
        epochs=3,
        batch_size=32,
        micro_batch_size=16,
        updates_per_iteration=20,
        lr=3e-5,
        eval_episodes=250,
    ),
    # The candidate scorer (agents/policies/scorer_policy.py): the starting point of the on-policy
    # learners (archer, grpo, reinforce) on a CPU. max_prompt_tokens is the state text's budget.
    "scorer-smoke": BCConfig(
        backbone="tiny-encoder", torch_threads=1, max_prompt_tokens=96, n_demo_tasks=30,
        heldout_fraction=0.2, max_heldout_steps=8, epochs=2, max_steps=10, batch_size=8,
        updates_per_iteration=2, lr=1e-3, weight_decay=0.0, eval_episodes=0,
    ),
    "scorer-cpu": BCConfig(
        backbone="minilm", torch_threads=1, max_prompt_tokens=96, train_layers=2,
        n_demo_tasks=1000, max_heldout_steps=200, epochs=4, batch_size=16,
        updates_per_iteration=25, lr=3e-4, weight_decay=0.0, eval_episodes=0,
    ),
    "scorer-gpu": BCConfig(
        backbone="minilm", device="cuda", max_prompt_tokens=128, n_demo_tasks=2000,
        max_heldout_steps=400, epochs=3, batch_size=64, updates_per_iteration=20, lr=5e-5,
        eval_episodes=0,
    ),
}  # fmt: skip
PRESET_ALIASES = {"lm-smoke": "smoke", "lm-cpu": "cpu", "lm-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


# ----------------------------------------------------------------------------------------------
# 1. Demonstrations


def collect_demonstrations(config: BCConfig, log=print) -> tuple[list[Episode], dict[str, Any]]:
    """The demonstration episodes (reward >= ``min_reward``) and facts about them."""
    # on use only: the catalog opens the shop's database
    from webgym.shop.catalog import open_catalog

    catalog = open_catalog()
    try:
        split = catalog.split(config.demo_split)
        task_ids = list(split.task_ids[: config.n_demo_tasks])
        split_hash = split.hash
    finally:
        catalog.close()
    agent = make_agent(config.demo_agent)
    played = collect_episodes(
        agent,
        task_ids,
        split=config.demo_split,
        seed=config.seed,
        max_steps=config.max_steps,
    )
    agent.close()
    kept = [ep for ep in played if ep.reward >= config.min_reward]
    facts: dict[str, Any] = {
        "demo_split": config.demo_split,
        "split_hash": split_hash,
        "demo_agent": config.demo_agent,
        "demo_episodes_played": len(played),
        "demo_episodes_kept": len(kept),
        "demo_success_rate": sum(ep.success for ep in played) / max(1, len(played)),
    }
    log(
        f"demonstrations: {config.demo_agent} played {len(played)} {config.demo_split} tasks, "
        f"kept {len(kept)} with reward >= {config.min_reward}"
    )
    extra, skipped = [], 0
    for run_dir in config.extra_runs:
        eps, n_skip = _episodes_from_run(Path(run_dir), config)
        extra.extend(eps)
        skipped += n_skip
        log(f"demonstrations: {len(eps)} episodes from {run_dir} ({n_skip} did not replay)")
    facts["extra_episodes"] = len(extra)
    facts["extra_skipped"] = skipped
    return kept + extra, facts


def _episodes_from_run(run_dir: Path, config: BCConfig) -> tuple[list[Episode], int]:
    """Kept episodes of a ``webgym-bench run`` directory, observations rebuilt by replay."""
    run = RunDir(run_dir)
    if not run.exists():
        raise ValueError(f"extra_runs: {run_dir} is not a run directory (no manifest.json)")
    manifest = run.read_manifest()
    if manifest.get("split") != config.demo_split:
        raise ValueError(
            f"extra_runs: {run_dir} is a run on split {manifest.get('split')!r}; behaviour "
            f"cloning trains on {config.demo_split!r} only (anything else would train on "
            "evaluation tasks)"
        )
    # the complete episodes, by task id (a corrupt summary is left out, as a resume redoes it)
    complete = run.scan(manifest.get("task_ids") or run.episode_folders()).complete
    env = make_env(config.demo_split, mode="text", max_steps=manifest.get("max_episode_steps"))
    kept, skipped = [], 0
    try:
        for task_id in sorted(complete):
            summary = complete[task_id]
            if summary.get("error") or float(summary.get("reward", 0.0)) < config.min_reward:
                continue
            records, problem = run.read_steps(task_id)
            if problem:  # a torn steps.jsonl: nothing to replay
                skipped += 1
                continue
            try:
                ep = replay_episode(
                    env,
                    task_id,
                    # the seed the harness played it from: the same function, the same start
                    episode_seed(int(manifest.get("seed", 0)), task_id),
                    [r["action"] for r in records],
                    digests=[r.get("obs_digest") for r in records],
                    split=config.demo_split,
                )
            except ReplayMismatch:
                skipped += 1
                continue
            if ep.reward >= config.min_reward:
                kept.append(ep)
            else:
                skipped += 1
    finally:
        env.close()
    return kept, skipped


def split_heldout(
    episodes: list[Episode], fraction: float, seed: int
) -> tuple[list[Step], list[Step]]:
    """(training steps, held-out steps): a ``fraction`` of the TASKS held out, by seed."""
    tasks = sorted({ep.task_id for ep in episodes})
    rng = np.random.default_rng([seed, 1])
    order = [tasks[i] for i in rng.permutation(len(tasks))]
    n_held = round(fraction * len(tasks)) if fraction > 0 and len(tasks) > 1 else 0
    n_held = min(max(n_held, 1 if fraction > 0 and len(tasks) > 1 else 0), len(tasks) - 1)
    held = set(order[:n_held])
    train = [s for ep in episodes if ep.task_id not in held for s in ep.steps]
    heldout = [s for ep in episodes if ep.task_id in held for s in ep.steps]
    return train, heldout


def demos_hash(episodes: list[Episode]) -> str:
    """A digest of the demonstrations (tasks, seeds, actions): a resumed run must match it."""
    h = hashlib.sha256()
    for ep in episodes:
        h.update(f"{ep.task_id}\0{ep.seed}\0".encode())
        for s in ep.steps:
            h.update(s.action.encode() + b"\0")
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# 2. The loss


def bc_loss(policy: LMPolicy, prompts: list[str], actions: list[str], batch_size: int):
    """The behaviour-cloning loss of one micro-batch, scaled for a mini-batch of ``batch_size``.

    Maximum likelihood of the demonstrated actions (negative log-likelihood):

        L(theta) = - 1/|B| * sum_{(s_t, a_t) in B} log pi_theta(a_t | prompt(s_t)),
        log pi_theta(a | p) = sum_k log p_theta(a^k | p, a^1..a^{k-1})

    over the action's tokens a^k and the end-of-turn token that closes it
    (``LMPolicy.action_logprobs``). A micro-batch contributes its part of the sum divided by
    the whole mini-batch size |B|, so gradients accumulated over micro-batches are those of
    the mini-batch. Returns ``(loss, log-probs detached)``.
    """
    logp = policy.action_logprobs(prompts, actions)  # (m,) log pi(a_t | s_t), differentiable
    loss = -logp.sum() / batch_size
    return loss, logp.detach()


# ----------------------------------------------------------------------------------------------
# 3. Measurement


@torch.no_grad()
def heldout_metrics(policy: LMPolicy, steps: list[Step], prompts: list[str]) -> dict[str, float]:
    """``heldout_nll`` (mean -log pi(a_t|s_t)) and ``heldout_acc`` (argmax choice == a_t)."""
    if not steps:
        return {"heldout_nll": float("nan"), "heldout_acc": float("nan")}
    was_training = policy.model.training
    policy.model.eval()
    try:
        logp = policy.action_logprobs(prompts, [s.action for s in steps], batch_size=1)
        hits = [policy.act(s.obs, mode="choice", temperature=0.0) == s.action for s in steps]
    finally:
        policy.model.train(was_training)
    return {"heldout_nll": float(-logp.mean()), "heldout_acc": float(np.mean(hits))}


# ----------------------------------------------------------------------------------------------
# The two policy kinds BC trains: the decoder LM and the candidate scorer


class _LMLearner:
    """A causal-LM backbone: :class:`LMPolicy`, loss :func:`bc_loss`, a sample is a prompt."""

    def __init__(self, config: BCConfig, resume_from: Path | None):
        if resume_from is not None:
            self.policy = LMPolicy.load(resume_from, device=config.device)
        else:
            prompt_config = PromptConfig(
                max_prompt_tokens=config.max_prompt_tokens, page_field=config.page_field
            )
            self.policy = LMPolicy.from_backbone_name(
                config.backbone, prompt_config, device=config.device
            )

    def sample(self, step: Step) -> tuple[str, str]:
        return self.policy.prompt(step.obs), step.action

    def size(self, sample: tuple[str, str]) -> int:
        return len(self.policy.backbone.encode_text(sample[0]))

    def loss(self, samples: list[tuple[str, str]], batch_size: int) -> torch.Tensor:
        return bc_loss(self.policy, [p for p, _ in samples], [a for _, a in samples], batch_size)[0]

    def heldout_metrics(self, steps: list[Step], samples: list[tuple[str, str]]) -> dict:
        return heldout_metrics(self.policy, steps, [p for p, _ in samples])

    def train_mode(self) -> None:
        self.policy.model.train()


class _ScorerLearner:
    """An encoder backbone: :class:`webgym_agents.policies.scorer_policy.ScorerPolicy`; a sample is
    (state text, candidates, index of the demonstrated action), the loss
    -log softmax(f)[demonstrated].

    A demonstrated action that is not among the policy's candidates is dropped (counted in the
    log): the scorer can only choose what it lists.
    """

    def __init__(self, config: BCConfig, resume_from: Path | None):
        if resume_from is not None:
            self.policy = ScorerPolicy.load(resume_from)
        else:
            self.policy = ScorerPolicy.from_backbone_name(
                config.backbone,
                seed=config.seed,
                max_length=config.max_prompt_tokens,
                max_steps=config.max_steps,
                train_layers=config.train_layers,
            )
        self.policy.eval()  # no dropout

    def sample(self, step: Step):
        cands = candidates(step.obs, self.policy.max_steps)
        lowered = [a.lower() for a in cands.actions]
        k = lowered.index(step.action.lower()) if step.action.lower() in lowered else None
        return state_text(step.obs, self.policy.max_steps), cands, k

    def size(self, sample) -> int:
        return len(sample[1].actions)

    def loss(self, samples: list, batch_size: int) -> torch.Tensor:
        kept = [x for x in samples if x[2] is not None]
        if not kept:
            return torch.zeros((), requires_grad=True)
        logp = self.policy.logprobs(
            [x[0] for x in kept], [x[1] for x in kept], [x[2] for x in kept]
        )
        return -logp.sum() / batch_size

    @torch.no_grad()
    def heldout_metrics(self, steps: list[Step], samples: list) -> dict:
        kept = [x for x in samples if x[2] is not None]
        if not kept:
            return {"heldout_nll": float("nan"), "heldout_acc": float("nan")}
        scores = self.policy.scores([x[0] for x in kept], [x[1] for x in kept])
        logp = [float(torch.log_softmax(f, 0)[x[2]]) for f, x in zip(scores, kept, strict=True)]
        hits = [int(torch.argmax(f)) == x[2] for f, x in zip(scores, kept, strict=True)]
        return {"heldout_nll": -float(np.mean(logp)), "heldout_acc": float(np.mean(hits))}

    def train_mode(self) -> None:
        self.policy.eval()  # trained without dropout, as the on-policy learners use it


def _learner(config: BCConfig, resume_from: Path | None):
    if config.backbone in ENCODER_BACKBONES:
        return _ScorerLearner(config, resume_from)
    return _LMLearner(config, resume_from)


# ----------------------------------------------------------------------------------------------
# The training loop


def train_bc(config: BCConfig, run: TrainRun) -> Path:
    """Behaviour cloning, resumable through ``run``; returns ``checkpoints/latest``."""
    configure_torch_threads(config.torch_threads or None)
    if config.batch_size < 1 or config.micro_batch_size < 1 or config.updates_per_iteration < 1:
        raise ValueError("batch_size, micro_batch_size and updates_per_iteration must be >= 1")
    torch.manual_seed(config.seed)
    say = run.say

    # 1. Demonstrations (re-collected on resume: deterministic, and checked by hash).
    episodes, facts = collect_demonstrations(config, log=say)
    if not episodes:
        raise RuntimeError(
            f"no demonstrations: {config.demo_agent} had no episode with reward >= "
            f"{config.min_reward} on the first {config.n_demo_tasks} {config.demo_split} tasks"
        )
    train_steps, heldout_steps = split_heldout(episodes, config.heldout_fraction, config.seed)
    heldout_steps = heldout_steps[: config.max_heldout_steps]
    digest = demos_hash(episodes)
    say(f"demonstrations: {len(train_steps)} training steps, {len(heldout_steps)} held out")

    # The policy: the latest checkpoint's weights when resuming, else the untrained backbone.
    resume_from = run.latest_checkpoint()
    if resume_from is not None:
        state = run.trainer_state() or {}
        if state.get("demos_hash") != digest:
            raise RuntimeError(
                f"{run.dir}: the demonstrations differ from those the checkpoint was trained on "
                f"({state.get('demos_hash')} there, {digest} now): another catalog? "
                "Use another --out."
            )
    learner = _learner(config, resume_from)
    policy = learner.policy
    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad],
        lr=config.lr,
        betas=tuple(config.adam_betas),
        weight_decay=config.weight_decay,
    )
    start = run.restore(optimizer)  # 0 on a fresh run

    samples = [learner.sample(s) for s in train_steps]
    n_tokens = [learner.size(x) for x in samples]
    heldout_samples = [learner.sample(s) for s in heldout_steps]

    updates_per_epoch = math.ceil(len(train_steps) / config.batch_size)
    total_updates = config.epochs * updates_per_epoch
    n_iterations = math.ceil(total_updates / config.updates_per_iteration)
    metadata = {
        "n_demos": len(train_steps),
        "n_demo_episodes": len(episodes),
        "n_heldout": len(heldout_steps),
        "demos_hash": digest,
        **facts,
    }
    say(
        f"{config.backbone}: {n_iterations} iterations of {config.updates_per_iteration} "
        f"updates ({total_updates} updates, {config.epochs} epochs of {updates_per_epoch}); "
        f"starting at iteration {start}"
    )

    upi = config.updates_per_iteration

    def save(iteration: int) -> None:
        meta = {**metadata, "iteration": iteration, "config": config_to_dict(config)}
        run.save_checkpoint(
            iteration,
            lambda d: policy.save(d, metadata={"trained_by": "bc", **meta}),
            optimizer,
            state={"demos_hash": digest, "updates": min(iteration * upi, total_updates)},
            metadata=meta,
        )

    if start == 0 and not run.metrics():  # the untrained policy, for the curve
        row = {"iteration": 0, "update": 0, "epoch": 0.0, "loss": None, "grad_norm": None}
        row |= learner.heldout_metrics(heldout_steps, heldout_samples)
        row |= {"samples_per_s": None, "elapsed_s": 0.0}
        run.log_metrics(row)
        say(_row_text(row))

    epoch_orders: dict[int, np.ndarray] = {}

    def batch_indices(update: int) -> np.ndarray:
        epoch, k = divmod(update, updates_per_epoch)
        if epoch not in epoch_orders:  # one shuffle per epoch, a function of (seed, epoch)
            epoch_orders[epoch] = np.random.default_rng([config.seed, 2, epoch]).permutation(
                len(train_steps)
            )
        return epoch_orders[epoch][k * config.batch_size : (k + 1) * config.batch_size]

    learner.train_mode()
    t_run = time.perf_counter()
    with run.progress(n_iterations, start, "bc") as progress:
        for iteration in range(start + 1, n_iterations + 1):
            t0 = time.perf_counter()
            losses, norms, n_samples = [], [], 0
            first = (iteration - 1) * config.updates_per_iteration
            for update in range(first, min(first + config.updates_per_iteration, total_updates)):
                idx = batch_indices(update)
                idx = sorted(idx, key=lambda i: n_tokens[i])  # less padding; same sum
                optimizer.zero_grad(set_to_none=True)
                batch_loss = 0.0
                for a in range(0, len(idx), config.micro_batch_size):
                    micro = idx[a : a + config.micro_batch_size]
                    loss = learner.loss([samples[i] for i in micro], len(idx))
                    loss.backward()
                    batch_loss += float(loss.detach())
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
                optimizer.step()
                losses.append(batch_loss)
                norms.append(float(grad_norm))
                n_samples += len(idx)
            dt = time.perf_counter() - t0
            done_updates = min(iteration * config.updates_per_iteration, total_updates)
            row = {
                "iteration": iteration,
                "update": done_updates,
                "epoch": done_updates / updates_per_epoch,
                "loss": float(np.mean(losses)),
                "grad_norm": float(np.mean(norms)),
            }
            row |= learner.heldout_metrics(heldout_steps, heldout_samples)
            row |= {"samples_per_s": n_samples / dt, "elapsed_s": time.perf_counter() - t_run}
            run.log_metrics(row)
            say(_row_text(row))
            if iteration % config.checkpoint_every == 0 or iteration == n_iterations:
                save(iteration)
            progress(1, f"loss {row['loss']:.3f} acc {row['heldout_acc']:.2f}")
    if run.latest_checkpoint() is None:  # nothing to train (resumed a finished run)
        save(n_iterations)
    return run.latest_path


def _row_text(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if v is None:
            continue
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


TRAINER = TrainerInfo(
    "bc",
    train_bc,
    PRESETS,
    description="behaviour cloning of the rule agent's successful train episodes into an LM",
    preset_aliases=PRESET_ALIASES,
)
