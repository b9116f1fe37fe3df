"""The static gate: what an untrusted candidate must pass before it may run.

A candidate is model-written code, and under RL the model is rewarded for passes and kills, so
it will find any way to forge one that is cheaper than writing a good assertion: end the
process with status 0 (``os._exit(0)``), skip or exit through pytest (``pytest.skip``,
``pytest.exit(returncode=0)``), patch the reporting machinery, compare against an object whose
``__eq__`` is always true, read which mutant is active (``sys.argv``, a function's
``__code__``), or simply assert something that cannot fail (``assert True``,
``assert (x, "message")``). The gate parses the candidate once with :mod:`ast` and refuses all
of these on sight, with one sentence that names the offending thing.

It is one layer of several. A gate over a dynamic language cannot be complete — a library's
own reflection may still lead somewhere — so candidates that pass it run in a confined child
(:mod:`sandbox.isolation`) whose verdict the parent decides (:mod:`sandbox.execution`). The
gate makes the common forgeries cheap to refuse and leaves the process sandbox the rare ones.

What a candidate may be:

- at most ``MAX_CHARS`` characters and ``MAX_STATEMENTS`` top-level statements, at least one of
  them an ``assert``; the others simple assignments to plain names (``h = f(G)``,
  ``a, b = pair``);
- expressions without ``:=``, ``yield`` or ``await`` (comprehensions and lambdas, as in
  ``sorted(xs, key=lambda x: x[1])``, are fine: their bodies are checked like the rest);
- no denied name (reflection builtins, modules that reach the process — ``pytest`` only as
  ``pytest.approx`` —, dunders, and names starting with ``_`` unless the test module or prefix
  provides them), no dunder attribute beyond a few descriptive ones (``__name__``,
  ``__doc__``, …), no reflective attribute, no string constant containing ``__``, and
  ``type`` only as ``type(x)``;
- no vacuous assertion: not a constant (``assert False`` and ``assert 0``, which always fail,
  are allowed), not a non-empty display, not two identical call-free sides of a comparison, not a
  truthy operand under ``or``, and — when the caller says which names the test's prefix and
  module provide — not a test that uses none of them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection

MAX_CHARS = 2000
MAX_STATEMENTS = 8

# Builtins that reach code, frames, namespaces, files, the terminal or class machinery.
# ``__import__``, ``__builtins__`` and the like are refused by the leading-underscore rule.
DENIED_BUILTINS = frozenset({
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "dir", "breakpoint", "input", "exit", "quit", "help", "memoryview", "classmethod",
    "staticmethod", "property", "super", "object",
})

# Modules that reach the process, the interpreter or pytest. Refused as names and also as
# attributes, so that a library's own imports (``nx.utils.misc.sys``) are no way around.
DENIED_MODULES = frozenset({
    "os", "sys", "pytest", "signal", "ctypes", "inspect", "builtins", "importlib", "subprocess", "socket",
    "shutil", "pathlib", "gc", "threading", "multiprocessing", "resource", "io", "pickle", "marshal",
    "codecs",
})

# Public attributes that reach other attributes by name or the frames and code behind a
# function (``"{0.__class__}".format(x)``, ``gen.gi_frame.f_back.f_globals``).
DENIED_ATTRIBUTES = frozenset({
    "format", "format_map", "mro", "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame",
    "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code",
})

# Dunder attributes that only describe an object (strings and tuples of names), read by real
# tests (``type(G).__name__``, ``view.__slots__``). Single-underscore attributes are private
# state, not a way out of the interpreter (``G._adj``), and are allowed.
DESCRIPTIVE_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__slots__", "__module__"})

# The data model's operator and protocol methods, which some libraries' own tests call directly
# (``assert x.__add__(a) is NotImplemented``), plus ``__class__`` (what ``type(x)`` gives). What
# they reach is judged at run time by the capability layer (:mod:`sandbox.capability`); the gate
# refuses only the dunders that lead out of the object model (``__code__``, ``__globals__``,
# ``__subclasses__``, ``__dict__`` ...).
_PROTOCOL = ("class eq ne lt le gt ge hash bool len iter next reversed contains getitem setitem delitem missing "
             "repr str bytes int float complex index round trunc floor ceil neg pos abs invert call "
             "enter exit array length_hint").split()
_ARITHMETIC = "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or".split()
OPERATOR_DUNDERS = frozenset([f"__{name}__" for name in _PROTOCOL]
                             + [f"__{p}{op}__" for op in _ARITHMETIC for p in ("", "r", "i") if p + op != "idivmod"])
HARMLESS_DUNDERS = DESCRIPTIVE_DUNDERS | OPERATOR_DUNDERS

_DUNDER_IN_TEXT = re.compile(r"__[A-Za-z0-9]\w*?__")

# Builtins whose result is true whatever they are given: as a test they check nothing.
_ALWAYS_TRUE_CALLS = frozenset({"iter", "type", "id", "repr"})

PYTEST_HELPERS = frozenset({"approx"})

# ``type(x)`` is everyday test code; ``type(name, bases, namespace)`` builds classes.
_TYPE = "type"

_EXPRESSIONS = {
    ast.NamedExpr: "an assignment expression (':=')",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield from'",
    ast.Await: "'await'",
}

_STATEMENTS = {
    ast.Import: "an 'import' statement",
    ast.ImportFrom: "an 'import' statement",
    ast.Expr: "an expression statement (a bare expression or call is not an assertion)",
    ast.AugAssign: "an augmented assignment",
    ast.AnnAssign: "an annotated assignment",
    ast.Delete: "a 'del' statement",
    ast.For: "a 'for' loop",
    ast.AsyncFor: "a 'for' loop",
    ast.While: "a 'while' loop",
    ast.If: "an 'if' statement",
    ast.With: "a 'with' statement",
    ast.AsyncWith: "a 'with' statement",
    ast.Try: "a 'try' statement",
    ast.TryStar: "a 'try' statement",
    ast.Raise: "a 'raise' statement",
    ast.FunctionDef: "a function definition",
    ast.AsyncFunctionDef: "a function definition",
    ast.ClassDef: "a class definition",
    ast.Global: "a 'global' statement",
    ast.Nonlocal: "a 'nonlocal' statement",
    ast.Return: "a 'return' statement",
    ast.Match: "a 'match' statement",
    ast.Pass: "a 'pass' statement",
    ast.Break: "a 'break' statement",
    ast.Continue: "a 'continue' statement",
}

_OPERATORS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}
# Comparisons that hold whenever both sides are the same object.
_REFLEXIVE = (ast.Eq, ast.Is, ast.LtE, ast.GtE)
_IDENTITY = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)

_DISPLAYS = {ast.Tuple: "tuple", ast.List: "list", ast.Set: "set", ast.Dict: "dict"}


def check(candidate: str, known_names: Collection[str] = (), objects: Collection[str] = ()) -> str | None:
    """None when the candidate may run; otherwise the reason it is rejected, one sentence a person can read.

    ``known_names``: the names a candidate may build on — what the test's prefix binds and the
    test module's globals. An assertion that uses none of them tests nothing the code under
    test computed and is vacuous; with no names given that rule is skipped. ``objects``: those
    of them bound to modules, classes or functions, which are true whatever the code does
    (``assert nx`` checks nothing).
    """
    if not candidate.strip():
        return "the candidate is empty"
    if len(candidate) > MAX_CHARS:
        return f"the candidate is {len(candidate)} characters long; at most {MAX_CHARS} are allowed"
    try:
        tree = ast.parse(candidate)
    except SyntaxError as err:
        return f"syntax error: {err.msg}" + (f" (line {err.lineno})" if err.lineno else "")
    except (ValueError, RecursionError, MemoryError) as err:  # nesting too deep for the parser
        return f"the candidate cannot be parsed: {type(err).__name__}: {err}"
    try:
        _check_statements(tree.body)
        checker = _Expressions(known_names)
        reads = [checker.statement(stmt) for stmt in tree.body]
        _check_vacuity(tree.body, reads, known_names, frozenset(objects))
    except _Rejected as rejected:
        return rejected.reason
    except RecursionError:
        return "the candidate is nested too deeply"
    return None


def check_expression(expression: str, known_names: Collection[str] = (), objects: Collection[str] = ()) -> str | None:
    """:func:`check` for an expression to observe (``sandbox.observable``): None when it may
    run, else why not. It must be one expression, and pass every rule an assertion of it would
    (``assert (EXPR) is not None``): an observation evaluates model-written code too."""
    if not expression.strip():
        return "the expression is empty"
    if len(expression) > MAX_CHARS:
        return f"the expression is {len(expression)} characters long; at most {MAX_CHARS} are allowed"
    try:
        ast.parse(expression, mode="eval")
    except SyntaxError as err:
        return f"not one expression: {err.msg}" + (f" (line {err.lineno})" if err.lineno else "")
    except (ValueError, RecursionError, MemoryError) as err:
        return f"the expression cannot be parsed: {type(err).__name__}: {err}"
    return check(f"assert ({expression}\n) is not None", known_names, objects)


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_statements(body: list[ast.stmt]) -> None:
    """Rule: at most MAX_STATEMENTS, only asserts and assignments to plain names, one assert at least."""
    if len(body) > MAX_STATEMENTS:
        raise _Rejected(f"the candidate has {len(body)} statements; at most {MAX_STATEMENTS} are allowed")
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                _check_target(target)
        elif not isinstance(stmt, ast.Assert):
            what = _STATEMENTS.get(type(stmt), f"a '{type(stmt).__name__}' statement")
            raise _Rejected(f"only assert statements and simple assignments are allowed; found {what}")
    if not any(isinstance(stmt, ast.Assert) for stmt in body):
        raise _Rejected("the candidate has no assert statement")


def _check_target(target: ast.expr) -> None:
    if isinstance(target, ast.Name):
        return
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _check_target(element)
        return
    what = {ast.Attribute: "an attribute", ast.Subscript: "an item", ast.Starred: "a starred target"}.get(
        type(target), "an expression")
    raise _Rejected(f"assignment to {what} ({ast.unparse(target)}) is not allowed; only plain names may be assigned")


class _Expressions(ast.NodeVisitor):
    """Refuses denied expressions, names, attributes and strings; records the names an expression reads."""

    def __init__(self, known_names: Collection[str] = ()) -> None:
        self.known = known_names
        self.loaded: set[str] = set()
        self.bound: set[str] = set()  # comprehension variables (the only names an expression binds)

    def statement(self, stmt: ast.stmt) -> set[str]:
        """Check one top-level statement; return the names its test (or assigned value) reads."""
        if isinstance(stmt, ast.Assert):
            read = self.reads(stmt.test)
            if stmt.msg is not None:
                self.visit(stmt.msg)
            return read
        for target in stmt.targets:
            self.visit(target)
        return self.reads(stmt.value)

    def reads(self, node: ast.expr) -> set[str]:
        self.loaded, self.bound = set(), set()
        self.visit(node)
        return self.loaded - self.bound

    def forbid(self, node: ast.expr) -> None:
        raise _Rejected(f"{_EXPRESSIONS[type(node)]} is not allowed in an assertion")

    visit_NamedExpr = visit_Yield = visit_YieldFrom = visit_Await = forbid

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name == "_" and isinstance(node.ctx, ast.Store):
            return  # the throwaway loop variable: `all(f(G) for _ in range(3))`
        if name.startswith("__") or (name.startswith("_") and not (isinstance(node.ctx, ast.Load) and name in self.known)):
            # A test module's own private helpers (`_cut_PT`) are fair game when read.
            raise _Rejected(f"name '{name}' is not allowed in an assertion (names starting with '_' are private)")
        if name in DENIED_BUILTINS or name in DENIED_MODULES:
            raise _Rejected(f"name '{name}' is not allowed in an assertion")
        if name == _TYPE:  # type(x) is handled in visit_Call and never gets here
            raise _Rejected("name 'type' is allowed only as a call with one argument, type(x)")
        (self.loaded if isinstance(node.ctx, ast.Load) else self.bound).add(name)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == _TYPE:
            if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
                self.visit(node.args[0])
                return
            raise _Rejected("name 'type' is allowed only as a call with one argument, type(x)")
        if (isinstance(node.func, ast.Name) and node.func.id == "hasattr" and len(node.args) == 2 and not node.keywords
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            # `hasattr(view, "__setitem__")` only asks whether it exists: the one place a dunder
            # name in a string is harmless.
            self.visit(node.func)
            self.visit(node.args[0])
            return
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "pytest" and node.attr in PYTEST_HELPERS:
            return  # `pytest.approx(...)`: the one way into pytest an assertion needs
        self.visit(node.value)  # the first offending thing in reading order is the one named
        attr = node.attr
        if attr.startswith("__") and attr not in HARMLESS_DUNDERS:
            raise _Rejected(f"attribute '{attr}' is not allowed (dunder attributes)")
        if attr in DENIED_ATTRIBUTES:
            raise _Rejected(f"attribute '{attr}' is not allowed (it reaches attributes or frames by reflection)")
        if attr in DENIED_MODULES:
            raise _Rejected(f"attribute '{attr}' is not allowed (it names a module that reaches the process)")

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if isinstance(text, str) and "__" in text:
            # A dunder name in a string matters only to something that looks attributes up by
            # name (``getattr``, ``str.format``, all refused); the ones an object's own
            # protocol uses are harmless, the rest are refused here before run time.
            bad = [name for name in _DUNDER_IN_TEXT.findall(text) if name not in HARMLESS_DUNDERS]
            if bad:
                raise _Rejected(f"string constants containing '__' are allowed only around an operator or "
                                f"descriptive dunder name; found {bad[0]} ({_short(repr(value))})")


def _check_vacuity(body: list[ast.stmt], reads: list[set[str]], known_names: Collection[str],
                   objects: frozenset[str]) -> None:
    """Rule: every assert can fail for a reason the code under test controls."""
    known = set(known_names)
    objects = objects - {n for stmt in body if isinstance(stmt, ast.Assign)
                         for target in stmt.targets for n in _store_names(target)}
    for stmt, read in zip(body, reads):
        if isinstance(stmt, ast.Assign):
            # A candidate's own name is known only if its value comes from a known one.
            names = {n for target in stmt.targets for n in _store_names(target)}
            known = known | names if read & known else known - names
            continue
        if _always_fails(stmt.test):
            continue
        reason = _vacuous(stmt.test, objects)
        if reason is None and known_names and not read & known:
            reason = "the test uses no name that the test's prefix or module provides, so it checks nothing of theirs"
        if reason is None and known_names and isinstance(stmt.test, ast.BoolOp) and isinstance(stmt.test.op, ast.Or):
            for value in stmt.test.values:
                if not _always_false(value) and not _free_names(value) & known:
                    reason = (f"an operand of 'or' ({_short(ast.unparse(value))}) uses no name that the test's "
                              "prefix or module provides, so it holds whatever they do")
                    break
        if reason is not None:
            raise _Rejected(f"vacuous assertion: {reason}")


def _store_names(target: ast.expr) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _free_names(node: ast.expr) -> set[str]:
    """Names an expression reads from outside it (a lambda's parameters and a comprehension's
    variables are its own)."""
    own: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Lambda):
            a = n.args
            own.update(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
            own.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
        elif isinstance(n, ast.comprehension):
            own.update(_store_names(n.target))
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own


def _always_fails(test: ast.expr) -> bool:
    """``assert False``, ``assert 0`` (the usual "never get here") and an empty display: never a pass."""
    if isinstance(test, ast.Constant):
        return isinstance(test.value, (bool, int, float, complex)) and not test.value
    return _empty_display(test)


def _vacuous(test: ast.expr, objects: frozenset[str] = frozenset()) -> str | None:
    if isinstance(test, ast.Constant):
        return f"the test is the constant {_short(repr(test.value))}"
    if isinstance(test, ast.Compare):  # whatever the operator: x != x tests nothing either
        return _identical_sides(test, reflexive_only=False)
    if isinstance(test, ast.Attribute) and test.attr in DESCRIPTIVE_DUNDERS:
        return f"'{_short(ast.unparse(test))}' describes an object, not what the code does"
    return _always_true(test, objects)


def _object_path(node: ast.expr, objects: frozenset[str]) -> bool:
    """Whether ``node`` is a name bound to a module, class or function, or an attribute path
    from one without a call (``nx``, ``nx.utils``, ``nx.cycle_basis``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in objects


def _always_true(node: ast.expr, objects: frozenset[str] = frozenset()) -> str | None:
    """Why ``node`` is true whatever the code under test does, or None."""
    if isinstance(node, ast.Constant) and node.value:
        return f"the constant {_short(repr(node.value))} is always true"
    if _object_path(node, objects):
        return f"'{_short(ast.unparse(node))}' is a module, class or function, always true: an object, not a check"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in _ALWAYS_TRUE_CALLS:
            return f"'{node.func.id}(...)' is always true: an object, not a check"
        if node.func.id == "callable" and len(node.args) == 1 and _object_path(node.args[0], objects):
            return f"'{_short(ast.unparse(node))}' is always true: a module, class or function is callable"
        if node.func.id == "callable" and isinstance(node.args[0] if node.args else None, ast.Lambda):
            return "a lambda is always callable"
    if isinstance(node, ast.Lambda):
        return "a lambda is always true"
    if isinstance(node, ast.Attribute) and node.attr == "__class__":
        return f"'{_short(ast.unparse(node))}' is a class, always true: an object, not a check"
    if type(node) in _DISPLAYS and not _maybe_empty(node):
        hint = " (write 'assert test, message' without parentheses)" if isinstance(node, ast.Tuple) else ""
        return f"a non-empty {_DISPLAYS[type(node)]} is always true{hint}"
    if isinstance(node, ast.GeneratorExp):
        return "a generator expression is always true (did you mean all(...) or any(...)?)"
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.Constant) and v.value for v in node.values):
        return "an f-string with text in it is always true"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and _always_false(node.operand):
        return f"'{_short(ast.unparse(node))}' is always true"
    if isinstance(node, ast.Compare):
        return _identical_sides(node, reflexive_only=True)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        for value in node.values:
            reason = _always_true(value, objects)
            if reason is not None:
                return f"an operand of 'or' is always true: {reason}"
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) and all(
            _always_true(value, objects) for value in node.values):
        return "every operand of 'and' is always true"
    return None


def _always_false(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return not node.value
    return _empty_display(node)


def _empty_display(node: ast.expr) -> bool:
    return type(node) in _DISPLAYS and not (node.keys if isinstance(node, ast.Dict) else node.elts)


def _maybe_empty(display: ast.expr) -> bool:
    """Whether a display could be empty: only unpackings in it (``(*xs,)``, ``{**d}``), none of
    them of a display that is never empty (``[*[G]]``)."""
    if isinstance(display, ast.Dict):
        return all(key is None and not _never_empty(value) for key, value in zip(display.keys, display.values))
    return all(isinstance(element, ast.Starred) and not _never_empty(element.value) for element in display.elts)


def _never_empty(node: ast.expr) -> bool:
    return type(node) in _DISPLAYS and not _maybe_empty(node)


def _identical_sides(node: ast.Compare, reflexive_only: bool) -> str | None:
    sides = [node.left, *node.comparators]
    for left, op, right in zip(sides, node.ops, sides[1:]):
        # With a call in it, the same expression twice can differ (`id(G.edges) == id(G.edges)`
        # tests that a view is cached); without one it cannot. That excuse holds for equality
        # and identity only: `f(G) in f(G)` is true for any string or container of itself.
        calls = any(isinstance(n, ast.Call) for n in ast.walk(left))
        if (not reflexive_only or isinstance(op, _REFLEXIVE + (ast.In,))) and _same(left, right) \
                and (not calls or not isinstance(op, _IDENTITY)):
            return f"both sides of '{_OPERATORS[type(op)]}' are the same expression ({_short(ast.unparse(left))})"
    return None


def _same(a: object, b: object) -> bool:
    """Whether two AST nodes are the same expression: what comparing ``ast.dump`` of each tells,
    without building two strings for the common case of sides that differ near the top."""
    if type(a) is not type(b):
        return False
    if isinstance(a, ast.AST):
        return all(_same(getattr(a, name), getattr(b, name)) for name in a._fields)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
