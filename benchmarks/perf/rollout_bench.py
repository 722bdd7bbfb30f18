"""Training-rollout throughput of the candidate scorer: episodes per hour with the frozen-encoder
embedding cache against encoding every text at every step, in the same run.

    python -m webgym_benchmarks.perf.rollout_bench [--checkpoint DIR] [--tasks 8] [--group 8]
        [--rounds 2]

Plays ``--rounds`` rounds of GRPO-shaped collection (``--tasks`` train tasks x ``--group``
rollouts from identical starts, text mode, T = 1, one torch thread) with the cache and without
it, alternating so that both see the same machine load; the cache is kept across rounds, as it
is across a training run's iterations. Without ``--checkpoint`` a random-init MiniLM scorer
plays (the same forward cost as a trained one). Prints episodes/hour and env steps/s for each,
and their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a ScorerPolicy checkpoint (bc)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from webgym_agents.models.threads import configure_torch_threads
    from webgym_agents.policies.scorer_policy import ScorerPolicy
    from webgym_agents.toolkit.onpolicy import split_task_ids
    from webgym_agents.toolkit.rollouts import collect_rollouts

    configure_torch_threads(1)
    if args.checkpoint:
        policy = ScorerPolicy.load(args.checkpoint)
    else:
        policy = ScorerPolicy.from_backbone_name("minilm", seed=0)
    policy.eval().encoder.requires_grad_(False)  # heads-only training: a frozen encoder
    uncached = policy.embed  # bound before the override below

    def encode_always(texts, max_length):
        with torch.no_grad():
            return policy.encode(texts, max_length)

    train = split_task_ids("train")
    totals = {"cached": [0.0, 0, 0], "uncached": [0.0, 0, 0]}  # seconds, episodes, steps
    for r in range(args.rounds):
        tasks = train[r * args.tasks : (r + 1) * args.tasks]
        for name in ("uncached", "cached"):
            policy.embed = uncached if name == "cached" else encode_always
            rng = np.random.default_rng(r)
            t0 = time.perf_counter()
            rollouts = collect_rollouts(
                policy, tasks, group_size=args.group, seed=r, n_envs=args.tasks * args.group,
                temperature=1.0, rng=rng,
            )  # fmt: skip
            dt = time.perf_counter() - t0
            totals[name][0] += dt
            totals[name][1] += len(rollouts)
            totals[name][2] += sum(len(x.turns) for x in rollouts)
            print(f"round {r} {name}: {len(rollouts)} episodes in {dt:.1f} s")
    rate = {}
    for name, (s, eps, steps) in totals.items():
        rate[name] = eps / s * 3600
        print(f"{name:9s} {rate[name]:10,.0f} episodes/hour  {steps / s:7.1f} env steps/s")
    print(f"ratio cached / uncached: {rate['cached'] / rate['uncached']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
