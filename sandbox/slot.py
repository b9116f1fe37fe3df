"""The slot program: a test function cut at one slot, rebuilt from the installed source.

The test function is rebuilt from the source's AST: its first ``slot`` statements (the
prefix) followed by the candidate, which takes the target's line numbers. So the prefix runs
exactly as written — multi-line strings, ``self``, closures, name mangling and ``super()``
included — and "the candidate's own line" is a known range of line numbers. Built once in a
zygote; :mod:`sandbox.execution` runs what it compiles in forked children.
"""

from __future__ import annotations

import ast
import builtins
import copy
import importlib
import inspect
import types
from pathlib import Path
from typing import Any, Callable

from . import capability


class SlotError(Exception):
    """The test function cannot be rebuilt at this slot (wrong module, class, name or slot)."""


# --------------------------------------------------------------------------- source lookup

_TREES: dict[str, tuple[ast.Module, list[bytes]]] = {}


def parse_source(path: str) -> tuple[ast.Module, list[bytes]]:
    """Parse a file once per process; returns the tree and its lines as bytes."""
    if path not in _TREES:
        data = Path(path).read_bytes()
        _TREES[path] = (ast.parse(data, filename=path), data.splitlines(keepends=True))
    return _TREES[path]


def find_def(tree: ast.Module, qualname: str, firstlineno: int | None = None) -> ast.AST | None:
    """The (async) function or class definition with this qualname (no ``<locals>`` parts).

    When a name is defined twice, the one starting at ``firstlineno`` (decorators included,
    as ``code.co_firstlineno`` counts them) wins, else the last one, as at run time.
    """
    parts = qualname.split(".")
    scopes: list[ast.AST] = [tree]
    for i, part in enumerate(parts):
        found = []
        for scope in scopes:
            for node in getattr(scope, "body", []):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part:
                    found.append(node)
        if not found:
            return None
        scopes = found
    if firstlineno is not None:
        for node in scopes:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            if start == firstlineno:
                return node
    return scopes[-1]


def segment(lines: list[bytes], start: int, end: int) -> str:
    """Source lines ``start..end`` (1-based, inclusive) with their common indent removed.

    Only lines that start with that indent lose it, so the text of a multi-line string that is
    less indented stays as written.
    """
    chunk = [ln.decode("utf-8", "replace").rstrip("\r\n") for ln in lines[start - 1 : end]]
    indents = [len(c) - len(c.lstrip()) for c in chunk if c.strip()]
    cut = min(indents, default=0)
    out = []
    for c in chunk:
        prefix = c[:cut]
        out.append(c[cut:] if not prefix.strip() else c)
    return "\n".join(out).strip("\n")


def resolve_test(module: str, test_class: str | None, test_name: str) -> tuple[types.ModuleType, type | None, Callable]:
    mod = importlib.import_module(module)
    owner: Any = mod
    cls = None
    if test_class:
        cls = getattr(mod, test_class, None)
        if not isinstance(cls, type):
            raise SlotError(f"{module} has no test class {test_class}")
        owner = cls
    raw = inspect.getattr_static(owner, test_name, None)
    if isinstance(raw, (staticmethod, classmethod)):
        raise SlotError(f"{test_name} is a {type(raw).__name__}; only plain test functions are supported")
    func = getattr(owner, test_name, None)
    if not isinstance(func, types.FunctionType):
        raise SlotError(f"{module}::{test_class or ''}::{test_name} is not a test function")
    return mod, cls, func


# --------------------------------------------------------------------------- the slot program


class SlotProgram:
    """A test function cut at one slot, ready to take candidates. Built in the zygote."""

    def __init__(self, module: str, test_class: str | None, test_name: str, slot: int):
        self.module, self.cls, self.func = resolve_test(module, test_class, test_name)
        code = self.func.__code__
        self.filename = code.co_filename
        self.tree, self.lines = parse_source(self.filename)
        node = find_def(self.tree, code.co_qualname, code.co_firstlineno)
        if not isinstance(node, ast.FunctionDef):
            raise SlotError(f"cannot find the source of {code.co_qualname} in {self.filename}")
        if not 0 <= slot < len(node.body):
            raise SlotError(f"{code.co_qualname} has {len(node.body)} statements; slot {slot} is out of range")
        self.node = node
        self.slot = slot
        self.target_node = node.body[slot]
        self.target_line = self.target_node.lineno
        # The class that defines the method (for super() and name mangling), not the one collected.
        self.defining_class = None
        if self.cls is not None:
            for klass in self.cls.__mro__:
                if klass.__dict__.get(self.func.__name__) is self.func:
                    self.defining_class = klass
                    break
        self.globals = self.func.__globals__
        self._prefixes: dict[Any, Any] = {}
        # Names that pytest's rewritten asserts look up as globals.
        from _pytest.assertion import rewrite as _rewrite

        self.globals.setdefault("@py_builtins", builtins)
        self.globals.setdefault(_LOCALS, builtins.locals)
        self.globals.setdefault("@pytest_ar", _rewrite)

    @property
    def prefix_text(self) -> str:
        body = self.node.body
        if self.slot == 0:
            return ""
        return segment(self.lines, body[0].lineno, self.target_line - 1)

    @property
    def target_text(self) -> str:
        t = self.target_node
        return segment(self.lines, t.lineno, t.end_lineno or t.lineno)

    def _prefix(self, messages: bool) -> list[ast.stmt]:
        """The prefix statements, asserts rewritten as pytest does when ``messages`` (a copy:
        the rewriter edits what it is given, and the plain prefix is used too)."""
        if messages not in self._prefixes:
            stmts = copy.deepcopy(self.node.body[: self.slot])
            if messages:
                stmts = _rewrite_asserts(stmts, b"".join(self.lines))
            for stmt in stmts:
                ast.fix_missing_locations(stmt)
            self._prefixes[messages] = stmts
        return self._prefixes[messages]

    def _candidate(self, candidate: str, messages: bool, guard: bool = False,
                   observe: bool = False) -> tuple[list[ast.stmt], tuple[int, int]]:
        """The candidate's statements on the target's lines (asserts rewritten when
        ``messages``; with ``guard``, every load and call then routed through the capability
        layer, :mod:`sandbox.capability`) and its line range. Raises SyntaxError when it does
        not parse, :class:`~sandbox.capability.Refused` when the layer refuses it outright.
        ``observe``: the candidate is one expression, assigned to :data:`OBSERVED`."""
        if observe:
            expression = ast.parse(candidate, mode="eval").body
            cand = ast.Module(body=[ast.Assign(targets=[ast.Name(id=OBSERVED, ctx=ast.Store())], value=expression)],
                              type_ignores=[])
            ast.copy_location(cand.body[0], expression)
            cand.body[0].end_lineno, cand.body[0].end_col_offset = expression.end_lineno, expression.end_col_offset
            ast.fix_missing_locations(cand)
            messages = False
        else:
            cand = ast.parse(candidate, mode="exec")
        if not cand.body:
            raise SyntaxError("empty candidate")
        ast.increment_lineno(cand, self.target_line - 1)
        span = (self.target_line, max(s.end_lineno or s.lineno for s in cand.body))
        stmts = cand.body
        source = "\n" * (self.target_line - 1) + candidate
        if messages:
            # pytest reads the assert's source text for its messages: give it lines that match.
            stmts = _rewrite_asserts(stmts, source.encode("utf-8", "replace"))
        if guard:
            # After pytest's rewrite, whose @py_* machinery the guard leaves alone: the messages
            # stay pytest's, and the candidate's own expressions are all guarded.
            capability.install(self.module.__name__.partition(".")[0], self.globals, self.tree)
            owner = self.defining_class.__name__ if self.defining_class is not None else None
            stmts = capability.guard_statements(stmts, source, owner)
        for stmt in stmts:
            ast.fix_missing_locations(stmt)
        return stmts, span

    def _function(self, stmts: list[ast.stmt]) -> types.FunctionType:
        """The test function with ``stmts`` for a body, compiled where the test was defined."""
        fn = ast.FunctionDef(
            name=self.node.name,
            args=self.node.args,
            body=stmts,
            decorator_list=[],
            returns=None,
            type_comment=None,
        )
        ast.copy_location(fn, self.node)
        body: ast.stmt = fn
        if self.defining_class is not None:
            # Compiling inside a class of the same name gives name mangling and the __class__
            # cell that super() needs; the cell is bound to the real class below.
            body = ast.ClassDef(name=self.defining_class.__name__, bases=[], keywords=[], body=[fn], decorator_list=[])
            ast.copy_location(body, self.node)
        code = compile(ast.Module(body=[body], type_ignores=[]), self.filename, "exec", dont_inherit=True)
        fcode = find_code(code, lambda c: c.co_name == self.node.name)
        if fcode is None:
            raise SlotError(f"compiled slot has no function {self.node.name}")
        closure = []
        for name in fcode.co_freevars:
            if name != "__class__":
                raise SyntaxError(f"candidate uses an enclosing variable {name!r}")
            closure.append(types.CellType(self.defining_class))
        func = types.FunctionType(fcode, self.globals, self.node.name, self.func.__defaults__, tuple(closure) or None)
        func.__kwdefaults__ = self.func.__kwdefaults__
        return func

    def build(self, candidate: str, messages: bool = True, guard: bool = False,
              observe: bool = False) -> tuple[types.FunctionType, tuple[int, int]]:
        """Compile prefix + candidate into a function; returns it and the candidate's line range.

        With ``messages``, asserts are rewritten as pytest does, for its failure explanations;
        without, a failing assert raises a bare AssertionError on the same line (pytest's
        explanations diff large values, which costs more than the test when only *where* an
        assert failed matters, as under a mutant). Raises SyntaxError when the candidate does
        not parse. ``guard``: run the candidate's statements (not the prefix) under the
        capability layer (see :meth:`_candidate`). ``observe``: ``candidate`` is an expression,
        and the function returns its value.
        """
        stmts, span = self._candidate(candidate, messages, guard, observe)
        if observe:
            ret = ast.Return(value=ast.Name(id=OBSERVED, ctx=ast.Load()))
            ast.copy_location(ret, stmts[-1])
            ast.fix_missing_locations(ret)
            stmts = stmts + [ret]
        return self._function(self._prefix(messages) + stmts), span

    def prefix_function(self, messages: bool = True) -> types.FunctionType:
        """The test function cut before the slot, returning its local variables (built once):
        a group of candidates runs the prefix once and each candidate on what it left."""
        key = ("function", messages)
        if key not in self._prefixes:
            ret = ast.Return(value=ast.Call(func=ast.Name(id=_LOCALS, ctx=ast.Load()), args=[], keywords=[]))
            ast.copy_location(ret, self.target_node)
            ast.fix_missing_locations(ret)
            self._prefixes[key] = self._function(self._prefix(messages) + [ret])
        return self._prefixes[key]

    def build_alone(self, candidate: str, messages: bool = True, guard: bool = False,
                    observe: bool = False) -> tuple[types.CodeType, tuple[int, int]] | None:
        """The candidate compiled on its own, to run on the prefix's variables (see
        :meth:`prefix_function`), and its line range; None when only the whole function
        compiles it faithfully (``super()`` or a class-private name in a method). ``guard`` and
        ``observe``: as for :meth:`build` (an observed value is left in the namespace under
        :data:`OBSERVED`)."""
        stmts, span = self._candidate(candidate, messages, guard, observe)
        if self.defining_class is not None:
            for node in ast.walk(ast.Module(body=stmts, type_ignores=[])):
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
                if name == "super" or (name.startswith("__") and not name.endswith("__")):
                    return None
        return compile(ast.Module(body=stmts, type_ignores=[]), self.filename, "exec", dont_inherit=True), span

    def call(self, func: types.FunctionType, tmp: str) -> Any:
        """Run xunit setup and the function as pytest would (module, class, method setup);
        returns what the function returns."""
        mod = self.module
        setup_module = getattr(mod, "setup_module", None) or getattr(mod, "setUpModule", None)
        if callable(setup_module):
            _call_optional_arg(setup_module, mod)
        kwargs: dict[str, Any] = {}
        params = [a.arg for a in self.node.args.args]
        if self.cls is not None:
            setup_class = getattr(self.cls, "setup_class", None)
            if callable(setup_class):
                setup_class()
            instance = self.cls()
            setup_method = getattr(instance, "setup_method", None)
            if callable(setup_method):
                _call_optional_arg(setup_method, getattr(instance, self.func.__name__))
            args: list[Any] = [instance]
            params = params[1:]
        else:
            setup_function = getattr(mod, "setup_function", None)
            if callable(setup_function):
                _call_optional_arg(setup_function, self.func)
            args = []
        for name in params:
            if name == "tmp_path":
                path = Path(tmp) / "tmp_path"
                path.mkdir(exist_ok=True)
                kwargs[name] = path
            else:
                raise SlotError(f"unsupported fixture {name!r}")
        return func(*args, **kwargs)


_REWRITE_IMPORTS = ("@py_builtins", "@pytest_ar")
_LOCALS = "@trident_locals"  # a global no source can name: builtins.locals, for prefix_function
OBSERVED = "@trident_observed"  # a name no source can write: where an observed expression's value goes


def _rewrite_asserts(stmts: list[ast.stmt], source: bytes) -> list[ast.stmt]:
    """``stmts`` with their asserts rewritten as pytest rewrites them (``source``: the text
    their line numbers point into). The imports pytest adds for the rewritten code are left
    out: those names are globals of the test module here (see ``SlotProgram``)."""
    from _pytest.assertion.rewrite import rewrite_asserts

    mod = ast.Module(body=stmts, type_ignores=[])
    rewrite_asserts(mod, source)
    return [s for s in mod.body if not (isinstance(s, ast.Import) and s.names[0].asname in _REWRITE_IMPORTS)]


def find_code(code: types.CodeType, match: Callable[[types.CodeType], bool]) -> types.CodeType | None:
    """The first code object nested in ``code`` (depth first) that ``match`` accepts."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if match(const):
                return const
            found = find_code(const, match)
            if found is not None:
                return found
    return None


def _call_optional_arg(fn: Callable, arg: Any) -> None:
    """pytest calls xunit setup functions with their argument only if they take one."""
    try:
        n = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        n = 1
    fn(arg) if n else fn()
