"""Names an assertion reads that its test does not define, and adapting them to the test.

A retrieved assertion comes from another test: most of the time it reads that test's variables
(``T1``, ``answer``) and fails with a NameError here (measured on the networkx valid split: 322
of 522 retrieved targets). :func:`adaptations` rewrites such an assertion onto the names this
test's prefix binds, in every combination up to a cap, for a model to choose from
(:func:`pretrain.sampler.slot_log_likelihood`). Static and torch-free: a name counts as defined
when the test module's setup, the prefix or the builtins bind it, or it is ``self``/``cls``.
"""

from __future__ import annotations

import ast
import builtins
import io
import itertools
import tokenize

from sandbox.tasks import Task

_ALWAYS = frozenset(dir(builtins)) | {"self", "cls"}


def bound_names(source: str) -> list[str]:
    """Names ``source`` binds (assignments, loop and ``with`` targets, imports, defs, parameters),
    in order of first binding; empty when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return _bound_in(tree)


def _bound_in(tree: ast.AST) -> list[str]:
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            name = node.id
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = node.name
        elif isinstance(node, ast.alias):
            name = (node.asname or node.name).split(".")[0]
        elif isinstance(node, ast.arg):
            name = node.arg
        elif isinstance(node, ast.ExceptHandler) and node.name:
            name = node.name
        else:
            continue
        found.append((node.lineno, node.col_offset, name))
    return list(dict.fromkeys(name for _, _, name in sorted(found)))


def undefined_names(assertion: str, task: Task) -> list[str]:
    """Names ``assertion`` reads that neither it nor ``task``'s setup, prefix or builtins bind,
    in order of appearance; empty when it does not parse."""
    try:
        tree = ast.parse(assertion)
    except SyntaxError:
        return []
    own = set(_bound_in(tree))
    known = _ALWAYS | set(bound_names(task.setup)) | set(bound_names(task.prefix)) | own
    reads = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return list(dict.fromkeys(name for name in reads if name not in known))


def substitute(text: str, mapping: dict[str, str]) -> str:
    """``text`` with every variable named in ``mapping`` renamed; attributes (``x.name``) and
    keyword arguments (``f(name=1)``) keep their names."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    out, done = [], 0
    for k, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string not in mapping:
            continue
        before = tokens[k - 1].string if k else ""
        after = tokens[k + 1].string if k + 1 < len(tokens) else ""
        if before == "." or (after == "=" and before in ("(", ",")):
            continue
        a = starts[tok.start[0] - 1] + tok.start[1]
        b = starts[tok.end[0] - 1] + tok.end[1]
        out += [text[done:a], mapping[tok.string]]
        done = b
    return "".join(out) + text[done:]


def adaptations(assertion: str, task: Task, cap: int = 16) -> list[str]:
    """``assertion`` itself when it reads no undefined name; else its rewrites with each undefined
    name replaced by a name the prefix binds, most recently bound first, at most ``cap`` of them.
    With nothing bound in the prefix there is nothing to adapt to: the assertion is returned."""
    missing = undefined_names(assertion, task)
    local = [name for name in reversed(bound_names(task.prefix)) if name not in _ALWAYS]
    if not missing or not local:
        return [assertion]
    combos = itertools.islice(itertools.product(local, repeat=len(missing)), cap)
    return list(dict.fromkeys(substitute(assertion, dict(zip(missing, combo))) for combo in combos))
