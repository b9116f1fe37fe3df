"""The capability layer (:mod:`sandbox.capability`): what candidate code reaches is checked when
it is reached.

Three parts: unit tests of the rewrite and the policy on plain Python (no sandbox), each
asserting the reason a rejection gives; a generated reachability sweep that walks every object
reachable from the names of mined networkx tasks and requires the real sandbox, static gate
off, to reject a candidate that reaches each denied module and callable, naming its path; and
the tasks' own targets, guarded, passing and killing the mutants they were mined with.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import enum
import functools
import io
import json
import operator
import os
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from sandbox import capability
from sandbox.api import Limits, execute_on, server_for, shutdown
from sandbox.slot import _rewrite_asserts
from sandbox.mining import MineConfig, mine
from sandbox.tasks import load_tasks

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- 1. unit tests


def run(source: str, messages: bool = True, **names) -> tuple[str, str]:
    """``source`` as a guarded candidate in a namespace of ``nx``, ``pytest`` and ``names``
    (the test module's globals, as the policy sees them): (status, reason), status one of
    passed, failed, error, rejected; a rejection's reason is the guard's record."""
    scope = {"nx": nx, "pytest": pytest, "G": nx.cycle_graph(4), **names}
    import _pytest.assertion.rewrite as pytest_ar

    scope.update({"@py_builtins": builtins, "@pytest_ar": pytest_ar})
    stmts = ast.parse(source).body
    if messages:
        stmts = _rewrite_asserts(stmts, source.encode())
    capability.install("networkx", scope)
    try:
        stmts = capability.guard_statements(stmts, source)
    except capability.Refused as refused:
        return "rejected", refused.reason
    code = compile(ast.Module(body=stmts, type_ignores=[]), "<candidate>", "exec")
    try:
        exec(code, scope)  # noqa: S102
        status, reason = "passed", ""
    except AssertionError as err:
        status, reason = "failed", str(err)
    except BaseException as err:  # noqa: BLE001
        status, reason = "error", f"{type(err).__name__}: {err}"
    recorded = capability.violation(scope)
    return ("rejected", recorded) if recorded else (status, reason)


REJECTED = [
    # A stdlib module as an attribute of the library's own modules, and what lies behind it.
    ("assert nx.utils.backends.logging.traceback.format_stack()",
     "capability: reached module 'logging' by nx.utils.backends.logging", {}),
    ("assert nx.nx_agraph.tempfile._os._exit(0)", "capability: reached module 'tempfile' by nx.nx_agraph.tempfile", {}),
    ("assert enum.bltns.exec('1')", "capability: reached module 'builtins' by enum.bltns", {"enum": enum}),
    ("assert nx.lazy_imports.inspect.stack()", "capability: reached module 'inspect' by nx.lazy_imports.inspect", {}),
    ("assert nx.gml.re.compile('x')",
     "capability: reached module 're' (neither the library, its dependencies nor the test module import it) "
     "by nx.gml.re", {}),
    # Objects whose type reaches the process or the stack.
    ("assert nx.utils.backends._logger.findCaller()",
     "capability: reached a 'logging.Logger' object (its module 'logging' reaches the process or the stack) "
     "by nx.utils.backends._logger", {}),
    ("assert nx.Graph.adj.lock", "capability: reached a '_thread.RLock' object", {}),
    # Getattr gadgets with a dunder name built at run time.
    ("assert operator.attrgetter('_' * 2 + 'code' + '_' * 2)(nx.cycle_basis)",
     "capability: reached class 'operator.attrgetter' (it reads attributes named at run time) by operator.attrgetter",
     {"operator": operator}),
    ("assert operator.methodcaller('x')", "capability: reached class 'operator.methodcaller'", {"operator": operator}),
    ("assert string.Formatter().get_field('0.' + '_' * 2 + 'code' + '_' * 2, [nx.cycle_basis], {})",
     "capability: reached class 'string.Formatter' (it reads attributes named in a format string) by string.Formatter",
     {"string": string}),
    ("assert ('{0.' + '_' * 2 + 'globals' + '_' * 2 + '}').format(nx.cycle_basis)",
     "capability: reached method 'str.format' (it reads attributes named in its format string) "
     "by ('{0.' + '_' * 2 + 'globals' + '_' * 2 + '}').format", {}),
    ("assert str.format_map('{x}', {'x': G})", "capability: reached method 'str.format_map'", {}),
    # Class factories that plant an always-true __eq__.
    ("assert G == type(type(G))('A', (), {'_' * 2 + 'eq' + '_' * 2: lambda s, o: True})()",
     "capability: called the metaclass 'type' with 3 arguments (that builds a class) by type(type(G))(", {}),
    ("assert G == type.__call__(type, 'A', (), {})()", "capability: called the metaclass 'type' with 3 arguments", {}),
    ("assert list(map(type, ['A'], [()], [{}]))",
     "capability: passed the class factory 'type' as an argument by map(type, ['A'], [()], [{}])", {}),
    ("assert enum.Enum('E', [('A', 1)])", "capability: called the Enum functional API of 'Enum'", {"enum": enum}),
    ("assert dataclasses.dataclass(type(G))(G) == nx.path_graph(9)",
     "capability: reached function 'dataclasses.dataclass' (it rewrites a class's __eq__", {"dataclasses": dataclasses}),
    ("assert functools.update_wrapper(G, nx.cycle_basis, assigned=['_' * 2 + 'code' + '_' * 2], updated=[])",
     "capability: reached function 'functools.update_wrapper' (it sets attributes named at run time)",
     {"functools": functools}),
    ("assert dataclasses.make_dataclass('A', [])",
     "capability: reached function 'dataclasses.make_dataclass' (it builds a class (an always-equal object)) "
     "by dataclasses.make_dataclass", {"dataclasses": dataclasses}),
    # Builtins by allowlist.
    ("assert getattr(G, 'nodes')", "capability: reached builtin 'getattr' by getattr", {}),
    ("assert vars(G)", "capability: reached builtin 'vars' by vars", {}),
    ("assert eval('1')", "capability: reached builtin 'eval' by eval", {}),
    ("assert __import__('os')", "capability: reached builtin '__import__' by __import__", {}),
    ("assert open('/etc/hostname').read()", "capability: reached builtin 'open' by open", {}),
    ("assert __builtins__['len']", "capability: reached the builtins namespace by __builtins__", {}),
    # Frames, code, namespaces and interpreter internals, refused by type.
    ("g = (n for n in G)\nassert g.gi_frame.f_back", "capability: reached a frame by g.gi_frame", {}),
    ("g = (n for n in G)\nassert g.gi_code.co_code", "capability: reached a code object by g.gi_code", {}),
    ("assert nx.cycle_basis.__code__", "capability: reached attribute '__code__' by nx.cycle_basis.__code__", {}),
    ("assert nx.cycle_basis.__globals__['os']", "capability: reached attribute '__globals__'", {}),
    ("assert ().__class__.__base__.__subclasses__()", "capability: reached attribute '__subclasses__'", {}),
    ("assert object.__getattribute__(G, 'nodes')", "capability: reached attribute '__getattribute__'", {}),
    ("assert G.__reduce_ex__(2)", "capability: reached attribute '__reduce_ex__'", {}),
    ("assert sys.modules", "capability: reached module 'sys' by sys", {"sys": sys}),
    # numpy: raw memory and unpickling.
    ("assert np.lib.stride_tricks.as_strided(np.zeros(1), (99,), (8,))",
     "capability: reached module 'numpy.lib.stride_tricks' by np.lib.stride_tricks", {"np": np}),
    ("assert np.arange(3).ctypes.data", "capability: reached a 'numpy._core._internal._ctypes' object", {"np": np}),
    ("assert np.load('x.npy', allow_pickle=True)", "capability: reached function 'numpy.load'", {"np": np}),
    ("assert io.BytesIO", "capability: reached module 'io' by io", {"io": io}),
    # Process callables: a library's own `from subprocess import run`.
    ("assert run(['true'])",
     "capability: reached function 'subprocess.run' (its module reaches the process or the interpreter) by run",
     {"run": subprocess.run}),
    # pytest: only approx.
    ("assert pytest.raises(ValueError)", "capability: reached module 'pytest' by pytest", {}),
    # Paths into /proc (the process's memory and its verdict pipe) and links that lead there.
    ("assert Path('/proc/self/mem').open('rb')",
     "capability: passed the path '/proc/self/mem', which leads into /proc by Path('/proc/self/mem')", {"Path": Path}),
    ("p = Path('/dev') / 'fd' / '4'\nassert p.open('wb')", "capability: reached the path '/dev/fd/4', which leads into /proc",
     {"Path": Path}),
    ("assert tmp.symlink_to", "capability: reached function 'pathlib.Path.symlink_to'", {"tmp": Path("/tmp")}),
    # Setting a dunder attribute through keyword arguments (numpy reads __array_interface__).
    ("assert dict(**{'_' * 2 + 'array_interface' + '_' * 2: 1})",
     "capability: passed a keyword argument named '__array_interface__'", {}),
    # Inside lambdas and comprehensions too; and a loaded name that is augmented.
    ("assert sorted(G, key=lambda n: nx.utils.backends.logging)",
     "capability: reached module 'logging' by nx.utils.backends.logging", {}),
    ("assert [nx.lazy_imports.os for n in G]", "capability: reached module 'os' by nx.lazy_imports.os", {}),
    ("x = 0\nx += sys", "capability: reached module 'sys' by sys", {"sys": sys}),
    # Statements that change or define things, with the gate off.
    ("nx.cycle_basis = len\nassert G", "capability: an attribute store or delete is not allowed (nx.cycle_basis)", {}),
    ("G.graph['x'] = 1\nassert G", "capability: an item store or delete is not allowed (G.graph['x'])", {}),
    ("import os\nassert os", "capability: an import is not allowed (import os)", {}),
    ("class A:\n    pass\nassert A", "capability: a class definition is not allowed", {}),
    ("def f():\n    pass\nassert f", "capability: a function definition is not allowed", {}),
    ("global G\nassert G", "capability: a 'global' statement is not allowed", {}),
    ("match G:\n    case nx.Graph(name=n):\n        pass\nassert G", "capability: a 'match' statement", {}),
]


@pytest.mark.parametrize("source,reason,names", REJECTED, ids=[r[0][:40] for r in REJECTED])
def test_a_reach_the_policy_refuses_is_rejected_with_its_path(source, reason, names):
    status, why = run(source, **names)
    assert status == "rejected" and why.startswith(reason), (status, why)


def test_the_record_holds_when_the_exception_is_swallowed():
    source = "try:\n    x = nx.utils.backends.logging\nexcept BaseException:\n    pass\nassert G"
    assert run(source) == ("rejected", "capability: reached module 'logging' by nx.utils.backends.logging")


def test_ordinary_code_passes_and_fails_as_before():
    ok = [
        "assert len(nx.cycle_basis(G)) == 1",
        "assert sorted(d for n, d in G.degree) == [2, 2, 2, 2]",
        "assert G.__len__() == 4 and (3).__add__(1) == 4 and type(G).__name__ == 'Graph'",
        "assert pytest.approx(4.0) == len(G)",
        "assert isinstance(G, nx.Graph) and type(G) is nx.Graph and hasattr(G, 'adj')",
        "assert sorted(map(type, [1, 'a']), key=str) == [int, str]",
        "x = [n for n in G if n % 2]\nx += [9]\nassert x == [1, 3, 9]",
        "assert buf.getvalue() == b'ab' and buf.read() == b'ab'",
        "assert tmp.name and '{0}'",
        "assert f.read() == b'' and f.name",
        "assert str(nx.utils.backends.logging) if False else G",
        "assert format(3.14159, '.2f') == '3.14' and f'{len(G)!r:>3}' == '  4'",
        "assert functools.reduce(lambda a, b: a + b, [1, 2]) == 3 and functools.partial(len)(G) == 4",
        "assert np.allclose(nx.to_numpy_array(G).sum(axis=0), 2) and np.testing.assert_equal(1, 1) is None",
    ]
    names = {"buf": io.BytesIO(b"ab"), "tmp": Path(tempfile.gettempdir()), "f": tempfile.TemporaryFile(),
             "functools": functools, "np": np}
    for source in ok:
        assert run(source, **names) == ("passed", ""), source
    status, reason = run("assert len(nx.cycle_basis(G)) == 2")
    # pytest's explanation still reads as the candidate wrote it.
    assert status == "failed" and "assert 1 == 2" in reason and "where 1 = len(" in reason, reason


def test_the_guard_cannot_be_reached():
    for source in ("assert globals()", "assert vars(nx)", "assert nx.__dict__", "assert dir()",
                   "assert nx.algorithms.__loader__"):
        status, reason = run(source)
        assert status == "rejected", (source, reason)


# --------------------------------------------------------------------------- the mined tasks

FILES = ["algorithms/tests/test_isolate.py", "algorithms/tests/test_reciprocity.py",
         "algorithms/tests/test_hierarchy.py", "algorithms/tests/test_chains.py", "algorithms/tests/test_triads.py",
         "readwrite/tests/test_adjlist.py", "algorithms/tests/test_walks.py"]
TASKS_PER_MODULE = 3  # walked (each its own prefix's locals); a module's globals are walked once

# The brief's deny list and builtins allowlist, written out here independently of the policy:
# whatever the walk finds among these, the policy must refuse.
DENIED = ("os posix nt sys builtins subprocess ctypes _ctypes importlib _imp inspect traceback gc tempfile logging "
          "threading _thread signal pickle marshal copyreg shutil io _io socket select selectors asyncio "
          "multiprocessing concurrent resource pty fcntl mmap types warnings linecache dis code codeop pdb bdb trace "
          "tracemalloc faulthandler atexit site sysconfig runpy pkgutil zipimport time unittest.mock pytest _pytest "
          "numpy.ctypeslib numpy.lib.stride_tricks cffi").split()
BUILTINS_OK = set(("len sorted set isinstance abs round min max sum any all list dict tuple frozenset str repr int float "
                   "bool complex range enumerate zip map filter reversed iter next hash id type callable hasattr "
                   "issubclass divmod pow chr ord hex oct bin format slice bytes bytearray print object ascii aiter "
                   "anext").split())


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine") / "tasks.jsonl"
    mine(MineConfig(out=out, files=FILES, workers=1, progress=False))
    found = load_tasks(out)
    assert len({t.test_module for t in found}) >= 5
    return found


# The walk runs in a fresh interpreter, as a zygote server does: it imports the test module,
# runs each task's own target once (what the zygote's warm-up does, so lazy imports happen) and
# its prefix, then walks breadth first from the names a candidate can spell — the module's
# globals and the builtins, then each task's prefix locals — through dir() and getattr (errors
# ignored, dunders skipped: they are refused where written), to depth 4. An object the policy
# refuses is recorded with its shortest path and not walked into.
WALKER = textwrap.dedent('''
    import builtins, json, keyword, re, sys, tempfile, types
    from collections import deque
    from sandbox.capability import _imports
    from sandbox.capability_policy import FAST, Policy
    from sandbox.slot import SlotProgram

    DEPTH = 4
    # Functions networkx's argmap compiles get a per-process counter in their names
    # (argmap_cycle_graph_36): which number a zygote gives them depends on what it ran before.
    GENERATED = re.compile(r"argmap_\\w+_\\d+$")

    def key(obj):
        """Identity, except for bound methods (a fresh object per getattr): class and name."""
        t = type(obj)
        owner = getattr(obj, "__self__", None) if t in (types.MethodType, types.MethodWrapperType,
                                                         types.BuiltinMethodType) else None
        if owner is not None and not isinstance(owner, types.ModuleType):
            return ("bound", id(owner if isinstance(owner, type) else type(owner)), getattr(obj, "__name__", ""))
        return id(obj)

    def walk(roots, policy, seen, keep, out):
        queue = deque()
        for name, obj in roots:
            if key(obj) not in seen:
                seen[key(obj)] = name
                keep.append(obj)
                queue.append((name, obj, 0))
        while queue:
            path, obj, depth = queue.popleft()
            out["walked"] += 1
            what = policy.judge(obj)
            kind = "module" if isinstance(obj, types.ModuleType) else "callable" if callable(obj) else "value"
            if what is not None:
                out["found"].append([path, kind, what])
                continue
            if kind == "module":
                out["modules"].add(obj.__name__)
            elif isinstance(obj, types.BuiltinFunctionType) and obj.__self__ is builtins:
                out["builtins"].add(obj.__name__)
            elif isinstance(obj, type) and vars(builtins).get(obj.__name__) is obj \\
                    and not issubclass(obj, BaseException):
                out["builtins"].add(obj.__name__)
            elif kind == "callable" and isinstance(obj, types.FunctionType) and "." not in obj.__qualname__:
                out["functions"].add(str(obj.__module__))
            if depth >= DEPTH or type(obj) in FAST:
                continue
            try:
                names = dir(obj)
            except BaseException:
                continue
            for attr in names:
                if attr.startswith("__") or not attr.isidentifier() or keyword.iskeyword(attr) or GENERATED.match(attr):
                    continue
                try:
                    child = getattr(obj, attr)
                except BaseException:
                    continue
                if key(child) not in seen:
                    seen[key(child)] = path
                    keep.append(child)
                    queue.append((f"{path}.{attr}", child, depth + 1))

    report = {}
    for module, rows in json.load(sys.stdin).items():  # one module per process, as in a zygote
        progs = [SlotProgram(module, r["test_class"], r["test_name"], r["slot"]) for r in rows]
        tmp = tempfile.mkdtemp()
        for prog in progs:
            try:
                prog.call(prog.build(prog.target_text)[0], tmp)
            except BaseException:
                pass
        g = progs[0].globals
        policy = Policy(module.partition(".")[0], g, _imports(progs[0].tree))  # as capability.install builds it
        seen, keep = {}, []
        out = {"walked": 0, "found": [], "modules": set(), "builtins": set(), "functions": set()}
        roots = [(n, v) for n, v in g.items() if not n.startswith("@")]
        roots += [(n, v) for n, v in vars(builtins).items() if n not in g and not n.startswith("_")]
        walk(roots, policy, seen, keep, out)
        found = {"module": [[f, None] for f in out.pop("found")]}
        for i, prog in enumerate(progs):
            names = prog.call(prog.prefix_function(False), tmp)
            out["found"] = []
            walk([(n, v) for n, v in names.items() if n not in g or g[n] is not v], policy, seen, keep, out)
            found[i] = [[f, i] for f in out.pop("found")]
            out["locals" + str(i)] = sorted(names)
        report[module] = {k: sorted(v) if isinstance(v, set) else v for k, v in out.items()}
        report[module]["found"] = [x for part in found.values() for x in part]
    json.dump(report, sys.stdout)
''')


def test_everything_the_walk_finds_denied_is_rejected_with_its_path(tasks):
    start = time.monotonic()
    picked: dict[str, list] = {}
    for t in tasks:
        if len(picked.setdefault(t.test_module, [])) < TASKS_PER_MODULE:
            picked[t.test_module].append(t)
    request = {m: [{"test_class": t.test_class, "test_name": t.test_name, "slot": t.slot} for t in ts]
               for m, ts in picked.items()}
    report = {}
    for module, rows in request.items():
        done = subprocess.run([sys.executable, "-P", "-c", WALKER], input=json.dumps({module: rows}), capture_output=True,
                              text=True, cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-3000:]
        report.update(json.loads(done.stdout))

    # Independently of the policy: nothing the walk let through is on the brief's deny list.
    for module, r in report.items():
        leaked = [m for m in r["modules"] if any(m == d or m.startswith(d + ".") for d in DENIED)]
        leaked += [f"builtin {b}" for b in r["builtins"] if b not in BUILTINS_OK]
        leaked += [f"function of {m}" for m in r["functions"] if any(m == d or m.startswith(d + ".") for d in DENIED)]
        assert not leaked, (module, leaked)

    # One candidate per finding, in a task whose scope resolves its first name to the object walked.
    jobs: dict[int, list[tuple[str, str, str]]] = {}  # id(task) -> [(path, kind, what)]
    by_id = {}
    counts = {"objects walked": 0, "denied modules found": 0, "denied callables found": 0,
              "other denied values found": 0}
    for module, r in report.items():
        counts["objects walked"] += r["walked"]
        for (path, kind, what), owner in r["found"]:
            counts[{"module": "denied modules found", "callable": "denied callables found"}.get(
                kind, "other denied values found")] += 1
            root = path.split(".")[0]
            if owner is None:  # from the globals or the builtins: a task whose prefix does not shadow it
                owner = next((i for i in range(len(picked[module])) if root not in r[f"locals{i}"]), None)
                if owner is None:
                    continue
            task = picked[module][owner]
            by_id[id(task)] = task
            jobs.setdefault(id(task), []).append((path, kind, what))
    limits = Limits(gate=False, confirm=False)  # the capability layer alone answers
    server = server_for("networkx", limits)
    problems, rejected = [], 0
    try:
        for key, found in jobs.items():
            task = by_id[key]
            cands = [f"assert {path} is not None" for path, _, _ in found]
            for (path, _, what), v in zip(found, execute_on(server, task, cands, mutants=False, limits=limits)):
                if v.status == "rejected" and v.reason.endswith(f" by {path}"):
                    rejected += 1
                else:
                    problems.append((task.id, path, what, v.status, v.reason[:200]))
    finally:
        shutdown()
    distinct = {kind: {path for r in report.values() for (path, k, _), _ in r["found"] if k == kind}
                for kind in ("module", "callable", "value")}
    counts.update({f"distinct {kind} paths": len(paths) for kind, paths in distinct.items()})
    counts["candidates"] = sum(map(len, jobs.values()))
    counts["candidates rejected"] = rejected
    counts["tasks"] = len(by_id)
    counts["seconds"] = round(time.monotonic() - start, 1)
    print("\nreachability:", json.dumps(counts))
    assert not problems, problems[:20]
    assert counts["denied modules found"] >= 20 and counts["denied callables found"] >= 20
    assert rejected == counts["candidates"]


def test_the_tasks_own_targets_pass_guarded_and_kill_their_mutants(tasks):
    limits = Limits(confirm=False)  # gate and capability layer on, as for a model's candidates
    assert limits.capabilities
    server = server_for("networkx", limits)
    try:
        bad = []
        for t in tasks:
            [v] = execute_on(server, t, [t.target], mutants=True, limits=limits)
            if v.status != "passed" or set(v.kills) != {m.id for m in t.mutants}:
                bad.append((t.id, v.status, v.reason[:120], sorted(v.kills)))
    finally:
        shutdown()
    assert not bad, bad
