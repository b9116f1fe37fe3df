"""Per-token distillation math and weight schedules for the Trident loss components (issue 6).

Pure functions over logits, no state: ``focal`` (a token loss), ``kl`` and ``jsd`` (teacher →
student at a temperature), each returning a per-position value (B, T) for the caller to reduce
with its token weights; and :class:`WeightSchedule`, a component's weight as a function of the
share of training done. Notation: B batch, T positions, V vocabulary; logits are cast to fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

Shape = Literal["linear", "cosine", "step"]
SHAPES: tuple[str, ...] = get_args(Shape)


@dataclass(frozen=True)
class WeightSchedule:
    """A weight moving from ``start`` to ``end`` over training: ``linear``, ``cosine`` (slow at
    both ends), or ``step`` (``start`` until ``at`` of training is done, ``end`` from there)."""

    start: float
    end: float
    shape: Shape = "linear"
    at: float = 0.5

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"schedule shape {self.shape!r} is not one of {', '.join(SHAPES)}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"schedule {name}={value!r} must be a finite weight >= 0")
        if not 0.0 <= self.at <= 1.0:
            raise ValueError(f"schedule at={self.at} must lie in [0, 1] (a share of training)")

    def __call__(self, progress: float) -> float:
        """The weight when ``progress`` ∈ [0, 1] of training is done (clamped)."""
        p = min(1.0, max(0.0, float(progress)))
        if self.shape == "step":
            return float(self.end if p >= self.at else self.start)
        mix = p if self.shape == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        return float(self.start + (self.end - self.start) * mix)


def focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """Focal loss per position, ``-α (1 - p_y)^γ log p_y`` (B, T); γ = 0, α = 1 is cross-entropy."""
    logp = F.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return focal_from_log_probs(logp, gamma, alpha)


def focal_from_log_probs(logp: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0) -> torch.Tensor:
    """:func:`focal` from the target's log-probability ``logp`` (B, T) (a shared softmax)."""
    if gamma == 0:
        return -alpha * logp
    return -alpha * (1.0 - logp.exp()).clamp(min=0.0).pow(gamma) * logp


def kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``KL(teacher ‖ student)`` per position at ``temperature``, times ``temperature²`` so the
    gradient scale does not shrink with it (Hinton et al.): (B, T)."""
    s = F.log_softmax(student_logits.float() / temperature, -1)
    t = F.log_softmax(teacher_logits.float() / temperature, -1)
    return kl_from_log_probs(s, t) * temperature**2


def kl_from_log_probs(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``KL(t ‖ s)`` per position from log-probabilities (B, T, V) -> (B, T)."""
    return (t.exp() * (t - s)).sum(-1)


def jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5,
        temperature: float = 1.0) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence per position (B, T), as TRL's GKD defines it:
    ``β KL(t ‖ m) + (1-β) KL(s ‖ m)`` with ``m = β t + (1-β) s``; β = 0 gives ``KL(t ‖ s)``,
    β = 1 ``KL(s ‖ t)``. Symmetric at β = ½, 0 for equal inputs, at most ``log 2``."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd beta={beta} must lie in [0, 1]")
    s = F.log_softmax(student_logits.float() / temperature, -1)
    t = F.log_softmax(teacher_logits.float() / temperature, -1)
    return jsd_from_log_probs(s, t, beta)


def jsd_from_log_probs(s: torch.Tensor, t: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """:func:`jsd` from the student's and teacher's log-probabilities (B, T, V) -> (B, T).

    Written as ``β Σ p_t log p_t + (1-β) Σ p_s log p_s − Σ p_m log p_m`` (the same value as the
    two KLs to the mixture ``p_m``): one exp and one log per element instead of a logsumexp over
    stacked copies, about half the time forward and backward at a 4k vocabulary.
    """
    if beta == 0:
        return kl_from_log_probs(s, t)
    if beta == 1:
        return kl_from_log_probs(t, s)
    ps = s.exp()
    with torch.no_grad():
        pt = t.exp()
        teacher = (pt * t).sum(-1)
    pm = beta * pt + (1 - beta) * ps
    return beta * teacher + (1 - beta) * (ps * s).sum(-1) - torch.xlogy(pm, pm).sum(-1)
