"""Distillation math and weight schedules against hand values and TRL's GKD loss."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from pretrain.distill import WeightSchedule, focal, jsd, kl


def logits(seed: int, shape=(2, 3, 7)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_focal_is_cross_entropy_at_gamma_zero_and_down_weights_easy_tokens():
    z, y = logits(0), torch.tensor([[0, 1, 2], [3, 4, 5]])
    ce = F.cross_entropy(z.reshape(-1, 7), y.reshape(-1), reduction="none").reshape(2, 3)
    assert torch.allclose(focal(z, y, gamma=0.0), ce, atol=1e-6)
    p = torch.exp(-ce)
    assert torch.allclose(focal(z, y, gamma=2.0, alpha=0.25), 0.25 * (1 - p) ** 2 * ce, atol=1e-6)
    assert (focal(z, y, gamma=2.0) <= ce + 1e-7).all()


def test_kl_is_zero_for_equal_inputs_and_matches_the_definition():
    s, t = logits(1), logits(2)
    assert torch.allclose(kl(s, s), torch.zeros(2, 3), atol=1e-6)
    ps, pt = s.softmax(-1), t.softmax(-1)
    assert torch.allclose(kl(s, t), (pt * (pt.log() - ps.log())).sum(-1), atol=1e-5)
    assert torch.allclose(kl(s, t, temperature=2.0), 4 * kl(s / 2, t / 2), atol=1e-5)


def test_jsd_is_symmetric_zero_on_equal_inputs_and_at_most_log_two():
    s, t = logits(3), logits(4)
    assert torch.allclose(jsd(s, t), jsd(t, s), atol=1e-6)
    assert torch.allclose(jsd(s, s), torch.zeros(2, 3), atol=1e-6)
    far = torch.tensor([[[50.0, -50.0]]]), torch.tensor([[[-50.0, 50.0]]])
    assert jsd(*far).item() == pytest.approx(math.log(2), abs=1e-5)  # disjoint: the bound itself
    assert (jsd(s, t) <= math.log(2) + 1e-6).all()


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_jsd_matches_trls_generalised_jsd(beta, temperature):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    s, t = logits(5), logits(6)
    theirs = GKDTrainer.generalized_jsd_loss(s, t, beta=beta, temperature=temperature, reduction="none").sum(-1)
    assert torch.allclose(jsd(s, t, beta=beta, temperature=temperature), theirs, atol=1e-5)


def test_every_term_gives_a_gradient_on_the_student_logits():
    t = logits(7)
    for term in (lambda s: focal(s, torch.zeros(2, 3, dtype=torch.long), gamma=2.0), lambda s: kl(s, t),
                 lambda s: jsd(s, t)):
        s = logits(8).requires_grad_()
        term(s).sum().backward()
        assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", ["linear", "cosine", "step"])
def test_schedules_hit_their_endpoints(shape):
    w = WeightSchedule(0.5, 0.3, shape)
    assert w(0.0) == pytest.approx(0.5) and w(1.0) == pytest.approx(0.3)
    assert w(-1) == w(0.0) and w(2) == w(1.0)  # clamped


def test_schedule_shapes_in_between():
    assert WeightSchedule(0.0, 1.0)(0.25) == pytest.approx(0.25)
    assert WeightSchedule(0.0, 1.0, "cosine")(0.25) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    step = WeightSchedule(0.2, 0.4, "step", at=0.6)
    assert (step(0.59), step(0.6)) == (0.2, 0.4)


@pytest.mark.parametrize("kwargs, words", [
    ({"start": 1, "end": 0, "shape": "exp"}, "not one of linear, cosine, step"),
    ({"start": -1, "end": 0}, "start=-1"),
    ({"start": 0, "end": float("nan")}, "end=nan"),
    ({"start": 0, "end": 1, "at": 1.5}, "at=1.5"),
])
def test_bad_schedules_say_what_to_fix(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        WeightSchedule(**kwargs)
