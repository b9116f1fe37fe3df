"""Rollout worker and learner in this process (no Ray): what a rollout records, the learner's
first ratio, its refusals, and the exploration mask. A tiny model on real networkx tasks."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def rollouts(tiny_model_dir, small_tasks):
    from rl.rollout import RolloutConfig, RolloutWorker

    train = [t for t in small_tasks if t.split == "train"]
    worker = RolloutWorker(str(tiny_model_dir), RolloutConfig(samples=3, mask_share=0.6), train)
    return worker, worker.rollout(train[:5], iteration=0, seed=3), train[:5]


def test_a_rollout_records_what_the_learner_needs(rollouts):
    worker, ro, tasks = rollouts
    N, K = 15, worker.cfg.sampler.steps
    assert len(ro) == N and ro.input_ids.shape[0] == N
    assert ro.task_ids == [t.id for t in tasks for _ in range(3)]
    assert ro.group.tolist() == [g for g in range(5) for _ in range(3)]
    assert ro.step_mask.shape == (N, K) and ro.step_mask.any()
    # valid steps are a prefix of each row, and the values are probabilities
    m = ro.step_mask
    assert not (m[:, 1:] & ~m[:, :-1]).any()
    v = ro.values(worker.model.special.pad).exp()
    assert ((v > 0) & (v <= 1)).all()
    assert ro.final_log_v.shape == (N,) and (ro.final_log_v <= 0).all()
    # the same tasks and seed give the same samples
    again = worker.rollout(tasks, iteration=0, seed=3)
    assert again.texts == ro.texts
    assert torch.equal(again.trajectory.logprobs, ro.trajectory.logprobs)


def test_the_first_ratio_is_one_and_the_update_moves_the_policy(tiny_model_dir, rollouts):
    from rl.learner import Learner, LearnerConfig

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(epochs=1, minibatch=64, step_subsample=0, lr=1e-3))
    before = {k: v.clone() for k, v in learner.weights().items()}
    rewards = torch.tensor([1.0, 0.0, 0.5] * 5)
    metrics = learner.train([ro], [rewards])
    assert metrics["rl/optimizer_steps"] == 1.0
    # one minibatch: the ratio is taken before the step, against the recorded log-probs
    assert metrics["rl/approx_kl"] < 1e-6 and metrics["rl/clip_frac"] == 0.0
    assert metrics["rl/kl_ref"] < 1e-6
    assert math.isfinite(metrics["rl/value_loss"]) and metrics["rl/value_loss"] > 0
    after = learner.weights()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert learner.info()["updates"] == 1


def test_train_layers_moves_only_the_top_layers_and_the_heads(tiny_model_dir, rollouts):
    from rl.learner import Learner, LearnerConfig, RLError

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(epochs=1, minibatch=64, step_subsample=0, lr=1e-3,
                                                         train_layers=1))
    n = learner.policy.backbone.config.num_hidden_layers
    before = {k: v.clone() for k, v in learner.weights().items()}
    learner.train([ro], [torch.tensor([1.0, 0.0, 0.5] * 5)])
    after = learner.weights()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    top = f"backbone.layers.{n - 1}."
    assert moved and all(k.startswith((top, "backbone.final_norm", "head_norm", "lm_head.bias", "critic_head"))
                         for k in moved)
    assert any(k.startswith(top) for k in moved) and "lm_head.bias" in moved
    assert not any(k.startswith(("backbone.embeddings", "lm_head.weight")) for k in moved)  # tied to the embeddings
    # a resume under another train_layers is refused with the fix, not a torch size error
    with pytest.raises(RLError, match="another learner.train_layers"):
        Learner(str(tiny_model_dir), LearnerConfig(train_layers=0)).load_state(learner.state())
    with pytest.raises(RLError, match=f"at most {n}"):
        Learner(str(tiny_model_dir), LearnerConfig(train_layers=n + 1))
    with pytest.raises(RLError, match="must be >= 0"):
        LearnerConfig(train_layers=-1)


def test_samples_without_a_reward_are_left_out(tiny_model_dir, rollouts):
    from rl.learner import Learner, LearnerConfig

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(epochs=1, minibatch=64, advantage="group"))
    nan = torch.full((15,), float("nan"))
    advs = learner.advantages([ro], [nan])
    assert not advs[0][1].any()  # no valid step
    metrics = learner.train([ro], [nan])
    assert metrics["rl/optimizer_steps"] == 0.0


def test_refusals_name_the_fix(tiny_model_dir, rollouts):
    from rl.learner import Learner, LearnerConfig, RLError

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig())
    with pytest.raises(RLError, match=r"clip: \[0, 1\]"):
        learner.train([ro], [torch.full((15,), 2.0)])
    with pytest.raises(RLError, match="known: gae, group, group_mean, mc"):
        LearnerConfig(advantage="gea")
    with pytest.raises(RLError, match="num_gpus=0"):
        if not torch.cuda.is_available():
            Learner(str(tiny_model_dir), LearnerConfig(num_gpus=1))
        else:  # pragma: no cover - a GPU machine
            raise RLError("learner.num_gpus=0")


def test_the_exploration_mask_never_touches_eos_or_pad(tiny_tokenizer):
    from pretrain.tokenizer import SpecialIds
    from rl.rollout import explore_mask

    s = SpecialIds.from_tokenizer(tiny_tokenizer)
    slot = torch.tensor([[50, 51, 52, s.eos, s.pad, s.pad], [s.mask, 60, s.eos, s.pad, s.pad, s.pad]])
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros_like(slot, dtype=torch.bool)
    for _ in range(200):
        seen |= explore_mask(slot, 1.0, g, s)
    assert seen.tolist() == [[True, True, True, False, False, False], [False, True, False, False, False, False]]
    assert not explore_mask(slot, 0.0, g, s).any()


def test_bf16_learner_runs_on_cpu(tiny_model_dir, rollouts):
    """The GPU setting (precision bf16) on CPU autocast: same code path, finite metrics."""
    from rl.learner import Learner, LearnerConfig

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(epochs=1, minibatch=64, precision="bf16"))
    metrics = learner.train([ro], [torch.tensor([1.0, 0.0, 0.5] * 5)])
    assert metrics["rl/optimizer_steps"] == 1.0
    assert all(math.isfinite(v) for v in metrics.values())
    assert learner.info()["device"] == "cpu"


def test_entropy_bonus_gives_finite_gradients(tiny_model_dir, rollouts):
    """Banned tokens hold -inf log-probs; the entropy's backward must not turn them into NaN."""
    from rl.learner import Learner, LearnerConfig

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(epochs=1, minibatch=64, entropy_coef=0.01, lr=1e-3))
    learner.train([ro], [torch.tensor([1.0, 0.0, 0.5] * 5)])
    assert all(torch.isfinite(w).all() for w in learner.weights().values())


def test_group_baselines_ignore_samples_without_a_reward(tiny_model_dir, rollouts):
    from rl.advantages import group
    from rl.learner import Learner, LearnerConfig

    _, ro, _ = rollouts
    learner = Learner(str(tiny_model_dir), LearnerConfig(advantage="group", whiten=False))
    r = torch.tensor([1.0, 0.0, float("nan")] * 5)
    adv, mask = learner.advantages([ro], [r])[0]
    keep = torch.tensor([True, True, False] * 5)
    # column 0 is the learned start choice, taken by every sample; then the denoising steps
    actions = torch.cat([torch.ones(15, 1, dtype=torch.bool), ro.step_mask], dim=1)
    expect = group(r[keep], None, actions[keep], ro.group[keep])
    assert torch.allclose(adv[keep], expect) and not mask[~keep].any()
    assert torch.equal(mask[keep], actions[keep])


def test_rl_sampling_refuses_top_p():
    from pretrain.sampler import SamplerConfig
    from rl.rollout import RolloutConfig

    with pytest.raises(ValueError, match="RL needs top_p=1"):
        RolloutConfig(sampler=SamplerConfig(top_p=0.9, temperature=1.0))


@pytest.fixture(scope="module")
def wide_rollouts(tiny_tokenizer, small_tasks, tmp_path_factory):
    """Rollouts of a tiny model whose slot fits most targets, so tasks have several candidate starts."""
    from pretrain.model import BackboneConfig, DiffusionLM
    from rl.rollout import RolloutConfig, RolloutWorker

    folder = tmp_path_factory.mktemp("rl-wide") / "model"
    cfg = BackboneConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)
    DiffusionLM.build(cfg, tiny_tokenizer, slot_len=64, max_prompt=48, seed=0).save(folder)
    train = [t for t in small_tasks if t.split == "train"]
    # an untrained model's likelihoods differ by many nats: a high temperature spreads the draws
    worker = RolloutWorker(str(folder), RolloutConfig(samples=4, mask_share=0.3, start_temperature=50.0, own_share=0.0), train)
    return folder, worker, worker.rollout(train[:5], iteration=0, seed=5), train[:5]


def test_a_rollout_records_its_start_choice(wide_rollouts):
    from rl.learner import Learner, LearnerConfig
    from rl.ppo import segment_log_softmax

    model_dir, worker, ro, tasks = wide_rollouts
    st = ro.start
    assert len(st.owner) > len(tasks)  # some task has a choice to make
    assert st is not None and st.temperature == 50.0
    # every task has candidates; each sample's start is one of its own task's
    assert set(st.owner.tolist()) == set(range(len(tasks)))
    assert st.owner[st.chosen].tolist() == [g for g in range(5) for _ in range(4)]
    # the probabilities of a task's candidates sum to one, and log V before the choice is a log-probability
    learner = Learner(str(model_dir), LearnerConfig())
    with torch.no_grad():
        logp, entropy = learner._start_log_probs(learner.policy, st, torch.arange(len(ro)))
    assert torch.allclose(logp, st.logp, atol=1e-4)  # the learner recomputes what was sampled
    assert (entropy >= 0).all() and (st.log_value <= 0).all()
    # the slot each sample starts from is its candidate's, up to the positions remasked for editing
    L = worker.model.slot_len
    mask_id = worker.model.special.mask
    start_slot = st.input_ids[st.chosen, -L:]
    kept = ro.input_ids[:, -L:] != mask_id
    assert torch.equal(ro.input_ids[:, -L:][kept], start_slot[kept])
    # the drawn choices follow the distribution: a one-candidate task always has log-prob 0
    probs = segment_log_softmax(torch.zeros(len(st.owner)), st.owner).exp()
    single = [i for i in range(5) if int((st.owner == i).sum()) == 1]
    assert all(float(probs[st.owner == i].sum()) == pytest.approx(1.0) for i in range(5))
    for i in single:
        assert torch.allclose(st.logp[st.owner[st.chosen] == i], torch.zeros(1))


def test_the_start_choice_learns_toward_the_rewarded_candidate(wide_rollouts):
    from rl.learner import Learner, LearnerConfig

    model_dir, _, ro, _ = wide_rollouts
    st = ro.start
    # a task whose samples started from different candidates: reward one of them
    task = next(i for i in range(5) if len(set(st.chosen[st.owner[st.chosen] == i].tolist())) > 1)
    rows = torch.nonzero(st.owner[st.chosen] == task).flatten()
    good = int(st.chosen[rows[0]])
    rewards = torch.full((len(ro),), float("nan"))
    rewards[rows] = (st.chosen[rows] == good).float()
    learner = Learner(str(model_dir), LearnerConfig(advantage="group", lr=3e-3, epochs=4, kl_coef=0.0,
                                                         step_subsample=1))
    with torch.no_grad():
        before = learner._start_log_probs(learner.policy, st, rows)[0][0]
    metrics = learner.train([ro], [rewards])
    with torch.no_grad():
        after = learner._start_log_probs(learner.policy, st, rows)[0][0]
    assert float(after) > float(before)
    assert {"start/policy_loss", "start/kl_ref", "start/entropy", "start/clip_frac"} <= set(metrics)
    # the one rewarded group, sampled by the reference itself: both pick the same sample
    most_likely = rows[int(torch.argmax(st.logp[rows]))]
    assert metrics["start/greedy_reward"] == metrics["start/ref_greedy_reward"] == float(rewards[most_likely])
    assert metrics["start/greedy_gain"] == 0.0


def test_an_enumerated_start_takes_every_candidate_weighted_by_its_probability(wide_rollouts, small_tasks):
    from rl.learner import Learner, LearnerConfig
    from rl.rollout import RolloutConfig, RolloutWorker, enumeration_weights

    model_dir, _, _, tasks = wide_rollouts
    train = [t for t in small_tasks if t.split == "train"]
    worker = RolloutWorker(str(model_dir), RolloutConfig(samples=4, start_top=4, start_draw="all", mask_share=0.3, own_share=0.0,
                                                         start_temperature=50.0), train)
    ro = worker.rollout(tasks, iteration=0, seed=5)
    st = ro.start
    assert st is not None and st.weight is not None
    for i in range(len(tasks)):
        members = torch.nonzero(st.owner == i).flatten()
        took = st.chosen[i * 4:(i + 1) * 4]
        assert set(took.tolist()) == set(members.tolist())  # each of its (at most 4) candidates
        assert float(st.weight[i * 4:(i + 1) * 4].mean()) == pytest.approx(1.0, rel=1e-5)  # all of π's mass
    assert torch.allclose(st.weight, enumeration_weights(st.chosen, st.logp.exp(), 4))
    # the learner trains on it: a rewarded candidate gains probability
    task = next(i for i in range(len(tasks)) if int((st.owner == i).sum()) > 1)
    rows = torch.arange(task * 4, task * 4 + 4)
    good = int(st.chosen[rows[0]])
    rewards = torch.full((len(ro),), float("nan"))
    rewards[rows] = (st.chosen[rows] == good).float()
    learner = Learner(str(model_dir), LearnerConfig(advantage="group_mean", lr=3e-3, epochs=4, kl_coef=0.0,
                                                     step_subsample=1))
    with torch.no_grad():
        before = learner._start_log_probs(learner.policy, st, rows)[0][0]
    learner.train([ro], [rewards])
    with torch.no_grad():
        after = learner._start_log_probs(learner.policy, st, rows)[0][0]
    assert float(after) > float(before)
    with pytest.raises(ValueError, match="start_draw"):
        RolloutConfig(start_draw="each")


def test_a_greedy_start_is_not_an_action(tiny_model_dir, small_tasks):
    from rl.learner import Learner, LearnerConfig
    from rl.rollout import RolloutConfig, RolloutWorker

    train = [t for t in small_tasks if t.split == "train"]
    worker = RolloutWorker(str(tiny_model_dir), RolloutConfig(samples=2, start_temperature=0.0, mask_share=0.6), train)
    ro = worker.rollout(train[:3], iteration=0, seed=1)
    assert ro.start is None
    adv, mask = Learner(str(tiny_model_dir), LearnerConfig(advantage="group")).advantages([ro], [torch.ones(6)])[0]
    assert mask.shape == ro.step_mask.shape
    with pytest.raises(ValueError, match="start_temperature"):
        RolloutConfig(start_temperature=-1.0)


def test_split_credit_gives_the_start_its_own_reward_and_the_edits_their_change(wide_rollouts):
    from rl.learner import Learner, LearnerConfig, RLError

    model_dir, worker, ro, tasks = wide_rollouts
    st, L = ro.start, worker.model.slot_len
    # each sample's start text is its chosen candidate's slot, decoded before any edit
    assert ro.start_texts == [worker.encoder.decode(st.input_ids[int(c), -L:].tolist()) for c in st.chosen]
    N = len(ro)
    g = torch.Generator().manual_seed(3)
    r = torch.rand(N, generator=g)
    r0 = torch.rand(N, generator=g)
    r0[1] = float("nan")  # its start was not scored: the sample is left out
    learner = Learner(str(model_dir), LearnerConfig(advantage="group_mean", credit="split", whiten=False))
    ((adv, mask),) = learner.advantages([ro], [r], [r0])
    assert not mask[1].any()
    for i in range(N):
        if i == 1:
            continue
        mates = [j for j in range(N) if ro.group[j] == ro.group[i] and j != 1]
        assert float(adv[i, 0]) == pytest.approx(float(r0[i] - r0[mates].mean()), abs=1e-6)
        steps = mask[i, 1:]
        assert torch.allclose(adv[i, 1:][steps], (r[i] - r0[i]).expand(int(steps.sum())))
        assert not adv[i, 1:][~steps].any()
    # an edit that changed nothing earns nothing, whatever the start earned
    ((adv2, _),) = learner.advantages([ro], [r0.nan_to_num(0.5)], [r0.nan_to_num(0.5)])
    assert not adv2[:, 1:].any()
    # whitened: the start column to mean 0 and std 1; the steps scaled by the same std, not
    # shifted, so an edit that changed nothing still earns nothing
    white = Learner(str(model_dir), LearnerConfig(advantage="group_mean", credit="split", whiten=True))
    ((wadv, wmask),) = white.advantages([ro], [r], [r0])
    starts = adv[mask[:, 0], 0]
    assert float(wadv[wmask[:, 0], 0].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(wadv[wmask[:, 0], 0].std()) == pytest.approx(1.0, abs=1e-4)
    steps = wmask.clone()
    steps[:, 0] = False
    assert torch.allclose(wadv[steps], adv[steps] / (starts.std() + 1e-6), atol=1e-5)
    ((wadv2, _),) = white.advantages([ro], [r0.nan_to_num(0.5)], [r0.nan_to_num(0.5)])
    assert not wadv2[:, 1:].any()
    with pytest.raises(RLError, match="credit='split' needs the reward of each sample's start"):
        learner.advantages([ro], [r])
    metrics = learner.train([ro], [r], [r0])
    assert metrics["rl/optimizer_steps"] >= 1
    with pytest.raises(RLError, match="credit"):
        LearnerConfig(credit="steps")
    from rl.config import RLConfig
    from rl.rollout import RolloutConfig

    with pytest.raises(RLError, match="start_temperature > 0"):
        RLConfig(learner=LearnerConfig(credit="split"), rollout=RolloutConfig(start_temperature=0.0))


def test_half_of_each_group_is_the_policys_own_sample(tiny_model_dir, small_tasks):
    from rl.rollout import RolloutConfig, RolloutWorker

    train = [t for t in small_tasks if t.split == "train"]
    worker = RolloutWorker(str(tiny_model_dir), RolloutConfig(samples=4, own_share=0.5, mask_share=0.3), train)
    ro = worker.rollout(train[:3], iteration=0, seed=0)
    assert worker.own_samples() == 2
    L = worker.model.slot_len
    for i in range(3):
        starts = ro.start_texts[i * 4:(i + 1) * 4]
        assert starts[2:] == ["", ""]  # the last two began from an all-[MASK] slot: nothing retrieved
        assert all(s for s in starts[:2])  # the first two edit a retrieved start
        # the own rows' slots were all [MASK] when the trajectory began; their start term weighs 0
        assert ro.start.weight[i * 4 + 2:(i + 1) * 4].eq(0).all() and ro.start.weight[i * 4:i * 4 + 2].gt(0).all()
    assert ro.input_ids[:, -L:].eq(worker.model.special.mask).all(dim=1)[2::4].all()
