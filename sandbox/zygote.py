"""Zygotes: processes that import a library once, then a test module once, then fork per run.

Three levels, each a fork of the one above, so nothing a test module or a candidate does
survives into the next:

* the **server** (``python -m sandbox.zygote PACKAGE``, one per worker) imports the library and
  answers JSON-line requests on stdin/stdout;
* a **module zygote** (forked by the server) imports one test module and either mines it or
  serves ``run`` requests, kept in a small LRU cache;
* an **execution child** (forked by the module zygote, :func:`sandbox.execution.run_forked`)
  runs one candidate and dies.

:class:`ZygoteServer` is the client side. Server processes start with ``PYTHONHASHSEED=0`` so
set iteration order — and so every verdict — is the same from run to run.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Callable, NamedTuple

from .execution import Verdict, die_with_parent, run_forked, run_group, settle_heap
from .slot import SlotError, SlotProgram
from .isolation import TIERS, Confinement, enter_namespaces, probe, scrubbed_environment
from .mutants import MutantError, Patcher
from .tasks import Mutant, Task


WARMUP_TIMEOUT_S = 10.0
MAX_MUTANT_ZYGOTES = 32  # per module zygote


class SandboxError(RuntimeError):
    """The execution machinery itself failed (not the candidate)."""


def package_dir(package: str) -> Path:
    """Directory of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise SandboxError(f"package '{package}' is not installed; install it first (pip install {package})")
    if not spec.submodule_search_locations:
        raise SandboxError(f"'{package}' is a single module, not a package: it ships no test suite")
    return Path(list(spec.submodule_search_locations)[0])


class SlotRef(NamedTuple):
    """Where a slot is, for a job; a :class:`~sandbox.tasks.Task` has the same fields."""

    test_class: str | None
    test_name: str
    slot: int
    prefix: str | None = None  # when given, checked against the installed test


def job_for(task: SlotRef | Task, candidate: str, *, timeout: float, mutant: Mutant | None = None, seed: int = 0,
            trace: list[str] | None = None, messages: bool = True, cpu_limit: float | None = None,
            call_budget: int | None = None, gate: bool = False, guard: bool = False,
            observe: bool = False) -> dict[str, Any]:
    """A ``run`` job for one candidate in a task's (or a :class:`SlotRef`'s) slot. ``gate``:
    the candidate is untrusted and must pass the static gate first; ``guard``: it runs under
    the runtime capability layer (:mod:`sandbox.capability`); ``observe``: the candidate is an
    expression whose value is observed (:mod:`sandbox.observable`), not an assertion."""
    return {
        "test_class": task.test_class,
        "test_name": task.test_name,
        "slot": task.slot,
        "prefix": task.prefix,
        "candidate": candidate,
        "mutant": None if mutant is None else {**mutant.__dict__, "span": list(mutant.span)},
        "timeout": timeout,
        "seed": seed,
        "trace": trace,
        "messages": messages,
        "cpu_limit": cpu_limit,
        "call_budget": call_budget,
        "gate": gate,
        "guard": guard,
        "observe": observe,
    }


class ModuleZygote:
    """A process that has imported one test module; runs jobs by forking."""

    def __init__(self, package: str, module: str, confinement: Confinement | None = None, settle: bool = False):
        """``settle``: keep this process's heap settled (:func:`~sandbox.execution.settle_heap`)
        so every child starts from the layout the same work leaves — mining's determinism."""
        self.package = package
        self.confinement = confinement  # applied to every child that runs a job (None: trusted use)
        self.settle = settle
        self.package_dir = package_dir(package)
        self.module = importlib.import_module(module)
        if settle:
            settle_heap()
        self.module_name = module
        self.patcher = Patcher(self.package_dir)
        self._programs: dict[tuple, SlotProgram] = {}
        self._warmed: set[tuple[str | None, str]] = set()
        self._known: dict[tuple, frozenset[str]] = {}

    def program(self, test_class: str | None, test_name: str, slot: int) -> SlotProgram:
        """The slot program, built once. The first one of each test function runs the test's
        own target (trusted code) so the zygote learns what the test imports lazily."""
        key = (test_class, test_name, slot)
        if key not in self._programs:
            prog = SlotProgram(self.module_name, test_class, test_name, slot)
            if (test_class, test_name) not in self._warmed:
                self._warmed.add((test_class, test_name))
                run_forked(prog, prog.target_text, timeout=WARMUP_TIMEOUT_S, learn_imports=True, settle=self.settle)
            self._programs[key] = prog
        return self._programs[key]

    def known_names(self, prog: SlotProgram) -> frozenset[str]:
        """Names a candidate may build on: the test module's globals, the test function's
        parameters and what its prefix binds (for the static gate's vacuity rule)."""
        return frozenset(prog.globals) | self._local_names(prog)

    def _local_names(self, prog: SlotProgram) -> frozenset[str]:
        """The test function's parameters and the names its prefix binds."""
        key = (prog.func.__qualname__, prog.node.lineno, prog.slot)
        if key not in self._known:
            names = set()
            a = prog.node.args
            names.update(arg.arg for arg in a.posonlyargs + a.args + a.kwonlyargs)
            for stmt in prog.node.body[: prog.slot]:
                for n in ast.walk(stmt):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        names.add(n.id)
                    elif isinstance(n, (ast.Import, ast.ImportFrom)):
                        names.update((alias.asname or alias.name).split(".")[0] for alias in n.names)
                    elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        names.add(n.name)
            self._known[key] = frozenset(names)
        return self._known[key]

    def object_names(self, prog: SlotProgram) -> frozenset[str]:
        """Test-module globals bound to modules, classes or functions: true whatever the code
        under test does, so an assertion of one alone checks nothing (the gate's vacuity rule).
        A name the prefix rebinds is left out."""
        key = ("objects", prog.func.__qualname__, prog.node.lineno, prog.slot)
        if key not in self._known:
            kinds = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)
            local = self._local_names(prog)
            self._known[key] = frozenset(name for name, value in prog.globals.items()
                                         if isinstance(value, kinds) and name not in local and not name.startswith("@"))
        return self._known[key]

    def _slot(self, job: dict[str, Any]) -> SlotProgram | Verdict:
        """The job's slot program, or the verdict that ends the job before it runs."""
        tier = self.confinement.tier if self.confinement is not None else "none"
        try:
            prog = self.program(job["test_class"], job["test_name"], job["slot"])
        except (SlotError, OSError, SyntaxError) as err:
            return Verdict("infra", f"cannot rebuild the test: {err}", tier=tier)
        if job.get("prefix") is not None and job["prefix"] != prog.prefix_text:
            return Verdict("infra", "the task's prefix differs from the installed test; re-mine the tasks for this library version", tier=tier)
        if job.get("gate"):
            from . import gate  # untrusted candidates only; mining never needs it

            check = gate.check_expression if job.get("observe") else gate.check
            reason = check(job["candidate"], self.known_names(prog), self.object_names(prog))
            if reason is not None:
                return Verdict("rejected", reason, tier=tier)
        return prog

    def run(self, job: dict[str, Any]) -> Verdict:
        prog = self._slot(job)
        if isinstance(prog, Verdict):
            return prog
        prepare = None
        if job.get("mutant"):
            m = job["mutant"]
            try:
                prepare = self.patcher.prepare(Mutant(**{**m, "span": tuple(m["span"])}))
            except (MutantError, TypeError) as err:
                return Verdict("infra", str(err))
        trace = (str(self.package_dir), set(job["trace"])) if job.get("trace") else None
        return run_forked(prog, job["candidate"], timeout=float(job["timeout"]), seed=int(job.get("seed", 0)),
                          prepare=prepare, trace=trace, messages=bool(job.get("messages", True)),
                          cpu_limit=job.get("cpu_limit"), call_budget=job.get("call_budget"),
                          confinement=self.confinement, settle=self.settle, guard=bool(job.get("guard")),
                          observe=bool(job.get("observe")))

    def run_many(self, jobs: list[dict[str, Any]]) -> list[Verdict]:
        """Verdicts for ``jobs``, in order. Plain jobs (no mutant, trace or counted limits)
        that share a slot run as a group — setup and prefix once, a fork per candidate from
        there (:func:`~sandbox.execution.run_group`); the rest one by one."""
        verdicts: list[Verdict | None] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            plain = not (job.get("mutant") or job.get("trace") or job.get("cpu_limit") or job.get("call_budget"))
            key = (job["test_class"], job["test_name"], job["slot"], job.get("prefix"), float(job["timeout"]),
                   int(job.get("seed", 0)), bool(job.get("messages", True)), bool(job.get("guard")),
                   bool(job.get("observe")))
            groups.setdefault(key if plain else ("alone", i), []).append(i)
        for key, idx in groups.items():
            if len(idx) > 1:
                self._run_group(jobs, idx, verdicts)
            for i in idx:
                if verdicts[i] is None:
                    verdicts[i] = self.run(jobs[i])
        return verdicts  # type: ignore[return-value]

    def _run_group(self, jobs: list[dict[str, Any]], idx: list[int], verdicts: list[Verdict | None]) -> None:
        todo, prog = [], None
        for i in idx:
            slot = self._slot(jobs[i])
            if isinstance(slot, Verdict):
                verdicts[i] = slot
            else:
                todo.append(i)
                prog = slot
        if prog is None or len(todo) < 2:
            return  # what is left runs alone
        first = jobs[todo[0]]
        group = run_group(prog, [jobs[i]["candidate"] for i in todo], timeout=float(first["timeout"]),
                          seed=int(first.get("seed", 0)), messages=bool(first.get("messages", True)),
                          confinement=self.confinement, guard=bool(first.get("guard")),
                          observe=bool(first.get("observe")))
        for i, v in zip(todo, group or []):
            verdicts[i] = v


# --------------------------------------------------------------------------- server side


def _write(fh: BinaryIO, obj: Any) -> None:
    fh.write(json.dumps(obj).encode() + b"\n")
    fh.flush()


class _ZygoteChild:
    """A forked zygote serving ``run`` requests over a pair of pipes: a module zygote (child of
    the server) or a mutant zygote (child of a module zygote). ``loop(r, w)`` is its main loop."""

    def __init__(self, loop: Callable[[int, int], None], keep: tuple[int, ...]):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            die_with_parent(parent)
            os.close(req_w)
            os.close(rep_r)
            for fd in keep:
                os.close(fd)
            try:
                loop(req_r, rep_w)
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        self.pid = pid
        self.w = os.fdopen(req_w, "wb")
        self.r = os.fdopen(rep_r, "rb")

    def fds(self) -> tuple[int, int]:
        return self.w.fileno(), self.r.fileno()

    def request(self, jobs: list[dict], deadline: float) -> list[dict]:
        _write(self.w, {"jobs": jobs})
        line = _readline_before(self.r, deadline)
        if not line:
            raise SandboxError("zygote died or hung")
        return json.loads(line)["verdicts"]

    def close(self) -> None:
        for fh in (self.w, self.r):
            try:
                fh.close()
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class _ZygoteCache:
    """Forked zygotes by key, least recently used evicted beyond ``size``; a zygote that fails a
    request is closed and its jobs get ``infra`` verdicts."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[str, _ZygoteChild] = OrderedDict()

    def request(self, key: str, start: Callable[[], _ZygoteChild], jobs: list[dict]) -> list[dict]:
        deadline = time.monotonic() + sum(float(j["timeout"]) + 1.0 for j in jobs) + 60.0
        child = self.items.pop(key, None)
        try:
            child = child or start()
            self.items[key] = child
            verdicts = child.request(jobs, deadline)
        except (SandboxError, OSError, ValueError) as err:
            self.items.pop(key, None)
            if child is not None:
                child.close()
            verdicts = [Verdict("infra", str(err)).to_dict() for _ in jobs]
        while len(self.items) > self.size:
            self.items.popitem(last=False)[1].close()
        return verdicts

    def fds(self) -> tuple[int, ...]:
        return tuple(fd for child in self.items.values() for fd in child.fds())

    def close(self) -> None:
        while self.items:
            self.items.popitem()[1].close()


def _readline_before(fh: BinaryIO, deadline: float) -> bytes:
    buf = b""
    fd = fh.fileno()
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return b""
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b""
        buf += chunk
    return buf


def _serve_jobs(r: int, w: int, handle: Callable[[list[dict]], list[dict]]) -> None:
    """Answer ``{"jobs": [...]}`` lines on ``r`` with ``{"verdicts": [...]}`` lines on ``w``."""
    rf = os.fdopen(r, "rb")
    wf = os.fdopen(w, "wb")
    for line in rf:
        _write(wf, {"verdicts": handle(json.loads(line)["jobs"])})


def _zygote_loop(package: str, module: str, r: int, w: int, confinement: Confinement | None) -> None:
    """A module zygote: runs unmutated jobs itself and hands each mutant's jobs to a zygote of
    that mutant, forked from this one with the mutant applied. A child therefore starts from a
    process that is already the mutated library — nothing in it (arguments, environment,
    module state) says which mutant is active, or that one is."""
    try:
        zygote: ModuleZygote | None = ModuleZygote(package, module, confinement)
        load_error = ""
    except BaseException as exc:  # noqa: BLE001 - pytest.skip at import is a BaseException
        zygote = None
        load_error = f"cannot import {module}: {type(exc).__name__}: {exc}"
    mutants = _ZygoteCache(MAX_MUTANT_ZYGOTES)

    def handle(jobs: list[dict]) -> list[dict]:
        if zygote is None:
            return [Verdict("infra", load_error).to_dict() for _ in jobs]
        verdicts: list[dict | None] = [None] * len(jobs)
        groups: dict[str, list[int]] = {}
        unmutated = []
        for i, job in enumerate(jobs):
            if job.get("mutant"):
                groups.setdefault(job["mutant"]["id"], []).append(i)
            else:
                unmutated.append(i)
        for i, v in zip(unmutated, zygote.run_many([jobs[i] for i in unmutated])):
            verdicts[i] = v.to_dict()
        for idx in groups.values():
            m = jobs[idx[0]]["mutant"]
            # The programs a mutant zygote needs are built here first, so it inherits them.
            for i in idx:
                try:
                    zygote.program(jobs[i]["test_class"], jobs[i]["test_name"], jobs[i]["slot"])
                except (SlotError, OSError, SyntaxError):
                    pass
            key = json.dumps(m, sort_keys=True)
            plain = [{**jobs[i], "mutant": None} for i in idx]
            keep = (r, w) + mutants.fds()
            start = lambda: _ZygoteChild(lambda mr, mw: _mutant_loop(zygote, m, mr, mw), keep)  # noqa: E731
            for i, v in zip(idx, mutants.request(key, start, plain)):
                verdicts[i] = v
        return verdicts  # type: ignore[return-value]

    try:
        _serve_jobs(r, w, handle)
    finally:
        mutants.close()


def _mutant_loop(zygote: ModuleZygote, m: dict, r: int, w: int) -> None:
    """A mutant zygote: applies the mutant to this process's library once, then serves jobs."""
    try:
        zygote.patcher.prepare(Mutant(**{**m, "span": tuple(m["span"])}))()
        error = ""
    except (MutantError, TypeError) as err:
        error = str(err)
    _serve_jobs(r, w, lambda jobs: [Verdict("infra", error).to_dict() for _ in jobs] if error
                else [v.to_dict() for v in zygote.run_many(jobs)])


def serve(package: str, max_zygotes: int = 8) -> None:
    """Main loop of a server process (``python -m sandbox.zygote PACKAGE``).

    Runs are confined as ``TRIDENT_SANDBOX`` (JSON: ``want`` and ``min_tier`` tiers and the
    :class:`~sandbox.isolation.Confinement` limits) asks: the best tier up to ``want`` that
    this machine allows, probed once here; below ``min_tier`` the server refuses to start.
    Mining (trusted code) is not confined.
    """
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # whatever a test module prints must not corrupt the protocol
    keep = (proto_in.fileno(), proto_out.fileno())
    try:
        importlib.import_module(package)
    except BaseException as exc:  # noqa: BLE001
        _write(proto_out, {"error": f"cannot import {package}: {type(exc).__name__}: {exc}"})
        return
    wanted = json.loads(os.environ.get("TRIDENT_SANDBOX") or "{}")
    library = str(package_dir(package))
    confinement, failures = probe(library, wanted.get("want", "none"), Confinement(**wanted.get("limits", {})))
    min_tier = wanted.get("min_tier", "none")
    if TIERS.index(confinement.tier) < TIERS.index(min_tier):
        why = "; ".join(f"{t}: {e}" for t, e in failures.items()) or "not tried"
        _write(proto_out, {"error": f"the sandbox can only run at tier '{confinement.tier}' here, below min_tier "
                                    f"'{min_tier}' ({why}). Run as root (or with CAP_SYS_ADMIN) for namespaces, "
                                    f"or lower min_tier."})
        return
    try:
        enter_namespaces(confinement, (library,))
    except OSError as err:
        _write(proto_out, {"error": f"cannot enter the sandbox's namespaces: {err}"})
        return
    _write(proto_out, {"ready": True, "pid": os.getpid(), "tier": confinement.tier, "tier_failures": failures})
    zygotes = _ZygoteCache(max_zygotes)
    for line in proto_in:
        req = json.loads(line)
        op = req.get("op")
        if op == "run":
            module = req["module"]
            start = lambda: _ZygoteChild(lambda r, w: _zygote_loop(package, module, r, w, confinement), keep + zygotes.fds())  # noqa: E731
            _write(proto_out, {"verdicts": zygotes.request(module, start, req["jobs"])})
        elif op == "mine":
            _write(proto_out, _mine_in_fork(package, req, keep + zygotes.fds()))
        elif op == "ping":
            _write(proto_out, {"pong": True})
        else:
            _write(proto_out, {"error": f"unknown op {op!r}"})
    zygotes.close()


def _mine_in_fork(package: str, req: dict, keep: tuple[int, ...]) -> dict[str, Any]:
    """Mine one test module in a fork of this server; its result comes back over a pipe."""
    from .mining import mine_module  # the mining code is needed only in this branch

    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        die_with_parent(parent)
        code = 1
        try:
            os.close(r)
            for fd in keep:
                os.close(fd)
            with os.fdopen(w, "w", encoding="utf-8") as fh:
                json.dump(mine_module(package, req["module"], req["config"]), fh)
            code = 0
        except BaseException as exc:  # noqa: BLE001
            try:
                sys.stderr.write(f"mining {req['module']} failed: {type(exc).__name__}: {exc}\n")
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
    os.close(w)
    deadline = time.monotonic() + float(req.get("deadline_s", 1800))
    client = int(os.environ.get("TRIDENT_CLIENT_PID", "0")) or os.getppid()
    chunks: list[bytes] = []
    with os.fdopen(r, "rb", buffering=0) as fh:
        while True:
            # The server is single-threaded and busy here, so it watches its client itself (a
            # parent-death signal would follow the client's thread, not its process).
            if time.monotonic() > deadline or os.getppid() != client:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                if os.getppid() != client:
                    os._exit(1)
                return {"ok": False, "error": "module timed out"}
            if select.select([fh], [], [], 0.2)[0]:
                chunk = fh.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return {"ok": True, "result": json.loads(b"".join(chunks))}
    return {"ok": False, "error": "module miner crashed"}


# --------------------------------------------------------------------------- client side


class _ServerProcess:
    """One server process (``python -m sandbox.zygote PACKAGE``) and its log; the protocol's client side."""

    def __init__(self, package: str, env: dict[str, str], max_zygotes: int):
        self.package = package
        self._log = tempfile.NamedTemporaryFile(prefix="trident-zygote-", suffix=".log", delete=False)
        # -P: do not put the working directory on sys.path, where a folder could shadow the library.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "sandbox.zygote", package, str(max_zygotes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxError(f"zygote server for {self.package} exited; its log:\n{self.log_tail()}")
        return json.loads(line)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise SandboxError(f"zygote server for {self.package} is gone; its log:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass


class ZygoteServer:
    """Client handle of a server for ``package``: one process, or ``replicas`` of them.

    Replica ``k`` runs with ``PYTHONHASHSEED=k`` in a process of its own (its own address-space
    layout too), so a verdict that replica 1 repeats was not decided by a hash seed, a heap
    layout or a coin flip (see ``sandbox.api.execute_on``: a pass and a kill count only when
    both replicas agree)."""

    def __init__(self, package: str, sandbox: dict[str, Any] | None = None, max_zygotes: int = 8,
                 fixed_layout: bool = False, replicas: int = 1):
        """``sandbox``: how runs are confined (see :func:`serve`); None runs them unconfined.
        ``max_zygotes``: module zygotes the server keeps (least recently used evicted).
        ``fixed_layout``: turn address-space randomisation off for the server where the kernel
        allows, so even large sets of objects hashed by address iterate alike from run to run
        (mining; never for untrusted candidates, whom randomisation hinders). ``replicas``:
        server processes, replica ``k`` under hash seed ``k``."""
        package_dir(package)  # a clear error before any process starts
        self.package = package
        self._procs: list[_ServerProcess] = []
        try:
            for k in range(replicas):
                env = scrubbed_environment({"PYTHONHASHSEED": str(k), "TRIDENT_CLIENT_PID": str(os.getpid()),
                                            "TRIDENT_SANDBOX": json.dumps(sandbox or {}),
                                            "TRIDENT_FIXED_LAYOUT": "1" if fixed_layout else "0"})
                self._procs.append(_ServerProcess(package, env, max_zygotes))
            hellos = [proc.read() for proc in self._procs]
        except BaseException:
            self.close()
            raise
        errors = [h["error"] for h in hellos if "error" in h]
        if errors:
            self.close()
            raise SandboxError(errors[0])
        self.tier: str = hellos[0].get("tier", "none")
        self.tier_failures: dict[str, str] = hellos[0].get("tier_failures", {})

    @property
    def replicas(self) -> int:
        return len(self._procs)

    @property
    def proc(self) -> subprocess.Popen:
        """The first replica's process."""
        return self._procs[0].proc

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self._procs]

    def log_tail(self, n: int = 2000) -> str:
        return self._procs[0].log_tail(n) if self._procs else ""

    def request(self, obj: dict[str, Any], replica: int = 0) -> dict[str, Any]:
        self._procs[replica].send(obj)
        return self._procs[replica].read()

    def run(self, module: str, jobs: list[dict[str, Any]], replica: int = 0) -> list[Verdict]:
        reply = self.request({"op": "run", "module": module, "jobs": jobs}, replica)
        return [Verdict(**v) for v in reply["verdicts"]]

    def run_each(self, module: str, jobs: list[list[dict[str, Any]]]) -> list[list[Verdict]]:
        """``jobs[k]`` on replica ``k``, all replicas at once; their verdicts in the same shape."""
        busy = [k for k, part in enumerate(jobs) if part]
        for k in busy:
            self._procs[k].send({"op": "run", "module": module, "jobs": jobs[k]})
        out: list[list[Verdict]] = [[] for _ in jobs]
        for k in busy:
            out[k] = [Verdict(**v) for v in self._procs[k].read()["verdicts"]]
        return out

    def alive(self) -> bool:
        return bool(self._procs) and all(p.proc.poll() is None for p in self._procs)

    def close(self) -> None:
        while self._procs:
            self._procs.pop().close()

    def __enter__(self) -> ZygoteServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


ADDR_NO_RANDOMIZE = 0x0040000  # personality(2) flag


def _fix_layout() -> None:
    """Re-execute this interpreter with address-space randomisation off, if it is on and the
    kernel lets us turn it off (``personality`` survives ``exec``); otherwise carry on."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(0xFFFFFFFF)
    if current == -1 or current & ADDR_NO_RANDOMIZE:
        return
    if libc.personality(current | ADDR_NO_RANDOMIZE) == -1:
        return
    os.execv(sys.executable, [sys.executable, "-P", "-m", "sandbox.zygote", *sys.argv[1:]])


if __name__ == "__main__":
    if os.environ.get("TRIDENT_FIXED_LAYOUT") == "1":
        _fix_layout()
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
