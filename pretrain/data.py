"""Tasks as model inputs: ``[FOCAL] focal… [PREFIX] prefix… [SLOT] slot×L``.

Notation: B batch, P prompt length of a batch, L slot length, T = P + L.

A row is left-padded with [PAD] (attention 0), so the slot is always the last L positions of
every row: samplers and losses address it as ``[:, -L:]``. A slot holds the target's tokens,
one [EOS], then [PAD] to the end. The prompt keeps the end of the prefix (the statements nearest
the assertion) and the start of the focal context (the target's own function comes first),
within ``max_prompt`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import PreTrainedTokenizerFast

from sandbox.tasks import Task

from .tokenizer import SpecialIds


@dataclass
class DataConfig:
    """How tasks become model inputs."""

    slot_len: int = field(default=48, metadata={"help": "slot length L in tokens (target + [EOS] + [PAD]); longer training targets are skipped"})
    max_prompt: int = field(default=128, metadata={"help": "prompt budget in tokens ([FOCAL] focal [PREFIX] prefix [SLOT])"})
    prefix_share: float = field(default=0.75, metadata={"help": "share of the prompt budget the prefix may take before the focal context"})
    pad_weight: float = field(default=0.05, metadata={"help": "loss weight of [PAD] slot positions after [EOS] (target tokens and [EOS] weigh 1)"})

    def __post_init__(self) -> None:
        if self.slot_len < 4:
            raise ValueError(f"data.slot_len={self.slot_len} is too short for an assertion; use at least 4 (48 covers ~99% of targets)")
        if self.max_prompt < 8:
            raise ValueError(f"data.max_prompt={self.max_prompt} leaves no room for context; use at least 8")
        if not 0.0 <= self.prefix_share <= 1.0:
            raise ValueError(f"data.prefix_share={self.prefix_share} must lie in [0, 1]")
        if self.pad_weight < 0:
            raise ValueError(f"data.pad_weight={self.pad_weight} must be >= 0")


@dataclass(frozen=True)
class Encoded:
    """One task, tokenized."""

    task_id: str
    prompt: tuple[int, ...]  # [FOCAL] … [SLOT]
    slot: tuple[int, ...]  # L ids: target, [EOS], [PAD]…
    length: int  # target tokens + 1 ([EOS]); the slot positions that carry full weight


class Encoder:
    """Tokenizes tasks into prompts and slots for one tokenizer and :class:`DataConfig`."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, cfg: DataConfig) -> None:
        self.tokenizer = tokenizer
        self.special = SpecialIds.from_tokenizer(tokenizer)
        self.cfg = cfg

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, task: Task) -> tuple[int, ...]:
        budget = self.cfg.max_prompt - 3  # the three segment markers
        prefix = self.ids(task.prefix)
        focal = self.ids(task.focal)
        # The prefix may take its share, and more where the focal context is short.
        n_prefix = min(len(prefix), max(int(budget * self.cfg.prefix_share), budget - len(focal)))
        n_focal = min(len(focal), budget - n_prefix)
        s = self.special
        return (s.focal, *focal[:n_focal], s.prefix, *(prefix[len(prefix) - n_prefix:] if n_prefix else ()), s.slot)

    def slot(self, text: str) -> tuple[tuple[int, ...], int] | None:
        """The slot for assertion ``text`` and its weighted length; None if it does not fit."""
        ids = self.ids(text)
        L = self.cfg.slot_len
        if len(ids) + 1 > L:
            return None
        s = self.special
        return (*ids, s.eos, *([s.pad] * (L - len(ids) - 1))), len(ids) + 1

    def encode(self, task: Task) -> Encoded | None:
        """The task with its target in the slot; None when the target is longer than the slot."""
        slot = self.slot(task.target)
        if slot is None:
            return None
        return Encoded(task.id, self.prompt(task), slot[0], slot[1])

    def encode_prompt_only(self, task: Task) -> Encoded:
        """The task with an all-[MASK] slot (for generation; the target may be any length)."""
        return Encoded(task.id, self.prompt(task), (self.special.mask,) * self.cfg.slot_len, 0)

    def decode(self, slot: Sequence[int]) -> str:
        """The assertion text of a slot: tokens before the first [EOS]; [MASK]/[PAD] dropped."""
        s = self.special
        out: list[int] = []
        for tid in slot:
            if tid == s.eos:
                break
            if tid not in (s.pad, s.mask):
                out.append(int(tid))
        return self.tokenizer.decode(out, skip_special_tokens=False).strip()


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) clean inputs (the slot holds the target)
    attention_mask: torch.Tensor  # (B, T)
    slot_mask: torch.Tensor  # (B, T) bool: the last L positions of every row
    weights: torch.Tensor  # (B, T) float: 1 on target+[EOS], pad_weight on slot [PAD], 0 on context
    content: torch.Tensor  # (B, T) bool: the slot positions holding the target and its [EOS]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(x.to(device) for x in (self.input_ids, self.attention_mask, self.slot_mask, self.weights,
                                               self.content)))


def collate(rows: Sequence[Encoded], special: SpecialIds, pad_weight: float) -> Batch:
    """Left-pad the prompts so every row's slot is its last L positions."""
    P = max(len(r.prompt) for r in rows)
    L = len(rows[0].slot)
    B = len(rows)
    ids = torch.full((B, P + L), special.pad, dtype=torch.long)
    attn = torch.zeros((B, P + L), dtype=torch.long)
    weights = torch.zeros((B, P + L), dtype=torch.float32)
    for b, r in enumerate(rows):
        ids[b, P - len(r.prompt):P] = torch.tensor(r.prompt)
        ids[b, P:] = torch.tensor(r.slot)
        attn[b, P - len(r.prompt):] = 1
        weights[b, P:P + r.length] = 1.0
        weights[b, P + r.length:] = pad_weight
    content = torch.zeros((B, P + L), dtype=torch.bool)
    for b, r in enumerate(rows):
        content[b, P:P + r.length] = True
    slot_mask = torch.zeros((B, P + L), dtype=torch.bool)
    slot_mask[:, P:] = True
    return Batch(ids, attn, slot_mask, weights, content)
