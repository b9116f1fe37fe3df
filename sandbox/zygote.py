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
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from .execution import SlotError, SlotProgram, Verdict, die_with_parent, run_forked
from .mutants import MutantError, Patcher
from .tasks import Mutant, Task


WARMUP_TIMEOUT_S = 10.0


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
            call_budget: int | None = None) -> dict[str, Any]:
    """A ``run`` job for one candidate in a task's (or a :class:`SlotRef`'s) slot."""
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
    }


class ModuleZygote:
    """A process that has imported one test module; runs jobs by forking."""

    def __init__(self, package: str, module: str):
        self.package = package
        self.package_dir = package_dir(package)
        self.module = importlib.import_module(module)
        self.module_name = module
        self.patcher = Patcher(self.package_dir)
        self._programs: dict[tuple, SlotProgram] = {}
        self._warmed: set[tuple[str | None, str]] = set()

    def program(self, test_class: str | None, test_name: str, slot: int) -> SlotProgram:
        """The slot program, built once. The first one of each test function runs the test's
        own target (trusted code) so the zygote learns what the test imports lazily."""
        key = (test_class, test_name, slot)
        if key not in self._programs:
            prog = SlotProgram(self.module_name, test_class, test_name, slot)
            if (test_class, test_name) not in self._warmed:
                self._warmed.add((test_class, test_name))
                run_forked(prog, prog.target_text, timeout=WARMUP_TIMEOUT_S, learn_imports=True)
            self._programs[key] = prog
        return self._programs[key]

    def run(self, job: dict[str, Any]) -> Verdict:
        try:
            prog = self.program(job["test_class"], job["test_name"], job["slot"])
        except (SlotError, OSError, SyntaxError) as err:
            return Verdict("infra", f"cannot rebuild the test: {err}")
        if job.get("prefix") is not None and job["prefix"] != prog.prefix_text:
            return Verdict("infra", "the task's prefix differs from the installed test; re-mine the tasks for this library version")
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
                          cpu_limit=job.get("cpu_limit"), call_budget=job.get("call_budget"))


# --------------------------------------------------------------------------- server side


def _write(fh: BinaryIO, obj: Any) -> None:
    fh.write(json.dumps(obj).encode() + b"\n")
    fh.flush()


class _ZygoteChild:
    """The server's handle on a forked module zygote serving ``run`` requests."""

    def __init__(self, package: str, module: str, keep: tuple[int, ...]):
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
            _zygote_loop(package, module, req_r, rep_w)
            os._exit(0)
        os.close(req_r)
        os.close(rep_w)
        self.pid = pid
        self.w = os.fdopen(req_w, "wb")
        self.r = os.fdopen(rep_r, "rb")

    def request(self, jobs: list[dict], deadline: float) -> list[dict]:
        _write(self.w, {"jobs": jobs})
        line = _readline_before(self.r, deadline)
        if not line:
            raise SandboxError("module zygote died or hung")
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


def _zygote_loop(package: str, module: str, r: int, w: int) -> None:
    rf = os.fdopen(r, "rb")
    wf = os.fdopen(w, "wb")
    try:
        zygote: ModuleZygote | None = ModuleZygote(package, module)
        load_error = ""
    except BaseException as exc:  # noqa: BLE001 - pytest.skip at import is a BaseException
        zygote = None
        load_error = f"cannot import {module}: {type(exc).__name__}: {exc}"
    for line in rf:
        jobs = json.loads(line)["jobs"]
        if zygote is None:
            verdicts = [Verdict("infra", load_error).to_dict() for _ in jobs]
        else:
            verdicts = [zygote.run(job).to_dict() for job in jobs]
        _write(wf, {"verdicts": verdicts})


def serve(package: str, max_zygotes: int = 8) -> None:
    """Main loop of a server process (``python -m sandbox.zygote PACKAGE``)."""
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
    _write(proto_out, {"ready": True, "pid": os.getpid()})
    zygotes: OrderedDict[str, _ZygoteChild] = OrderedDict()
    for line in proto_in:
        req = json.loads(line)
        op = req.get("op")
        if op == "run":
            module = req["module"]
            jobs = req["jobs"]
            deadline = time.monotonic() + sum(float(j["timeout"]) + 1.0 for j in jobs) + 60.0
            reply: dict[str, Any]
            child = zygotes.pop(module, None)
            try:
                child = child or _ZygoteChild(package, module, keep)
                zygotes[module] = child
                reply = {"verdicts": child.request(jobs, deadline)}
            except (SandboxError, OSError, ValueError) as err:
                zygotes.pop(module, None)
                if child is not None:
                    child.close()
                reply = {"verdicts": [Verdict("infra", str(err)).to_dict() for _ in jobs]}
            while len(zygotes) > max_zygotes:
                zygotes.popitem(last=False)[1].close()
            _write(proto_out, reply)
        elif op == "mine":
            _write(proto_out, _mine_in_fork(package, req, keep))
        elif op == "ping":
            _write(proto_out, {"pong": True})
        else:
            _write(proto_out, {"error": f"unknown op {op!r}"})
    for child in zygotes.values():
        child.close()


def _mine_in_fork(package: str, req: dict, keep: tuple[int, ...]) -> dict[str, Any]:
    from .mining import mine_module  # the mining code is needed only in this branch

    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        die_with_parent(parent)
        code = 1
        try:
            for fd in keep:
                os.close(fd)
            result = mine_module(package, req["module"], req["config"])
            tmp = req["out"] + ".part"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(result, fh)
            os.replace(tmp, req["out"])
            code = 0
        except BaseException as exc:  # noqa: BLE001
            try:
                sys.stderr.write(f"mining {req['module']} failed: {type(exc).__name__}: {exc}\n")
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
    deadline = time.monotonic() + float(req.get("deadline_s", 1800))
    client = int(os.environ.get("TRIDENT_CLIENT_PID", "0")) or os.getppid()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        # The server is single-threaded and busy here, so it watches its client itself (a
        # parent-death signal would follow the client's thread, not its process).
        if time.monotonic() > deadline or os.getppid() != client:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if os.getppid() != client:
                os._exit(1)
            return {"ok": False, "error": "module timed out"}
        time.sleep(0.02)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return {"ok": True}
    return {"ok": False, "error": "module miner crashed"}


# --------------------------------------------------------------------------- client side


class ZygoteServer:
    """Client handle of one server process for ``package``."""

    def __init__(self, package: str):
        package_dir(package)  # a clear error before any process starts
        self.package = package
        self._log = tempfile.NamedTemporaryFile(prefix="trident-zygote-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONHASHSEED": "0", "TRIDENT_CLIENT_PID": str(os.getpid())}
        # -P: do not put the working directory on sys.path, where a folder could shadow the library.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "sandbox.zygote", package],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
        )
        hello = self._read()
        if "error" in hello:
            self.close()
            raise SandboxError(hello["error"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxError(f"zygote server for {self.package} exited; its log:\n{self.log_tail()}")
        return json.loads(line)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise SandboxError(f"zygote server for {self.package} is gone; its log:\n{self.log_tail()}") from None
        return self._read()

    def run(self, module: str, jobs: list[dict[str, Any]]) -> list[Verdict]:
        reply = self.request({"op": "run", "module": module, "jobs": jobs})
        return [Verdict(**v) for v in reply["verdicts"]]

    def alive(self) -> bool:
        return self.proc.poll() is None

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

    def __enter__(self) -> ZygoteServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.argv[1])
