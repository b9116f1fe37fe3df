"""The capability policy: what candidate code may reach, judged on the object reached.

The static gate judges names as written, and a name is not what it reaches: ``logging`` is
also ``nx.utils.backends.logging``, ``os`` is also ``tempfile._os``, ``builtins`` is also
``enum.bltns``, and a dunder name can be built at run time and handed to ``attrgetter`` or
``str.format``. So the capability layer (:mod:`sandbox.capability`) hands every value that
candidate code loads, and every callable it calls, to :meth:`Policy.judge`, which looks at
the object itself — its type, the module that defined it, its identity — whatever path led
there.

A :class:`Policy` is built once per test module in the zygote (from the library's package name
and the test module's globals) and inherited by every child; its verdict caches fill in the
child, which dies after one candidate. Rules, in the words a refusal uses:

- **modules**: the library's package, its declared dependencies and the modules the test file
  imports, minus :data:`DENIED_MODULES` (whatever path reaches them); any other module is
  refused too.
- **values**: frames, tracebacks, code objects, closure cells; ``sys.modules``, the builtins
  namespace and any module's ``__dict__``; objects of types defined in a module that reaches
  the process or the stack (:data:`HAZARD_TYPE_MODULES`: a ``logging.Logger`` reads frames in
  ``findCaller``, a ``ctypes`` object reads memory) and of :data:`REFUSED_TYPES`; a path that
  resolves into ``/proc`` (the process's own memory and descriptors, the verdict pipe among
  them). Ordinary objects of module-only denials stay usable: a ``BytesIO``, a temporary file,
  an ``os.stat_result``, the ``pathlib.Path`` of ``tmp_path``.
- **callables**: builtins by :data:`BUILTINS_ALLOWED` only; functions defined in a denied
  module (a library's own ``from subprocess import run``); :data:`REFUSED_CALLABLES` (class
  factories and string evaluators); ``str.format``/``format_map`` bound or not; methods whose
  name is a dunder outside :data:`DUNDERS_ALLOWED` (``__getattribute__``, ``__reduce_ex__``,
  ``__subclasses__`` ...).
"""

from __future__ import annotations

import builtins
import enum
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import types
from typing import Any, Callable, Iterable

# Modules no candidate may reach, by any path. A dotted name covers its submodules; every
# module whose name starts with ``_frozen_importlib`` is denied too.
DENIED_MODULES = frozenset({
    "os", "posix", "nt", "sys", "builtins", "subprocess", "_posixsubprocess",
    "ctypes", "_ctypes", "importlib", "_imp", "inspect", "traceback", "gc", "tempfile", "logging",
    "threading", "_thread", "signal", "_signal", "pickle", "_pickle", "marshal", "copyreg", "shelve",
    "shutil", "io", "_io", "_pyio", "codecs", "socket", "_socket", "select", "selectors", "asyncio",
    "multiprocessing", "_multiprocessing", "concurrent", "resource", "pty", "tty", "fcntl", "termios",
    "mmap", "types", "warnings", "_warnings", "linecache", "dis", "code", "codeop", "pdb", "bdb", "trace",
    "tracemalloc", "_tracemalloc", "faulthandler", "atexit", "site", "_sitebuiltins", "sysconfig",
    "runpy", "pkgutil", "zipimport", "pydoc", "timeit", "doctest", "profile", "cProfile", "_lsprof",
    "rlcompleter", "tarfile", "time", "unittest.mock", "pytest", "_pytest", "pluggy", "numpy.ctypeslib",
    "numpy.lib.stride_tricks", "numpy.lib._stride_tricks_impl", "numpy.f2py", "numpy.distutils",
    "numpy.testing._private.extbuild", "cffi", "_cffi_backend",
})

# Denied as module objects only: their types are ordinary values (a BytesIO, a temporary
# file, an os.stat_result, a time.struct_time, a WarningMessage the prefix recorded).
MODULE_ONLY = frozenset({
    "os", "posix", "nt", "sys", "builtins", "tempfile", "io", "_io", "_pyio", "codecs",
    "types", "warnings", "_warnings", "time", "shutil", "atexit", "gc", "sysconfig", "tarfile",
})

# Modules whose classes, and objects of them, are refused: they reach the process or the stack.
HAZARD_TYPE_MODULES = DENIED_MODULES - MODULE_ONLY

# Exceptions to the above: pytest's approx and what ``pytest.raises``/``pytest.warns`` in a
# prefix leave behind (their frames and tracebacks are still refused by type).
ALLOWED_TYPE_MODULES = frozenset({"_pytest.approx", "_pytest.python_api"})
ALLOWED_CLASSES = frozenset({"_pytest._code.code.ExceptionInfo", "_pytest.recwarn.WarningsRecorder",
                             "_pytest.recwarn.WarningsChecker"})
ALLOWED_CALLABLES = frozenset({"_pytest.approx.approx", "_pytest.python_api.approx"})

# Classes refused wherever they appear, with their subclasses and instances: "module.qualname" -> why.
REFUSED_TYPES = {
    "operator.attrgetter": "it reads attributes named at run time",
    "operator.methodcaller": "it calls methods named at run time",
    "string.Formatter": "it reads attributes named in a format string",
    "typing.ForwardRef": "it evaluates a string as code",
    "os._Environ": "the process's environment",
    "os._wrap_close": "a pipe to a shell",
    "numpy._core._internal._ctypes": "it hands out raw memory addresses for ctypes",
    "numpy.core._internal._ctypes": "it hands out raw memory addresses for ctypes",
    "scipy._lib._ccallback.LowLevelCallable": "it calls C function pointers",
}

# Classes refused as callables (their existing objects, such as a file the prefix opened, are fine).
REFUSED_CONSTRUCTORS = {
    "_io.FileIO": "it opens a file descriptor by number",
    "_pyio.FileIO": "it opens a file descriptor by number",
}

# Functions refused wherever they appear: "module.qualname" -> why.
REFUSED_CALLABLES = {
    "dataclasses.make_dataclass": "it builds a class (an always-equal object)",
    "dataclasses.dataclass": "it rewrites a class's __eq__ (on a library class: always equal)",
    "functools.total_ordering": "it adds comparison methods to a class",
    "functools.update_wrapper": "it sets attributes named at run time",
    "functools.wraps": "it sets attributes named at run time",
    "typing.get_type_hints": "it evaluates strings as code",
    "typing._eval_type": "it evaluates strings as code",
    "pathlib.Path.symlink_to": "it makes a link, which can lead into /proc",
    "pathlib.Path.hardlink_to": "it makes a link",
    "pandas.core.computation.eval.eval": "it evaluates a string as code on the caller's frame",
    "pandas.eval": "it evaluates a string as code on the caller's frame",
    "pandas.read_pickle": "it unpickles, which calls whatever the bytes name",
    "pandas.io.pickle.read_pickle": "it unpickles, which calls whatever the bytes name",
    "numpy.load": "it can unpickle, which calls whatever the bytes name",
    "numpy.lib.npyio.load": "it can unpickle, which calls whatever the bytes name",
    "numpy.lib._npyio_impl.load": "it can unpickle, which calls whatever the bytes name",
    "numpy.lib.format.read_array": "it can unpickle, which calls whatever the bytes name",
    "pandas.core.frame.DataFrame.eval": "it evaluates a string as code on the caller's frame",
    "pandas.core.frame.DataFrame.query": "it evaluates a string as code on the caller's frame",
    "numexpr.necompiler.evaluate": "it evaluates a string on the caller's frame",
    "sympy.core.sympify.sympify": "it evaluates a string as code",
    "sympy.parsing.sympy_parser.parse_expr": "it evaluates a string as code",
}

BUILTINS_ALLOWED = frozenset({
    "abs", "aiter", "all", "anext", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hasattr", "hash",
    "hex", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
    "object", "oct", "ord", "pow", "print", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "str", "sum", "tuple", "type", "zip",
})  # and every exception class; ``type`` called with three arguments is refused by the guard

# Dunder attributes a candidate may name: the data model's operator and protocol methods and
# names that describe an object. All others (``__code__``, ``__globals__``, ``__dict__``,
# ``__subclasses__``, ``__getattribute__``, ``__reduce_ex__``, ``__self__``, ``__new__`` ...) are
# refused where written.
_PROTOCOL = ("class eq ne lt le gt ge hash bool len iter next reversed contains getitem setitem delitem missing "
             "repr str bytes int float complex index round trunc floor ceil neg pos abs invert call enter exit "
             "array length_hint format sizeof copy deepcopy fspath init").split()
_ARITHMETIC = "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or".split()
_DESCRIPTIVE = "name qualname doc module slots mro bases base all version wrapped match_args".split()
DUNDERS_ALLOWED = frozenset([f"__{n}__" for n in _PROTOCOL + _DESCRIPTIVE]
                            + [f"__{p}{op}__" for op in _ARITHMETIC for p in ("", "r", "i")])

# Extras of a distribution that are for its developers, not what it imports at run time.
_DEV_EXTRAS = frozenset({"test", "tests", "testing", "test-extras", "doc", "docs", "dev", "developer", "lint",
                         "release", "benchmark", "benchmarking", "example", "examples", "typing", "mypy"})

# Types whose values are judged no further (containers are judged item by item, as items are loaded).
FAST = frozenset({int, float, bool, str, bytes, type(None), tuple, list, set, frozenset, complex, range, slice,
                  type(Ellipsis), type(NotImplemented), bytearray})

_REFUSED_BY_TYPE = {
    types.FrameType: "a frame",
    types.TracebackType: "a traceback",
    types.CodeType: "a code object",
    types.CellType: "a closure cell",
}
_DESCRIPTORS = (types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType)
_CACHE_LIMIT = 50_000  # entries per cache before it starts over (a child lives for one candidate)


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name[:2] == "__" and name[-2:] == "__"


def _within(name: str, names: frozenset[str] | dict) -> bool:
    """Whether ``name`` or a dotted prefix of it is in ``names``."""
    while True:
        if name in names:
            return True
        name, dot, _ = name.rpartition(".")
        if not dot:
            return False


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


@functools.lru_cache(maxsize=None)
def dependency_modules(package: str) -> frozenset[str]:
    """Top-level import names of the installed distributions that ``package``'s distribution
    requires (its run-time extras included, its developers' extras not). Reads only those
    distributions' metadata (scanning every installed one cost 0.15 s per module zygote)."""
    found: set[str] = set()
    for dist in _distributions_of(package):
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
            name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
            if name and not (extra and _norm(extra.group(1)) in _DEV_EXTRAS):
                try:
                    found |= _import_names(importlib.metadata.distribution(name.group(1)))
                except importlib.metadata.PackageNotFoundError:
                    continue
    return frozenset(found)


def _distributions_of(package: str) -> list[importlib.metadata.Distribution]:
    try:
        return [importlib.metadata.distribution(package)]
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # a distribution named otherwise than what it installs (scikit-learn: sklearn)
        names = importlib.metadata.packages_distributions().get(package, [])
        return [importlib.metadata.distribution(n) for n in names]
    except Exception:  # noqa: BLE001 - broken metadata: the library and the test's imports remain
        return []


def _import_names(dist: importlib.metadata.Distribution) -> set[str]:
    """What a distribution installs at the top level: top_level.txt, else its files."""
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    guess = _norm(dist.metadata["Name"] or "").replace("-", "_")
    try:
        if guess and importlib.util.find_spec(guess) is not None:
            return {guess}  # the usual case, without reading the whole file list
    except (ImportError, ValueError):
        pass
    names = set()
    for f in dist.files or []:
        top = f.parts[0] if f.parts else ""
        if top.endswith(".py"):
            names.add(top[:-3])
        elif len(f.parts) > 1 and not top.endswith((".dist-info", ".egg-info", ".data")) and top != "..":
            names.add(top)
    return {n for n in names if n.isidentifier() and n != "__pycache__"}


class Policy:
    """Verdicts on objects for one test module. :meth:`judge` returns None for an object a
    candidate may hold, or what it is in words (for the reason of a rejection)."""

    def __init__(self, package: str, test_globals: dict[str, Any], file_imports: Iterable[str] = ()):
        """``file_imports``: modules the test file imports anywhere (a test function's own
        ``import itertools``), besides the module objects in its globals."""
        self.package = package
        self.tops = frozenset({package}) | dependency_modules(package)
        self.test_imports = frozenset(v.__name__ for v in list(test_globals.values())
                                      if isinstance(v, types.ModuleType) and isinstance(v.__name__, str)) \
            | frozenset(file_imports)
        self.pytest = sys.modules.get("pytest")
        self._sys_modules = sys.modules
        self._builtins_dict = vars(builtins)
        # id -> (object, name): builtins are judged by identity, whatever path reaches them.
        self._builtins = {id(v): (v, n) for n, v in vars(builtins).items() if callable(v)}
        self._kinds: dict[type, Any] = {}  # type -> None (fine), a refusal, or a judge for its values
        self._objects: dict[int, tuple[Any, str | None]] = {}  # id -> (object, verdict): long-lived ones
        self._names: dict[str, str | None] = {}  # module name -> verdict
        self._paths: dict[Any, str | None] = {}

    # ----------------------------------------------------------------- the entry point

    def judge(self, value: Any) -> str | None:
        t = type(value)
        if t in FAST:
            return None
        kind = self._kinds.get(t, _UNKNOWN)
        if kind is _UNKNOWN:
            kind = self._kinds[t] = self._kind(t)
        if kind is None or kind.__class__ is str:
            return kind
        return kind(self, value)

    def module_reason(self, name: str) -> str | None:
        """Why a module of this name is refused, or None."""
        if name not in self._names:
            if self.denied(name):
                verdict = f"module '{name}'"
            elif name.partition(".")[0] in self.tops or _within(name, self.test_imports):
                verdict = None
            else:
                verdict = f"module '{name}' (neither the library, its dependencies nor the test module import it)"
            self._names[name] = verdict
        return self._names[name]

    @staticmethod
    def denied(module: str) -> bool:
        return _within(module, DENIED_MODULES) or module.startswith("_frozen_importlib")

    def path_reason(self, path: Any) -> str | None:
        """Why a path (str, bytes or path-like) is refused: one that resolves into /proc, where a
        process reads its own memory (``/proc/self/mem``) and writes its own descriptors (the
        verdict pipe as ``/dev/fd/N``)."""
        key = path if isinstance(path, (str, bytes)) else None
        if key is not None and key in self._paths:
            return self._paths[key]
        try:
            text = os.fsdecode(os.fspath(path))
            into = _leads_into_proc(text)
        except (TypeError, ValueError, OSError, RecursionError):
            return None
        verdict = f"the path {text[:80]!r}, which leads into /proc" if into else None
        if key is not None:
            if len(self._paths) > _CACHE_LIMIT:
                self._paths.clear()
            self._paths[key] = verdict
        return verdict

    # ----------------------------------------------------------------- kinds of value

    def _kind(self, t: type) -> Any:
        if t in _REFUSED_BY_TYPE:
            return _REFUSED_BY_TYPE[t]
        if issubclass(t, types.ModuleType):
            return Policy._judge_module
        if issubclass(t, type):
            return Policy._judge_class
        if t is types.FunctionType:
            return Policy._judge_function
        if t is types.BuiltinFunctionType:
            return Policy._judge_builtin
        if t is types.MethodType:
            return Policy._judge_method
        if t in _DESCRIPTORS:
            return Policy._judge_descriptor
        if t is types.MethodWrapperType:
            return Policy._judge_method_wrapper
        if t is dict:
            return Policy._judge_dict
        if issubclass(t, functools.partial):
            return Policy._judge_partial
        refused = self._type_reason(t)
        if refused is not None:
            return f"a '{refused[0]}' object ({refused[1]})"
        if hasattr(t, "__fspath__"):
            return Policy._judge_path
        return None

    def _cached(self, value: Any, compute: Callable[[Any], str | None]) -> str | None:
        entry = self._objects.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        verdict = compute(value)
        if len(self._objects) > _CACHE_LIMIT:
            self._objects.clear()
        self._objects[id(value)] = (value, verdict)  # the reference keeps the id from being reused
        return verdict

    def _type_reason(self, cls: type) -> tuple[str, str] | None:
        """(qualified name, why) of the class in ``cls``'s MRO that makes it refused, or None."""
        try:
            mro = cls.__mro__
        except Exception:  # noqa: BLE001
            mro = (cls,)
        for c in mro:
            mod = getattr(c, "__module__", None)
            if not isinstance(mod, str) or mod == "builtins":
                continue
            qualname = f"{mod}.{getattr(c, '__qualname__', '?')}"
            if qualname in REFUSED_TYPES:
                return qualname, REFUSED_TYPES[qualname]
            if c is cls and (qualname in ALLOWED_CLASSES or mod in ALLOWED_TYPE_MODULES):
                return None
            if _within(mod, HAZARD_TYPE_MODULES) or mod.startswith("_frozen_importlib"):
                return qualname, f"its module '{mod}' reaches the process or the stack"
        return None

    # ----------------------------------------------------------------- judges, one per kind

    def _judge_module(self, module: types.ModuleType) -> str | None:
        return self._cached(module, lambda m: self.module_reason(str(getattr(m, "__name__", "?"))))

    def _judge_class(self, cls: type) -> str | None:
        def compute(c: type) -> str | None:
            entry = self._builtins.get(id(c))
            if entry is not None and entry[0] is c:
                name = entry[1]
                return None if name in BUILTINS_ALLOWED or issubclass(c, BaseException) else f"builtin '{name}'"
            qualname = f"{getattr(c, '__module__', '?')}.{getattr(c, '__qualname__', '?')}"
            if qualname in REFUSED_CONSTRUCTORS:
                return f"class '{qualname}' ({REFUSED_CONSTRUCTORS[qualname]})"
            refused = self._type_reason(c)
            return None if refused is None else f"class '{refused[0]}' ({refused[1]})"

        return self._cached(cls, compute)

    def _callable_reason(self, module: str, qualname: str, what: str) -> str | None:
        full = f"{module}.{qualname}"
        if full in ALLOWED_CALLABLES:
            return None
        if full in REFUSED_CALLABLES:
            return f"{what} '{full}' ({REFUSED_CALLABLES[full]})"
        if not self.denied(module):
            return None
        # A method (or a function nested in one) of a class from a denied module is judged by
        # its class: a temporary file's read() is fine, a Logger's findCaller is not.
        owner = getattr(sys.modules.get(module), qualname.partition(".")[0], None)
        if "." in qualname and isinstance(owner, type):
            refused = self._type_reason(owner)
            return None if refused is None else f"{what} '{full}' ({refused[1]})"
        return f"{what} '{full}' (its module reaches the process or the interpreter)"

    def _judge_function(self, func: types.FunctionType) -> str | None:
        return self._cached(func, lambda f: self._callable_reason(str(f.__module__), f.__qualname__, "function"))

    def _judge_builtin(self, func: types.BuiltinFunctionType) -> str | None:
        entry = self._builtins.get(id(func))
        if entry is not None and entry[0] is func:
            return None if entry[1] in BUILTINS_ALLOWED else f"builtin '{entry[1]}'"
        owner = func.__self__
        name = func.__name__
        if owner is None or isinstance(owner, types.ModuleType):
            module = owner.__name__ if owner is not None else str(func.__module__)
            return self._cached(func, lambda f: self._callable_reason(module, name, "function"))
        return self._bound_reason(owner, name)

    def _bound_reason(self, owner: Any, name: str) -> str | None:
        """A method ``name`` bound to ``owner`` (an object or a class)."""
        if name in ("format", "format_map") and (isinstance(owner, str) or owner is str):
            return f"method 'str.{name}' (it reads attributes named in its format string)"
        if is_dunder(name) and name not in DUNDERS_ALLOWED:
            return f"method '{name}'"
        return self.judge(owner)

    def _judge_method(self, method: types.MethodType) -> str | None:
        return self._bound_reason(method.__self__, getattr(method.__func__, "__name__", "")) \
            or self.judge(method.__func__)

    def _judge_descriptor(self, descriptor: Any) -> str | None:
        return self._bound_reason(descriptor.__objclass__, descriptor.__name__)

    def _judge_method_wrapper(self, wrapper: Any) -> str | None:
        return self._bound_reason(wrapper.__self__, wrapper.__name__)

    def _judge_dict(self, namespace: dict) -> str | None:
        if namespace is self._sys_modules:
            return "sys.modules"
        if namespace is self._builtins_dict:
            return "the builtins namespace"
        if "__builtins__" in namespace or ("__name__" in namespace and "__spec__" in namespace):
            return f"the namespace of module {str(namespace.get('__name__'))!r}"
        return None

    def _judge_partial(self, partial: functools.partial) -> str | None:
        return self.judge(partial.func)

    def _judge_path(self, path: Any) -> str | None:
        return self.path_reason(path)


_UNKNOWN = object()


def _leads_into_proc(path: str, base: str | None = None, hops: int = 0) -> bool:
    """Whether resolving ``path`` (relative to ``base``, else the working directory) passes
    through /proc at any step, as the kernel resolves it: symbolic links first, then ``..``
    (``/dev/fd`` is a link to ``/proc/self/fd``, and ``/dev/fd/../mem`` is ``/proc/self/mem``).
    ``os.path.realpath`` alone misses a descriptor's link, which resolves to its file."""
    if hops > 40:
        return True  # a loop of links: refuse rather than guess
    current = "/" if path.startswith("/") else (base or os.getcwd())
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current) or "/"
            continue
        step = current.rstrip("/") + "/" + part
        if step == "/proc" or step.startswith("/proc/"):
            return True
        if os.path.islink(step):
            target = os.readlink(step)
            if _leads_into_proc(target, current, hops + 1):
                return True
            current = os.path.realpath(os.path.join(current, target))
        else:
            current = step
        if current == "/proc" or current.startswith("/proc/"):
            return True
    return False


def enum_factory(cls: Any) -> bool:
    """Whether ``cls`` is an Enum class without members: called with a name and members (the
    functional API) it builds a class, whose methods can be any function."""
    return isinstance(cls, enum.EnumMeta) and not cls._member_map_
