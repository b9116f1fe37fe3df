"""Trident rewards as TRL reward functions.

``GRPOTrainer(reward_funcs=[to_trl("token_f1"), to_trl(composition)], ...)``. TRL calls a
reward function as ``f(prompts=, completions=, completion_ids=, **kw)``, where ``kw`` holds
every other dataset column (as lists, one value per completion) and ``trainer_state``,
``log_extra`` and ``log_metric``; it logs ``rewards/<f.__name__>/mean`` and turns ``None`` into
NaN. :class:`TRLReward` takes the text out of conversational completions, passes the columns
on (a Trident reward picks the ones it takes), and for a composition also logs each component
(``rewards/<composition>/<label>/mean`` through ``log_metric``, and one completions-table column
each through ``log_extra``).

Nothing here imports TRL or torch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .composition import Composition, metrics
from .registry import Reward, resolve

__all__ = ["TRLReward", "to_trl"]


class TRLReward:
    """A :class:`Reward` or :class:`Composition` in the shape TRL's trainers call."""

    def __init__(self, reward: Reward | Composition) -> None:
        self.reward = reward
        self.__name__ = reward.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Any] | None = None,
                 log_extra: Callable[[str, list], None] | None = None,
                 log_metric: Callable[[str, float], None] | None = None, **columns: Any) -> list[float | None]:
        texts = [_text(c) for c in completions]
        if completion_ids is not None:
            columns["completion_ids"] = completion_ids
        if not isinstance(self.reward, Composition):
            return self.reward(list(prompts), texts, **columns)
        scored = self.reward.score(list(prompts), texts, **columns)
        if log_metric is not None:
            for key, value in metrics(scored, name=self.reward.name, nested=True).items():
                if key != f"rewards/{self.reward.name}/mean":  # TRL logs the total itself
                    log_metric(key, value)
        if log_extra is not None:
            for label, _, _ in self.reward.components:
                log_extra(label, [s.components[label] for s in scored])
            if self.reward.execution:
                log_extra("status", [s.verdict.status if s.verdict is not None else None for s in scored])
        return [s.total for s in scored]

    def __repr__(self) -> str:
        return f"TRLReward({self.reward!r})"


def to_trl(reward: str | Reward | Composition | Callable[..., Any], /, **kwargs: Any) -> TRLReward:
    """A TRL reward function for a reward name, ``"package.module:function"`` path, Reward,
    Composition or plain function (``kwargs`` are bound to a reward, not a composition)."""
    if isinstance(reward, Composition):
        if kwargs:
            raise TypeError("keyword arguments bind to one reward; set a composition's through its config")
        return TRLReward(reward)
    return TRLReward(resolve(reward, **kwargs))


def _text(completion: Any) -> str:
    """A completion's text: a string as is; a conversation's last message's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        return str(content)
    return str(completion)
