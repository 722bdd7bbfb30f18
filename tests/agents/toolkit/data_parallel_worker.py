"""One process of tests/agents/toolkit/test_data_parallel.py's plumbing check, started N
times by ``accelerate launch``; writes what it saw to ``OUT/rank<r>.json``.

1. Rollouts: sharded collection returns, in every process, the list one process collects.
2. Gradients: over :func:`webgym_agents.toolkit.onpolicy.minibatches`, each :func:`clip_and_step`
applies
   the mean gradient of the step's distinct minibatches (checked against a one-process recompute).
3. The weights check of :func:`webgym_agents.toolkit.onpolicy.save_checkpoint` fails on diverged
weights.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

from webgym_agents.policies.scorer_policy import ScorerPolicy
from webgym_agents.toolkit import data_parallel
from webgym_agents.toolkit.onpolicy import (
    _check_processes_agree,
    clip_and_step,
    minibatches,
    split_task_ids,
)
from webgym_agents.toolkit.rollouts import collect_rollouts


def rollouts_check() -> dict:
    torch.manual_seed(0)
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=4).eval()
    tasks = split_task_ids("train")[:5]  # an odd count: the shards differ in size
    played = []
    common = dict(n_envs=2, seed=3, max_steps=4, temperature=0.0)
    sharded = collect_rollouts(policy, tasks, on_rollout=lambda r: played.append(r.task_id),
                               **common)  # fmt: skip
    alone = collect_rollouts(policy, tasks, shard=False, **common)

    def summary(rollouts):
        return [(r.task_id, r.group, [t.action for t in r.turns], r.reward) for r in rollouts]

    return {
        "played_here": played,
        "sharded": summary(sharded),
        "sharded_equals_one_process": summary(sharded) == summary(alone),
    }


def gradient_check() -> dict:
    world = data_parallel.world_size()
    gen_data = torch.Generator().manual_seed(7)
    x, y = torch.randn(5, 3, generator=gen_data), torch.randn(5, 1, generator=gen_data)
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1)
    reference = copy.deepcopy(model)  # the one-process recompute of every step
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def grads(module, idx):
        module.zero_grad()
        torch.nn.functional.mse_loss(module(x[idx]), y[idx]).backward()
        return [p.grad.clone() for p in module.parameters()]

    # the chunks one process would take: the same generator, the same partition
    order = np.random.default_rng(11).permutation(5)
    chunks = [order[i : i + 2] for i in range(0, 5, 2)]
    errors, taken = [], []
    for step, idx in enumerate(minibatches(5, 2, np.random.default_rng(11))):
        taken.append([int(i) for i in idx])
        grads(model, idx)
        clip_and_step(model, opt, 1e9)
        # expected: the mean gradient of this step's distinct chunks, applied to the reference
        distinct = chunks[step * world : (step + 1) * world]
        per_chunk = [grads(reference, c) for c in distinct]
        with torch.no_grad():
            for k, p in enumerate(reference.parameters()):
                p -= 0.5 * torch.stack([g[k] for g in per_chunk]).mean(0)
        errors.append(
            max(float((a - b).abs().max()) for a, b in zip(model.parameters(),
                                                           reference.parameters(), strict=True))
        )  # fmt: skip
    return {
        "taken": taken,
        "max_error": max(errors),
        "steps": len(errors),
        "weights": data_parallel.state_digest(model),
    }


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def divergence_check() -> dict:
    torch.manual_seed(2)
    model = torch.nn.Linear(2, 2)
    run = _Log()
    _check_processes_agree(run, 1, model, None)  # the same weights: passes
    if data_parallel.rank() == 1:
        with torch.no_grad():
            model.weight[0, 0] += 1e-3
    try:
        _check_processes_agree(run, 2, model, None)
        raised = False
    except RuntimeError:
        raised = True
    return {"log": run.lines, "raised_on_divergence": raised}


def main() -> None:
    out = Path(sys.argv[1])
    result = {
        "rank": data_parallel.rank(),
        "world_size": data_parallel.world_size(),
        "rollouts": rollouts_check(),
        "gradients": gradient_check(),
        "divergence": divergence_check(),
    }
    (out / f"rank{data_parallel.rank()}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
