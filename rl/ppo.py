"""The learner's math: value readout and its BCE, the PPO clipped surrogate per denoising step,
KL to the frozen SFT reference, step subsampling, explained variance.

Shapes: N samples, K denoising steps, L slot positions. A step's log-probability is that of the
action it took — the tokens it committed — ``log π(a_k|x_k) = Σ_{i∈U_k} log p(a_{k,i} | x_k)``,
recorded by the sampler for the behaviour policy (``old``) and recomputed by the learner
(``new``, ``ref``). Pure tensor math, no Ray, no I/O.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["value_readout", "value_loss", "ppo_loss", "kl_k3", "subsample_steps", "explained_variance", "greedy_rewards",
           "segment_log_softmax", "segment_entropy"]


def value_readout(critic_logits: torch.Tensor, slot_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``log V(x) = Σ_{i∈slot} log σ(z_i)`` (N,) from critic logits z (N, L): the probability that
    every slot position ends up right. ``slot_mask`` (N, L) bool picks the positions that count
    (all of them by default). Returned in log space: ``V = exp`` of it underflows for long slots."""
    logsig = F.logsigmoid(critic_logits.float())  # (N, L)
    if slot_mask is not None:
        logsig = torch.where(slot_mask.bool(), logsig, 0.0)
    return logsig.sum(-1)


def value_loss(log_v: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """BCE of ``V = exp(log_v)`` (N,) toward rewards R ∈ [0, 1] (N,), mean over samples, computed
    in log space: ``−R log V − (1−R) log(1−V)`` with ``log(1−V) = log(−expm1(log V))``."""
    log_v = log_v.float().clamp(max=-1e-6)  # V < 1, so log(1 − V) is finite
    r = rewards.float()
    log_1mv = torch.log(-torch.expm1(log_v))
    return -(r * log_v + (1 - r) * log_1mv).mean()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-step KL(π ‖ π_ref) estimate from the sampled action (Schulman's k3, unbiased, ≥ 0):
    ``exp(ref − logp) − (ref − logp) − 1``."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
             clip: float = 0.2, ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0,
             entropy: torch.Tensor | None = None, entropy_coef: float = 0.0,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The clipped surrogate per denoising step, averaged over the valid steps (``mask`` (N, K)):

    ``−min(ρ A, clip(ρ, 1−ε, 1+ε) A)`` with ``ρ = exp(logp − old_logp)`` (the importance ratio
    against the behaviour policy's recorded log-probs), plus ``kl_coef · k3(logp, ref_logp)`` and
    minus ``entropy_coef · entropy`` (both per step, (N, K)). Metrics (0-dim tensors): policy
    loss, clip fraction, approx KL to the behaviour policy, KL to the reference, entropy.
    ``weights`` (N, K) ≥ 0 scale each step's surrogate and KL: an action that stands for a
    probability mass rather than a draw (enumerated start choices). The metrics are then weighted
    means — the expectations they estimate; an unweighted mean of k3 over actions the policy
    itself finds unlikely would be dominated by them."""
    m = mask.bool()
    n = m.sum().clamp(min=1)
    ratio = torch.exp((logp - old_logp).float())
    adv = advantages.float()
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - clip, 1 + clip) * adv
    surrogate = -torch.minimum(unclipped, clipped)
    w = torch.ones_like(adv) if weights is None else weights.float()
    w = torch.where(m, w, 0.0)
    policy = (surrogate * w).sum() / n
    total = policy

    def mean(x: torch.Tensor) -> torch.Tensor:
        return ((x.detach().float() * w).sum() / w.sum().clamp(min=1e-12)) if weights is not None \
            else torch.where(m, x.detach().float(), 0.0).sum() / n

    metrics: dict[str, Any] = {"rl/policy_loss": mean(surrogate)}
    with torch.no_grad():
        metrics["rl/clip_frac"] = mean(((ratio - 1).abs() > clip).float())
        metrics["rl/approx_kl"] = mean(kl_k3(logp.detach().float(), old_logp.float()))
    if ref_logp is not None:
        k3 = kl_k3(logp.float(), ref_logp.float())
        metrics["rl/kl_ref"] = mean(k3)
        if kl_coef:
            total = total + kl_coef * (k3 * w).sum() / n
    if entropy is not None:
        ent = torch.where(m, entropy.float(), 0.0).sum() / n
        metrics["rl/entropy"] = ent.detach()
        if entropy_coef:
            total = total - entropy_coef * ent
    return total, metrics


def subsample_steps(mask: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """At most ``k`` of each row's valid steps, chosen uniformly (N, K) bool (``k <= 0``: all):
    the learner's gradient over a trajectory at a fraction of the passes."""
    m = mask.bool()
    if k <= 0:
        return m
    noise = torch.rand(m.shape, generator=generator).to(m.device)
    key = torch.where(m, noise, 2.0)  # invalid steps sort last
    rank = key.argsort(-1).argsort(-1)
    return m & (rank < k)


def explained_variance(values: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 − Var(targets − values) / Var(targets)``: 1 is a perfect value function, 0 no better
    than the mean, negative worse; NaN when the targets do not vary."""
    v, t = values.float().flatten(), targets.float().flatten()
    var = t.var(unbiased=False)
    if float(var) == 0:
        return float("nan")
    return float(1 - (t - v).var(unbiased=False) / var)


def segment_log_softmax(scores: torch.Tensor, segments: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(C,) log-softmax of ``scores`` (C,) within each segment (``segments`` (C,) long in [0, n)):
    the log-probability of each candidate among those of its own task (the start action)."""
    n = int(segments.max()) + 1 if n is None else n
    s = scores.float()
    top = torch.full((n,), float("-inf"), device=s.device).scatter_reduce(0, segments, s.detach(), "amax")
    shifted = s - top[segments]
    total = torch.zeros(n, device=s.device).index_add(0, segments, shifted.exp())
    return shifted - total.log()[segments]


def segment_entropy(logp: torch.Tensor, segments: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """(n,) entropy of each segment's distribution, from its members' log-probabilities (C,)."""
    n = int(segments.max()) + 1 if n is None else n
    return torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, segments, -(logp.exp() * logp))


def greedy_rewards(scores: torch.Tensor, rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(G,) per task group, the reward of its sample with the highest score (``scores`` (N,) e.g.
    the start's log-probability under one policy; ``rewards`` (N,), NaN = none; ``groups`` (N,)):
    what the evaluation's greedy system, which takes the most likely start, would have earned with
    the task's samples. Groups whose samples are not all rewarded are left out; ties go to the
    first sample."""
    out = []
    for g in torch.unique(groups).tolist():
        rows = torch.nonzero(groups == g).flatten()
        r = rewards[rows]
        if bool(torch.isnan(r).any()):
            continue
        out.append(r[int(torch.argmax(scores[rows]))])
    return torch.stack(out).float() if out else torch.zeros(0)


def group_minibatches(groups: torch.Tensor, rows: torch.Tensor, size: int, rng: random.Random) -> list[torch.Tensor]:
    """``rows`` (sample indices, their task groups ``groups``) in minibatches of whole groups, the
    groups in ``rng``'s order, each minibatch closed once it holds ``size`` samples or more.

    A task's samples stay together: its start candidates are re-scored once per epoch, not by
    every minibatch one of its samples fell into, and a step sees each of its groups whole (with
    ``start_draw: all`` the start term of a step is then the exact expectation over the choice).
    """
    members: dict[int, list[int]] = {}
    for g, i in zip(groups.tolist(), rows.tolist()):
        members.setdefault(g, []).append(i)
    order = sorted(members)
    rng.shuffle(order)
    out, cur = [], []
    for g in order:
        cur += members[g]
        if len(cur) >= size:
            out.append(torch.tensor(sorted(cur)))
            cur = []
    if cur:
        out.append(torch.tensor(sorted(cur)))
    return out
