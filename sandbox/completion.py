"""Completion: the model chooses what to check, execution says what the value is.

A candidate assertion has two parts of very different kinds. *What to check* -- which
expression, about which object, after which setup -- is the judgement the model is trained to
make. *What the value is* is a fact about the library that running the test's prefix settles
exactly. Completion splits the two: the sandbox observes the candidate's expression on the real
library, and :func:`fill` writes the observed value in place of the model's literal.

In RL the filled literal is the environment's, not the policy's: its tokens carry no
log-probability and receive no gradient; only the model's own text (the expression, and the
message if any) is credited or blamed.

Forms that are completed (exactly one ``assert`` statement, one comparison, one operator; the
expression must not itself be a literal)::

    assert EXPR == LITERAL          # LITERAL: anything ast.literal_eval accepts, incl. set()
    assert EXPR == pytest.approx(...)   # or approx(...)
    assert LITERAL == EXPR          # mirror; the completed form puts EXPR on the left
    assert len(X) == N              # the first form with EXPR = len(X)
    assert EXPR is None             # likewise ``is True`` and ``is False``

A message (``assert ..., MSG``) is allowed and kept. The observed value decides the operator:
``None``, ``True`` and ``False`` give ``assert EXPR is VALUE``; any other literal, and an
approximate float, give ``assert EXPR == TEXT``.

What is kept as written: the model's text for EXPR and MSG, spliced from the candidate by
source position (never re-unparsed, so its spacing and line breaks survive; parentheses are
added around it only where the new assertion would otherwise parse differently); every
candidate outside the forms above (``!=``, ``<``, ``in``, ``and``, several statements, a bare
``assert EXPR``, a syntax error); and every candidate whose observation is not a value
(kinds ``len``, ``object``, ``raises``, ``none``). A completion that differs from the candidate
only in whitespace or comments returns the candidate itself, so filling is idempotent.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Completed", "complete", "fill", "observed_expression"]

_SINGLETONS = (None, True, False)


@dataclass(frozen=True)
class Completed:
    """The result of completing one candidate.

    ``text`` is the candidate after completion; ``filled`` says whether it differs from the
    candidate; ``expression`` is the observed expression (None outside the completed forms);
    ``kind`` is the observation's kind.
    """

    text: str
    filled: bool
    expression: str | None
    kind: str | None


@dataclass(frozen=True)
class _Form:
    expr: ast.expr
    expr_text: str
    msg: ast.expr | None
    msg_text: str | None


def _is_approx(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "approx"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "approx"
        and isinstance(func.value, ast.Name)
        and func.value.id == "pytest"
    )


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_expected(node: ast.expr) -> bool:
    return _is_literal(node) or _is_approx(node)


def _one_comparison(source: str) -> tuple[ast.Assert, ast.Compare] | None:
    """The assert statement and its comparison when ``source`` is one ``assert A <op> B[, MSG]``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    stmt = tree.body[0]
    if not isinstance(stmt.test, ast.Compare) or len(stmt.test.ops) != 1:
        return None
    return stmt, stmt.test


def _parse_form(candidate: str) -> _Form | None:
    found = _one_comparison(candidate)
    if found is None:
        return None
    stmt, test = found
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, ast.Eq):
        if _is_expected(right) and not _is_expected(left):
            expr = left
        elif _is_expected(left) and not _is_expected(right):
            expr = right
        else:
            return None
    elif isinstance(op, ast.Is):
        if not (isinstance(right, ast.Constant) and any(right.value is v for v in _SINGLETONS)):
            return None
        if _is_expected(left):
            return None
        expr = left
    else:
        return None
    expr_text = ast.get_source_segment(candidate, expr)
    if expr_text is None:
        return None
    msg_text = None
    if stmt.msg is not None:
        msg_text = ast.get_source_segment(candidate, stmt.msg)
        if msg_text is None:
            return None
    return _Form(expr, expr_text, stmt.msg, msg_text)


def observed_expression(candidate: str) -> str | None:
    """The source text of the expression to observe, exactly as written in ``candidate``.

    None unless ``candidate`` is one of the completed forms (see the module docstring).
    """
    form = _parse_form(candidate)
    return None if form is None else form.expr_text


def _target(observation: dict) -> tuple[type[ast.cmpop], str] | None:
    """The operator and right-hand text the observation calls for, or None to keep the candidate."""
    kind = observation.get("kind")
    text = observation.get("text")
    if not isinstance(text, str):
        return None
    if kind == "literal":
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if any(value is v for v in _SINGLETONS):
            return ast.Is, repr(value)
        return ast.Eq, text.strip()
    if kind == "approx":
        return ast.Eq, text.strip()
    return None


def _matches(source: str, form: _Form, op: type[ast.cmpop], value: ast.expr) -> bool:
    """Whether ``source`` parses to ``assert <form.expr> <op> <value>[, <form.msg>]``."""
    found = _one_comparison(source)
    if found is None or not isinstance(found[1].ops[0], op):
        return False
    stmt, test = found
    if ast.dump(test.left) != ast.dump(form.expr) or ast.dump(test.comparators[0]) != ast.dump(value):
        return False
    if form.msg is None:
        return stmt.msg is None
    return stmt.msg is not None and ast.dump(stmt.msg) == ast.dump(form.msg)


def _significant_tokens(source: str) -> list[tuple[int, str]] | None:
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.COMMENT}
    try:
        return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type not in skip]
    except (tokenize.TokenError, SyntaxError):
        return None


def fill(candidate: str, observation: dict) -> str:
    """``candidate`` with its literal replaced by the observed value.

    The result is ``assert EXPR == TEXT`` or ``assert EXPR is None|True|False`` (with ``, MSG``
    if the candidate had a message), EXPR and MSG spliced verbatim from the candidate. The
    candidate is returned unchanged outside the completed forms, for observations that are not
    values, and when the result would differ from it only in whitespace or comments.
    """
    form = _parse_form(candidate)
    if form is None or not isinstance(observation, dict):
        return candidate
    target = _target(observation)
    if target is None:
        return candidate
    op, text = target
    try:
        value = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return candidate
    op_text = " is " if op is ast.Is else " == "
    tail = "" if form.msg_text is None else ", " + form.msg_text
    result = None
    for left in (form.expr_text, f"({form.expr_text})"):
        for right in (text, f"({text})"):
            attempt = "assert " + left + op_text + right + tail
            if _matches(attempt, form, op, value):
                result = attempt
                break
        if result is not None:
            break
    if result is None:
        return candidate
    before, after = _significant_tokens(candidate), _significant_tokens(result)
    if before is not None and before == after:
        return candidate
    return result


def complete(candidate: str, observation: dict) -> Completed:
    """Fill ``candidate`` from ``observation`` and say what happened."""
    text = fill(candidate, observation)
    kind = observation.get("kind") if isinstance(observation, dict) else None
    return Completed(
        text=text,
        filled=text != candidate,
        expression=observed_expression(candidate),
        kind=kind if isinstance(kind, str) else None,
    )


def to_observe(candidates: Sequence[str]) -> list[str]:
    """The expressions to observe for ``candidates``: one per completable candidate, in order,
    parenthesised (a multi-line expression is legal only inside brackets)."""
    return [f"({e})" for e in map(observed_expression, candidates) if e is not None]


def complete_all(candidates: Sequence[str], observations: Sequence[dict]) -> list[Completed]:
    """Each candidate completed, ``observations`` holding one per :func:`to_observe` expression."""
    seen = iter(observations)
    return [complete(c, next(seen)) if observed_expression(c) is not None else Completed(c, False, None, None)
            for c in candidates]
