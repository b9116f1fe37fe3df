"""Observations: what an expression evaluates to at a task's slot, on the unmutated library.

``observe(task, ["len(G)", "sorted(G.edges())"])`` runs the task's setup and prefix, then each
expression in its own confined child, as a candidate runs: the expression is model output,
so it passes the same static gate (:func:`sandbox.gate.check_expression`) and runs under the
same capability layer. What comes back is its observable form (:mod:`sandbox.observable`). With
``Limits.confirm`` (the default) a second run in the other server process — another hash seed,
``random`` seed and memory layout — must give the same form, or the observation is ``none``
with the reason "nondeterministic". Mutants are never loaded; the task's target is never read.
"""

from __future__ import annotations

import ast
import builtins
from typing import Sequence

from .api import Limits, server_for
from .execution import Verdict
from .observable import Observation, agree, unobservable
from .tasks import Task
from .zygote import ZygoteServer, job_for

__all__ = ["observe", "observe_on", "observation_of", "Binding", "bindings"]

_BUILTINS = frozenset(dir(builtins))


def observation_of(verdict: Verdict) -> Observation:
    """The observation an observing run's verdict carries, or why there is none."""
    if verdict.observation is not None:
        try:
            return Observation.from_dict(verdict.observation)
        except ValueError as err:
            return unobservable(f"malformed observation ({err})")
    if verdict.status == "rejected":
        return unobservable(f"rejected: {verdict.reason}")
    return unobservable(f"{verdict.status}: {verdict.reason}" if verdict.reason else verdict.status)


def observe(task: Task, expressions: Sequence[str], *, limits: Limits | None = None) -> list[Observation]:
    """Each expression's observation at ``task``'s slot (see the module docstring)."""
    limits = limits or Limits()
    return [observation_of(v) for v in observe_on(server_for(task.package, limits), task, expressions, limits=limits)]


def observe_on(server: ZygoteServer, task: Task, expressions: Sequence[str], *, limits: Limits) -> list[Verdict]:
    """:func:`observe` on a given server (a pool worker's), as verdicts whose ``observation``
    is always set: ``passed`` when the expression was evaluated (or raised), else the status
    that stopped it."""
    def jobs(exprs: Sequence[str], replica: int) -> list[dict]:
        return [job_for(task, e, timeout=limits.timeout_s, gate=limits.gate, guard=limits.capabilities, seed=replica,
                        messages=False, observe=True) for e in exprs]

    verdicts = server.run(task.test_module, jobs(expressions, 0))
    firsts = [observation_of(v) for v in verdicts]
    seen = [i for i, o in enumerate(firsts) if o.observed]
    if min(limits.replicas, server.replicas) > 1 and seen:
        again = server.run(task.test_module, jobs([expressions[i] for i in seen], 1), replica=1)
        for i, v in zip(seen, again):
            firsts[i] = agree(firsts[i], observation_of(v))
    for v, o in zip(verdicts, firsts):
        v.observation = o.to_dict()
        if not o.observed and v.status == "passed":
            v.status, v.reason = "failed", o.reason
    return verdicts


# --------------------------------------------------------------------------- what a prefix binds


class Binding(tuple):
    """``(name, computed)``: a name the prefix binds, and whether its last binding computed it."""

    __slots__ = ()

    def __new__(cls, name: str, computed: bool) -> Binding:
        return super().__new__(cls, (name, computed))

    @property
    def name(self) -> str:
        return self[0]

    @property
    def computed(self) -> bool:
        return self[1]


def _targets(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for e in node.elts for n in _targets(e)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return []  # attributes and items bind no name


def _computes(value: ast.expr | None, computed: set[str]) -> bool:
    """Whether ``value`` calls something other than a builtin (a method, the library, a
    helper of the test) or reads a name whose binding computed it."""
    if value is None:
        return False
    for node in ast.walk(value):
        if isinstance(node, ast.Call):
            func = node.func
            if not (isinstance(func, ast.Name) and func.id in _BUILTINS):
                return True
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in computed:
            return True
    return False


def bindings(prefix: str) -> list[Binding]:
    """The names ``prefix`` binds in its own scope (assignments, augmented and annotated ones,
    ``for`` and ``with`` targets — not comprehension variables, imports or definitions), in
    the order of their last binding, each marked *computed* when that binding's value calls
    something other than a builtin or reads a computed name (``expected = {2}`` is not
    computed; ``r = sorted(nx.bfs_tree(G, 0))`` and ``n = len(r)`` are). Empty when the prefix
    does not parse."""
    try:
        tree = ast.parse(prefix)
    except SyntaxError:
        return []
    computed: set[str] = set()
    order: dict[str, int] = {}
    step = 0

    def bind(names: list[str], value: ast.expr | None, also: bool = False) -> None:
        nonlocal step
        is_computed = also or _computes(value, computed)
        for name in names:
            step += 1
            order.pop(name, None)
            order[name] = step
            (computed.add if is_computed else computed.discard)(name)

    def visit(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.Assign):
                bind([n for t in stmt.targets for n in _targets(t)], stmt.value)
            elif isinstance(stmt, ast.AugAssign):
                names = _targets(stmt.target)
                bind(names, stmt.value, also=any(n in computed for n in names))
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                bind(_targets(stmt.target), stmt.value)
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                bind(_targets(stmt.target), stmt.iter)
                visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    if item.optional_vars is not None:
                        bind(_targets(item.optional_vars), item.context_expr)
                visit(stmt.body)
            elif isinstance(stmt, (ast.If, ast.While)):
                visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                    visit(block)

    visit(tree.body)
    return [Binding(name, name in computed) for name in sorted(order, key=order.__getitem__)]
