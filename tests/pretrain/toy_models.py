"""Hand-written stand-ins for DiffusionLM whose logits and critic the test chooses, so the
sampler's ordering rules can be checked deterministically.

Ids: the seven specials first (from a literal :class:`SpecialIds`, as a tokenizer would give
them), then ordinary tokens ``FIRST_ORDINARY..VOCAB-1``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from pretrain.model import DiffusionOutput
from pretrain.tokenizer import SpecialIds

SPECIAL = SpecialIds(pad=0, mask=1, wrong=2, eos=3, focal=4, prefix=5, slot=6)
VOCAB = 24
FIRST_ORDINARY = 7
PROMPT = (SPECIAL.focal, 11, 12, SPECIAL.prefix, 13, SPECIAL.slot)

SlotFn = Callable[[torch.Tensor], torch.Tensor]  # slot (B, L) -> (B, L, V) logits or (B, L) critic


def distribution(masses: dict[int, float]) -> torch.Tensor:
    """Log-probabilities (V,): the given masses; the rest shared by the ordinary tokens not named."""
    p = torch.zeros(VOCAB)
    for token, mass in masses.items():
        p[token] = mass
    free = [t for t in range(FIRST_ORDINARY, VOCAB) if t not in masses]
    p[free] = (1.0 - sum(masses.values())) / len(free)
    return p.clamp_min(1e-9).log()


def static(table: Sequence[dict[int, float]]) -> SlotFn:
    """Logits that ignore the state: ``table[i]`` are the masses at slot position i."""
    logits = torch.stack([distribution(m) for m in table])  # (L, V)
    return lambda slot: logits.expand(slot.shape[0], -1, -1)


class ToyModel(nn.Module):
    """``forward`` returns ``logits_fn(slot)`` on the slot (zeros on the prompt) and ``critic_fn``."""

    def __init__(self, slot_len: int, logits_fn: SlotFn, critic_fn: SlotFn | None = None,
                 mask_logit_bias: float = 0.0) -> None:
        super().__init__()
        self.special = SPECIAL
        self.slot_len = slot_len
        self.mask_logit_bias = mask_logit_bias
        self.logits_fn = logits_fn
        self.critic_fn = critic_fn
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the toy a parameter, as a model has

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                last: int | None = None) -> DiffusionOutput:
        B, T = input_ids.shape
        L = self.slot_len
        slot = input_ids[:, -L:]
        logits = torch.zeros(B, T, VOCAB)
        logits[:, -L:] = self.logits_fn(slot)
        critic = torch.zeros(B, T)
        if self.critic_fn is not None:
            critic[:, -L:] = self.critic_fn(slot)
        return DiffusionOutput(logits=logits + self.anchor, critic=critic, hidden=torch.zeros(B, T, 1))


class RandomToy(nn.Module):
    """State-dependent pseudo-random logits (each position looks at its own and its neighbours'
    tokens), with [EOS] boosted so that slots end at varied places."""

    def __init__(self, slot_len: int, seed: int = 0, eos_boost: float = 6.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.special = SPECIAL
        self.slot_len = slot_len
        self.mask_logit_bias = 0.0
        self.table = nn.Parameter(torch.randn(VOCAB, VOCAB, generator=g))
        self.position = nn.Parameter(torch.randn(slot_len, VOCAB, generator=g))
        self.critic_table = nn.Parameter(torch.randn(VOCAB, generator=g))
        self.eos_boost = eos_boost

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                last: int | None = None) -> DiffusionOutput:
        B, T = input_ids.shape
        L = self.slot_len
        slot = input_ids[:, -L:]
        left = torch.roll(slot, 1, dims=1)
        right = torch.roll(slot, -1, dims=1)
        slot_logits = self.table[slot] + 0.5 * self.table[left] + 0.5 * self.table[right] + self.position  # (B, L, V)
        slot_logits[..., SPECIAL.eos] += self.eos_boost
        logits = torch.zeros(B, T, VOCAB)
        logits[:, -L:] = slot_logits
        critic = torch.zeros(B, T)
        critic[:, -L:] = self.critic_table[slot] + self.critic_table[right]
        return DiffusionOutput(logits=logits, critic=critic, hidden=torch.zeros(B, T, 1))


def toy_inputs(slots: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``PROMPT + slot``: (B, T) input_ids and an all-ones attention mask."""
    ids = torch.tensor([list(PROMPT) + list(s) for s in slots])
    return ids, torch.ones_like(ids)


def masked_inputs(batch: int, slot_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    return toy_inputs([[SPECIAL.mask] * slot_len] * batch)
