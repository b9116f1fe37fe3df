"""The composable diffusion loss: each modifier against hand-computed values on tiny tensors,
ordering rules, the bias controller and its checkpoint state, registry and config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pretrain import losses
from pretrain.corruption import KIND_CONTEXT, KIND_IDENTITY, KIND_MASKED, KIND_WRONG, corrupt
from pretrain.losses import (
    DiffusionLoss, LossConfigError, LossOrderError, LossState, Modifier, build_modifier,
    critic_loss, known_modifiers, register_modifier,
)
from pretrain.tokenizer import SpecialIds

HERE = Path(__file__).resolve().parent

# Seven special ids, then two ordinary tokens (7, 8): V = 9.
SPECIAL = SpecialIds(pad=0, mask=1, wrong=2, eos=3, focal=4, prefix=5, slot=6)
V = 9
C, M, W, I = KIND_CONTEXT, KIND_MASKED, KIND_WRONG, KIND_IDENTITY
BUILTINS = {"dynamic_logit_bias", "task_weighting", "hard_negative_mining", "state_dependent_penalty",
            "entropy_penalty", "mask_ratio_weighting"}


def batch(kind, *, logits=None, weights=None, t=None, input_ids=None, targets=None):
    """A tiny batch: kind (B, T) list; uniform logits, weight 1 on the slot, target 7 by default."""
    kind = torch.tensor(kind)
    B, T = kind.shape
    if targets is None:
        targets = torch.full((B, T), 7)
        targets[kind == W] = SPECIAL.wrong
    if input_ids is None:
        input_ids = targets.clone()
        input_ids[kind == M] = SPECIAL.mask
        input_ids[kind == W] = 8
    return dict(
        logits=torch.zeros(B, T, V) if logits is None else logits,
        input_ids=torch.as_tensor(input_ids),
        targets=torch.as_tensor(targets),
        kind=kind,
        weights=(kind != C).float() if weights is None else torch.as_tensor(weights, dtype=torch.float32),
        t=torch.full((B,), 0.5) if t is None else torch.as_tensor(t, dtype=torch.float32),
        special=SPECIAL,
    )


def state_of(b) -> LossState:
    return LossState(**b)


def loss_of(modifiers, b):
    return DiffusionLoss.from_config(modifiers)(**b)


# --------------------------------------------------------------------------- reduction


def test_plain_cross_entropy_and_metrics_match_hand_values():
    logits = torch.zeros(1, 3, V)
    logits[0, 1, 7] = math.log(2)  # p(target) = 2 / (2 + 8)
    b = batch([[C, M, I]], logits=logits, weights=[[1.0, 1.0, 0.5]])  # the context weight is ignored
    loss, metrics = DiffusionLoss()(**b)
    expected = (1.0 * math.log(5) + 0.5 * math.log(9)) / 1.5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss/diffusion"] == pytest.approx(expected, rel=1e-6)
    assert metrics["loss/total"] == pytest.approx(expected, rel=1e-6)
    assert metrics["train/loss_tokens"] == 2
    assert metrics["train/masked_acc"] == 1.0  # argmax 7 == target at the masked position
    assert metrics["train/identity_acc"] == 0.0  # uniform: argmax 0 != 7
    assert "train/remask_acc" not in metrics  # no wrong positions: no accuracy, not NaN


def test_reduction_ignores_positions_without_weight():
    torch.manual_seed(0)
    kind = [[C, C, M, I, W], [C, M, M, I, I]]
    weights = [[0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.05, 1.0]]  # two slot positions at weight 0
    base = torch.randn(2, 5, V)
    b = batch(kind, weights=weights, logits=base.clone().requires_grad_())
    loss, _ = DiffusionLoss()(**b)
    loss.backward()
    dead = torch.tensor(weights) == 0
    assert torch.all(b["logits"].grad[dead] == 0)
    assert torch.all(b["logits"].grad[~dead].abs().sum(-1) > 0)

    changed = base.clone()
    changed[dead] = torch.randn(int(dead.sum()), V) * 10
    changed[0, 0, 0] = float("inf")  # not even a non-finite value at a weight-0 position leaks in
    again, _ = DiffusionLoss()(**batch(kind, weights=weights, logits=changed))
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)


def test_whole_rows_and_slot_only_give_the_same_loss_and_gradient():
    torch.manual_seed(0)
    kind = [[C, C, M, I, W], [C, C, I, M, M]]
    full = batch(kind, logits=torch.randn(2, 5, V, requires_grad=True))
    slot = {k: (v[:, 2:] if isinstance(v, torch.Tensor) and v.dim() > 1 else v) for k, v in full.items()}
    slot["logits"] = full["logits"].detach()[:, 2:].clone().requires_grad_()
    config = [{"name": "dynamic_logit_bias", "init": 1.0}, {"name": "entropy_penalty"},
              {"name": "hard_negative_mining", "mode": "hardest_k", "k": 1}]
    (a, ma), (b, mb) = loss_of(config, full), loss_of(config, slot)
    assert a.item() == pytest.approx(b.item(), rel=1e-6) and ma == pytest.approx(mb)
    a.backward()
    b.backward()
    assert torch.all(full["logits"].grad[:, :2] == 0)
    assert torch.allclose(full["logits"].grad[:, 2:], slot["logits"].grad, atol=1e-7)


def test_no_weight_left_gives_zero_with_a_graph():
    b = batch([[C, M]], weights=[[0.0, 0.0]], logits=torch.zeros(1, 2, V, requires_grad=True))
    loss, metrics = DiffusionLoss()(**b)
    assert loss.item() == 0.0 and metrics["train/loss_tokens"] == 0
    loss.backward()
    assert torch.all(b["logits"].grad == 0)
    context_only, metrics = loss_of([{"name": "dynamic_logit_bias"}, {"name": "entropy_penalty"}], batch([[C, C]]))
    assert context_only.item() == 0.0 and metrics["loss/entropy"] == 0.0


# --------------------------------------------------------------------------- modifiers


def test_dynamic_logit_bias_changes_loss_gradient_and_updates():
    b = batch([[M, I]], logits=torch.zeros(1, 2, V, requires_grad=True))
    loss_fn = DiffusionLoss.from_config([{"name": "dynamic_logit_bias", "init": math.log(2), "lr": 0.1,
                                          "target_prob": 0.05}])
    loss, metrics = loss_fn(**b)
    # Masked position: [MASK] logit log 2, so p(mask) = 2/10 and ℓ = log 10; identity: ℓ = log 9.
    assert loss.item() == pytest.approx((math.log(10) + math.log(9)) / 2, rel=1e-6)
    loss.backward()
    grad = b["logits"].grad
    p = torch.full((V,), 1 / 10)
    p[SPECIAL.mask] = 2 / 10
    onehot = torch.zeros(V)
    onehot[7] = 1
    assert torch.allclose(grad[0, 0], (p - onehot) / 2, atol=1e-6)  # dℓ/dlogits through the shift
    assert torch.allclose(grad[0, 1], (torch.full((V,), 1 / 9) - onehot) / 2, atol=1e-6)  # no bias off masked
    assert metrics["modifier/dynamic_logit_bias/mask_prob"] == pytest.approx(0.2, rel=1e-5)
    new_bias = math.log(2) + 0.1 * (0.05 - 0.2)  # observed above target: the bias goes down
    assert loss_fn.mask_logit_bias == pytest.approx(new_bias, rel=1e-5)
    assert metrics["modifier/dynamic_logit_bias/bias"] == pytest.approx(new_bias, rel=1e-5)

    plain, _ = DiffusionLoss()(**batch([[M, I]]))
    assert plain.item() == pytest.approx(math.log(9), rel=1e-6)  # so the bias did change the loss


def test_dynamic_logit_bias_feedback_converges_and_eval_freezes():
    loss_fn = DiffusionLoss.from_config([{"name": "dynamic_logit_bias", "target_prob": 0.05, "lr": 2.0}])
    b = batch([[M, M, I]])
    gaps = []
    for _ in range(150):
        _, metrics = loss_fn(**b)
        gaps.append(abs(metrics["modifier/dynamic_logit_bias/mask_prob"] - 0.05))
    assert gaps[-1] < 1e-6 < 0.05 < gaps[0]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(gaps, gaps[1:]))
    # Uniform logits elsewhere: p(mask) = e^b / (e^b + 8) = 0.05 at b = log(0.4 / 0.95).
    assert loss_fn.mask_logit_bias == pytest.approx(math.log(0.4 / 0.95), abs=1e-4)

    frozen = loss_fn.mask_logit_bias
    loss_fn.eval()
    loss_fn(**batch([[M, I]], logits=torch.randn(1, 2, V)))
    assert loss_fn.mask_logit_bias == frozen
    loss_fn.train()


def test_bias_state_round_trips_and_mismatch_is_refused():
    config = [{"name": "task_weighting"}, {"name": "dynamic_logit_bias", "lr": 1.0}]
    trained = DiffusionLoss.from_config(config)
    for _ in range(3):
        trained(**batch([[M, I]]))
    state = trained.state_dict()
    assert list(state) == ["0:task_weighting", "1:dynamic_logit_bias"]
    assert state["0:task_weighting"] == {}
    assert state["1:dynamic_logit_bias"]["bias"] == pytest.approx(trained.mask_logit_bias)

    resumed = DiffusionLoss.from_config(config)
    assert resumed.mask_logit_bias == 0.0
    resumed.load_state_dict(state)
    assert resumed.mask_logit_bias == trained.mask_logit_bias
    b = batch([[M, M, I]], logits=torch.randn(1, 3, V, generator=torch.Generator().manual_seed(1)))
    assert resumed(**b)[0].item() == trained(**b)[0].item()
    assert resumed.mask_logit_bias == trained.mask_logit_bias  # the same update from the same state

    other = DiffusionLoss.from_config(config[1:])
    with pytest.raises(LossConfigError, match="resume with the loss modifiers"):
        other.load_state_dict(state)
    with pytest.raises(LossConfigError, match="corrupt"):
        resumed.load_state_dict({"0:task_weighting": {}, "1:dynamic_logit_bias": {"bias": "x"}})


def test_task_weighting_scales_each_kind():
    b = batch([[M, W, I, C]])
    state = state_of(b)
    build_modifier("task_weighting", unmask=2.0, remask=3.0, identity=0.5)(state)
    assert state.weights.tolist() == [[2.0, 3.0, 0.5, 0.0]]
    logits = torch.zeros(1, 4, V)
    logits[0, 1, SPECIAL.wrong] = math.log(3)  # ℓ at the wrong position: log(11/3)
    loss, _ = loss_of([{"name": "task_weighting", "unmask": 2, "remask": 3, "identity": 0.5}], {**b, "logits": logits})
    expected = (2 * math.log(9) + 3 * math.log(11 / 3) + 0.5 * math.log(9)) / 5.5
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hard_negative_mining_constant_and_hardest_k():
    state = state_of(batch([[M, I, I, W]]))
    build_modifier("hard_negative_mining", mode="constant", weight=3.0)(state)
    assert state.weights.tolist() == [[1.0, 3.0, 3.0, 1.0]]

    # Row 0: four identity positions whose target logit falls, so the loss rises left to right.
    # Row 1: one identity position (fewer than k): it keeps its weight.
    logits = torch.zeros(2, 5, V)
    logits[0, :4, 7] = torch.tensor([3.0, 2.0, 1.0, 0.0])
    kind = [[I, I, I, I, M], [M, M, I, W, C]]
    state = state_of(batch(kind, logits=logits))
    build_modifier("hard_negative_mining", mode="hardest_k", k=2, weight=2.0)(state)
    assert state.weights.tolist() == [[0.0, 0.0, 2.0, 2.0, 1.0], [1.0, 1.0, 2.0, 1.0, 0.0]]

    loss, metrics = loss_of([{"name": "hard_negative_mining", "mode": "hardest_k", "k": 2, "weight": 2.0}],
                            batch(kind, logits=logits))
    ell = [math.log(math.exp(x) + 8) - x for x in (1.0, 0.0)]  # the two kept, hardest positions
    # Row 0: the two kept (weight 2) + the masked one; row 1: M, M, I (kept, 2), W, all at log 9.
    expected = (2 * ell[0] + 2 * ell[1] + math.log(9) + (1 + 1 + 2 + 1) * math.log(9)) / (2 + 2 + 1 + 5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["modifier/hard_negative_mining/kept"] == 3


def test_state_dependent_penalty_hand_value():
    # Uniform p = 1/9. Masked: five never-generated ids → 5/9. Identity and wrong: everything
    # but the input token and [WRONG] → 7/9. Context and the weight-0 slot position are left out.
    b = batch([[C, M, I, W, I]], weights=[[1.0, 1.0, 1.0, 1.0, 0.0]])
    loss, metrics = loss_of([{"name": "state_dependent_penalty", "weight": 0.3}], b)
    mean = (5 / 9 + 7 / 9 + 7 / 9) / 3
    assert metrics["loss/state_penalty"] == pytest.approx(0.3 * mean, rel=1e-6)
    assert metrics["modifier/state_dependent_penalty/invalid_mass"] == pytest.approx(mean, rel=1e-6)
    assert loss.item() == pytest.approx(math.log(9) + 0.3 * mean, rel=1e-6)  # uniform: every ℓ is log 9

    # All the mass on the valid outputs: no penalty.
    logits = torch.full((1, 3, V), -30.0)
    logits[0, 0, 7] = 0.0  # masked: an ordinary token
    logits[0, 1, 7] = 0.0  # identity, input 7: keep it
    logits[0, 2, SPECIAL.wrong] = 0.0  # wrong, input 8: call it wrong
    _, metrics = loss_of([{"name": "state_dependent_penalty"}], batch([[M, I, W]], logits=logits))
    assert metrics["loss/state_penalty"] == pytest.approx(0.0, abs=1e-6)


def test_entropy_penalty_hand_value():
    logits = torch.zeros(1, 3, V)
    logits[0, 2, 7] = 2.0
    b = batch([[C, M, I]], logits=logits)
    _, metrics = loss_of([{"name": "entropy_penalty", "weight": -0.5}], b)
    z = math.exp(2) + 8
    h_peaked = -(math.exp(2) / z * math.log(math.exp(2) / z) + 8 / z * math.log(1 / z))
    mean = (math.log(9) + h_peaked) / 2
    assert metrics["modifier/entropy_penalty/entropy"] == pytest.approx(mean, rel=1e-6)
    assert metrics["loss/entropy"] == pytest.approx(-0.5 * mean, rel=1e-6)
    assert metrics["loss/total"] == pytest.approx(metrics["loss/diffusion"] - 0.5 * mean, rel=1e-6)


def test_mask_ratio_weighting_is_capped_one_over_t():
    state = state_of(batch([[M, I], [M, W]], t=[0.5, 0.05]))
    build_modifier("mask_ratio_weighting", max_weight=10)(state)
    assert state.weights.tolist() == [[2.0, 1.0], [10.0, 1.0]]


def test_critic_loss_hand_value():
    z = torch.tensor([[0.0, math.log(3), 50.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    loss, metrics = critic_loss(z, labels, mask)
    expected = (math.log(2) + math.log(4)) / 2  # BCE(0, 1) = log 2; BCE(log 3, 0) = log(1 + 3)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics == pytest.approx({"loss/critic": expected, "critic/acc": 0.0, "critic/pos_frac": 0.5})
    loss.backward()
    assert z.grad[0, 2] == 0
    empty, metrics = critic_loss(z, labels, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0 and "critic/acc" not in metrics
    # Weighted: Σ w·bce / Σ w over the mask, so a [PAD] at weight 0.05 counts little.
    weighted, _ = critic_loss(z, labels, mask, torch.tensor([[1.0, 0.05, 7.0]]))
    assert weighted.item() == pytest.approx((math.log(2) + 0.05 * math.log(4)) / 1.05, rel=1e-6)


# --------------------------------------------------------------------------- order


def test_order_matters_for_readers_of_logits():
    b = batch([[M, M, I]])
    bias = {"name": "dynamic_logit_bias", "init": 2.0}
    entropy = {"name": "entropy_penalty", "weight": 1.0}
    _, before = loss_of([entropy, bias], b)
    _, after = loss_of([bias, entropy], b)
    assert before["loss/entropy"] == pytest.approx(math.log(9), rel=1e-6)  # the unshifted, uniform logits
    assert after["loss/entropy"] < before["loss/entropy"] - 0.05  # the shifted [MASK] logit sharpens p


def test_multiplicative_weightings_commute():
    torch.manual_seed(0)
    b = batch([[M, I, W, I, M], [C, M, I, I, W]], logits=torch.randn(2, 5, V), t=[0.3, 0.07])
    chain = [{"name": "task_weighting", "unmask": 2.0, "remask": 0.5, "identity": 1.5},
             {"name": "mask_ratio_weighting", "max_weight": 5.0},
             {"name": "hard_negative_mining", "mode": "constant", "weight": 3.0}]
    first, _ = loss_of(chain, b)
    for order in ([2, 0, 1], [1, 2, 0]):
        other, _ = loss_of([chain[i] for i in order], b)
        assert other.item() == pytest.approx(first.item(), rel=1e-6)


def test_logit_transform_after_a_loss_reader_is_refused():
    config = [{"name": "hard_negative_mining", "mode": "hardest_k"}, {"name": "dynamic_logit_bias"}]
    with pytest.raises(LossOrderError) as err:
        loss_of(config, batch([[M, I, I]]))
    message = str(err.value)
    assert "'dynamic_logit_bias' (#1)" in message and "'hard_negative_mining' (#0)" in message
    assert "reorder" in message
    loss_of(config[::-1], batch([[M, I, I]]))  # the other way round is fine


def test_in_place_logit_change_after_a_reader_is_refused(user_path):
    config = [{"name": "hard_negative_mining", "mode": "hardest_k"}, {"name": "user_modifiers:ShiftLogitsInPlace"}]
    with pytest.raises(LossOrderError, match="ShiftLogitsInPlace"):
        loss_of(config, batch([[M, I, I]]))


# --------------------------------------------------------------------------- registry and config


def test_builtins_are_registered():
    assert BUILTINS <= set(known_modifiers())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(LossConfigError, match="unknown loss modifier 'dynamic_bias'") as err:
        build_modifier("dynamic_bias")
    assert all(name in str(err.value) for name in BUILTINS)
    assert "did you mean 'dynamic_logit_bias'" in str(err.value)


def test_duplicate_registration_is_refused():
    before = dict(losses._REGISTRY)
    try:
        with pytest.raises(LossConfigError, match="already taken"):
            @register_modifier("task_weighting")
            class Other(Modifier):
                pass

        with pytest.raises(LossConfigError, match="subclass of pretrain.losses.Modifier"):
            register_modifier("not_a_modifier")(dict)
    finally:
        losses._REGISTRY.clear()
        losses._REGISTRY.update(before)


@pytest.mark.parametrize("params, needle", [
    ({"learning_rate": 0.1}, "no parameter 'learning_rate'; its parameters: target_prob, lr, init, max_abs"),
    ({"lr": "fast"}, "lr expects float, got 'fast'"),
    ({"target_prob": 1.5}, "target_prob=1.5 must lie in (0, 1)"),
])
def test_bad_parameters_name_modifier_and_parameter(params, needle):
    with pytest.raises(LossConfigError) as err:
        build_modifier("dynamic_logit_bias", **params)
    assert "'dynamic_logit_bias'" in str(err.value) and needle in str(err.value)


def test_bad_config_entries():
    with pytest.raises(LossConfigError, match="not one of: constant, hardest_k"):
        DiffusionLoss.from_config([{"name": "hard_negative_mining", "mode": "hardest"}])
    with pytest.raises(LossConfigError, match="loss modifier #0"):
        DiffusionLoss.from_config([{"weight": 1.0}])
    with pytest.raises(LossConfigError, match="must be a list"):
        DiffusionLoss.from_config({"name": "entropy_penalty"})
    with pytest.raises(LossConfigError, match="unknown token loss 'focal'; known: ce"):
        DiffusionLoss.from_config([], token_loss="focal")
    built = DiffusionLoss.from_config([{"name": "mask_ratio_weighting", "max_weight": 10}])  # YAML int → float
    assert built.modifiers[0].max_weight == 10.0 and isinstance(built.modifiers[0].max_weight, float)


@pytest.fixture
def user_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    return HERE


def test_user_modifier_by_path(user_path):
    b = batch([[M, I]])
    loss, metrics = loss_of([{"name": "user_modifiers:ScaleAll", "factor": 2.0},
                             {"name": "user_modifiers:AddConstant", "value": 0.25}], b)
    assert loss.item() == pytest.approx(math.log(9) + 0.25, rel=1e-6)
    assert metrics["loss/constant"] == 0.25
    assert metrics["modifier/user_modifiers:ScaleAll/factor"] == 2.0
    with pytest.raises(LossConfigError, match="'user_modifiers:AddConstant' has no parameter 'scale'; its parameters: value"):
        build_modifier("user_modifiers:AddConstant", scale=1.0)
    with pytest.raises(LossConfigError, match="not a subclass of pretrain.losses.Modifier"):
        build_modifier("user_modifiers:NotAModifier")
    with pytest.raises(LossConfigError, match="has no 'Missing'.*its modifiers: AddConstant, ScaleAll"):
        build_modifier("user_modifiers:Missing")
    with pytest.raises(LossConfigError, match="no module named 'no_such_module'"):
        build_modifier("no_such_module:Thing")


def test_all_modifiers_on_a_real_corruption():
    """End to end on a corrupt()ed tiny batch: a finite loss, gradients only on the slot."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(7, V, (2, 8), generator=gen)
    slot = torch.zeros(2, 8, dtype=torch.bool)
    slot[:, 3:] = True
    c = corrupt(clean, slot, SPECIAL, V, generator=gen, wrong_prob=0.3)
    logits = torch.randn(2, 8, V, generator=gen, requires_grad=True)
    config = [{"name": "mask_ratio_weighting"}, {"name": "task_weighting", "remask": 2.0},
              {"name": "dynamic_logit_bias"}, {"name": "state_dependent_penalty"},
              {"name": "entropy_penalty"}, {"name": "hard_negative_mining", "mode": "hardest_k", "k": 2}]
    loss, metrics = DiffusionLoss.from_config(config)(logits, c.input_ids, c.targets, c.kind,
                                                      slot.float(), c.t, SPECIAL)
    assert math.isfinite(loss.item())
    assert metrics["loss/total"] == pytest.approx(
        metrics["loss/diffusion"] + metrics["loss/entropy"] + metrics["loss/state_penalty"], rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[~slot] == 0)
    assert all(isinstance(v, float) for v in metrics.values())
