"""Advantage estimators for the denoising MDP: ``gae``, ``mc``, ``group``, ``group_mean`` — registered
by name.

A trajectory is a sample's K denoising steps; step k moves state x_k to x_{k+1} by committing
tokens, and the only reward is the terminal one, R, after the last valid step. Tensors:

- ``rewards`` (N,): R of each sample (float; a sample without a reward is not passed in);
- ``values`` (N, K): V(x_k) from the critic readout (:func:`rl.ppo.value_readout`), or None for
  a critic-free estimator;
- ``mask`` (N, K) bool: the steps a sample really took — a prefix of each row (samples finish at
  different steps);
- ``groups`` (N,) long: which samples share a prompt (for ``group`` and ``group_mean``).

Every estimator returns advantages (N, K), zero where ``mask`` is False. Pure tensor math, no
Ray, no I/O. A user estimator registers with ``@register_advantage("name")`` and
takes the same keywords (it may ignore those it does not need).
"""

from __future__ import annotations

import difflib
from typing import Callable, Protocol

import torch

__all__ = ["AdvantageError", "Estimator", "register_advantage", "known_advantages", "get_advantage", "gae", "mc",
           "group", "group_mean", "CRITIC_FREE"]

CRITIC_FREE = {"group", "group_mean"}  # the built-in estimators that read no critic values


class AdvantageError(ValueError):
    """An unknown estimator or inputs it cannot use; the message names the fix."""


class Estimator(Protocol):
    def __call__(self, rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor,
                 groups: torch.Tensor | None, **params: float) -> torch.Tensor: ...


_ESTIMATORS: dict[str, Estimator] = {}


def register_advantage(name: str) -> Callable[[Estimator], Estimator]:
    """Register an advantage estimator under ``name`` (a name is taken once)."""
    def register(fn: Estimator) -> Estimator:
        if name in _ESTIMATORS and _ESTIMATORS[name] is not fn:
            raise AdvantageError(f"advantage estimator {name!r} is already registered; pick another name")
        _ESTIMATORS[name] = fn
        return fn

    return register


def known_advantages() -> list[str]:
    return sorted(_ESTIMATORS)


def get_advantage(name: str) -> Estimator:
    if name not in _ESTIMATORS:
        close = difflib.get_close_matches(str(name), known_advantages(), n=1)
        raise AdvantageError(f"unknown advantage estimator {name!r}; known: {', '.join(known_advantages())}"
                             + (f" (did you mean {close[0]!r}?)" if close else ""))
    return _ESTIMATORS[name]


def _check(rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor, who: str) -> None:
    if rewards.dim() != 1 or mask.dim() != 2 or mask.shape[0] != rewards.shape[0]:
        raise AdvantageError(f"{who}: rewards must be (N,) and mask (N, K), got {tuple(rewards.shape)} and "
                             f"{tuple(mask.shape)}")
    if values is not None and values.shape != mask.shape:
        raise AdvantageError(f"{who}: values {tuple(values.shape)} must match mask {tuple(mask.shape)}")
    if mask.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise AdvantageError(f"{who}: each row's valid steps must be a prefix of the trajectory")


@register_advantage("gae")
def gae(rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor, groups: torch.Tensor | None = None,
        *, lam: float = 0.95, gamma: float = 1.0) -> torch.Tensor:
    """Generalised advantage estimation with the terminal reward: ``δ_k = r_k + γ V_{k+1} − V_k``
    (r_k = R at a row's last valid step, else 0; V after the last step is 0) and
    ``A_k = Σ_l (γλ)^l δ_{k+l}``. λ = 1 gives ``γ^{n-1-k} R − V_k`` (``mc`` at γ = 1)."""
    _check(rewards, values, mask, "advantage 'gae'")
    if values is None:
        raise AdvantageError("advantage 'gae' needs the critic's values; use 'group' for a critic-free run")
    N, K = mask.shape
    mask = mask.bool()
    rewards, values = rewards.float(), values.float()
    out = torch.zeros(N, K, dtype=torch.float32, device=values.device)
    carry = torch.zeros(N, device=values.device)  # A_{k+1}
    next_value = torch.zeros(N, device=values.device)  # V_{k+1}
    for k in range(K - 1, -1, -1):
        valid = mask[:, k]
        last = valid & (~mask[:, k + 1] if k + 1 < K else torch.ones_like(valid))
        reward = torch.where(last, rewards, 0.0)
        nv = torch.where(last, 0.0, next_value)
        ca = torch.where(last, 0.0, carry)
        adv = reward + gamma * nv - values[:, k] + gamma * lam * ca
        out[:, k] = torch.where(valid, adv, 0.0)
        carry = torch.where(valid, adv, 0.0)
        next_value = torch.where(valid, values[:, k], 0.0)
    return out


@register_advantage("mc")
def mc(rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor, groups: torch.Tensor | None = None,
       **_: float) -> torch.Tensor:
    """Monte-Carlo: ``A_k = R − V(x_k)`` at every valid step."""
    _check(rewards, values, mask, "advantage 'mc'")
    if values is None:
        raise AdvantageError("advantage 'mc' needs the critic's values; use 'group' for a critic-free run")
    return torch.where(mask.bool(), rewards.float()[:, None] - values.float(), 0.0)


@register_advantage("group")
def group(rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor, groups: torch.Tensor | None = None,
          *, eps: float = 1e-6, scale: bool = True, **_: float) -> torch.Tensor:
    """Critic-free (GRPO-style): ``(R − mean_g R) / (std_g R + eps)`` over the samples of the same
    prompt (``scale=False``: no division), the same at every valid step; a group of one gets 0."""
    _check(rewards, None, mask, "advantage 'group'")
    if groups is None or groups.shape != rewards.shape:
        raise AdvantageError("advantage 'group' needs groups (N,): the prompt each sample belongs to")
    r = rewards.float()
    ids, inverse = torch.unique(groups, return_inverse=True)
    G = ids.numel()
    count = torch.zeros(G, device=r.device).index_add_(0, inverse, torch.ones_like(r))
    mean = torch.zeros(G, device=r.device).index_add_(0, inverse, r) / count
    dev = r - mean[inverse]
    var = torch.zeros(G, device=r.device).index_add_(0, inverse, dev * dev) / (count - 1).clamp(min=1)
    adv = dev / (var[inverse].sqrt() + eps) if scale else dev
    adv = torch.where(count[inverse] > 1, adv, 0.0)
    return torch.where(mask.bool(), adv[:, None], 0.0)


@register_advantage("group_mean")
def group_mean(rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor,
               groups: torch.Tensor | None = None, **kw: float) -> torch.Tensor:
    """Critic-free, ``R − mean_g R`` (no division by the group's std, as in Dr. GRPO): a group
    whose samples differ by a small reward term moves the policy less than one that differs by a
    large one, so the reward's weights keep their meaning (``group`` makes every group's spread 1)."""
    return group(rewards, values, mask, groups, scale=False, **kw)
