"""Mining: assertion slots from a library's own test suite, verified by running them.

``mine(config)`` finds the test files an installed package ships, hands them to worker
processes (:mod:`sandbox.zygote` servers) and collects, for each file, the verified tasks and
the count of slots dropped by reason. :func:`mine_module` is the per-file work; it runs in a
module zygote that has imported the test module once.

A slot is kept when: the test is collected the way pytest collects it and needs nothing we do
not provide; prefix + target passes; prefix + ``assert False`` fails (the slot is reached); the
target passes again under another random seed (not flaky); it makes at most ``slow_calls``
calls (work measured so that a rerun decides the same: see ``_mine_function``); and it
calls at least one library function by a name in its source (the focal functions). Mutants of
the focal functions are kept when the target kills them. Splits go by test file — files tied
by test-class inheritance are one group — so no test function is in two splits.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib.metadata
import inspect
import json
import os
import queue
import re
import shutil
import threading
import time
import types
import unittest
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .slot import SlotError, find_def, parse_source, segment
from .mutants import OPERATORS, generate
from .pool import observe_tasks
from .tasks import SPLITS, Mutant, Task, write_tasks
from .zygote import ModuleZygote, SandboxError, SlotRef, ZygoteServer, job_for, package_dir

FIXTURES = ("tmp_path",)  # fixtures the execution core provides
_TOKEN = re.compile(r"\w+|[^\w\s]")


class MiningError(RuntimeError):
    """Mining cannot start or finish (no such package, no tests, ...)."""


@dataclass
class MineConfig:
    """`trident mine`: verified assertion tasks from an installed library's test suite."""

    package: str = field(default="networkx", metadata={"help": "installed package whose shipped tests are mined"})
    out: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file to write (JSONL)"})
    summary: Path | None = field(default=None, metadata={"help": "summary JSON; default: OUT with .summary.json"})
    files: list[str] = field(default_factory=list, metadata={"help": "glob patterns on test file paths inside the package (empty: all)"})
    max_files: int | None = field(default=None, metadata={"help": "mine at most this many test files (in path order)"})
    max_tasks: int | None = field(default=None, metadata={"help": "stop once this many tasks are kept (in path order)"})
    workers: int = field(default=0, metadata={"help": "worker processes; 0 = one per core"})
    timeout_s: float = field(default=30.0, metadata={"help": "wall-clock backstop of one execution (slowness is judged on calls, then CPU time)"})
    slow_calls: int = field(default=5_000_000, metadata={"help": "slots whose test makes more calls than this (Python functions and builtins) are dropped as slow; calls, unlike time, are the same on every run"})
    slow_s: float = field(default=5.0, metadata={"help": "CPU seconds after which a test is stopped and dropped as slow (a backstop for work that makes few calls)"})
    mutant_calls: int = field(default=50_000, metadata={"help": "calls a run under a mutant may make at least; 10x the test's own (a mutant stopped there is no kill)"})
    mutant_cpu_s: float = field(default=0.5, metadata={"help": "CPU seconds a run under a mutant gets at least; 30x the test's own (a backstop for loops that make no calls)"})
    mutant_timeout_s: float = field(default=2.0, metadata={"help": "wall-clock backstop of a run under a mutant (at least 4x its CPU limit)"})
    mutants_per_task: int = field(default=8, metadata={"help": "mutants tried per task beyond those tried for earlier slots of its test (the killed ones are kept)"})
    max_mutant_tries: int = field(default=40, metadata={"help": "while no mutant kills a slot, try up to this many of its own"})
    focal_budget: int = field(default=1024, metadata={"help": "code tokens of focal-function source kept per task"})
    setup_budget: int = field(default=512, metadata={"help": "code tokens of test-module setup kept per task"})
    valid_fraction: float = field(default=0.1, metadata={"help": "share of test-file groups in the valid split"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of test-file groups in the test split"})
    split_seed: int = field(default=0, metadata={"help": "seed of the file-hash split"})
    skip_marks: list[str] = field(default_factory=lambda: ["slow"], metadata={"help": "pytest marks whose tests are not mined"})
    module_timeout_s: float = field(default=1800.0, metadata={"help": "limit for mining one test file"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = one per core)")
        if not 0 <= self.valid_fraction + self.test_fraction < 1 or min(self.valid_fraction, self.test_fraction) < 0:
            raise ValueError("valid_fraction and test_fraction must be >= 0 and sum to less than 1")
        for name in ("timeout_s", "slow_s", "mutant_cpu_s", "mutant_timeout_s", "module_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.slow_s > self.timeout_s:
            raise ValueError(f"slow_s ({self.slow_s}) must not exceed timeout_s ({self.timeout_s})")
        if self.slow_calls < 1 or self.mutant_calls < 1:
            raise ValueError("slow_calls and mutant_calls must be >= 1")
        if self.mutants_per_task < 0 or (self.max_tasks is not None and self.max_tasks < 1):
            raise ValueError("mutants_per_task must be >= 0 and max_tasks >= 1")
        if self.max_mutant_tries < self.mutants_per_task:
            raise ValueError(f"max_mutant_tries ({self.max_mutant_tries}) must be >= mutants_per_task ({self.mutants_per_task})")

    @property
    def summary_path(self) -> Path:
        return self.summary or self.out.with_name(self.out.name.removesuffix(".jsonl") + ".summary.json")


# --------------------------------------------------------------------------- helpers


def count_tokens(text: str) -> int:
    """Code tokens: identifiers/numbers and single punctuation characters."""
    return len(_TOKEN.findall(text))


def cut_to_budget(text: str, budget: int) -> str:
    """Whole lines from the start while the token count stays within ``budget``."""
    out, used = [], 0
    for line in text.splitlines():
        n = count_tokens(line)
        if used + n > budget:
            break
        out.append(line)
        used += n
    return "\n".join(out)


def discover(package: str, patterns: list[str] | None = None) -> list[tuple[str, str]]:
    """``(module, relative path)`` of the test files a package ships, sorted by path."""
    root = package_dir(package)
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        name = path.name
        if not (name.startswith("test_") or name.endswith("_test.py")):
            continue
        if patterns and not any(fnmatch.fnmatch(rel, p) for p in patterns):
            continue
        module = ".".join([package, *rel[: -len(".py")].split("/")])
        found.append((module, rel))
    return found


def _marks(*owners: Any) -> list[Any]:
    out = []
    for owner in owners:
        marks = getattr(owner, "pytestmark", [])
        out.extend(marks if isinstance(marks, list) else [marks])
    return out


def _mark_drop(marks: list[Any], globs: dict[str, Any], skip_marks: list[str]) -> str | None:
    for mark in marks:
        name = getattr(mark, "name", "")
        if name == "parametrize":
            return "parametrised"
        if name == "usefixtures":
            return "fixtures"
        if name in ("skip", "xfail"):
            return f"marked {name}"
        if name == "skipif":
            conds = mark.args or (mark.kwargs.get("condition"),)
            for cond in conds:
                try:
                    hit = eval(cond, dict(globs)) if isinstance(cond, str) else bool(cond)  # noqa: S307 - pytest does the same
                except Exception:  # noqa: BLE001
                    hit = True
                if hit:
                    return "marked skip"
        if name in skip_marks:
            return f"marked {name}"
    return None


def _collect(mod: types.ModuleType) -> list[tuple[type | None, str, Any]]:
    """What pytest collects from a module: ``(class or None, name, function)``."""
    items: list[tuple[type | None, str, Any]] = []
    for name, obj in list(vars(mod).items()):
        if isinstance(obj, types.FunctionType) and name.startswith("test") and obj.__module__ == mod.__name__:
            items.append((None, name, obj))
        elif isinstance(obj, type) and name.startswith("Test") and obj.__module__ == mod.__name__:
            if getattr(obj, "__test__", True) is False or (obj.__init__ is not object.__init__ and not issubclass(obj, unittest.TestCase)):
                continue
            seen: set[str] = set()
            for klass in obj.__mro__:
                for attr, value in klass.__dict__.items():
                    if attr.startswith("test") and attr not in seen:
                        seen.add(attr)
                        items.append((obj, attr, value))
    return items


def _test_def(func: Any) -> tuple[ast.AST | None, list[bytes], str]:
    raw = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
    code = getattr(raw, "__code__", None)
    if code is None:
        return None, [], ""
    try:
        tree, lines = parse_source(code.co_filename)
    except (OSError, SyntaxError):
        return None, [], code.co_filename
    return find_def(tree, code.co_qualname, code.co_firstlineno), lines, code.co_filename


def _slots(node: ast.AST | None) -> list[int]:
    body = getattr(node, "body", [])
    return [i for i, s in enumerate(body) if isinstance(s, ast.Assert)]


def _names(stmts: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def _setup_text(mod_file: str, cls: type | None, budget: int) -> str:
    """Imports, class setup methods, then other module-level helpers of the test file."""
    tree, lines = parse_source(mod_file)
    imports, helpers = [], []
    for node in tree.body:
        text = segment(lines, min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]), node.end_lineno)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(text)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            continue
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            continue
        elif isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # module docstring
        else:
            helpers.append(text)
    class_setup = []
    if cls is not None:
        for attr in ("setup_class", "setup_method"):
            fn = getattr(cls, attr, None)
            fn = getattr(fn, "__func__", fn)
            if isinstance(fn, types.FunctionType):
                node, flines, _ = _test_def(fn)
                if node is not None:
                    class_setup.append(segment(flines, node.lineno, node.end_lineno))
    return cut_to_budget("\n".join(imports + class_setup + helpers), budget)


def _select_mutants(pools: list[list[Mutant]], k: int) -> list[Mutant]:
    """Up to ``k`` mutants, more from the first (most relevant) functions.

    Functions are visited in the triangular order 0, 0 1, 0 1 2, ... so function i gets about
    as many as all later ones together; within a function, operators take turns.
    """
    per_fn = []
    for pool in pools:
        by_op = {op: [m for m in pool if m.operator == op] for op in OPERATORS}
        order = []
        while any(by_op.values()):
            for op in OPERATORS:
                if by_op[op]:
                    order.append(by_op[op].pop(0))
        per_fn.append(order)
    out: list[Mutant] = []
    width = 1
    while len(out) < k and any(per_fn):
        for order in per_fn[:width]:
            if order and len(out) < k:
                out.append(order.pop(0))
        width += 1
    return out


# --------------------------------------------------------------------------- per test file


def mine_module(package: str, module: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Mine one test module (in a fresh module zygote); returns tasks, drops and file links."""
    drops: Counter[str] = Counter()
    tasks: list[dict[str, Any]] = []
    links: list[list[str]] = []
    work: dict[str, dict] = {}  # task id -> calls and CPU seconds of its test, for the summary
    root = package_dir(package)
    rel_module = Path(importlib.util.find_spec(module).origin).relative_to(root).as_posix()  # type: ignore[union-attr,arg-type]
    try:
        zygote = ModuleZygote(package, module, settle=True)
    except BaseException as exc:  # noqa: BLE001 - pytest.skip at import is a BaseException
        reason = "module skipped" if type(exc).__name__ == "Skipped" else "module import error"
        tree, _ = parse_source(str(root / rel_module))
        n = sum(len(_slots(node)) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test"))
        drops[reason] += n
        return {"module": module, "candidates": n, "drops": dict(drops), "tasks": [], "links": [], "key": cfg.get("cache_key")}
    mod = zygote.module
    version = _version(package)
    mutant_cache: dict[tuple[str, str], list[Mutant]] = {}
    setups: dict[tuple[str, type | None], str] = {}
    candidates = 0
    for cls, name, func in _collect(mod):
        node, lines, def_file = _test_def(func)
        slots = _slots(node)
        candidates += len(slots)
        if not slots:
            continue
        reason = None
        if cls is not None and issubclass(cls, unittest.TestCase):
            reason = "unittest class"
        elif isinstance(func, (staticmethod, classmethod)):
            reason = "unsupported test kind"
        elif isinstance(node, ast.AsyncFunctionDef) or (getattr(func, "__code__", None) and func.__code__.co_flags & inspect.CO_GENERATOR):
            reason = "unsupported test kind"
        else:
            reason = _mark_drop(_marks(func, cls, mod), vars(mod), cfg["skip_marks"])
        if reason is None and any(not ast.unparse(d).startswith(("pytest.mark.", "mark.")) for d in node.decorator_list):
            reason = "decorated"
        if reason is None:
            params = [a.arg for a in node.args.args][1 if cls is not None else 0 :]
            if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or any(p not in FIXTURES for p in params):
                reason = "fixtures"
        if reason is not None:
            drops[reason] += len(slots)
            continue
        try:
            def_rel = Path(def_file).relative_to(root).as_posix()
        except ValueError:
            drops["defined outside the package"] += len(slots)
            continue
        for slot, why, task in _mine_function(zygote, cls, name, slots, node, cfg, mutant_cache):
            if why is not None:
                drops[why] += 1
                continue
            if (def_file, cls) not in setups:
                setups[(def_file, cls)] = _setup_text(def_file, cls, cfg["setup_budget"])
            work[task["id"]] = task.pop("work")
            task.update(package=package, package_version=version, test_module=module,
                        setup=setups[(def_file, cls)], split="train")
            tasks.append(task)
            if def_rel != rel_module:
                links.append([rel_module, def_rel])
    return {"module": module, "file": rel_module, "candidates": candidates, "drops": dict(drops), "tasks": tasks,
            "links": links, "work": work, "key": cfg.get("cache_key")}


def _slot_functions(calls: list[list], slot: int, since: int, names: set[str]) -> tuple[list[tuple], list[tuple]]:
    """Focal functions and mutation targets of one slot from a traced run of the test body.

    ``since`` is the index of the previous top-level assert (-1 if none). Rows are ``(file,
    qualname, depth, named, in_target, in_prefix, fresh)``, *fresh* meaning first reached after
    that assert. Focal: the functions the test names (the target's first), else those it calls
    directly. Mutation targets, most promising first: fresh ones (an earlier assert cannot
    catch their mutants first), reached by the target only, then by both, then functions the
    prefix names; named before unnamed, shallow before deep.
    """
    rows = []
    for rel, qualname, depth, stmts in calls:
        reached = [i for i in stmts if i <= slot]
        if reached:
            named = qualname.rsplit(".", 1)[-1] in names
            rows.append((rel, qualname, depth, named, slot in reached, reached[0] < slot, reached[0] > since))
    focal = [r for r in rows if r[3]] or [r for r in rows if r[2] == 1]
    focal.sort(key=lambda r: (not r[4], r[2]))
    targets = sorted((r for r in rows if r[4] or r[3]), key=lambda r: (not r[6], not r[4], r[5], not r[3], r[2]))
    return focal, targets


def _mine_function(zygote: ModuleZygote, cls: type | None, name: str, slots: list[int], node: ast.FunctionDef,
                   cfg: dict[str, Any], mutant_cache: dict) -> list[tuple[int, str | None, dict[str, Any]]]:
    """Mine the slots of one test function: ``(slot, drop reason or None, task fields)`` each.

    The slots are settled together from runs of the body up to the last one: a passing run
    passes every slot's prefix + target, and under a mutant the first assert that raises is
    the one that kills it (pytest stops there), so one run per mutant serves every slot. When
    the body as a whole does not pass cleanly, each slot is settled on its own.
    """
    body = node.body
    out: list[tuple[int, str | None, dict[str, Any]]] = []
    ok = []
    for slot in slots:
        if slot and (body[slot - 1].end_lineno or 0) >= body[slot].lineno:
            out.append((slot, "shares a line with the prefix", {}))
        else:
            ok.append(slot)
    if not ok:
        return out
    test_class = cls.__name__ if cls is not None else None
    last = ok[-1]
    try:
        prog = zygote.program(test_class, name, last)
    except (SlotError, OSError, SyntaxError):
        return out + [(s, "cannot rebuild the test", {}) for s in ok]
    ref = SlotRef(test_class, name, last)
    target = prog.target_text
    # What is too slow is decided by the number of calls the test makes, which is the same on
    # every run however busy the machine; CPU and wall-clock limits only stop runaways that make
    # few calls, far from where a test that is kept ends up.
    limits = {"timeout": cfg["timeout_s"], "cpu_limit": cfg["slow_s"], "call_budget": cfg["slow_calls"]}
    first = zygote.run(job_for(ref, target, trace=sorted(_names(body[: last + 1])), **limits))
    again = None
    if first.status == "passed":
        again = zygote.run(job_for(ref, target, seed=1, **limits))
    clean = again is not None and again.status == "passed"
    if len(ok) > 1 and not clean:
        for slot in ok:
            out.extend(_mine_function(zygote, cls, name, [slot], node, cfg, mutant_cache))
        return sorted(out, key=lambda r: r[0])
    if again is None:
        reason = {"failed": "target fails", "error": "target errors", "timeout": "slow"}.get(first.status, f"target {first.status}")
        return out + [(last, reason, {})]
    if again.status == "timeout":
        return out + [(last, "slow", {})]
    if again.status != "passed":
        return out + [(last, "flaky", {})]

    plans: dict[int, dict[str, Any]] = {}
    asserts = _slots(node)
    for slot in ok:
        probe = zygote.run(job_for(SlotRef(test_class, name, slot), "assert False", timeout=cfg["timeout_s"]))
        if probe.status != "failed":
            out.append((slot, "slot not reached", {}))
            continue
        # The target as the sandbox runs a candidate: gate and capability layer on. A task whose
        # own assertion the sandbox refuses could never be matched by a candidate that passes.
        own = zygote.program(test_class, name, slot).target_text
        if zygote.run(job_for(SlotRef(test_class, name, slot), own, timeout=cfg["timeout_s"], gate=True,
                              guard=True)).status != "passed":
            out.append((slot, "the sandbox refuses the target", {}))
            continue
        since = max([i for i in asserts if i < slot], default=-1)
        focal, targets = _slot_functions(first.calls or [], slot, since, _names(body[: slot + 1]))
        focal_ids, sources = [], []
        for rel, qualname, *_ in focal:
            src = _function_source(zygote.package_dir, rel, qualname)
            if src is not None:
                sources.append(f"# {rel}\n{src}")
                focal_ids.append(f"{rel}::{qualname}")
        if not focal_ids:
            out.append((slot, "no focal function", {}))
            continue
        pools = []
        for rel, qualname, *_ in targets:
            if (rel, qualname) not in mutant_cache:
                mutant_cache[(rel, qualname)] = generate(zygote.package_dir, rel, qualname)
            pools.append(mutant_cache[(rel, qualname)])
        plans[slot] = {"focal_ids": focal_ids, "sources": sources, "order": _select_mutants(pools, sum(map(len, pools)))}

    # A mutant that loops forever is no kill. Each may make 10x the calls of the unmutated
    # test (seed 0, like the mutant runs), at least mutant_calls; CPU and wall-clock limits,
    # far above that, stop loops that make no calls.
    mutant_limits = {"call_budget": max(cfg["mutant_calls"], 10 * (first.events or 0)),
                     "cpu_limit": max(cfg["mutant_cpu_s"], 30 * max(first.cpu_seconds, again.cpu_seconds))}
    mutant_limits["timeout"] = max(cfg["mutant_timeout_s"], 4 * mutant_limits["cpu_limit"])
    raised_at: dict[str, tuple[Mutant, int | None]] = {}

    def run_mutants(mutants: list[Mutant]) -> None:
        for m in mutants:
            if m.id not in raised_at:
                v = zygote.run(job_for(ref, target, mutant=m, messages=False, **mutant_limits))
                raised_at[m.id] = (m, v.assert_line)

    def kills(slot: int) -> list[Mutant]:
        lo, hi = body[slot].lineno, body[slot].end_lineno or body[slot].lineno
        return [m for m, line in raised_at.values() if line is not None and lo <= line <= hi]

    def fresh(slot: int, n: int) -> list[Mutant]:
        # Slots of one function mostly share their pools: each slot's picks skip mutants
        # already run for an earlier slot, so every slot adds mutants of its own.
        picks = [m for m in plans[slot]["order"] if m.id not in raised_at][:n]
        plans[slot]["tried"] += len(picks)
        return picks

    k, most = cfg["mutants_per_task"], cfg["max_mutant_tries"]
    for slot in plans:
        plans[slot]["tried"] = 0
        run_mutants(fresh(slot, k))
    # Slots that no mutant killed yet get more of their own, up to max_mutant_tries.
    for slot in plans:
        if not kills(slot):
            run_mutants(fresh(slot, most - plans[slot]["tried"]))

    for slot, plan in plans.items():
        sprog = zygote.program(test_class, name, slot)
        ident = f"{zygote.module_name}::{test_class + '::' if test_class else ''}{name}#{slot}"
        out.append((slot, None, {
            "id": ident, "test_class": test_class, "test_name": name, "slot": slot,
            "prefix": sprog.prefix_text, "target": sprog.target_text,
            "focal": cut_to_budget("\n\n".join(plan["sources"]), cfg["focal_budget"]),
            "focal_functions": plan["focal_ids"], "mutants": [asdict(m) for m in kills(slot)],
            "work": {"calls": first.events, "cpu_s": round(again.cpu_seconds, 3)},
        }))
    return sorted(out, key=lambda r: r[0])


def _function_source(root: Path, rel: str, qualname: str) -> str | None:
    tree, lines = parse_source(str(root / rel))
    fn = find_def(tree, qualname)
    if fn is None:
        return None
    start = min([d.lineno for d in fn.decorator_list] + [fn.lineno])
    return segment(lines, start, fn.end_lineno)


def _version(package: str) -> str:
    dists = importlib.metadata.packages_distributions().get(package, [])
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


# --------------------------------------------------------------------------- the driver


def assign_splits(files: list[str], links: list[list[str]], cfg: MineConfig) -> dict[str, str]:
    """Split by test-file group: files linked by inherited test classes share one split."""
    parent = {f: f for f in files}

    def find(f: str) -> str:
        parent.setdefault(f, f)
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out = {}
    for f in files:
        digest = hashlib.sha256(f"{cfg.split_seed}:{find(f)}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        out[f] = "test" if u < cfg.test_fraction else "valid" if u < cfg.test_fraction + cfg.valid_fraction else "train"
    return out


MINER_VERSION = 5  # bump when a change to mining changes what a file yields
_NOT_IN_KEY = ("out", "summary", "files", "max_files", "max_tasks", "workers", "progress",
               "valid_fraction", "test_fraction", "split_seed")


def parts_dir(cfg: MineConfig) -> Path:
    return cfg.out.with_name(cfg.out.name + ".parts")


def _worker_settings(cfg: MineConfig) -> dict[str, Any]:
    """What a file's result depends on: the settings that reach the worker, and a key of them
    with the library's and the miner's versions. Only these reach it, so where the output goes
    or which files were asked for cannot change what a file yields (see settle_heap)."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_KEY}
    blob = json.dumps([MINER_VERSION, _version(cfg.package), settings], sort_keys=True, default=str)
    return {**settings, "cache_key": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def mine(cfg: MineConfig) -> dict[str, Any]:
    """Mine ``cfg.package``; writes ``cfg.out`` and the summary; returns the summary."""
    try:
        files = discover(cfg.package, cfg.files)
    except SandboxError as err:
        raise MiningError(str(err)) from None
    if not files:
        where = package_dir(cfg.package)
        what = f"matching {cfg.files}" if cfg.files else "(no test_*.py or *_test.py files)"
        raise MiningError(
            f"package '{cfg.package}' ships no test files {what} under {where}; "
            "mine a library whose wheel includes its test suite, e.g. networkx or toolz"
        )
    if cfg.max_files is not None:
        files = files[: cfg.max_files]
    start = time.monotonic()
    results = _run_workers(cfg, files, _worker_settings(cfg))

    tasks: list[Task] = []
    drops: Counter[str] = Counter()
    candidates = 0
    links: list[list[str]] = []
    work: dict[str, dict] = {}
    for module, rel in files:
        res = results.get(module)
        if res is None:
            continue
        candidates += res["candidates"]
        drops.update(res["drops"])
        links.extend(res["links"])
        work.update(res.get("work", {}))
        tasks.extend(Task.from_dict(t, where=module) for t in res["tasks"])
    if cfg.max_tasks is not None and len(tasks) > cfg.max_tasks:
        drops["over max_tasks"] += len(tasks) - cfg.max_tasks
        tasks = tasks[: cfg.max_tasks]
    rel_of = {m: r for m, r in files}
    splits = assign_splits([r for _, r in files], links, cfg)
    tasks = [Task(**{**t.__dict__, "split": splits[rel_of[t.test_module]]}) for t in tasks]
    # What the prefix's names hold at each slot, for the observed baselines and the model's prompt.
    tasks = observe_tasks(tasks, workers=cfg.workers, progress=cfg.progress)
    write_tasks(cfg.out, tasks, package=cfg.package, package_version=_version(cfg.package))
    shutil.rmtree(parts_dir(cfg), ignore_errors=True)

    with_kill = sum(1 for t in tasks if t.mutants)
    summary = {
        "package": cfg.package,
        "package_version": _version(cfg.package),
        "out": str(cfg.out),
        "test_files": len(files),
        "test_files_done": len(results),
        "candidate_slots": candidates,
        "kept": len(tasks),
        "yield": round(len(tasks) / candidates, 4) if candidates else 0.0,
        "tasks_with_killing_mutant": with_kill,
        "killing_mutant_share": round(with_kill / len(tasks), 4) if tasks else 0.0,
        "mutants_kept": sum(len(t.mutants) for t in tasks),
        "splits": {s: sum(1 for t in tasks if t.split == s) for s in SPLITS},
        "drops": dict(drops.most_common()),
        # The kept tasks whose tests do the most work, against the slow_calls cut (a test's
        # CPU time is as measured in this run: it varies, the calls do not).
        "heaviest": [{"id": i, **work[i]} for i in sorted(work, key=lambda i: (-(work[i]["calls"] or 0), i))[:10]],
        "seconds": round(time.monotonic() - start, 1),
    }
    cfg.summary_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _run_workers(cfg: MineConfig, files: list[tuple[str, str]], worker_cfg: dict[str, Any]) -> dict[str, dict]:
    """Mine files on N server processes; honours ``max_tasks`` in path order."""
    from tqdm import tqdm

    n_workers = min(cfg.workers or os.cpu_count() or 1, len(files))
    results: dict[str, dict] = {}
    order = [m for m, _ in files]
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    bar = tqdm(total=len(files), unit="file", desc=f"mining {cfg.package}", disable=not cfg.progress, dynamic_ncols=True)
    # Each file's result is kept in a parts folder beside the output until the task file is
    # written, so an interrupted run resumes where it stopped (same key: same settings).
    parts = parts_dir(cfg)
    parts.mkdir(parents=True, exist_ok=True)
    key = worker_cfg["cache_key"]
    pending = []
    for i, (module, _) in enumerate(files):
        try:
            cached = json.loads((parts / f"{module}.json").read_text())
        except (OSError, ValueError):
            cached = None
        if isinstance(cached, dict) and cached.get("key") == key:
            results[module] = cached
        else:
            pending.append((i, module))
    if results:
        bar.update(len(results))
        bar.set_postfix(kept=sum(len(r["tasks"]) for r in results.values()), resumed=len(results))

    todo: queue.Queue[tuple[int, str]] = queue.Queue()
    for item in pending:
        todo.put(item)

    def enough() -> bool:
        if cfg.max_tasks is None:
            return False
        kept = 0
        for m in order:  # only a gap-free prefix of files counts, so the cut is deterministic
            if m not in results:
                return False
            kept += len(results[m]["tasks"])
            if kept >= cfg.max_tasks:
                return True
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                try:
                    i, module = todo.get_nowait()
                except queue.Empty:
                    return
                # A fresh server per file: each file is mined by a process whose history is
                # the same on every run, whichever files this worker happened to mine before.
                with ZygoteServer(cfg.package, fixed_layout=True) as server:
                    reply = server.request({"op": "mine", "module": module, "config": worker_cfg,
                                            "deadline_s": cfg.module_timeout_s})
                if reply.get("ok"):
                    res = reply["result"]
                    out = parts / f"{module}.json"
                    tmp = out.with_name(out.name + ".part")
                    tmp.write_text(json.dumps(res), encoding="utf-8")
                    os.replace(tmp, out)
                else:
                    res = {"module": module, "candidates": 0, "drops": {reply.get("error", "worker failed"): 1},
                           "tasks": [], "links": []}
                with lock:
                    results[module] = res
                    bar.update(1)
                    bar.set_postfix(kept=sum(len(r["tasks"]) for r in results.values()))
                    if enough():
                        stop.set()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(n_workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.set()
        bar.close()
    if errors:
        raise errors[0]
    if cfg.max_tasks is not None:  # files mined past the cut are not part of the output
        kept, cut = 0, len(order)
        for idx, m in enumerate(order):
            if m not in results:
                cut = idx
                break
            kept += len(results[m]["tasks"])
            if kept >= cfg.max_tasks:
                cut = idx + 1
                break
        results = {m: results[m] for m in order[:cut]}
    return results
