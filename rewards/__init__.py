"""Reward functions in TRL's signature, their registry, composition and TRL adapter.

``fn(prompts, completions, **columns) -> list[float | None]``. Built-ins: ``pass``, ``kill``,
``pans``, ``focal`` (execution, from sandbox verdicts), ``ast_valid``, ``exact_match``, ``token_f1``,
``length`` (text), ``semantic`` (embedding similarity). See docs/rewards.md.

Light on import: nothing here imports torch or ray (``semantic`` loads sentence-transformers on
its first call), and submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import TRLReward, to_trl
    from .composition import ComponentConfig, Composition, CompositionConfig, Scored, metrics
    from .execution import SerialExecutor
    from .registry import Reward, RewardError, known_rewards, resolve, reward

__all__ = ["reward", "resolve", "known_rewards", "Reward", "RewardError", "Composition", "CompositionConfig",
           "ComponentConfig", "Scored", "metrics", "to_trl", "TRLReward", "SerialExecutor"]

_WHERE = {
    "reward": "registry", "resolve": "registry", "known_rewards": "registry", "Reward": "registry",
    "RewardError": "registry", "Composition": "composition", "CompositionConfig": "composition",
    "ComponentConfig": "composition", "Scored": "composition", "metrics": "composition", "to_trl": "adapter",
    "TRLReward": "adapter", "SerialExecutor": "execution",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'rewards' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
