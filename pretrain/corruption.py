"""Corruption of slot tokens for masked-diffusion training: a pure, seeded function.

Notation: B batch, T sequence length. Per sequence a noise level ``t ~ U(ε, 1)`` (or
antithetic: ``t_b = ε + (1-ε)·((u + b/B) mod 1)``, one shared u, lower variance); then over
the slot positions only (context is never corrupted):

- each slot position is masked with probability t (``KIND_MASKED``, LM target = the clean
  token). With ``suffix_rows`` a share of rows is masked as a suffix instead: the last
  ``round(t·n)`` positions of the row's content (n = target + [EOS]) and every [PAD] after it,
  the states a left-to-right block sampler visits;
- each unmasked slot position is replaced with probability ``wrong_prob`` by a wrong token
  (``KIND_WRONG``, LM target [WRONG], critic label "error"): a random non-special token, or the
  model's own sample there when ``proposals`` is given (hard wrong tokens);
- the other unmasked slot positions keep their token (``KIND_IDENTITY``, target = itself).

Positions outside the slot are ``KIND_CONTEXT`` and carry no loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenizer import SpecialIds

KIND_CONTEXT = 0
KIND_MASKED = 1
KIND_WRONG = 2
KIND_IDENTITY = 3


@dataclass(frozen=True)
class Corrupted:
    input_ids: torch.Tensor  # (B, T) the corrupted sequence the model sees
    targets: torch.Tensor  # (B, T) LM targets: clean token, [WRONG] at wrong positions
    kind: torch.Tensor  # (B, T) KIND_* per position
    t: torch.Tensor  # (B,) noise level per row


def sample_t(batch: int, *, generator: torch.Generator, eps: float = 1e-3, antithetic: bool = False) -> torch.Tensor:
    """Noise levels in [eps, 1): (B,)."""
    if antithetic:
        u = torch.rand((), generator=generator)
        base = (u + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
        return (eps + (1 - eps) * base).float()
    return eps + (1 - eps) * torch.rand(batch, generator=generator)


def corrupt(
    clean: torch.Tensor,
    slot_mask: torch.Tensor,
    special: SpecialIds,
    vocab_size: int,
    *,
    generator: torch.Generator,
    eps: float = 1e-3,
    antithetic: bool = False,
    wrong_prob: float = 0.0,
    proposals: torch.Tensor | None = None,
    suffix_rows: float = 0.0,
    content: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
) -> Corrupted:
    """Corrupt the slot positions of ``clean`` (B, T); ``slot_mask`` (B, T) bool marks them.

    Deterministic given ``generator``'s state. ``proposals`` (B, T), if given, supplies the
    wrong tokens (positions where a proposal equals the clean token stay identity); ``content``
    (B, T) bool marks the slot positions that hold the assertion and its [EOS] (suffix rows cut
    inside them); ``t`` (B,) overrides the sampled noise levels.
    """
    B, T = clean.shape
    device = clean.device
    slot_mask = slot_mask.bool()
    if t is None:
        t = sample_t(B, generator=generator, eps=eps, antithetic=antithetic)
    t = t.to(torch.float32)
    u = torch.rand((B, T), generator=generator)
    masked = u < t[:, None]
    if suffix_rows > 0:
        # Suffix masking, the states of left-to-right decoding: with n the row's content length
        # (target + [EOS]; the whole slot if not given), slot index j is masked iff
        # j >= n - round(t·n), so the cut falls inside the assertion, and every [PAD] after
        # the content is masked too (a decoder does not know the length yet).
        suffix = torch.rand(B, generator=generator) < suffix_rows
        index = torch.cumsum(slot_mask.long(), dim=1) - 1  # (B, T) position within the slot
        length = (content if content is not None else slot_mask).sum(dim=1).cpu()  # (B,)
        n_masked = torch.round(t * length).long().clamp(min=1)
        tail = index.cpu() >= (length - n_masked)[:, None]
        masked = torch.where(suffix[:, None], tail, masked)
    masked = masked.to(device) & slot_mask

    kind = torch.full((B, T), KIND_CONTEXT, dtype=torch.long, device=device)
    kind[slot_mask] = KIND_IDENTITY
    kind[masked] = KIND_MASKED
    input_ids = clean.clone()
    input_ids[masked] = special.mask
    targets = clean.clone()

    if wrong_prob > 0:
        coin = (torch.rand((B, T), generator=generator) < wrong_prob).to(device)
        if proposals is not None:
            replacement = proposals.to(device)
        else:
            replacement = _random_tokens((B, T), special, vocab_size, generator).to(device)
        wrong = coin & slot_mask & ~masked & (replacement != clean)
        input_ids[wrong] = replacement[wrong]
        targets[wrong] = special.wrong
        kind[wrong] = KIND_WRONG
    return Corrupted(input_ids=input_ids, targets=targets, kind=kind, t=t.to(device))


def _random_tokens(shape: tuple[int, int], special: SpecialIds, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform non-special tokens: draw from the ordinary ids, skipping the special ones."""
    specials = torch.tensor(sorted(special.all()))
    ordinary = torch.ones(vocab_size, dtype=torch.bool)
    ordinary[specials] = False
    pool = torch.nonzero(ordinary).squeeze(1)
    return pool[torch.randint(len(pool), shape, generator=generator)]
