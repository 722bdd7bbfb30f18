"""Rollouts on Ray workers (``train --ray``): the same rollouts as one process collects, with
the weights the caller holds now (two local Ray actors, a tiny random-init scorer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from webgym_agents.policies.scorer_policy import ScorerPolicy
from webgym_agents.toolkit.onpolicy import TurnBatch, split_task_ids
from webgym_agents.toolkit.ray_rollouts import RayCollector
from webgym_agents.toolkit.rollouts import collect_rollouts


def _played(rollouts):
    return [
        (r.task_id, r.group, r.seed, r.reward, [t.action for t in r.turns],
         [round(float(t.decision.logprob), 5) for t in r.turns])
        for r in rollouts
    ]  # fmt: skip


@pytest.fixture(scope="module")
def collector():
    with RayCollector(workers=2) as c:
        yield c


def test_ray_workers_collect_what_one_process_collects(collector):
    torch.manual_seed(0)
    policy = ScorerPolicy.from_backbone_name("tiny-encoder", seed=0, max_steps=5).eval()
    with torch.no_grad():  # a non-uniform head, so that sampled rollouts differ
        policy.head[2].weight.normal_(0, 1.0)
    tasks = split_task_ids("train")[:3]
    kw = dict(group_size=2, n_envs=2, seed=3, max_steps=5)

    # greedy: exactly one process's rollouts, in job order
    local = collect_rollouts(policy, tasks, temperature=0.0, **kw)
    remote = collector(policy, tasks, temperature=0.0, rng=np.random.default_rng(0), **kw)
    assert _played(remote) == _played(local)
    assert [(r.task_id, r.group) for r in remote] == [(t, g) for t in tasks for g in range(2)]

    # sampled: part k of 2 is what collect_rollouts(part=(k, 2)) plays; the generator advances
    parts = [
        collect_rollouts(policy, tasks, rng=np.random.default_rng(1), part=(k, 2), **kw)
        for k in range(2)
    ]
    rng = np.random.default_rng(1)
    sampled = collector(policy, tasks, rng=rng, **kw)
    by_job = {(r.task_id, r.group): r for part in parts for r in part}
    assert _played(sampled) == _played([by_job[(t, g)] for t in tasks for g in range(2)])
    assert rng.bit_generator.state != np.random.default_rng(1).bit_generator.state

    # the workers act with the weights sent now: after a change, their logprobs are the new ones
    with torch.no_grad():
        policy.head[2].weight.mul_(3.0)
    after = collector(policy, tasks, temperature=0.5, rng=np.random.default_rng(2), **kw)
    batch = TurnBatch.of(after)
    with torch.no_grad():
        again = batch.logprobs(policy, np.arange(len(batch)))
    assert torch.allclose(again, batch.old_logp, atol=1e-5)
