"""Tasks from real test suites, and execution whose verdicts a candidate cannot forge.

Light on import: nothing here imports torch or ray, and submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Limits, execute
    from .tasks import Mutant, Task, load_tasks

__all__ = ["execute", "Limits", "Task", "Mutant", "load_tasks"]


def __getattr__(name: str) -> Any:
    if name in ("execute", "Limits"):
        from . import api

        return getattr(api, name)
    if name in ("Task", "Mutant", "load_tasks"):
        from . import tasks

        return getattr(tasks, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
