"""Modifiers a user might write, loaded by path in the tests ('user_modifiers:NAME')."""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.losses import Modifier


@dataclass(eq=False)
class ScaleAll(Modifier):
    """Multiplies every weight by ``factor``: a typed (dataclass) user modifier."""

    factor: float = 1.0

    def __call__(self, state) -> None:
        state.weights = state.weights * self.factor
        state.metrics[self.metric("factor")] = self.factor


class AddConstant(Modifier):
    """Adds a constant extra term: a plain-class user modifier, its keywords are its parameters."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value

    def __call__(self, state) -> None:
        state.add_extra("constant", state.logits.new_tensor(self.value))


class ShiftLogitsInPlace(Modifier):
    """Changes the logits in place: wrong after a loss-reader, and caught."""

    def __call__(self, state) -> None:
        state.logits.detach().add_(1.0)  # shares the version counter, so it is seen


class NotAModifier:
    def __call__(self, state) -> None:
        pass
