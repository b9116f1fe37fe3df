"""The learner's math against hand-computed values: advantages, the PPO loss, the value readout."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rl.advantages import (AdvantageError, gae, get_advantage, group, group_mean, known_advantages, mc,
                           register_advantage)
from rl.ppo import (explained_variance, greedy_rewards, group_minibatches, kl_k3, ppo_loss, segment_log_softmax,
                    subsample_steps, value_loss, value_readout)

V3 = torch.tensor([[0.2, 0.5, 0.8]])
FULL = torch.tensor([[True, True, True]])


def test_gae_by_hand():
    # δ = (0 + .5 − .2, 0 + .8 − .5, 1 + 0 − .8) = (.3, .3, .2); λ = .5: A2 = .2, A1 = .3 + .5·.2, A0 = .3 + .5·.4
    adv = gae(torch.tensor([1.0]), V3, FULL, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.2]]))
    # λ = 1 is Monte-Carlo (γ = 1), λ = 0 the one-step TD error
    assert torch.allclose(gae(torch.tensor([1.0]), V3, FULL, lam=1.0), mc(torch.tensor([1.0]), V3, FULL))
    assert torch.allclose(gae(torch.tensor([1.0]), V3, FULL, lam=0.0), torch.tensor([[0.3, 0.3, 0.2]]))


def test_gae_with_trajectories_of_different_lengths_and_a_discount():
    values = torch.tensor([[0.2, 0.5, 0.8], [0.4, 0.6, 9.0]])  # row 1 stops after two steps: 9.0 is never read
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv = gae(torch.tensor([1.0, 0.0]), values, mask, lam=0.5, gamma=0.9)
    # row 1: δ1 = 0 − .6, δ0 = .9·.6 − .4 = .14; A0 = .14 + .45·(−.6)
    assert torch.allclose(adv[1], torch.tensor([0.14 - 0.45 * 0.6, -0.6, 0.0]), atol=1e-6)
    # row 0: δ = (.9·.5 − .2, .9·.8 − .5, 1 − .8) = (.25, .22, .2); A1 = .22 + .45·.2, A0 = .25 + .45·A1
    a1 = 0.22 + 0.45 * 0.2
    assert torch.allclose(adv[0], torch.tensor([0.25 + 0.45 * a1, a1, 0.2]), atol=1e-6)


def test_mc_and_group_by_hand():
    mask = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    r = torch.tensor([1.0, 0.0, 0.5, 0.7])
    assert torch.allclose(mc(r, torch.full((4, 2), 0.25), mask), torch.tensor([[0.75, 0.75], [-0.25, 0], [0.25, 0.25],
                                                                              [0.45, 0.45]]))
    groups = torch.tensor([0, 0, 1, 2])  # tasks: two samples of task 0, one each of tasks 1 and 2
    adv = group(r, None, mask, groups)
    std = math.sqrt(0.5)  # sample std of (1, 0)
    assert torch.allclose(adv[0], torch.full((2,), 0.5 / std), atol=1e-4)
    assert torch.allclose(adv[1], torch.tensor([-0.5 / std, 0.0]), atol=1e-4)
    assert (adv[2:] == 0).all()  # a group of one has nothing to compare with
    assert torch.allclose(group(r, None, mask, groups, scale=False)[0], torch.full((2,), 0.5))
    # group_mean keeps the reward's scale: a spread of 0.25 moves a quarter as much as one of 1
    small = group_mean(torch.tensor([0.25, 0.0, 1.0, 0.0]), None, mask, torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(small[:, 0], torch.tensor([0.125, -0.125, 0.5, -0.5]))
    assert get_advantage("group_mean") is group_mean


def test_advantage_registry():
    assert {"gae", "mc", "group"} <= set(known_advantages())
    assert get_advantage("gae") is gae
    with pytest.raises(AdvantageError, match="known: .*gae.*group.*did you mean 'gae'"):
        get_advantage("gea")

    @register_advantage("test_constant")
    def constant(rewards, values, mask, groups=None, **_):
        return mask.float()

    assert get_advantage("test_constant") is constant
    with pytest.raises(AdvantageError, match="already registered"):
        register_advantage("gae")(constant)
    with pytest.raises(AdvantageError, match="critic-free"):
        gae(torch.tensor([1.0]), None, FULL)
    with pytest.raises(AdvantageError, match="prefix"):
        mc(torch.tensor([1.0]), V3, torch.tensor([[True, False, True]]))


def test_ppo_loss_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.9, 1.0]])).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    mask = torch.tensor([[True, True, False]])
    loss, m = ppo_loss(new, old, adv, mask, clip=0.2)
    # step 0: ρ = 1.5, A = 1 → min(1.5, 1.2) = 1.2; step 1: ρ = .9, A = −1 → min(−.9, −.9) = −.9; step 2 masked
    assert loss.item() == pytest.approx(-(1.2 - 0.9) / 2)
    assert m["rl/clip_frac"].item() == pytest.approx(0.5)
    loss.backward()
    assert new.grad[0, 0] == 0  # clipped: no gradient through that step
    assert new.grad[0, 1].item() == pytest.approx(-0.9 * -1 / 2)  # d/dlogp of −ρA/2 = −ρA/2
    assert new.grad[0, 2] == 0


def test_ppo_kl_to_reference_and_entropy():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    base, _ = ppo_loss(logp, logp, torch.zeros(1, 2), mask)
    with_kl, m = ppo_loss(logp, logp, torch.zeros(1, 2), mask, ref_logp=ref, kl_coef=0.1,
                          entropy=torch.tensor([[1.0, 3.0]]), entropy_coef=0.01)
    k3 = (0.5 - math.log(0.5) - 1) / 2  # step 0: d = log(.25/.5); step 1: d = 0
    assert m["rl/kl_ref"].item() == pytest.approx(k3, rel=1e-5)
    assert (with_kl - base).item() == pytest.approx(0.1 * k3 - 0.01 * 2.0, rel=1e-5)
    assert kl_k3(torch.tensor(0.3), torch.tensor(0.3)).item() == 0.0


def test_weighted_ppo_scales_the_surrogate_and_the_kl_and_weighs_the_metrics():
    logp = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    adv = torch.tensor([[1.0, -2.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    w = torch.tensor([[3.0, 0.5]])
    loss, m = ppo_loss(logp, old, adv, mask, clip=0.2, ref_logp=ref, kl_coef=0.1, weights=w)
    # step 0: ρ = 1, A = 1 → −1; step 1: ρ = .5, A = −2 → −min(−1, −1.6) = 1.6; k3 = (.5 − log .5 − 1, 0)
    k3 = 0.5 - math.log(0.5) - 1
    assert loss.item() == pytest.approx((3.0 * -1.0 + 0.5 * 1.6) / 2 + 0.1 * 3.0 * k3 / 2, rel=1e-5)
    # the metrics are weighted means: what they estimate under the distribution the weights stand for
    assert m["rl/policy_loss"].item() == pytest.approx((3.0 * -1.0 + 0.5 * 1.6) / 3.5, rel=1e-5)
    assert m["rl/kl_ref"].item() == pytest.approx(3.0 * k3 / 3.5, rel=1e-5)
    assert m["rl/clip_frac"].item() == pytest.approx(0.5 / 3.5, rel=1e-5)  # step 1 is clipped


def test_enumerated_starts_give_the_exact_expected_gradient():
    from rl.rollout import enumeration_weights

    # two tasks of a group of 4: one with 4 candidates taken once each, one with 2 taken twice each
    scores = torch.tensor([0.3, -1.0, 2.0, 0.1, 0.5, -0.5], requires_grad=True)
    owner = torch.tensor([0, 0, 0, 0, 1, 1])
    reward = torch.tensor([1.0, 0.0, 0.25, 0.5, 0.0, 1.0])
    picks = torch.tensor([0, 1, 2, 3, 4, 5, 4, 5])
    logp = segment_log_softmax(scores, owner, 2)
    w = enumeration_weights(picks, logp.exp().detach()[picks], 4)
    assert torch.allclose(w.view(2, 4).mean(1), torch.ones(2))  # every candidate taken: all the mass
    # the weighted PPO surrogate at the behaviour policy: its gradient is that of −Σ_c π(c) R(c)
    adv = (reward[picks].view(2, 4) - reward[picks].view(2, 4).mean(1, keepdim=True)).flatten()
    loss, _ = ppo_loss(logp[picks][:, None], logp.detach()[picks][:, None], adv[:, None],
                       torch.ones(8, 1, dtype=torch.bool), weights=w[:, None])
    (grad,) = torch.autograd.grad(loss, scores)
    p = segment_log_softmax(scores, owner, 2).exp()
    expected = torch.zeros(2).index_add(0, owner, p * reward)
    # ppo_loss averages over the 8 samples, each group of 4 stands for 4 × its task's expectation
    (want,) = torch.autograd.grad(-expected.sum() * 4 / 8, scores)
    assert torch.allclose(grad, want, atol=1e-6)


def test_value_readout_and_its_bce():
    z = torch.tensor([[2.0, 0.0, -1.0], [5.0, 5.0, 5.0]])
    log_v = value_readout(z, torch.tensor([[True, True, False], [True, True, True]]))
    sig = torch.sigmoid(z)
    assert torch.allclose(log_v.exp(), torch.stack([sig[0, 0] * sig[0, 1], sig[1].prod()]))
    r = torch.tensor([1.0, 0.0])
    v = log_v.exp()
    want = -(torch.log(v[0]) + torch.log(1 - v[1])) / 2
    assert value_loss(log_v, r).item() == pytest.approx(want.item(), rel=1e-5)
    # a long slot underflows V in linear space; the log-space readout and loss stay finite with a gradient
    long = torch.full((1, 48), -3.0, requires_grad=True)
    lv = value_readout(long)
    loss = value_loss(lv, torch.tensor([1.0]))
    loss.backward()
    assert torch.isfinite(loss) and long.grad.abs().sum() > 0


def test_subsample_steps_and_explained_variance():
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    sub = subsample_steps(mask, 3, torch.Generator().manual_seed(0))
    assert sub.sum(-1).tolist() == [3, 2] and not (sub & ~mask).any()
    assert torch.equal(subsample_steps(mask, 0), mask)
    t = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert explained_variance(t, t) == 1.0
    assert explained_variance(torch.full((4,), 0.5), t) == pytest.approx(0.0)
    assert math.isnan(explained_variance(t, torch.ones(4)))


def test_minibatches_hold_whole_task_groups():
    # 5 tasks of 4 samples, task 2 with one sample left out (no reward): rows are sample indices
    rows = torch.tensor([i for i in range(20) if i != 9])
    groups = rows // 4
    batches = group_minibatches(groups, rows, 8, random.Random(0))
    seen = torch.cat(batches)
    assert sorted(seen.tolist()) == rows.tolist()  # every sample once
    for b in batches:
        tasks = set((b // 4).tolist())
        assert all(set(rows[groups == g].tolist()) <= set(b.tolist()) for g in tasks)  # whole groups
    # a minibatch closes at 8 or more samples: 4 + 4, or 3 + 4 + 4; the rest is the last
    assert all(len(b) >= 8 for b in batches[:-1]) and len(batches) == 2
    # the order is the generator's: another seed, other minibatches
    orders = {tuple(tuple(b.tolist()) for b in group_minibatches(groups, rows, 8, random.Random(s))) for s in range(8)}
    assert len(orders) > 1


def test_segment_log_softmax_and_entropy_are_per_segment():
    from rl.ppo import segment_entropy, segment_log_softmax

    scores = torch.tensor([1.0, 3.0, -2.0, 0.5, 0.5, 100.0])
    seg = torch.tensor([0, 0, 0, 1, 1, 2])
    logp = segment_log_softmax(scores, seg)
    for s in range(3):
        part = scores[seg == s]
        assert torch.allclose(logp[seg == s], torch.log_softmax(part, 0))
        p = torch.softmax(part, 0)
        assert torch.allclose(segment_entropy(logp, seg)[s], -(p * p.log()).sum())
    assert torch.allclose(segment_entropy(logp, seg)[1], torch.tensor(math.log(2)))
    # differentiable: the gradient of a chosen candidate's log-prob sums to zero within its segment
    x = scores.clone().requires_grad_(True)
    segment_log_softmax(x, seg)[1].backward()
    assert torch.allclose(x.grad[:3].sum(), torch.tensor(0.0), atol=1e-6) and (x.grad[3:] == 0).all()


def test_the_start_action_is_the_first_step_of_gae():
    # A start column whose value is the value before the choice: at lambda = 1 its advantage is
    # R - V_before; with no denoising step after it, R - V_before at any lambda.
    from rl.advantages import gae

    r = torch.tensor([1.0, 0.0])
    values = torch.tensor([[0.4, 0.5, 0.8], [0.3, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    a1 = gae(r, values, mask, lam=1.0)
    assert torch.allclose(a1[:, 0], r - values[:, 0])
    a = gae(r, values, mask, lam=0.5)
    # row 0: d2 = 1 - .8, d1 = .8 - .5, d0 = .5 - .4; A0 = d0 + .5 d1 + .25 d2
    assert a[0, 0].item() == pytest.approx(0.1 + 0.5 * 0.3 + 0.25 * 0.2)
    assert a[1, 0].item() == pytest.approx(-0.3)


def test_greedy_rewards_take_each_groups_most_likely_sample_and_skip_unrewarded_groups():
    scores = torch.tensor([-1.0, -0.2, -3.0, -0.5, -0.1, -2.0, -0.3])
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 0.75, float("nan"), 1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    # group 0: the -0.2 sample (1.0); group 1: the -0.1 sample (0.75); group 2 has a sample without a reward
    assert greedy_rewards(scores, rewards, groups).tolist() == [1.0, 0.75]
    # another policy's scores pick other samples of the same groups
    other = torch.tensor([0.0, -1.0, -2.0, 0.0, -1.0, 0.0, 0.0])
    assert greedy_rewards(other, rewards, groups).tolist() == [0.0, 0.25]
    assert greedy_rewards(scores, torch.full((7,), float("nan")), groups).numel() == 0
