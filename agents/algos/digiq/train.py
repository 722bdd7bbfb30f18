"""Digi-Q's trainer: the four phases (webgym_agents/algos/digiq/__init__.py says what each
does) as a visible list, :data:`PHASES`, run in order by :func:`train_digiq`; a run resumes
phase by phase (a phase interrupted is redone, except collection, which keeps its finished
parts). Also :func:`ranking_diagnostics`, the ranking accuracy of a finished run's critic.

Imports every module of this package (it is the top of it) and the toolkit; no module of the
package imports it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym_agents.algos.digiq.config import (
    CRITIC_FILE,
    CRITIC_MODES,
    PRESET_ALIASES,
    PRESETS,
    DigiQConfig,
    behaviour_scorer,
    metrics_row,
    with_objective,
)
from webgym_agents.algos.digiq.critic import (
    CriticHeads,
    FeatureCache,
    cache_features,
    critic_values,
    load_critic,
    save_critic,
    train_td_end_to_end,
    train_td_on_cache,
    with_candidate_features,
)
from webgym_agents.algos.digiq.data import (
    back_probe_rows,
    collect_offline_data,
    label_balance,
    load_transitions,
    say_balance,
    trajectories,
)
from webgym_agents.algos.digiq.encoder import (
    CriticEncoder,
    _aux_names,
    finetune_representation,
    load_critic_encoder,
)
from webgym_agents.algos.digiq.extract import extract_policy, extraction_set, validate
from webgym_agents.models.threads import configure_torch_threads
from webgym_agents.policies.scorer_policy import ScorerPolicy
from webgym_agents.toolkit.critic_diagnostics import critic_report, ranking_accuracy, write_report
from webgym_agents.toolkit.training import (
    TrainerInfo,
    TrainRun,
    config_to_dict,
    override_config,
)

__all__ = ["PHASES", "TRAINER", "Phase", "ranking_diagnostics", "train_digiq"]


@dataclass
class _Run:
    """What the phases hand on to each other in one call of :func:`train_digiq`."""

    config: DigiQConfig
    run: TrainRun
    it: int
    t_run: float
    state: dict[str, Any]
    phase_done: int
    options: dict[str, Any]
    thresholds: list[float]
    data_hash: str = ""
    labelled: Any = None  # trajectories + label probes: the effect label's data
    frame: Any = None  # pi_b's trajectories only: everything else learns from them
    balance: dict[str, Any] = field(default_factory=dict)
    encoder_dir: Path | None = None
    ft_acc: dict[str, float] = field(default_factory=dict)
    enc: CriticEncoder | None = None
    cache: FeatureCache | None = None
    heads: CriticHeads | None = None
    round: int = 1  # of ``rounds``; its data and cache are in ``dir``
    dir: Path | None = None

    def row(self, **values: Any) -> None:
        metrics_row(self.run, self.it, self.t_run, **values)

    def checkpoint(self, phase: int, extra: dict[str, Any], write=None) -> None:
        """After ``phase`` of this round; the state counts the phases of every round done
        (``4 * (round - 1) + phase``), so a resumed run skips finished rounds too."""
        done = len(PHASES) * (self.round - 1) + phase
        self.state.update(extra, phase_done=done, round=self.round)
        self.run.save_checkpoint(
            self.it,
            write or (lambda folder: None),
            state=dict(self.state),
            metadata={
                "phase_done": done,
                "data_sha256": self.state.get("data_hash"),
                **self.state,
                "options": self.options,
            },
        )
        self.phase_done = phase


def offline_data(r: _Run) -> None:
    """1. The behaviour policy's data (collected here, or read from ``data``)."""
    config, run = r.config, r.run
    path, r.data_hash = collect_offline_data(config, run, r.dir / "data")
    r.labelled = load_transitions(path)
    r.frame = with_objective(trajectories(r.labelled), config)
    r.balance = label_balance(r.labelled)
    say_balance(run, r.balance, config)
    if r.state.get("data_hash") not in (None, r.data_hash):
        raise RuntimeError(
            f"{run.dir}: the data changed since the checkpoint "
            f"({r.state['data_hash'][:16]} there, {r.data_hash[:16]} now)"
        )
    if r.phase_done < 1:
        own = ~back_probe_rows(r.frame)  # pi_b's own episodes, not the back probes
        episodes = r.frame[own].drop_duplicates("episode")
        r.it += 1
        r.row(
            phase=1,
            episodes=len(episodes),
            transitions=len(r.frame),
            data_score=float(episodes["episode_reward"].mean() * 100),
            data_success_rate=float((episodes["episode_reward"] == 1.0).mean()),
            positive_share=r.balance["all"]["positive_share"],
        )
        r.checkpoint(1, {"data_hash": r.data_hash, "data_path": str(path)})


def representation(r: _Run) -> None:
    """2. Fine-tune the critic's encoder on the effect label (finetune_freeze only); then the
    encoder every later phase reads: fine-tuned, another run's, or off the shelf."""
    config, run, state = r.config, r.run, r.state
    r.encoder_dir = Path(state["encoder_dir"]) if state.get("encoder_dir") else None
    if config.critic_encoder:  # another run's fine-tuned encoder: phase 2 is not redone
        if config.critic_mode != "finetune_freeze":
            raise ValueError("critic_encoder is a fine-tuned encoder: critic_mode finetune_freeze")
        r.encoder_dir = Path(config.critic_encoder)
        if not r.encoder_dir.is_dir():
            raise FileNotFoundError(f"critic_encoder {r.encoder_dir} is not a folder")
    if config.critic_mode == "finetune_freeze" and r.phase_done < 2 and not config.critic_encoder:
        enc, r.ft_acc, r.it = finetune_representation(config, run, r.labelled, r.it, r.t_run)
        digest = enc.digest()
        r.encoder_dir = enc.save_encoder(
            run.dir / "critic" / f"encoder-{digest[:16]}",
            {"digest": digest, "aux": config.aux, "heldout": r.ft_acc},
        )
        r.checkpoint(
            2, {"encoder_dir": str(r.encoder_dir), "encoder_digest": digest, "finetune": r.ft_acc}
        )
    else:
        r.ft_acc = state.get("finetune", {})
    r.enc = load_critic_encoder(config, r.encoder_dir)  # off-the-shelf unless fine-tuned


def critic(r: _Run) -> None:
    """3. Freeze the encoder (or train it end to end by TD), cache the features, learn Q and V
    by TD on the cache, measure the critic (diagnostics.json)."""
    config, run, state, frame = r.config, r.run, r.state, r.frame
    t_phase = time.perf_counter()
    if config.critic_mode == "end_to_end":
        if r.phase_done < 3:
            r.enc, r.heads, td, r.it = train_td_end_to_end(config, run, r.enc, frame, r.it, r.t_run)
            digest = r.enc.digest()
            r.encoder_dir = r.enc.save_encoder(
                run.dir / "critic" / f"encoder-{digest[:16]}",
                {"digest": digest, "trained_by": "end_to_end TD"},
            )
            state["encoder_dir"] = str(r.encoder_dir)
        r.enc.requires_grad_(False)
    else:
        r.enc.requires_grad_(False)  # frozen: no backbone parameter ever gets a gradient below
    r.cache = cache = cache_features(
        r.enc, frame, r.data_hash, r.dir / "cache", run, batch=config.feature_batch_size
    )
    if config.critic_features:
        r.cache = cache = with_candidate_features(cache, frame)
    if r.phase_done >= 3:
        r.heads, _ = load_critic(run.latest_checkpoint())
        return
    r.it += 1
    r.row(
        phase=3,
        cache_pairs=len(cache.pairs),
        cache_states=len(cache.states),
        cache_s=time.perf_counter() - t_phase,
    )
    if config.critic_mode != "end_to_end":
        r.heads, td, r.it = train_td_on_cache(config, run, cache, frame, r.it, r.t_run)
    else:  # the same run times TD on the cache too: the price of training through Enc
        probe = replace(config, td_updates=200, log_every=10**9)
        _, cached_td, _ = train_td_on_cache(probe, run, cache, frame, r.it, r.t_run)
        td["cached_td_updates_per_s"] = cached_td["td_updates_per_s"]
        td["cached_speedup"] = cached_td["td_updates_per_s"] / td["td_updates_per_s"]
        run.say(
            f"TD updates/s: {td['td_updates_per_s']:.2f} end to end, "
            f"{cached_td['td_updates_per_s']:.0f} on the cache "
            f"({td['cached_speedup']:.0f}x)"
        )
    heads = r.heads
    q_rows, v = critic_values(heads, cache)
    with torch.no_grad():  # Q(s, a_data) of the logged pairs, and their features for the probe
        q_logged = heads.qs(cache.pairs[cache.logged]).min(0).values.numpy()
    report = critic_report(frame, q_rows, v, q_logged, features=cache.pairs[cache.logged].numpy())
    report |= {
        "critic_mode": config.critic_mode,
        **td,
        "finetune": r.ft_acc,
        "label_balance": r.balance,
        "data_sha256": r.data_hash,
        "cache_key": cache.key,
    }
    write_report(run.dir / "diagnostics.json", report)
    r.it += 1
    r.row(
        phase=3,
        td_update=config.td_updates if config.critic_mode != "end_to_end" else config.e2e_updates,
        td_loss_q=td["td_loss_q"],
        td_loss_v=td["td_loss_v"],
        q_mean=report["q_mean"],
        v_mean=report["v_mean"],
        td_updates_per_s=td["td_updates_per_s"],
        v_mc_mse=report["v_mc_mse_heldout"],
        action_sensitivity=report["action_sensitivity"],
        probe_acc=report["probe_acc"],
    )
    run.say(
        f"critic: V MSE vs MC (held out) {report['v_mc_mse_heldout']:.4f}, action "
        f"sensitivity {report['action_sensitivity']:.4f}, effect probe "
        f"{report['probe_acc']:.3f}, {td['td_updates_per_s']:.1f} TD updates/s"
    )
    critic_info = {
        "data_sha256": r.data_hash,
        "encoder_digest": r.enc.digest(),
        "encoder_dir": str(r.encoder_dir) if r.encoder_dir else None,
        "critic_backbone": config.critic_backbone,
        **r.options,
    }
    state["critic_info"] = critic_info
    r.checkpoint(
        3, {"td": td}, lambda folder: save_critic(folder / CRITIC_FILE, heads, critic_info)
    )


def _val_objective(entry: dict[str, Any], config: DigiQConfig) -> float:
    """A sweep entry's validation figure in the critic's objective: score_weight * Score / 100
    + success_bonus * SR (ties go to the earlier threshold, the stricter)."""
    return config.score_weight * entry.get("val_score", 0.0) / 100.0 + (
        config.success_bonus * entry.get("val_success_rate", 0.0)
    )


def best_of_n_extraction(r: _Run) -> None:
    """4. Best-of-N extraction: one policy per threshold of the sweep, the best on
    validation."""
    if r.phase_done >= 4:
        return
    config, run, frame, heads = r.config, r.run, r.frame, r.heads
    q_rows, v_rows = critic_values(heads, r.cache)
    n_train = int((~frame["heldout"]).sum())
    r.it += 1
    bc_val = validate(behaviour_scorer(config), config)  # the behaviour's: the sweep's yardstick
    r.row(phase=4, extract_epoch=0, **{k: v for k, v in bc_val.items() if k != "val_s"})
    sweep: list[dict[str, Any]] = []
    best: tuple[dict[str, Any], ScorerPolicy] | None = None
    for threshold in r.thresholds:
        chosen = extraction_set(frame, q_rows, v_rows, threshold, config.support_share)
        adv = float(np.mean([a for _, _, a in chosen])) if chosen else float("nan")
        logged = [
            frame.iloc[i]["policy_actions"][k] == frame.iloc[i]["action"] for i, k, _ in chosen
        ]
        run.say(
            f"Best-of-N: {len(chosen)}/{n_train} training states kept (A(s, a*) > "
            f"{threshold}), mean A* {adv:.4f}, a* = logged action in "
            f"{np.mean(logged) if logged else float('nan'):.2f} of them"
        )
        entry = {
            "threshold": threshold,
            "kept_states": len(chosen),
            "kept_share": len(chosen) / max(1, n_train),
            "adv_star_mean": adv,
        }
        r.it += 1
        r.row(phase=4, extract_epoch=0, **{k: v for k, v in entry.items() if k != "kept_states"})
        cfg = replace(config, threshold=threshold)
        policy, r.it, val = extract_policy(cfg, run, frame, chosen, r.it, r.t_run)
        entry |= {k: v for k, v in val.items() if k != "val_s"}
        sweep.append(entry)
        if best is None or _val_objective(entry, config) > _val_objective(best[0], config):
            best = (entry, policy)
    assert best is not None
    entry, policy = best
    if len(sweep) > 1:
        run.say(
            "threshold sweep (validation Score; the behaviour "
            f"{bc_val.get('val_score', float('nan')):.1f}): "
            + ", ".join(f"{e['threshold']}: {e.get('val_score', float('nan')):.1f}" for e in sweep)
            + f"; kept threshold {entry['threshold']}"
        )
    r.options["threshold"] = entry["threshold"]
    critic_info = r.state.get("critic_info", {})
    meta = {
        "trained_by": "digiq",
        "data_sha256": r.data_hash,
        "critic": critic_info,
        "options": r.options,
        "kept_states": entry["kept_states"],
        "threshold_sweep": sweep,
        "config": config_to_dict(config),
    }

    def write(folder: Path) -> None:
        policy.save(folder, metadata=meta)
        save_critic(folder / CRITIC_FILE, heads, critic_info)

    if r.round < config.rounds:  # the next round's behaviour (checkpoints are pruned)
        policy.save(r.dir / ROUND_POLICY, metadata=meta)

    r.checkpoint(
        4,
        {
            "kept_states": entry["kept_states"],
            "kept_share": entry["kept_share"],
            "threshold": entry["threshold"],
            "threshold_sweep": sweep,
            "val_bc": bc_val.get("val_score"),
        },
        write,
    )


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    run: Callable[[_Run], None]


PHASES = (
    Phase(1, "offline data", offline_data),
    Phase(2, "representation fine-tuning", representation),
    Phase(3, "freeze, cache, TD", critic),
    Phase(4, "Best-of-N extraction", best_of_n_extraction),
)
"""Digi-Q's phases, in order; each reads what the earlier ones left in the run (``_Run``) and
checkpoints when it finishes (``phase_done``), so a resumed run skips the finished ones' work."""

ROUND_POLICY = "extracted-policy"
"""The folder (in a round's directory) of a round's extracted policy: the next round's
behaviour."""


def round_dir(out: Path, k: int) -> Path:
    """Where round ``k`` keeps its data and cache: OUT itself for round 1, OUT/round-K after."""
    return out if k == 1 else out / f"round-{k}"


def round_config(config: DigiQConfig, out: Path, k: int, state: dict[str, Any]) -> DigiQConfig:
    """Round ``k``'s config: round 1's is the run's; a later round's behaviour is the previous
    round's extracted policy, its data are collected afresh without label probes (they feed
    only the effect fine-tuning), its encoder is round 1's and its V's expectile
    ``later_v_expectile`` (when set)."""
    if k == 1:
        return config
    encoder = config.critic_encoder or state.get("encoder_dir") or ""
    later_v = config.v_expectile if config.later_v_expectile is None else config.later_v_expectile
    return replace(
        config,
        v_expectile=later_v,
        behaviour_checkpoint=str(round_dir(out, k - 1) / ROUND_POLICY),
        data="",
        effect_probes=0,
        critic_encoder=encoder if config.critic_mode == "finetune_freeze" else "",
    )


def train_digiq(config: DigiQConfig, run: TrainRun) -> Path:
    configure_torch_threads(config.torch_threads or None)
    if config.critic_mode not in CRITIC_MODES:
        raise ValueError(f"critic_mode must be one of {CRITIC_MODES}, not {config.critic_mode!r}")
    if config.critic_mode == "finetune_freeze":
        _aux_names(config.aux)  # fail before collecting, not after
    if config.critic_features and config.critic_mode == "end_to_end":
        raise ValueError("critic_features extends the cached features: not with end_to_end")
    thresholds = list(config.threshold_sweep) or [config.threshold]
    if len(thresholds) > 1 and config.val_tasks <= 0:
        raise ValueError("threshold_sweep chooses on validation: it needs val_tasks > 0")
    if config.rounds < 1:
        raise ValueError(f"rounds must be >= 1, not {config.rounds}")
    if config.rounds > 1 and config.critic_mode == "end_to_end":
        raise ValueError("rounds > 1 reuse round 1's encoder: not with critic_mode end_to_end")
    torch.manual_seed(config.seed)
    t_run = time.perf_counter()
    it = run.restore()
    state = run.trainer_state() or {}
    keys = ("critic_mode", "aux", "threshold", "gamma", "tau", "v_target", "n_candidates",
            "explore_eps", "v_expectile", "behaviour_v", "critic_features")  # fmt: skip
    done = int(state.get("phase_done", 0)) if it else 0  # phases of every round (checkpoint)
    for k in range(1, config.rounds + 1):
        phase_done = min(max(done - len(PHASES) * (k - 1), 0), len(PHASES))
        if phase_done == len(PHASES) and k < config.rounds:
            continue  # a finished round: its policy is in round_dir(k)/ROUND_POLICY
        if phase_done == 0:
            state.pop("data_hash", None)  # a new round's data: nothing to check it against
        if config.rounds > 1:
            run.say(f"digiq: round {k} of {config.rounds}")
        round_cfg = round_config(config, run.dir, k, state)
        r = _Run(
            config=round_cfg,
            run=run,
            it=it,
            t_run=t_run,
            state=state,
            phase_done=phase_done,
            options={key: getattr(round_cfg, key) for key in keys},
            thresholds=thresholds,
            round=k,
            dir=round_dir(run.dir, k),
        )
        for phase in PHASES:
            phase.run(r)
        it = r.it
    run.say(f"digiq: done in {time.perf_counter() - t_run:.0f} s (this call)")
    return run.latest_path


TRAINER = TrainerInfo(
    "digiq",
    train_digiq,
    PRESETS,
    description="Digi-Q: effect-label fine-tuned critic, frozen features, TD, Best-of-N extraction",
    preset_aliases=PRESET_ALIASES,
)


def ranking_diagnostics(
    run_dir: str | Path, *, rank_states: int = 40, pool_sizes: Sequence[int] = (2, 4, 8, 16)
) -> dict[str, Any]:
    """A finished digiq run's ``diagnostics.json`` plus its ranking accuracy (the forks' outcomes
    shared through the data folder), written back; the features are read from the run's cache."""
    run_dir = Path(run_dir)
    cfg = override_config(
        DigiQConfig(), json.loads((run_dir / "config.json").read_text())["config"]
    )
    latest = run_dir / "checkpoints" / "latest"
    meta = json.loads((latest / "training.json").read_text())
    heads, info = load_critic(latest)
    data_path = Path(meta["data_path"])
    frame = with_objective(trajectories(load_transitions(data_path)), cfg)
    enc = load_critic_encoder(cfg, info.get("encoder_dir")).requires_grad_(False)
    cache_dir = round_dir(run_dir, int(meta.get("round", 1))) / "cache"  # the last round's
    cache = cache_features(enc, frame, info["data_sha256"], cache_dir)
    if cfg.critic_features:
        cache = with_candidate_features(cache, frame)
    q_rows, _ = critic_values(heads, cache)
    report = json.loads((run_dir / "diagnostics.json").read_text())
    report |= {"cache_recomputed": cache.computed}
    if rank_states > 0:
        report |= ranking_accuracy(
            frame,
            q_rows,
            behaviour_scorer(cfg),
            n_states=rank_states,
            pool_sizes=pool_sizes,
            gamma=cfg.gamma,
            max_steps=cfg.max_steps,
            seed=cfg.seed,
            outcomes_path=data_path.parent / f"fork_outcomes-{rank_states}.json",
        )
    write_report(run_dir / "diagnostics.json", report)
    return report
