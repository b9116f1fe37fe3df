"""Mutants: AST mutation operators on library functions, stored as exact source edits.

Generation reads the installed source; application (in a zygote) recompiles the edited file
and swaps the new code object into every live function object that runs the old one, so the
mutation reaches callers however they hold the function (module attribute, ``from`` import,
decorator wrapper).
"""

from __future__ import annotations

import ast
import copy
import gc
import hashlib
import types
from pathlib import Path
from typing import Any, Callable, Iterator

from .slot import find_code, find_def, parse_source
from .tasks import Mutant

OPERATORS = (
    "comparison_flip",
    "boundary",
    "arithmetic_swap",
    "constant_shift",
    "negate_condition",
    "return_value",
    "statement_deletion",
    "argument_swap",
)

_FLIP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.Div: ast.Mult,
          ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}


class MutantError(Exception):
    """A mutant that cannot be applied to the installed library."""


def _span(node: ast.AST) -> tuple[int, int, int, int]:
    return (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def _text(lines: list[bytes], span: tuple[int, int, int, int]) -> str:
    l1, c1, l2, c2 = span
    if l1 == l2:
        return lines[l1 - 1][c1:c2].decode("utf-8")
    parts = [lines[l1 - 1][c1:]] + lines[l1 : l2 - 1] + [lines[l2 - 1][:c2]]
    return b"".join(parts).decode("utf-8")


def _swap_op(node: ast.AST, attr: str, table: dict) -> ast.AST | None:
    op = getattr(node, attr)
    if isinstance(op, list):
        if len(op) != 1 or type(op[0]) not in table:
            return None
        new = copy.copy(node)
        setattr(new, attr, [table[type(op[0])]()])
        return new
    if type(op) not in table:
        return None
    new = copy.copy(node)
    setattr(new, attr, table[type(op)]())
    return new


def _edits(fn: ast.AST) -> Iterator[tuple[str, ast.AST, str]]:
    """(operator, node whose span is replaced, replacement text) for every mutation point."""
    skip: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.JoinedStr):  # f-string internals have unreliable positions
            skip.update(id(n) for n in ast.walk(node))
    docstrings = set()
    for node in ast.walk(fn):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.add(id(body[0]))
            skip.update(id(n) for n in ast.walk(body[0]))
    # Only the body: decorators, defaults and annotations are evaluated at import, not per call.
    for stmt in fn.body:  # type: ignore[attr-defined]
        for node in ast.walk(stmt):
            if id(node) in skip or not hasattr(node, "end_col_offset"):
                continue
            if isinstance(node, ast.Compare):
                for table, name in ((_FLIP, "comparison_flip"), (_BOUNDARY, "boundary")):
                    new = _swap_op(node, "ops", table)
                    if new is not None:
                        yield name, node, f"({ast.unparse(new)})"
            elif isinstance(node, ast.BinOp):
                new = _swap_op(node, "op", _ARITH)
                if new is not None:
                    yield "arithmetic_swap", node, f"({ast.unparse(new)})"
            elif isinstance(node, ast.AugAssign):
                new = _swap_op(node, "op", _ARITH)
                if new is not None:
                    yield "arithmetic_swap", node, ast.unparse(new)
            elif isinstance(node, ast.Constant) and type(node.value) is bool:
                yield "constant_shift", node, repr(not node.value)
            elif isinstance(node, ast.Constant) and type(node.value) is int:
                yield "constant_shift", node, repr(node.value + 1)
                yield "constant_shift", node, repr(node.value - 1)
            elif isinstance(node, ast.BoolOp):
                new = copy.copy(node)
                new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
                yield "negate_condition", node, f"({ast.unparse(new)})"
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                yield "negate_condition", node, f"({ast.unparse(node.operand)})"
            if isinstance(node, (ast.If, ast.While, ast.IfExp)) and id(node.test) not in skip:
                yield "negate_condition", node.test, f"(not ({ast.unparse(node.test)}))"
            elif isinstance(node, ast.Return) and node.value is not None:
                if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                    yield "return_value", node.value, "None"
            elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and id(node) not in docstrings) or (
                isinstance(node, ast.Assign) and all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets)
            ):
                # Deleting a plain-name assignment mostly yields a NameError, which kills
                # nothing; a call statement (append, add, update, ...) or a store into an
                # attribute or item is where deletion tests the test.
                yield "statement_deletion", node, "pass"
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2]):
                a, b = node.args[0], node.args[1]
                if ast.dump(a) != ast.dump(b):
                    new = copy.copy(node)
                    new.args = [b, a] + list(node.args[2:])
                    yield "argument_swap", node, ast.unparse(new)


def generate(package_dir: str | Path, rel_file: str, qualname: str) -> list[Mutant]:
    """All mutants of one function, in source order; deterministic for the same file."""
    path = str(Path(package_dir) / rel_file)
    tree, lines = parse_source(path)
    fn = find_def(tree, qualname)
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return []
    out: list[Mutant] = []
    seen: set[tuple] = set()
    for operator, node, replacement in _edits(fn):
        span = _span(node)
        original = _text(lines, span)
        if original == replacement or (span, replacement) in seen:
            continue
        seen.add((span, replacement))
        digest = hashlib.sha1(f"{rel_file}:{qualname}:{span}:{replacement}".encode()).hexdigest()[:12]
        out.append(Mutant(digest, rel_file, qualname, operator, span, original, replacement))
    return out


def _all_objects() -> list[Any]:
    """Every object the collector tracks, those frozen by ``gc.freeze`` included."""
    if not gc.get_freeze_count():
        return gc.get_objects()
    gc.unfreeze()
    try:
        return gc.get_objects()
    finally:
        gc.freeze()


class Patcher:
    """Applies mutants inside a zygote: compiles each once, swaps code objects in a child."""

    def __init__(self, package_dir: str | Path):
        self.package_dir = Path(package_dir)
        self._compiled: dict[str, list[tuple[types.FunctionType, types.CodeType]]] = {}
        self._index: dict[tuple[str, str], list[types.FunctionType]] | None = None

    def _functions(self, filename: str, qualname: str) -> list[types.FunctionType]:
        for attempt in range(2):
            if self._index is None or attempt == 1:
                index: dict[tuple[str, str], list[types.FunctionType]] = {}
                for obj in _all_objects():
                    if type(obj) is types.FunctionType:
                        c = obj.__code__
                        index.setdefault((c.co_filename, c.co_qualname), []).append(obj)
                self._index = index
            found = self._index.get((filename, qualname))
            if found:
                return found
        return []

    def prepare(self, mutant: Mutant) -> Callable[[], None]:
        """Check and compile ``mutant``; returns the swap to run in the child."""
        if mutant.id not in self._compiled:
            path = self.package_dir / mutant.file
            try:
                _, lines = parse_source(str(path))
            except (OSError, SyntaxError) as err:
                raise MutantError(f"cannot read {mutant.file}: {err}") from None
            l1, c1, l2, c2 = mutant.span
            if l2 > len(lines) or _text(lines, mutant.span) != mutant.original:
                raise MutantError(f"mutant {mutant.id} does not match the installed {mutant.file}; re-mine the tasks")
            head = lines[l1 - 1][:c1]
            tail = lines[l2 - 1][c2:]
            edited = b"".join(lines[: l1 - 1]) + head + mutant.replacement.encode() + tail + b"".join(lines[l2:])
            try:
                code = compile(edited, str(path), "exec", dont_inherit=True)
            except SyntaxError as err:
                raise MutantError(f"mutant {mutant.id} does not compile: {err}") from None
            new = find_code(code, lambda c: c.co_qualname == mutant.qualname)
            if new is None:
                raise MutantError(f"mutant {mutant.id}: {mutant.qualname} not in edited {mutant.file}")
            funcs = self._functions(str(path), mutant.qualname)
            if not funcs:
                raise MutantError(f"mutant {mutant.id}: {mutant.qualname} is not loaded in this process")
            pairs = [(f, new) for f in funcs if len(f.__code__.co_freevars) == len(new.co_freevars)]
            if not pairs:
                raise MutantError(f"mutant {mutant.id}: closure layout of {mutant.qualname} changed")
            self._compiled[mutant.id] = pairs
        pairs = self._compiled[mutant.id]

        def swap() -> None:
            for func, code in pairs:
                func.__code__ = code

        return swap
