"""The capability layer: candidate code checked on what it reaches, when it reaches it.

The static gate (:mod:`sandbox.gate`) reads names as written; a red team reached ``logging``
(and through it the call stack) as ``nx.utils.backends.logging``, ``os`` as
``tempfile._os``, code objects through ``attrgetter`` with a dunder name built at run time,
and an always-equal object from ``type(type(G))(name, bases, ns)``. This layer rewrites the
**candidate's statements only** (the library and the test's prefix run as they are) so that
every name load, attribute load, subscript load and call goes through a :class:`Guard`, which
asks the :class:`~sandbox.capability_policy.Policy` about the object reached:

    x          ->  @trident_guard.v(x, 'x')
    a.b        ->  @trident_guard.a(a, 'b', 'a', 'a.b')
    a[k]       ->  @trident_guard.v(a[k], 'a[k]')
    f(x, k=y)  ->  @trident_guard.c(f, 'f', 'f(x, k=y)', x', k=y')

The guard lives in the test module's globals under a name no source can spell (like pytest's
``@py_builtins``); nothing a candidate may reach leads to it. A refused reach raises
:class:`Violation` (a ``BaseException``, so library code that catches ``Exception`` does not
hide it) **and** is recorded on the guard; the child reads the record once the candidate ended,
however it ended, and reports ``rejected`` with the reason, e.g. ``capability: reached module
'logging' by nx.utils.backends.logging``.

Statements that change or define things — attribute and item stores and deletes, imports,
class and function definitions, ``global``/``nonlocal``, ``yield``/``await``/``return`` (which
would end the test before it ran), ``match`` (which reads attributes by name) — and dunder
attributes outside :data:`~sandbox.capability_policy.DUNDERS_ALLOWED` are refused before the
candidate runs (:class:`Refused`), so the layer holds with the gate off.

pytest's assertion rewrite runs first (its failure messages stay readable) and its
``@py_*``/``@pytest_ar`` machinery is left alone; a reach path names the candidate's own
expression, with pytest's temporaries put back.
"""

from __future__ import annotations

import ast
import builtins
import re
import types
from typing import Any, NoReturn

from .capability_policy import DUNDERS_ALLOWED, FAST, Policy, enum_factory, is_dunder

GUARD = "@trident_guard"  # the guard's name in the test module's globals: no source can spell it
_MACHINERY = ("@pytest_ar", "@py_builtins")  # pytest's rewritten asserts call these; trusted
_TEMP = re.compile(r"@py_assert\d+")
_MAX_PATH = 160


class Violation(BaseException):
    """Candidate code reached something the policy refuses (raised where it was reached)."""


class Refused(Exception):
    """The candidate has a statement or attribute the layer refuses before it runs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- policies

_POLICIES: dict[int, tuple[dict, Policy]] = {}  # id(test module globals) -> (globals, policy)


def install(package: str, test_globals: dict[str, Any], tree: ast.Module | None = None) -> Policy:
    """The policy for a test module (built once per process), with a fresh :class:`Guard` placed
    in its globals under :data:`GUARD`. ``tree``: the test file's AST, whose import statements
    (in any scope) count as modules the test imports. Called in the zygote when a guarded
    candidate is built; each child inherits the guard as it is, unused, and records on its
    own copy."""
    entry = _POLICIES.get(id(test_globals))
    if entry is None or entry[0] is not test_globals:
        entry = _POLICIES[id(test_globals)] = (test_globals, Policy(package, test_globals, _imports(tree)))
    if not isinstance(test_globals.get(GUARD), Guard):
        test_globals[GUARD] = Guard(entry[1])
        # Verdicts on what every candidate's names start from, cached here once rather than in
        # each child (a child's cache dies with it).
        for value in [*test_globals.values(), *vars(builtins).values()]:
            entry[1].judge(value)
    return entry[1]


def _imports(tree: ast.Module | None) -> set[str]:
    """Modules named by the import statements of a file (``from a import b``: ``a`` and, should
    ``b`` be a submodule, ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violation(namespace: dict[str, Any]) -> str | None:
    """The first refused reach recorded by the guard in ``namespace`` (a test module's globals
    or a candidate's scope), or None."""
    guard = namespace.get(GUARD)
    return guard.violation if isinstance(guard, Guard) else None


# --------------------------------------------------------------------------- the guard

# Callees that may be handed a class factory (a metaclass, a member-less Enum): they never
# call it, or call it with one argument.
_PASSABLE = frozenset(id(f) for f in (isinstance, issubclass, id, hash, repr, str, print, type, sorted, min, max,
                                      filter, callable))


class Guard:
    """What the rewritten candidate calls. Methods: ``v`` (a loaded value), ``a`` (an attribute
    load), ``c`` (a call). ``violation``: the first refusal, as the reason a verdict gives."""

    __slots__ = ("_policy", "violation")

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.violation: str | None = None

    def _refuse(self, what: str, path: str, verb: str = "reached") -> NoReturn:
        reason = f"capability: {verb} {what} by {path}"
        if self.violation is None:
            self.violation = reason
        raise Violation(reason)

    def v(self, value: Any, path: str) -> Any:
        """A name's value, a subscript's item or an operand that reached an attribute load."""
        if type(value) not in FAST:
            what = self._policy.judge(value)
            if what is not None:
                self._refuse(what, path)
        return value

    def a(self, obj: Any, name: str, base: str, path: str) -> Any:
        """``obj.name``: the object, then what the attribute gives."""
        if type(obj) not in FAST:
            what = self._policy.judge(obj)
            if what is not None and not (name == "approx" and obj is self._policy.pytest):
                self._refuse(what, base)
        value = getattr(obj, name)
        if type(value) not in FAST:
            what = self._policy.judge(value)
            if what is not None:
                self._refuse(what, path)
        return value

    def c(self, func: Any, fpath: str, cpath: str, /, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``: the callable, the class factories and paths handed to it,
        then its result."""
        policy = self._policy
        if type(func) not in FAST:
            what = policy.judge(func)
            if what is not None:
                self._refuse(what, fpath)
        callee, n = func, len(args) + len(kwargs)
        if type(func) is types.MethodWrapperType and func.__name__ == "__call__":
            callee = func.__self__  # f.__call__(...) is f(...)
        elif type(func) is types.WrapperDescriptorType and func.__name__ == "__call__" and args:
            callee, n = args[0], n - 1  # type.__call__(type, name, bases, ns)
        if issubclass(type(callee), type):  # a class, called
            if issubclass(callee, type) and n != 1:
                self._refuse(f"the metaclass '{callee.__qualname__}' with {n} arguments (that builds a class)",
                             cpath, "called")
            if n > 1 and enum_factory(callee):
                self._refuse(f"the Enum functional API of '{callee.__qualname__}' (that builds a class)", cpath, "called")
        for arg in args:
            if type(arg) not in FAST or type(arg) is str or type(arg) is bytes:
                self._argument(func, arg, args, cpath)
        if kwargs:
            for key, arg in kwargs.items():
                if is_dunder(key):
                    self._refuse(f"a keyword argument named {key!r} (it sets a dunder attribute)", cpath, "passed")
                if type(arg) not in FAST or type(arg) is str or type(arg) is bytes:
                    self._argument(func, arg, args, cpath)
        result = func(*args, **kwargs)
        if type(result) not in FAST:
            what = policy.judge(result)
            if what is not None:
                self._refuse(what, cpath)
        return result

    def _argument(self, func: Any, arg: Any, args: tuple, cpath: str) -> None:
        policy = self._policy
        if type(arg) is str or type(arg) is bytes:
            if ("/" if type(arg) is str else b"/") in arg:  # type: ignore[operator]
                what = policy.path_reason(arg)
                if what is not None:
                    self._refuse(what, cpath, "passed")
            return
        if issubclass(type(arg), type) and (issubclass(arg, type) or enum_factory(arg)) \
                and id(func) not in _PASSABLE and not (func is map and len(args) == 2):
            # map(type, names, bases, namespaces) calls it with three arguments out of sight.
            self._refuse(f"the class factory '{arg.__qualname__}' as an argument", cpath, "passed")
        what = policy.judge(arg)
        if what is not None:
            self._refuse(what, cpath, "passed")


# --------------------------------------------------------------------------- the rewrite

_STATIC = {
    ast.Import: "an import", ast.ImportFrom: "an import", ast.FunctionDef: "a function definition",
    ast.AsyncFunctionDef: "a function definition", ast.ClassDef: "a class definition",
    ast.Global: "a 'global' statement", ast.Nonlocal: "a 'nonlocal' statement",
    ast.Match: "a 'match' statement (its patterns read attributes by name)",
    ast.Return: "a 'return' statement (the test would end before it ran)",
    ast.Yield: "'yield' (the test would become a generator and never run)",
    ast.YieldFrom: "'yield from' (the test would become a generator and never run)",
    ast.Await: "'await'", ast.AsyncFor: "'async for'", ast.AsyncWith: "'async with'",
}


def guard_statements(stmts: list[ast.stmt], source: str | None = None,
                     private_owner: str | None = None) -> list[ast.stmt]:
    """``stmts`` (a candidate's, pytest's rewrite already applied or not) with every load and
    call routed through the guard. ``source``: the text their positions point into, for reach
    paths in the candidate's own words (pytest keeps the positions of what it rewrites).
    ``private_owner``: the class a method's candidate is compiled in, for the name mangling of
    ``self.__x``. Raises :class:`Refused`."""
    rewriter = _Rewriter(source, private_owner)
    out: list[ast.stmt] = []
    for stmt in stmts:
        new = rewriter.visit(stmt)
        out.extend(new if isinstance(new, list) else [new])
    return out


def _guard(method: str, node: ast.AST, *args: ast.expr, keywords: list[ast.keyword] | None = None) -> ast.Call:
    """``@trident_guard.method(*args)`` on ``node``'s position (new nodes get it too)."""
    where = {a: getattr(node, a, None) for a in ("lineno", "col_offset", "end_lineno", "end_col_offset")}
    for arg in args:
        if not hasattr(arg, "lineno"):
            arg.__dict__.update(where)
    name = ast.Name(id=GUARD, ctx=ast.Load(), **where)
    return ast.Call(func=ast.Attribute(value=name, attr=method, ctx=ast.Load(), **where), args=list(args),
                    keywords=keywords or [], **where)


def _machinery(node: ast.expr) -> bool:
    """pytest's ``@pytest_ar.x`` / ``@py_builtins.x``."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _MACHINERY


class _Rewriter(ast.NodeTransformer):
    def __init__(self, source: str | None, private_owner: str | None) -> None:
        self.lines = source.split("\n") if source is not None else None
        self.owner = private_owner.lstrip("_") if private_owner else None
        self.temps: dict[str, str] = {}  # pytest temporary -> the candidate's expression it holds

    def path(self, node: ast.AST) -> str:
        """The candidate's own text for ``node``: its source segment where it has one, else
        its unparsed form with pytest's temporaries put back."""
        text = self.segment(node)
        if not text:
            text = _TEMP.sub(lambda m: self.temps.get(m.group(0), "?"), ast.unparse(node))
        text = " ".join(text.split())
        return text if len(text) <= _MAX_PATH else text[: _MAX_PATH - 3] + "..."

    def segment(self, node: ast.AST) -> str | None:
        """``ast.get_source_segment`` on lines split once (it splits the whole text per call)."""
        try:
            first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
            start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
            if self.lines is None or first < 0 or last >= len(self.lines) or end is None:
                return None
        except AttributeError:
            return None
        if first == last:
            return self.lines[first].encode()[start:end].decode(errors="replace")
        head = self.lines[first].encode()[start:].decode(errors="replace")
        tail = self.lines[last].encode()[:end].decode(errors="replace")
        return "\n".join([head, *self.lines[first + 1 : last], tail])

    def refuse(self, what: str, node: ast.AST) -> NoReturn:
        raise Refused(f"capability: {what} is not allowed ({self.path(node)[:80]})")

    def generic_visit(self, node: ast.AST) -> ast.AST:
        what = _STATIC.get(type(node))
        if what is not None:
            self.refuse(what, node)
        return super().generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        target = node.targets[0]
        if len(node.targets) == 1 and isinstance(target, ast.Name) and _TEMP.fullmatch(target.id):
            text = self.path(node.value)
            atom = isinstance(node.value, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant, ast.Tuple,
                                           ast.List, ast.Dict, ast.Set))
            self.temps[target.id] = text if atom else f"({text})"
        return self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        if isinstance(node.target, ast.Name):
            # ``x += y`` loads x without a Name load in the tree: judge it first.
            check = ast.copy_location(ast.Expr(value=_guard("v", node, ast.Name(id=node.target.id, ctx=ast.Load()),
                                                            ast.Constant(node.target.id))), node)
            return [check, self.generic_visit(node)]
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if not isinstance(node.ctx, ast.Load) or node.id.startswith("@"):
            return node
        return _guard("v", node, node, ast.Constant(node.id))

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if not isinstance(node.ctx, ast.Load):
            self.refuse("an attribute store or delete", node)
        if _machinery(node):
            return node
        path = self.path(node)
        attr = node.attr
        if is_dunder(attr) and attr not in DUNDERS_ALLOWED:
            raise Refused(f"capability: reached attribute '{attr}' by {path}")
        if self.owner and attr.startswith("__") and not attr.endswith("__"):
            attr = f"_{self.owner}{attr}"  # what the compiler does to self.__x in a method
        base = node.value
        obj = base if isinstance(base, ast.Name) else self.visit(base)  # Guard.a judges it either way
        return _guard("a", node, obj, ast.Constant(attr), ast.Constant(self.path(base)), ast.Constant(path))

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if not isinstance(node.ctx, ast.Load):
            self.refuse("an item store or delete", node)
        path, base_path = self.path(node), self.path(node.value)
        base = self.visit(node.value)
        if not isinstance(node.value, (ast.Attribute, ast.Call, ast.Subscript)) and base is node.value:
            base = _guard("v", node.value, base, ast.Constant(base_path))  # an operator's result, a temporary
        item = ast.copy_location(ast.Subscript(value=base, slice=self.visit(node.slice), ctx=ast.Load()), node)
        return _guard("v", node, item, ast.Constant(path))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if _machinery(node.func):
            # pytest's helpers only show what they are given (saferepr) or ask about a name.
            node.args = [a if isinstance(a, ast.Name) else self.visit(a) for a in node.args]
            node.keywords = [self.visit(k) for k in node.keywords]
            return node
        fpath, cpath = self.path(node.func), self.path(node)
        func = node.func if isinstance(node.func, ast.Name) else self.visit(node.func)  # Guard.c judges it
        args = [self.visit(a) for a in node.args]
        keywords = [self.visit(k) for k in node.keywords]
        return _guard("c", node, func, ast.Constant(fpath), ast.Constant(cpath), *args, keywords=keywords)
