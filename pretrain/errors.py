"""Errors a user can cause in Stage 1; each message names the thing and the fix.

Kept free of torch so the CLI can recognise them without importing it.
"""

from __future__ import annotations


class PretrainError(ValueError):
    """Base of Stage 1's user-facing errors."""


class TokenizerError(PretrainError):
    """A tokenizer directory that cannot be used."""


class ModelError(PretrainError):
    """A model directory or backbone that cannot be used."""


class TrainError(PretrainError):
    """A run that cannot start or go on."""
