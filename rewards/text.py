"""Text rewards: ``ast_valid``, ``exact_match``, ``token_f1``, ``length``.

Pure functions of the candidate (and the task's target): no sandbox, no model. The target
comes from the ``target`` column, else from the ``task`` column's ``target``.
"""

from __future__ import annotations

import ast
import io
import tokenize
import warnings
from collections import Counter
from typing import Any, Literal, Sequence

from .registry import RewardError, reward

__all__ = ["ast_valid", "exact_match", "token_f1", "length", "normalise", "python_tokens", "targets", "f1"]

# Token types that carry no content of their own: layout and comments.
_SKIP = frozenset({tokenize.ENCODING, tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.ENDMARKER, tokenize.COMMENT})


def targets(n: int, target: Sequence[str] | None, task: Sequence[Any] | None, who: str) -> list[str]:
    """The target of each candidate: the ``target`` column, else each task's ``target``."""
    if target is not None:
        if isinstance(target, str) or len(target) != n:
            raise RewardError(f"{who}: the 'target' column must hold one string per completion ({n})")
        return [str(t) for t in target]
    if task is not None:
        from .execution import as_tasks

        return [t.target for t in as_tasks(task, n, who=who)]
    raise RewardError(f"{who} needs a 'target' column (or a 'task' column to take the target from)")


def parse(text: str) -> ast.Module | None:
    """The module ``text`` parses to, or None (empty or whitespace-only text is not valid)."""
    try:
        with warnings.catch_warnings():  # model-written text: "invalid escape" and the like are noise here
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return tree if tree.body else None


def normalise(text: str) -> str | None:
    """``text`` formatted by ``ast.unparse`` (whitespace, parentheses, quotes and comments
    normalised), or None when it does not parse."""
    tree = parse(text)
    return None if tree is None else ast.unparse(tree)


def python_tokens(text: str) -> list[str]:
    """The strings of ``text``'s Python tokens, without layout and comments. Text that does
    not tokenize to the end (an unclosed bracket or string) keeps the tokens read so far."""
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in _SKIP and tok.string:
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return out


def f1(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """F1 of two token multisets: 2·|C ∩ R| / (|C| + |R|); 1.0 when both are empty."""
    if not candidate and not reference:
        return 1.0
    overlap = sum((Counter(candidate) & Counter(reference)).values())
    return 2.0 * overlap / (len(candidate) + len(reference))


@reward("ast_valid")
def ast_valid(prompts: Sequence[Any], completions: Sequence[str], **_: Any) -> list[float | None]:
    """1.0 when the candidate parses as Python (``ast.parse``) into at least one statement, else 0.0."""
    return [float(parse(c) is not None) for c in completions]


@reward("exact_match")
def exact_match(prompts: Sequence[Any], completions: Sequence[str], target: Sequence[str] | None = None,
                task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """1.0 when the candidate equals the target after both are normalised by :func:`normalise`
    (a candidate that does not parse scores 0.0; a target that does not parse is compared with
    its whitespace runs collapsed), else 0.0."""
    refs = targets(len(completions), target, task, "reward 'exact_match'")
    out: list[float | None] = []
    for c, t in zip(completions, refs):
        cand = normalise(c)
        ref = normalise(t)
        if ref is None:  # only a broken target: compare its text with whitespace collapsed
            out.append(float(" ".join(c.split()) == " ".join(t.split())))
        else:
            out.append(float(cand is not None and cand == ref))
    return out


@reward("token_f1")
def token_f1(prompts: Sequence[Any], completions: Sequence[str], target: Sequence[str] | None = None,
             task: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """F1 of the candidate's and the target's Python tokens (:func:`python_tokens`), counted
    as multisets."""
    refs = targets(len(completions), target, task, "reward 'token_f1'")
    return [f1(python_tokens(c), python_tokens(t)) for c, t in zip(completions, refs)]


@reward("length")
def length(prompts: Sequence[Any], completions: Sequence[str], unit: Literal["tokens", "chars"] = "tokens",
           **_: Any) -> list[float | None]:
    """The candidate's length: Python tokens (:func:`python_tokens`) or characters of its
    stripped text. A measure, not a goal: give it a negative weight for a length penalty."""
    if unit == "tokens":
        return [float(len(python_tokens(c))) for c in completions]
    if unit == "chars":
        return [float(len(c.strip())) for c in completions]
    raise RewardError(f"reward 'length': unit must be 'tokens' or 'chars', not {unit!r}")
