"""The tokenizer: byte-level BPE trained on the corpus's own code, with Trident's special tokens.

Special tokens, always looked up by name through :class:`SpecialIds` (never hard-coded ids):

- ``[PAD]`` fills the slot after ``[EOS]`` and pads batches; ``[MASK]`` is a position still to
  be decided; ``[WRONG]`` is the LM target at a position holding a wrong token;
- ``[EOS]`` ends the assertion inside the slot;
- ``[FOCAL]``, ``[PREFIX]``, ``[SLOT]`` open the three segments of a model input.

The tokenizer is trained with ``tokenizers`` on focal context, prefixes and targets of the
training split, and saved as a transformers fast tokenizer, so ``AutoTokenizer`` (or
:func:`load_tokenizer`) reads it back offline from a model directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from transformers import PreTrainedTokenizerFast

from .context import observation_lines, strip_focal
from .errors import TokenizerError

SPECIAL_TOKENS = ("[PAD]", "[MASK]", "[WRONG]", "[EOS]", "[FOCAL]", "[PREFIX]", "[SLOT]")


@dataclass(frozen=True)
class SpecialIds:
    """Ids of Trident's special tokens, read from a tokenizer."""

    pad: int
    mask: int
    wrong: int
    eos: int
    focal: int
    prefix: int
    slot: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerFast) -> SpecialIds:
        ids = {}
        for name, token in zip(("pad", "mask", "wrong", "eos", "focal", "prefix", "slot"), SPECIAL_TOKENS):
            tid = tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(tid) != token:
                raise TokenizerError(
                    f"tokenizer lacks the special token {token}; train one with `trident sft` "
                    f"(it builds the tokenizer) or pretrain.tokenizer.train_tokenizer"
                )
            ids[name] = tid
        return cls(**ids)

    def all(self) -> tuple[int, ...]:
        return (self.pad, self.mask, self.wrong, self.eos, self.focal, self.prefix, self.slot)

    def never_generated(self) -> tuple[int, ...]:
        """Tokens a sampler never commits in a slot ([EOS] and [PAD] it handles itself)."""
        return (self.mask, self.wrong, self.focal, self.prefix, self.slot)


def task_texts(tasks: Iterable) -> Iterator[str]:
    """The code a tokenizer learns from: what the prompt shows of each task (focal code, setup,
    prefix, observations; see :mod:`pretrain.data`) and its target."""
    for task in tasks:
        yield strip_focal(task.focal)
        yield task.setup
        yield task.prefix
        yield "\n".join(observation_lines(task))
        yield task.target


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it with the special tokens.

    Byte-level, so any code (any Unicode) encodes without an unknown token; no added
    prefix space, so ``assert`` at the start of a slot and after a newline tokenize alike.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        mask_token="[MASK]",
        eos_token="[EOS]",
        additional_special_tokens=["[WRONG]", "[FOCAL]", "[PREFIX]", "[SLOT]"],
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Read a tokenizer saved by :func:`save_tokenizer` (or a model directory holding one)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise TokenizerError(f"no tokenizer in '{path}' (tokenizer.json missing); train one with `trident sft`")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    SpecialIds.from_tokenizer(tokenizer)  # fail here, clearly, if it is not a Trident tokenizer
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    # One line for humans: which tokens are special and what the vocabulary size is.
    (path / "trident_tokenizer.json").write_text(
        json.dumps({"vocab_size": len(tokenizer), "special": dict(zip(SPECIAL_TOKENS, SpecialIds.from_tokenizer(tokenizer).all()))},
                   indent=1) + "\n")
