"""Tasks as model inputs: ``[FOCAL] focal… setup… [PREFIX] prefix… observations… [SLOT] slot×L``.

Notation: B batch, P prompt length of a batch, L slot length, T = P + L.

A row is left-padded with [PAD] (attention 0), so the slot is always the last L positions of
every row: samplers and losses address it as ``[:, -L:]``. A slot holds the target's tokens,
one [EOS], then [PAD] to the end.

The prompt holds what a developer looks at before writing the assertion:

- the focal code — the library functions the test calls, the target's own first — without
  decorators and docstrings (:func:`~pretrain.context.strip_focal`);
- the end of the test module's setup (imports and helpers);
- the test's prefix;
- the observations: what each name the prefix binds holds at the slot on the unmutated library,
  as comment lines (:func:`~pretrain.context.observation_lines`, from the task file's ``observations``).

Within ``max_prompt`` tokens, what is cut first is the setup (its start), then the focal code
(its end), then the prefix (its start); the observations are cut last (the last ones kept).
:func:`prompt_stats` reports how many prompts lose anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import PreTrainedTokenizerFast

from sandbox.tasks import Task

from .context import observation_lines, strip_focal
from .tokenizer import SpecialIds


@dataclass
class DataConfig:
    """How tasks become model inputs."""

    slot_len: int = field(default=48, metadata={"help": "slot length L in tokens (target + [EOS] + [PAD]); longer training targets are skipped"})
    max_prompt: int = field(default=512, metadata={"help": "prompt budget in tokens ([FOCAL] focal setup [PREFIX] prefix observations [SLOT]); 512 holds the median networkx task whole"})
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

    def parts(self, task: Task) -> tuple[list[int], list[int], list[int], list[int]]:
        """The prompt's pieces in full: focal (stripped), setup, prefix and observations."""
        observed = observation_lines(task)
        return (self.ids(strip_focal(task.focal)), self.ids("\n" + task.setup.strip()) if task.setup.strip() else [],
                self.ids(task.prefix), self.ids("\n" + "\n".join(observed)) if observed else [])

    def prompt(self, task: Task) -> tuple[int, ...]:
        return self._fit(*self.parts(task))[0]

    def _fit(self, focal: list[int], setup: list[int], prefix: list[int],
             observed: list[int]) -> tuple[tuple[int, ...], bool]:
        """The prompt within the budget, and whether anything was cut (see the module docstring)."""
        budget = self.cfg.max_prompt - 3  # the three segment markers
        n_obs = min(len(observed), budget)
        budget -= n_obs
        # The prefix may take its share, and more where the focal code is short.
        n_prefix = min(len(prefix), max(int(budget * self.cfg.prefix_share), budget - len(focal) - len(setup)))
        n_focal = min(len(focal), budget - n_prefix)
        n_setup = min(len(setup), budget - n_prefix - n_focal)
        s = self.special
        ids = (s.focal, *focal[:n_focal], *(setup[len(setup) - n_setup:] if n_setup else ()), s.prefix,
               *(prefix[len(prefix) - n_prefix:] if n_prefix else ()), *(observed[len(observed) - n_obs:] if n_obs else ()),
               s.slot)
        cut = (n_focal, n_setup, n_prefix, n_obs) != (len(focal), len(setup), len(prefix), len(observed))
        return ids, cut

    def prompt_stats(self, tasks: Sequence[Task]) -> dict[str, float]:
        """How long the tasks' whole contexts are, in tokens, against ``max_prompt``: the median
        and 90th percentile length, and the share of prompts that lose something, by part."""
        lengths, cut = [], {"any": 0, "setup": 0, "focal": 0, "prefix": 0, "observations": 0}
        for task in tasks:
            focal, setup, prefix, observed = self.parts(task)
            lengths.append(len(focal) + len(setup) + len(prefix) + len(observed) + 3)
            ids, was_cut = self._fit(focal, setup, prefix, observed)
            if was_cut:
                cut["any"] += 1
                kept = len(ids) - 3
                need = {"observations": len(observed), "prefix": len(prefix), "focal": len(focal), "setup": len(setup)}
                for part in ("observations", "prefix", "focal", "setup"):  # the reverse of the cutting order
                    if kept >= need[part]:
                        kept -= need[part]
                    else:
                        cut[part] += 1
                        kept = 0
        lengths.sort()
        n = max(len(tasks), 1)
        return {"median": float(lengths[len(lengths) // 2]) if lengths else 0.0,
                "p90": float(lengths[int(0.9 * (len(lengths) - 1))]) if lengths else 0.0,
                **{f"cut_{k}": v / n for k, v in cut.items()}}

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
