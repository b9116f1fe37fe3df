"""Rewards of rollouts: the sandbox worker (plain class, wrapped by Ray in the driver) and the
composition of its verdicts into one reward per sample.

A :class:`SandboxWorker` runs one task's candidates against the library and, when the rewards
need it, its mutants — in zygote servers kept for the life of the worker process, so every
iteration after the first finds its libraries imported. :func:`compose` turns the verdicts into
rewards with the composed reward of ``rewards/`` (``infra`` verdicts give no reward: NaN, masked
out by the learner, never scored as 0 or 1) and the metrics of the batch.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch

from rewards.composition import Composition, metrics
from rewards.execution import SerialExecutor
from sandbox.api import Limits
from sandbox.completion import complete_all, to_observe
from sandbox.execution import Verdict
from sandbox.observe import observe
from sandbox.tasks import Task

__all__ = ["SandboxWorker", "compose", "infra_verdicts"]


class SandboxWorker:
    """Verdicts for one task's candidates at a time; its zygotes are reused across calls."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.executor = SerialExecutor(self.limits)

    def score(self, task: Task, candidates: Sequence[str], mutants: bool) -> list[Verdict]:
        return self.executor.score([(task, list(candidates))], mutants=mutants)[0]

    def complete(self, task: Task, candidates: Sequence[str]) -> list[str]:
        """The candidates completed (:mod:`sandbox.completion`): the expression of each
        ``assert EXPR == VALUE`` (and ``is None/True/False``) observed at the task's slot on the
        unmutated library and its value filled in; other candidates as written."""
        asked = to_observe(candidates)
        seen = [o.to_dict() for o in observe(task, asked, limits=self.limits)] if asked else []
        return [c.text for c in complete_all(candidates, seen)]

    def pid(self) -> int:
        return os.getpid()


def infra_verdicts(n: int, reason: str) -> list[Verdict]:
    """What a unit gets when no worker could run it: ``infra`` (masked out, never scored)."""
    return [Verdict("infra", reason) for _ in range(n)]


def compose(composition: Composition, tasks: Sequence[Task], texts: Sequence[str],
            verdicts: Sequence[Verdict]) -> tuple[torch.Tensor, dict[str, float], list[dict[str, Any]]]:
    """Rewards (N,) float (NaN: no reward), batch metrics, and one record per sample.

    Metrics: ``rewards/<component>/mean`` and the total's, ``rl/pass_rate`` and ``rl/kill_rate``
    (killed share of each task's mutants, over samples whose task has mutants) over samples with a
    verdict that is not ``infra``, and ``rl/infra`` (how many were masked out).
    """
    scored = composition.score(None, list(texts), task=list(tasks), verdicts=list(verdicts))
    rewards = torch.tensor([math.nan if s.total is None else s.total for s in scored], dtype=torch.float32)
    out = dict(metrics(scored, name=composition.name))
    ran = [(t, v) for t, v in zip(tasks, verdicts) if v.status != "infra"]
    out["rl/infra"] = float(len(verdicts) - len(ran))
    out["rl/unscored"] = float(int(torch.isnan(rewards).sum()))
    if ran:
        out["rl/pass_rate"] = sum(v.passed for _, v in ran) / len(ran)
        with_mutants = [(t, v) for t, v in ran if t.mutants]
        if with_mutants:
            out["rl/kill_rate"] = sum(len(v.kills) / len(t.mutants) for t, v in with_mutants) / len(with_mutants)
    records = [{"task_id": t.id, "candidate": c, "status": v.status, "kills": len(v.kills), "mutants": len(t.mutants),
                "reward": s.total} for t, c, v, s in zip(tasks, texts, verdicts, scored)]
    return rewards, out, records
