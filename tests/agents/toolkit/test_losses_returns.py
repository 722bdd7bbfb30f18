"""The shared RL maths: our advantages and losses equal TRL's code on the same inputs, and the
formulas hold on hand-made trajectories.

TRL is called, not re-typed: ``GRPOTrainer._compute_loss`` runs on a stand-in trainer object
that carries only the attributes that method reads, and the advantage block of
``_generate_and_score_completions`` is executed from TRL's own source.
"""

from __future__ import annotations

import inspect
import textwrap
from types import SimpleNamespace

import pytest
import torch
import trl.trainer.grpo_trainer as trl_grpo  # a test dependency: we call TRL's code
from trl.trainer.utils import nanstd

from webgym_agents.toolkit.losses import aggregate, clipped_surrogate, k3_kl, nll, value_mse
from webgym_agents.toolkit.returns import discounted_returns, group_advantages, turn_td_advantages


class _IdentityAccelerator:
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _trl_loss(
    logp, old, adv, mask, *, loss_type, eps_low, eps_high, beta=0.0, ref=None, max_len=None
):
    """TRL 1.x's GRPOTrainer._compute_loss on fixed per-token log-probs."""
    trainer = SimpleNamespace(
        top_entropy_quantile=1.0,
        aux_loss_enabled=False,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=max_len or logp.size(1),
        accelerator=_IdentityAccelerator(),
        _entropy_bonus_enabled=False,
        _metrics={"train": _Metrics(), "eval": _Metrics()},
        model=SimpleNamespace(training=True),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
    )
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        logp,
        torch.zeros_like(logp),
        None,
    )
    b, length = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1, dtype=torch.long),
        "completion_ids": torch.zeros(b, length, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": mask.sum(),
    }
    if beta:
        inputs["ref_per_token_logps"] = ref
    return trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)


class _Metrics(dict):
    def __missing__(self, key):
        self[key] = []
        return self[key]


def _trl_advantages(
    rewards: torch.Tensor, num_generations: int, scale_rewards: str
) -> torch.Tensor:
    """Execute the advantage block of TRL's _generate_and_score_completions on given rewards."""
    src = inspect.getsource(trl_grpo.GRPOTrainer._generate_and_score_completions)
    start = src.rindex("\n", 0, src.index("mean_grouped_rewards = torch.nanmean")) + 1
    end = src.rindex("\n", 0, src.index("is_std_zero", start)) + 1
    block = textwrap.dedent(src[start:end])
    scope = {
        "torch": torch,
        "nanstd": nanstd,
        "rewards": rewards.clone(),
        "num_generations": num_generations,
        "self": SimpleNamespace(scale_rewards=scale_rewards),
    }
    exec(block, scope)  # noqa: S102 - TRL's own code, read from the installed package
    return torch.nan_to_num(scope["advantages"], nan=0.0)


def _batch(seed=0, b=6, length=5):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, length, generator=g) * 3
    logp = old + (torch.rand(b, length, generator=g) - 0.5) * 0.8  # ratios in about [0.67, 1.5]
    ref = old + (torch.rand(b, length, generator=g) - 0.5) * 0.4
    adv = torch.randn(b, generator=g)
    mask = (torch.rand(b, length, generator=g) > 0.25).long()
    mask[:, 0] = 1
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize(
    ("eps_low", "eps_high", "beta"), [(0.2, 0.2, 0.0), (0.2, 0.28, 0.0), (0.2, 0.28, 0.04)]
)
def test_clipped_surrogate_equals_trl(loss_type, eps_low, eps_high, beta):
    logp, old, ref, adv, mask = _batch()
    max_len = 7  # dr_grpo divides by the configured max completion length, not the batch's
    ours, _ = clipped_surrogate(
        logp, old, adv, mask, eps_low=eps_low, eps_high=eps_high, loss_type=loss_type,
        max_len=max_len, ref_logp=ref, beta=beta,
    )  # fmt: skip
    theirs = _trl_loss(
        logp, old, adv, mask, loss_type=loss_type, eps_low=eps_low, eps_high=eps_high,
        beta=beta, ref=ref, max_len=max_len,
    )  # fmt: skip
    assert torch.allclose(ours, theirs, atol=1e-6), (float(ours), float(theirs))


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_group_advantages_equal_trl(scale_rewards):
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.2, 0.2, 0.2, 0.9, 0.1, 0.0, 1.0])
    ours = group_advantages(rewards, 4, scale_rewards)
    theirs = _trl_advantages(rewards, 4, scale_rewards)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_group_advantages_skip_errored_rollouts_like_trl():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0, 1.0, 1.0])
    ours = group_advantages(rewards, 3)
    assert torch.allclose(ours, _trl_advantages(rewards, 3, "group"), atol=1e-6)
    assert ours[1] == 0.0
    # the errored rollout does not drag the group mean: the other two are +-1/sqrt(2)-normalised
    assert ours[0] > 0 > ours[2] and torch.isclose(ours[0], -ours[2])


def test_all_equal_group_gives_zero_advantage_without_nan():
    adv = group_advantages([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 4)
    assert torch.equal(adv, torch.zeros(8))


def test_clip_boundaries_for_eps_and_eps_high():
    # ratios 0.7 / 0.8 / 1.0 / 1.2 / 1.28 / 1.5 against positive and negative advantages
    ratios = torch.tensor([[0.7, 0.8, 1.0, 1.2, 1.28, 1.5]])
    old = torch.zeros_like(ratios)
    logp = ratios.log().requires_grad_(True)
    mask = torch.ones_like(ratios)
    for sign in (1.0, -1.0):
        adv = torch.tensor([sign])
        loss, stats = clipped_surrogate(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
        (grad,) = torch.autograd.grad(loss, logp)
        if sign > 0:  # A > 0: only ratios above 1 + eps_high = 1.28 are silenced
            assert [bool(g != 0) for g in grad[0]] == [True, True, True, True, True, False]
            assert stats.clip_frac == pytest.approx(1 / 6)
        else:  # A < 0: only ratios below 1 - eps = 0.8 are silenced
            assert [bool(g != 0) for g in grad[0]] == [False, True, True, True, True, True]
            assert stats.clip_frac == pytest.approx(1 / 6)
    # the clipped value itself: A = 1, ratio 1.5 counts as 1.28
    last = ratios.log()[:, -1:]
    loss, _ = clipped_surrogate(last, old[:, -1:], torch.tensor([1.0]), mask[:, -1:], eps_high=0.28)
    assert float(loss) == pytest.approx(-1.28)


def test_k3_kl_is_zero_at_reference_and_positive_elsewhere():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(k3_kl(logp, logp), torch.zeros(3))
    assert bool((k3_kl(logp, logp + 0.3) > 0).all())


def test_aggregations_on_a_hand_made_batch():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert float(aggregate(per_token, mask, "grpo")) == pytest.approx((2.0 + 4.0) / 2)
    assert float(aggregate(per_token, mask, "dapo")) == pytest.approx(10.0 / 4)
    assert float(aggregate(per_token, mask, "dr_grpo", max_len=5)) == pytest.approx(10.0 / 10)
    with pytest.raises(ValueError, match="loss_type"):
        aggregate(per_token, mask, "mean")


def test_discounted_returns_and_archer_advantages_by_hand():
    g = discounted_returns(1.0, 3, 0.9)
    assert torch.allclose(g, torch.tensor([0.81, 0.9, 1.0]))
    values = torch.tensor([0.2, 0.5, 0.4])
    # A(0) = V1 - V0, A(1) = V2 - V1, A(2) = R - V2
    assert torch.allclose(turn_td_advantages(values, 1.0), torch.tensor([0.3, -0.1, 0.6]))
    assert torch.allclose(turn_td_advantages(torch.tensor([0.7]), 0.0), torch.tensor([-0.7]))
    # GAE: A(2) = 0.6, A(1) = -0.1 + 0.5 * 0.6 = 0.2, A(0) = 0.3 + 0.5 * 0.2 = 0.4
    assert torch.allclose(turn_td_advantages(values, 1.0, 0.5), torch.tensor([0.4, 0.2, 0.6]))
    # lam 1: the Monte Carlo return minus the baseline, R - V(s_t)
    assert torch.allclose(turn_td_advantages(values, 1.0, 1.0), 1.0 - values)
    with pytest.raises(ValueError, match="lam"):
        turn_td_advantages(values, 1.0, 1.5)


def test_value_mse_and_nll():
    assert float(value_mse(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))) == pytest.approx(
        0.25
    )
    logp = torch.tensor([[-1.0, -3.0], [-2.0, 0.0]])
    assert float(nll(logp, torch.tensor([[1, 1], [1, 0]]))) == pytest.approx(2.0)
    assert float(nll(logp[:, :1], weights=torch.tensor([1.0, 0.0]))) == pytest.approx(1.0)
