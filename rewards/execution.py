"""Execution rewards — ``pass``, ``kill``, ``pans``, ``focal`` — and the verdicts they share.

An execution reward reads one sandbox :class:`~sandbox.execution.Verdict` per candidate from
the ``verdicts`` column. Whoever calls it first computes that column once — a composition for
all its components, :class:`~rewards.registry.Reward` for a reward called alone — so a
candidate runs in the sandbox once however many rewards read its verdict. Rewards handed to a
trainer as separate functions share the verdicts of the batch they are called on in turn
(:func:`run_verdicts` keeps the last batch's).

Verdicts come from an *executor*: anything with ``score(items, *, mutants) -> list[list[Verdict]]``
over ``(task, candidates)`` pairs. :class:`sandbox.pool.Pool` is one (many workers);
:class:`SerialExecutor` (the default) runs ``sandbox.execute`` in this process.

A candidate's task comes from the ``task`` column: a :class:`~sandbox.tasks.Task`, its dict
(``Task.to_dict()``), or that dict as a JSON string (what a dataset column holds best).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import threading
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from .registry import RewardError, reward

if TYPE_CHECKING:
    from sandbox.api import Limits
    from sandbox.execution import Verdict
    from sandbox.tasks import Task

__all__ = ["Executor", "SerialExecutor", "run_verdicts", "as_verdicts", "as_tasks", "passes", "kill", "pans",
           "pans_parts", "focal", "calls_focal"]


class Executor(Protocol):
    """Runs candidates in tasks' slots; :class:`sandbox.pool.Pool` is one."""

    def score(self, items: Sequence[tuple[Task, Sequence[str]]], *, mutants: bool = True) -> list[list[Verdict]]: ...


class SerialExecutor:
    """``sandbox.execute`` for each task in turn, in this process (its zygote servers are
    started on first use and kept for the life of the process)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits

    def score(self, items: Sequence[tuple[Task, Sequence[str]]], *, mutants: bool = True) -> list[list[Verdict]]:
        from sandbox.api import execute

        return [execute(task, list(cands), mutants=mutants, limits=self.limits) for task, cands in items]


# The verdicts of the last batch this process ran, so that execution rewards handed to a
# trainer as separate functions (TRL calls them one after the other on the same batch) share
# one sandbox run per candidate: (task ids and candidates, ran under mutants, verdicts).
_LAST: tuple[tuple, bool, list] | None = None
_LAST_LOCK = threading.Lock()


def run_verdicts(completions: Sequence[str], columns: Mapping[str, Any], *, mutants: bool,
                 executor: Executor | None = None, who: str = "an execution reward") -> list[Verdict]:
    """One verdict per completion, from one executor call: candidates are grouped by task.

    The same batch asked for again (the same tasks and candidates, mutants no more than last
    time) gets the last verdicts back without running anything, unless one of them was ``infra``.
    """
    global _LAST
    tasks = as_tasks(columns.get("task"), len(completions), who=who)
    key = tuple((t.id, c) for t, c in zip(tasks, completions))
    with _LAST_LOCK:
        last = _LAST
    if last is not None and last[0] == key and (last[1] or not mutants):
        return [copy.deepcopy(v) for v in last[2]]
    verdicts = _run(tasks, completions, mutants, executor, who)
    if not any(v.status == "infra" for v in verdicts):
        with _LAST_LOCK:
            _LAST = (key, mutants, [copy.deepcopy(v) for v in verdicts])
    return verdicts


def _run(tasks: list[Task], completions: Sequence[str], mutants: bool, executor: Executor | None,
         who: str) -> list[Verdict]:
    groups: dict[str, tuple[Task, list[int]]] = {}
    for i, task in enumerate(tasks):
        groups.setdefault(task.id, (task, []))[1].append(i)
    items = [(task, [completions[i] for i in idx]) for task, idx in groups.values()]
    rows = (executor or SerialExecutor()).score(items, mutants=mutants)
    out: list[Verdict | None] = [None] * len(completions)
    for (_, idx), row in zip(groups.values(), rows):
        if len(row) != len(idx):
            raise RewardError(f"{who}: the executor returned {len(row)} verdict(s) for {len(idx)} candidate(s)")
        for i, v in zip(idx, row):
            out[i] = v
    return out  # type: ignore[return-value]


def as_verdicts(column: Sequence[Any]) -> list[Verdict]:
    """The ``verdicts`` column as :class:`Verdict` objects (dicts, e.g. lines of a
    ``trident score`` output file, are converted)."""
    from sandbox.execution import STATUSES, Verdict

    out = []
    for i, v in enumerate(column):
        if isinstance(v, Mapping):
            known = {k: v[k] for k in ("status", "reason", "seconds", "kills", "mutants", "tier") if k in v}
            if "status" not in known:
                raise RewardError(f"verdict {i} has no 'status': {dict(v)!r}")
            v = Verdict(**known)
        if not isinstance(v, Verdict) or v.status not in STATUSES:
            raise RewardError(f"verdict {i} is not a sandbox Verdict with a known status: {v!r}")
        out.append(v)
    return out


def as_tasks(column: Any, n: int, *, who: str = "an execution reward") -> list[Task]:
    """The ``task`` column as :class:`Task` objects."""
    from sandbox.tasks import Task

    if column is None:
        raise RewardError(f"{who} needs a 'task' column (one Task, task dict or task JSON per completion) "
                          "or a 'verdicts' column")
    if not isinstance(column, (list, tuple)) or len(column) != n:
        raise RewardError(f"{who}: the 'task' column must hold one task per completion ({n})")
    out = []
    for i, item in enumerate(column):
        if isinstance(item, Task):
            out.append(item)
        elif isinstance(item, str):
            out.append(_task_from_json(item))
        elif isinstance(item, Mapping):
            out.append(Task.from_dict(dict(item), where=f"task column, row {i}"))
        else:
            raise RewardError(f"{who}: task column row {i} is a {type(item).__name__}, not a Task, dict or JSON string")
    return out


@functools.lru_cache(maxsize=4096)
def _task_from_json(text: str) -> Task:
    from sandbox.tasks import Task

    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RewardError(f"task column: not a task's JSON ({err.msg})") from None
    return Task.from_dict(data, where="task column")


def _maybe_tasks(task: Any, n: int) -> list[Task] | None:
    return None if task is None else as_tasks(task, n)


def _verdicts(completions: Sequence[str], verdicts: Any, task: Any, mutants: bool, who: str) -> list[Verdict]:
    """The given verdicts, or (a built-in called directly, not through Reward) fresh ones."""
    if verdicts is None:
        return run_verdicts(completions, {"task": task}, mutants=mutants, who=who)
    return as_verdicts(verdicts)


# --------------------------------------------------------------------------- rewards


@reward("pass", mutants=False)
def passes(prompts: Sequence[Any], completions: Sequence[str], verdicts: Sequence[Verdict] | None = None,
           task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """1.0 when the candidate passed in the task's slot, else 0.0; None for an ``infra`` verdict."""
    vs = _verdicts(completions, verdicts, task, False, "reward 'pass'")
    return [None if v.status == "infra" else float(v.status == "passed") for v in vs]


@reward("kill", mutants=True)
def kill(prompts: Sequence[Any], completions: Sequence[str], verdicts: Sequence[Verdict] | None = None,
         task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """Fraction of the task's mutants the candidate killed (only a passing candidate kills).

    None for an ``infra`` verdict and for a task without mutants. Without a ``task`` column the
    denominator is the verdict's ``mutants`` (a passing candidate's count of mutant runs).
    """
    vs = _verdicts(completions, verdicts, task, True, "reward 'kill'")
    tasks = _maybe_tasks(task, len(vs))
    out: list[float | None] = []
    for i, v in enumerate(vs):
        if v.status == "infra":
            out.append(None)
            continue
        total = len(tasks[i].mutants) if tasks is not None else v.mutants
        if tasks is None and v.status != "passed":
            out.append(0.0)
        elif total == 0:
            out.append(None)
        elif v.status == "passed" and v.mutants == 0:
            raise RewardError(f"reward 'kill': candidate {i} passed but ran under no mutants while its task has "
                              f"{total}; score it with mutants=True")
        else:
            mutant_ids = {m.id for m in tasks[i].mutants} if tasks is not None else None
            kills = [k for k in v.kills if mutant_ids is None or k in mutant_ids]
            out.append(len(set(kills)) / total)
    return out


def pans_parts(candidate: str) -> dict[str, bool]:
    """The static parts of PANS: ``syntactic`` (parses), ``assertion`` (a top-level ``assert``),
    ``nontrivial`` (the sandbox's static gate accepts it: no forbidden construct and no vacuous
    assertion; the rule about names the task provides needs the task's module and is applied by
    the sandbox at run time)."""
    from sandbox import gate

    try:
        tree = ast.parse(candidate)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {"syntactic": False, "assertion": False, "nontrivial": False}
    return {"syntactic": True,
            "assertion": any(isinstance(s, ast.Assert) for s in tree.body),
            "nontrivial": gate.check(candidate) is None}


@reward("pans", mutants=False)
def pans(prompts: Sequence[Any], completions: Sequence[str], verdicts: Sequence[Verdict] | None = None,
         task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """1.0 when the candidate is Passing, Assertion-bearing, Non-trivial and Syntactically valid
    (see :func:`pans_parts` and docs/rewards.md), else 0.0; None for an ``infra`` verdict."""
    vs = _verdicts(completions, verdicts, task, False, "reward 'pans'")
    out: list[float | None] = []
    for c, v in zip(completions, vs):
        if v.status == "infra":
            out.append(None)
        else:
            parts = pans_parts(c)
            out.append(float(v.status == "passed" and all(parts.values())))
    return out


def calls_focal(candidate: str, focal_functions: Sequence[str]) -> bool:
    """Whether ``candidate`` calls one of ``focal_functions`` (``"file::qualname"``, a task's
    functions under test) by name: a call ``f(...)`` or ``obj.f(...)`` whose ``f`` is the last part
    of a qualname. A method called implicitly (``__eq__`` by ``==``) does not count; a candidate
    that does not parse calls nothing."""
    names = {q.rsplit("::", 1)[-1].rsplit(".", 1)[-1] for q in focal_functions}
    try:
        tree = ast.parse(candidate)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None) in names:
                return True
    return False


@reward("focal", mutants=False)
def focal(prompts: Sequence[Any], completions: Sequence[str], verdicts: Sequence[Verdict] | None = None,
          task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """1.0 when the candidate passed and calls one of its task's functions under test (see
    :func:`calls_focal`), else 0.0; None for an ``infra`` verdict. Needs the ``task`` column.

    A kill needs the assertion to reach mutated code: on the networkx corpus the candidates that
    call a focal function kill about 3x as often as those that do not (docs/rewards.md), so this
    is a denser stand-in for ``kill``, scored on every task, with or without mutants."""
    if task is None:
        raise RewardError("reward 'focal' needs a 'task' column (the functions under test come from the task); "
                          "pass task=[...] or score it through a composition with the task column")
    vs = _verdicts(completions, verdicts, task, False, "reward 'focal'")
    tasks = as_tasks(task, len(vs), who="reward 'focal'")
    return [None if v.status == "infra" else float(v.status == "passed" and calls_focal(c, t.focal_functions))
            for c, v, t in zip(completions, vs, tasks)]
