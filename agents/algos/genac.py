"""``genac``: GenAC (Shan, Zhong, Wang, Zhao) - ArCHer PPO with a generative critic in place of
the scalar one (the GenAC paper).

The critic keeps its LM head. It reads the state text, facts about the current actor (in-context
conditioning) and an instruction, writes a short rationale, then ``Score: k``, an integer 0-10
read as v = k/10 (P(success) with 0/1 rewards; here the expected return, as WebShop's reward is
partial credit in [0, 1]).

    0. SFT warm start (once, before iteration 1): the actor (the init checkpoint) plays
       sft_tasks train tasks; each turn's trace is (state, actor facts, target), the target a
       rationale templated from the state's page facts then "Score: round(10 G_t)":
           L_sft = -(1/|y|) sum_l log p_psi(y_l | x)             (NLL of the target tokens)
    for each iteration:
        play tasks_per_iteration train tasks with pi_theta (temperature T); keep logp_old
        x_t = prompt(state text of s_t, actor facts: running success rate and mean reward of
              its last facts_window episodes, the turn index)
        1. critic FIRST, REINFORCE on this batch (critic_states of its states, 0: all):
           z ~ p_psi(. | x_t)  (rationale + "Score: k", at critic_temperature)
           R_v = 1 - (G_t - k/10)^2          a proper scoring rule;  R_v = 0 if z is malformed
           L_psi = -mean (R_v - b) log p_psi(z | x_t),  b = the mean R_v of the batch
        2. values from the UPDATED critic (value_mode "expectation", the default):
           V(s_t) = sum_k p_psi(k | x_t, r_t) k/10,  r_t the greedy rationale up to "Score:",
           p(k) read in the same generation (ScoreReader); value_mode "greedy": V = k/10 of
           the greedy completion
        3. A(t) = V(s_{t+1}) - V(s_t) for t < T-1;  A(T-1) = R - V(s_{T-1})   (ArCHer's)
        4. actor: PPO clip, rho = exp(logp_theta - logp_old), eps 0.2 (onpolicy.ppo_turn_update)
        (the first critic_warmup iterations run step 1 only: the paper's "RL pretraining", the
        actor frozen)
        5. this batch's rewards join the actor-facts window (the NEXT batch's facts: a state's
           own outcome never reaches its prompt; the SFT traces' facts do include their own)

The expectation gives the value, not the greedy score: a greedy V moves in steps of 0.1, so
most A(t) = V(s') - V(s) would be exactly 0 or +-0.1. It costs what the greedy value costs:
:class:`ScoreReader`, a logits processor, keeps the first digit's distribution and that of the
token after a "1" (end, or "0" for 10) while the rationale's generation runs, two tokens more
(measured: 1.30 s a state, greedy 1.31; read instead by a second scoring pass over prompt and
rationale it cost 2.08 s against greedy's 1.10, with a 16-token cap).

Malformed outputs (:func:`parse_score` is None: no integer after "Score:", out of 0-10, several
conflicting, empty) never raise. A sampled one gets R_v = 0, the floor of the scoring rule, so
the critic is pushed towards well-formed answers (a fallback v would reward it) and is counted in
``critic_malformed``. A greedy value (``value_mode="greedy"``, ``GenerativeCritic.values``) that
is malformed takes the fallback V = the actor's running mean reward (its value with no state
information; the success rate would understate a partial-credit return) and is counted in
``value_fallbacks``; in expectation mode the value is always the expectation over well-formed
scores, and a rationale that reaches ``rationale_tokens`` without "Score:" is made to write it
(counted in ``value_fallbacks`` too).

**Sized for this CPU** (the ``cpu`` preset). The actor is grpo's cpu recipe (the bc candidate
scorer, its heads only, T 0.5, 48 tasks an iteration); the critic is SmolLM2-135M-Instruct with
only its top ``critic_train_layers`` = 2 of 30 decoder layers (and the final norm) trained, the
rest and the tied embeddings / LM head frozen; SFT on the turns of 32 bc episodes (3 epochs,
lr 5e-4: the format is learnt, 0 of 16 samples malformed after it, against 11 of 16 after 2
epochs at 1e-4); REINFORCE on 64 of an iteration's ~175 states; rationales capped at 24 tokens
(the templated ones take <= 19). Measured by ``python -m webgym_agents.algos.genac``
(:func:`measure_costs`: 8 rule-agent states of ~190 prompt tokens, 8 prompts a call, an untrained
critic that writes to the cap: the upper bound), one torch thread on this 2-core machine under a
load of ~5, seconds per state: value 1.30 (expectation) / 1.31 (greedy), REINFORCE sample 1.31 + its
log-prob forward and backward 1.04, SFT trace step 0.95. In a short run of the preset (SFT'd
critic): value 0.9-1.1, sample 1.1-1.2, REINFORCE step 0.9-1.05, SFT step 0.92. So an iteration is
~175 values (~190 s) + 64 samples and steps (~140 s) + collection, PPO and half a validation
(~45 s): ~6.3 min; 12 of them, a warm-up iteration (~2.7 min) and SFT (~5.5 min): ~1.4 h.

Cut against the paper, for this CPU: the actor is the scorer, not an LM; the chain of thought
is a one-line rationale, and the SFT rationales are templated from the page facts
(:func:`rationale`), not written by an oracle model; only the critic's top 2 layers learn; the
RL pretraining is one warm-up iteration; REINFORCE sees 64 states an iteration, one sample each.
The ranking accuracy and calibration are the report's (``webgym-bench critics``, which calls
:meth:`GenerativeCritic.values_of_observations`).

Logged per iteration: success rate and Score (train and validation), critic_reward,
critic_malformed, critic MSE against MC returns (sampled scores before the update, values after
it), explained variance, value_fallbacks, the actor facts, advantage mean/std, clip fraction,
approximate KL, and seconds collecting, generating with the critic, updating it and the actor.
Saved with each checkpoint: the critic (``critic/``, a :class:`GenerativeCritic` with its AdamW
state) and the actor-facts window (``genac/facts.json``), so a resumed run has both. Data
parallelism is refused (the REINFORCE step is written for one process). Imports webgym_agents and
webgym only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from webgym_agents.algos.genac_critic import (
    FACTS_DIR,
    ActorFacts,
    GenerativeCritic,
    ScoreReader,
    _facts_rewards,
    load_actor_facts,
    parse_score,
    rationale,
    score_values,
    scoring_reward,
    sft_target,
    target_score,
)
from webgym_agents.policies.scorer_policy import critic_state_text
from webgym_agents.scripted.rule_agent import RuleAgent
from webgym_agents.toolkit.critic_diagnostics import explained_variance
from webgym_agents.toolkit.loop import Iterations
from webgym_agents.toolkit.onpolicy import (
    CRITIC_DIR,
    OnPolicyConfig,
    TurnBatch,
    clip_and_step,
    collect,
    iteration_tasks,
    minibatches,
    objective,
    ppo_turn_update,
    restore_critic_optimizer,
    split_task_ids,
    start_learner,
)
from webgym_agents.toolkit.returns import archer_advantages, turn_returns
from webgym_agents.toolkit.rollouts import Rollout, collect_episodes, rollout_stats
from webgym_agents.toolkit.training import TrainerInfo, TrainRun


@dataclass
class GenacConfig(OnPolicyConfig):
    supports_data_parallel: ClassVar[bool] = False  # one process (module docstring)

    gamma: float = 0.95  # discount of the MC returns G_t = gamma^(T-1-t) R
    ppo_epochs: int = 2
    clip_eps: float = 0.2
    normalize_advantages: bool = False
    critic_warmup: int = 0  # first iterations that train the critic only (RL pretraining)
    # the generative critic
    critic_backbone: str = "smollm2-135m"  # a causal LM (tiny-lm for tests)
    critic_train_layers: int = 2  # its top decoder layers that learn (0: all)
    critic_lr: float = 1e-4  # REINFORCE
    critic_prompt_tokens: int = 192  # the state text's token budget (its end is kept)
    rationale_tokens: int = 24  # its cap (SFT's take <= 19); "Score: k" gets SCORE_ROOM more
    critic_temperature: float = 1.0  # REINFORCE samples
    critic_states: int = 0  # states of a batch the critic is trained on (0: all)
    critic_minibatch: int = 8  # prompts per generation call and per critic optimizer step
    value_mode: str = "expectation"  # or "greedy" (module docstring)
    facts_window: int = 96  # episodes behind the actor facts
    # the SFT warm start
    sft_tasks: int = 32  # actor episodes whose turns are the traces
    sft_epochs: int = 3
    sft_lr: float = 5e-4  # top 2 layers: the format is learnt in ~30 steps (docs/training.md)
    sft_minibatch: int = 4


PRESETS = {
    # tiny models, real envs: checks the loop (SFT, a warm-up iteration, a PPO iteration)
    "smoke": GenacConfig(
        backbone="tiny-encoder", critic_backbone="tiny-lm", iterations=2, tasks_per_iteration=3,
        n_envs=3, max_steps=5, val_tasks=2, lr=1e-3, minibatch_size=16, critic_lr=1e-3,
        critic_train_layers=0, rationale_tokens=24, critic_minibatch=8, facts_window=8,
        sft_tasks=4, sft_epochs=4, sft_lr=3e-3, critic_warmup=1, torch_threads=1,
    ),
    # grpo's cpu recipe for the actor (bc scorer, T 0.5, heads only, lr 3e-3, 48 tasks an
    # iteration) after a critic-only iteration, 5 actor updates. Measured on one busy thread
    # (module docstring): value 0.9-1.3 s a state, REINFORCE sample + step 2.1-2.4 s, SFT 0.92 s
    # a trace-epoch: an iteration ~175 x 1.1 + 64 x 2.2 + ~45 s = ~6.3 min on an idle core,
    # 7-15 min with 2-4 other jobs (docs/results.md: SFT + 6 iterations = 68 min). gamma 1:
    # archer's better setting here (docs/results.md), and the critics report's returns
    "cpu": GenacConfig(
        init_checkpoint="released:bc", iterations=6, gamma=1.0,
        tasks_per_iteration=48, temperature=0.5, lr=3e-3, train_encoder=False, val_tasks=100,
        eval_every=2, torch_threads=1, critic_states=64, critic_warmup=1, keep_checkpoints=7,
    ),
    # the scorer and a whole-model critic with longer rationales on a large GPU
    "gpu": GenacConfig(
        device="cuda", init_checkpoint="trained:bc/scorer-gpu", iterations=100,
        tasks_per_iteration=128, n_envs=32, val_tasks=250, minibatch_size=128,
        critic_train_layers=0, critic_lr=1e-6, rationale_tokens=64, critic_minibatch=32,
        sft_tasks=256, sft_lr=2e-5, sft_minibatch=16, critic_warmup=2, critic_prompt_tokens=512,
    ),
}  # fmt: skip
PRESET_ALIASES = {"scorer-smoke": "smoke", "scorer-cpu": "cpu", "scorer-gpu": "gpu"}
"""Other names of the presets: the policy kind spelled out (``scorer-*``: the candidate scorer,
``lm-*``: the decoder path), the same across trainers."""


# --------------------------------------------------------------------------------------------
# Traces: (critic state text, facts, G_t) of every turn of a batch
# --------------------------------------------------------------------------------------------


@dataclass
class Traces:
    states: list[str]
    facts: list[ActorFacts]
    returns: np.ndarray  # G_t

    @classmethod
    def of(cls, batch: TurnBatch, facts: ActorFacts, config: GenacConfig) -> Traces:
        """Every turn of ``batch`` in its order; the critic reads critic_state_text(s_t)."""
        obs = [
            batch.rollouts[e].turns[t].obs for e, t in zip(batch.episode, batch.turn, strict=True)
        ]
        return cls(
            [critic_state_text(o, config.max_steps) for o in obs],
            [facts.at(t) for t in batch.turn],
            turn_returns(batch, config.gamma, lambda r: objective(r, config)).double().numpy(),
        )

    def take(self, idx: Sequence[int]) -> Traces:
        return Traces([self.states[i] for i in idx], [self.facts[i] for i in idx],
                      self.returns[list(idx)])  # fmt: skip


# --------------------------------------------------------------------------------------------
# 0. SFT warm start
# --------------------------------------------------------------------------------------------


def sft_warm_start(
    config: GenacConfig, critic: GenerativeCritic, traces: Traces, gen: np.random.Generator
) -> dict[str, float]:
    """SFT of ``critic`` on ``traces`` (their templated targets), its own AdamW."""
    prompts, _ = critic.prompts(traces.states, traces.facts)
    targets = [sft_target(s, g) for s, g in zip(traces.states, traces.returns, strict=True)]
    params = [p for p in critic.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.sft_lr)
    losses = []
    t0 = time.perf_counter()
    for _ in range(config.sft_epochs):
        for idx in minibatches(len(prompts), config.sft_minibatch, gen):
            lps = critic.backbone.score_sequences(
                [prompts[i] for i in idx], [targets[i] for i in idx], add_eos=True
            ).token_logprobs
            # L_sft = -(1/|y|) sum_l log p(y_l | x), over the minibatch's target tokens
            loss = -torch.cat(lps).mean()
            loss.backward()
            clip_and_step(critic, opt, config.grad_clip)
            losses.append(float(loss.detach()))
    return {"sft_traces": len(prompts), "sft_first_nll": losses[0] if losses else float("nan"),
            "sft_last_nll": losses[-1] if losses else float("nan"),
            "sft_s": time.perf_counter() - t0}  # fmt: skip


# --------------------------------------------------------------------------------------------
# 1. Critic REINFORCE, 2-4. values, advantages, actor
# --------------------------------------------------------------------------------------------


def critic_reinforce(
    config: GenacConfig,
    critic: GenerativeCritic,
    optimizer: torch.optim.Optimizer,
    traces: Traces,
    gen: np.random.Generator,
) -> dict[str, float]:
    """One REINFORCE pass of the critic over ``traces`` (module docstring, step 1)."""
    prompts, _ = critic.prompts(traces.states, traces.facts)
    t0 = time.perf_counter()
    samples = []
    for a in range(0, len(prompts), config.critic_minibatch):
        seed = int(gen.integers(2**31))
        part = prompts[a : a + config.critic_minibatch]
        samples += critic.sample(part, temperature=config.critic_temperature, seed=seed)
    t_gen = time.perf_counter() - t0
    ks = [parse_score(s.text) for s in samples]
    bad = np.array([k is None for k in ks])
    v = np.array([np.nan if k is None else k / 10 for k in ks])
    # R_v = 1 - (G_t - v)^2, 0 when malformed;  b = mean R_v;  L = -mean (R_v - b) log p(z|x)
    reward = scoring_reward(traces.returns, np.nan_to_num(v), bad)
    adv = torch.tensor(reward - (reward.mean() if len(reward) else 0.0), dtype=torch.float32)
    t1 = time.perf_counter()
    norms = []
    for idx in minibatches(len(prompts), config.critic_minibatch, gen):
        _, logp = critic.backbone.sequence_logprobs(
            [prompts[i] for i in idx], [samples[i].token_ids for i in idx],
            temperature=config.critic_temperature,
        )  # fmt: skip
        loss = -(adv[idx].to(logp.device) * logp).mean()
        loss.backward()
        norms.append(clip_and_step(critic, optimizer, config.grad_clip))
    good = ~bad
    return {
        "critic_reward": float(reward.mean()) if len(reward) else float("nan"),
        "critic_malformed": int(bad.sum()), "critic_samples": len(samples),
        "critic_mse_sampled": float(np.mean((v[good] - traces.returns[good]) ** 2))
        if good.any() else float("nan"),
        "critic_grad_norm": float(np.mean(norms)) if norms else float("nan"),
        "critic_sample_s": t_gen, "critic_update_s": time.perf_counter() - t1,
    }  # fmt: skip


UPDATE_KEYS = (
    "critic_mse", "v_mean", "explained_variance", "value_fallbacks", "critic_value_s",
    "critic_s_per_estimate", "critic_gen_s", "adv_mean", "adv_std", "actor_loss", "clip_frac",
    "approx_kl", "grad_norm", "actor_update_s",
)  # fmt: skip


def genac_update(
    config: GenacConfig,
    policy,
    critic: GenerativeCritic,
    optimizer: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer,
    batch: TurnBatch,
    facts: ActorFacts,
    gen: np.random.Generator,
    *,
    actor: bool = True,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """One GenAC PPO update on ``batch``: the critic (REINFORCE), then its values, advantages
    and the actor (skipped when ``actor`` is False: a warm-up iteration; A is then None)."""
    traces = Traces.of(batch, facts, config)
    # 1. the critic FIRST, on critic_states of the batch's states
    n = len(traces.states)
    pick = (np.sort(gen.choice(n, config.critic_states, replace=False))
            if 0 < config.critic_states < n else np.arange(n))  # fmt: skip
    metrics = critic_reinforce(config, critic, critic_opt, traces.take(pick), gen)
    if not actor:  # every row has the same columns (TrainRun.log_metrics)
        return metrics | dict.fromkeys(UPDATE_KEYS, float("nan")), None
    # 2. values from the UPDATED critic
    t0 = time.perf_counter()
    fallbacks = critic.stats["value_fallbacks"]
    v = critic.values(traces.states, traces.facts, mode=config.value_mode,
                      chunk=config.critic_minibatch)  # fmt: skip
    t_values = time.perf_counter() - t0
    values = torch.tensor(v, dtype=torch.float32)
    # 3. A(t) = V(s_{t+1}) - V(s_t), A(T-1) = R - V(s_{T-1})
    advantages = archer_advantages(batch, values, objective=lambda r: objective(r, config))
    if config.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    # 4. the actor: PPO clip on the turn advantages
    t1 = time.perf_counter()
    losses, st_log, norms = ppo_turn_update(
        policy, optimizer, batch, advantages, gen, epochs=config.ppo_epochs,
        minibatch_size=config.minibatch_size, clip_eps=config.clip_eps, grad_clip=config.grad_clip,
    )  # fmt: skip
    g = traces.returns
    mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")  # noqa: E731
    metrics |= {
        "critic_mse": mean((v - g) ** 2), "v_mean": mean(v),
        "explained_variance": explained_variance(v, g, undefined=0.0),
        "value_fallbacks": critic.stats["value_fallbacks"] - fallbacks,
        "critic_value_s": t_values, "critic_s_per_estimate": t_values / max(1, n),
        "critic_gen_s": metrics["critic_sample_s"] + t_values,
        "adv_mean": float(advantages.mean()), "adv_std": float(advantages.std()),
        "actor_loss": mean(losses), "clip_frac": mean([s.clip_frac for s in st_log]),
        "approx_kl": mean([s.approx_kl for s in st_log]), "grad_norm": mean(norms),
        "actor_update_s": time.perf_counter() - t1,
    }  # fmt: skip
    return metrics, advantages


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


@dataclass
class FactsWindow:
    """The rewards of the actor's last ``size`` valid episodes (the in-context facts)."""

    size: int
    rewards: list[float] = field(default_factory=list)

    def add(self, rollouts: Sequence[Rollout]) -> None:
        self.rewards = (self.rewards + [r.reward for r in rollouts if r.valid])[-self.size :]

    def facts(self) -> ActorFacts:
        return ActorFacts.of(self.rewards)


def train_genac(config: GenacConfig, run: TrainRun):
    if config.value_mode not in ("expectation", "greedy"):
        raise ValueError(f"value_mode must be 'expectation' or 'greedy', not {config.value_mode!r}")
    if config.critic_temperature <= 0:
        raise ValueError("critic_temperature must be > 0: REINFORCE samples the critic")
    learner = start_learner(config, run)  # the actor (a scorer from bc), resumed
    policy, optimizer = learner.policy, learner.optimizer
    latest = run.latest_checkpoint()
    window = FactsWindow(config.facts_window)
    if latest is not None and (latest / CRITIC_DIR).is_dir():
        critic = GenerativeCritic.load(latest, device=config.device)
        window.rewards = _facts_rewards(latest)
    else:
        critic = GenerativeCritic.fresh(
            config.critic_backbone, device=config.device, seed=config.seed,
            prompt_tokens=config.critic_prompt_tokens, rationale_tokens=config.rationale_tokens,
            train_layers=config.critic_train_layers, max_steps=config.max_steps,
        )  # fmt: skip
        # 0. SFT warm start on the actor's own episodes
        gen = np.random.default_rng([config.seed, 0, 7])
        tasks = iteration_tasks(  # "iteration 0": drawn apart from the training iterations'
            learner.train_ids, replace(config, tasks_per_iteration=config.sft_tasks), 0
        )
        t0 = time.perf_counter()
        rollouts = collect(config, policy, tasks, seed=config.seed, rng=gen)
        window.add(rollouts)
        t_collect = time.perf_counter() - t0
        traces = Traces.of(TurnBatch.of(rollouts), window.facts(), config)
        sft = sft_warm_start(config, critic, traces, gen) | {"sft_collect_s": t_collect}
        critic.metadata["sft"] = sft
        run.say("genac SFT: " + " ".join(f"{k}={v:.4g}" for k, v in sft.items()))
    critic.eval()
    critic.actor_facts = window.facts()
    critic_opt = torch.optim.AdamW(
        [p for p in critic.parameters() if p.requires_grad], lr=config.critic_lr
    )
    restore_critic_optimizer(run, critic_opt)
    learner.critic, learner.critic_optimizer = critic, critic_opt

    def save(it: int) -> None:
        def save_facts(folder: Path) -> None:
            (folder / FACTS_DIR).mkdir()
            (folder / FACTS_DIR / "facts.json").write_text(json.dumps({"rewards": window.rewards}))

        learner.save(run, it, extra=save_facts)

    iterations = Iterations(config, run, learner.start, policy, learner.val_ids, save)
    for it in iterations:
        gen = np.random.default_rng([config.seed, it, 7])
        t0 = time.perf_counter()
        tasks = iteration_tasks(learner.train_ids, config, it)
        rollouts = collect(config, policy, tasks, seed=config.seed + it, rng=gen)
        t_collect = time.perf_counter() - t0
        batch = TurnBatch.of(rollouts)
        facts = window.facts()  # from the episodes BEFORE this batch
        metrics, _ = genac_update(
            config, policy, critic, optimizer, critic_opt, batch, facts, gen,
            actor=it > config.critic_warmup,
        )  # fmt: skip
        window.add(rollouts)  # 5. the next batch's facts
        critic.actor_facts = window.facts()
        stats = rollout_stats(rollouts)
        iterations.report({
            "train_score": stats["score"], "train_success_rate": stats["success_rate"],
            "train_env_steps": len(batch), "errored": stats["errored"],
            "facts_success_rate": facts.success_rate, "facts_mean_reward": facts.mean_reward,
            **metrics, "collect_s": t_collect,
        })  # fmt: skip
    return run.latest_path


def measure_costs(
    backbone: str = "smollm2-135m",
    *,
    n_states: int = 8,
    rationale_tokens: int = 24,
    train_layers: int = 2,
    threads: int = 1,
) -> dict[str, float]:
    """Seconds per state of each critic operation (the module docstring's figures) on
    ``n_states`` real states, the ``rule`` agent's turns on the first train tasks, one call of
    ``n_states`` prompts each. ``python -m webgym_agents.algos.genac [n_states]`` prints them."""
    torch.set_num_threads(threads)
    episodes = collect_episodes(RuleAgent(), split_task_ids("train")[:n_states], max_steps=10)
    turns = [(critic_state_text(s.obs, 10), t, e.steps[-1].reward)
             for e in episodes for t, s in enumerate(e.steps)][:n_states]  # fmt: skip
    states = [s for s, _, _ in turns]
    facts = [ActorFacts(0.1, 0.6, 48, t) for _, t, _ in turns]
    g = np.array([r * 0.95 ** (len(turns) - 1 - t) for _, t, r in turns])
    critic = GenerativeCritic.fresh(
        backbone, rationale_tokens=rationale_tokens, train_layers=train_layers
    )
    prompts, _ = critic.prompts(states, facts)
    out: dict[str, float] = {
        "prompt_tokens_mean": float(np.mean([len(critic.backbone.encode_text(p)) for p in prompts]))
    }

    def per_state(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) / len(states)

    out["value_expectation_s"] = per_state(lambda: critic.values(states, facts, chunk=n_states))
    out["value_greedy_s"] = per_state(
        lambda: critic.values(states, facts, mode="greedy", chunk=n_states)
    )
    samples: list[Any] = []
    out["sample_s"] = per_state(lambda: samples.extend(critic.sample(prompts, temperature=1.0)))
    out["sample_tokens_mean"] = float(np.mean([len(x.token_ids) for x in samples]))

    def backward(completions, **kw) -> None:
        _, logp = critic.backbone.sequence_logprobs(prompts, completions, **kw)
        (-logp.mean()).backward()
        critic.backbone.model.zero_grad(set_to_none=True)

    out["reinforce_step_s"] = per_state(lambda: backward([x.token_ids for x in samples]))
    targets = [sft_target(s, x) for s, x in zip(states, g, strict=True)]
    out["sft_step_s"] = per_state(lambda: backward(targets, add_eos=True))
    return out


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    print(json.dumps(measure_costs(n_states=n), indent=2))


TRAINER = TrainerInfo(
    "genac",
    train_genac,
    PRESETS,
    description="GenAC: ArCHer PPO with a generative critic (rationale, then Score: k/10)",
    preset_aliases=PRESET_ALIASES,
)

__all__ = [
    "PRESETS",
    "ActorFacts",
    "FactsWindow",
    "GenacConfig",
    "GenerativeCritic",
    "ScoreReader",
    "Traces",
    "critic_reinforce",
    "genac_update",
    "load_actor_facts",
    "measure_costs",
    "parse_score",
    "rationale",
    "score_values",
    "scoring_reward",
    "sft_target",
    "sft_warm_start",
    "target_score",
    "train_genac",
]
