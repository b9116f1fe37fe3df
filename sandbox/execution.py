"""Execution core: run a test function cut at one slot, with a candidate in the slot.

The process that calls :func:`run_forked` (a *zygote*) has imported the test module once. Each
execution forks a child that runs the test the way pytest runs it — xunit ``setup_module`` /
``setup_class`` / ``setup_method`` / ``setup_function``, the ``tmp_path`` fixture, pytest's
assertion rewriting — and sends a verdict record back over a pipe. The parent owns the clock
and ``waitpid``: a pass needs exit status 0 *and* a well-formed record; a child that runs past
its time is killed with its process group.

The test function is rebuilt at the slot by :class:`~sandbox.slot.SlotProgram`, the
candidate on the target's lines, so "the candidate's own line" is a known range of lines.

Hardening (rlimits, namespaces, dropped privileges, the static gate) builds on this module in
the sandbox layer; everything here is the part whose semantics must match pytest.
"""

from __future__ import annotations

import bisect
import fcntl
import gc
import importlib
import json
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NoReturn

from . import capability
from .isolation import RUN_DIR, Confinement, confine, enter_private_tmp, fork_child, set_parent_death_signal
from .observable import observable, raised, unobservable
from .slot import OBSERVED, SlotProgram
from .stack import TEST_DEPTH, call_at_depth

STATUSES = ("passed", "failed", "error", "timeout", "crashed", "rejected", "infra")
MAX_RECORD_BYTES = 1 << 20  # a verdict record is small; anything bigger is not one
MAX_REASON_CHARS = 2000


@dataclass
class Verdict:
    """What happened to one candidate.

    ``status`` is one of :data:`STATUSES`. ``calls`` is filled only by a tracing run (mining):
    ``[file, qualname, where]`` for each library function the test called by a name that
    appears in its source, ``where`` being ``"target"`` or ``"prefix"``.
    """

    status: str
    reason: str = ""
    seconds: float = 0.0
    calls: list[list] | None = None
    kills: list[str] = field(default_factory=list)  # ids of mutants killed (scoring only)
    mutants: int = 0  # mutants the candidate ran under
    tier: str = "none"  # isolation tier the verdict was reached under
    assert_line: int | None = None  # line of the test body's own assert that raised, if one did
    cpu_seconds: float = 0.0  # CPU time of the child, user + system
    events: int | None = None  # calls the test made, when they were counted (``call_budget``)
    observation: dict[str, Any] | None = None  # an observing run's result (sandbox.observable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# --------------------------------------------------------------------------- the child

def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), so an interrupted
    run leaves no zygote or child behind. Exits at once if the parent is already gone (a
    parent outside this process's PID namespace shows as 0 and cannot be checked this way)."""
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() not in (parent, 0):
        os._exit(1)


class _Tracer:
    """Records the library functions a test calls, for focal context and mutation targets.

    A call counts when the function lives in the package (not its tests) and is either called
    by a name that appears in the test's source, within ``MAX_NAMED_DEPTH`` frames (which sees
    through decorator and dispatch wrappers), or is anchored (see :meth:`_anchored`): called
    by the test itself (dunders such as ``__len__``), by such a named function or a helper of
    one. For each it keeps the smallest depth and which top-level statements of the test body
    reached it.
    """

    MAX_DEPTH = 3
    MAX_NAMED_DEPTH = 8

    def __init__(self, package_dir: str, names: set[str], code: types.CodeType, starts: list[int]):
        self.package_dir = package_dir.rstrip(os.sep) + os.sep
        self.names = names
        self.code = code
        self.starts = starts  # first line of each top-level statement of the rebuilt body
        self.seen: dict[tuple[str, str], list] = {}  # key -> [depth, set of statement indices]

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        pkg = self.package_dir
        if not code.co_filename.startswith(pkg):
            return
        if code.co_name not in self.names and not self._anchored(frame.f_back):
            return  # the package's own plumbing (dispatch, decorator wrappers)
        f = frame.f_back
        for depth in range(1, self.MAX_NAMED_DEPTH + 3):
            if f is None:
                return
            if f.f_code is self.code:
                break
            f = f.f_back
        else:
            return
        rel = code.co_filename[len(pkg) :].replace(os.sep, "/")
        if _is_test_path(rel) or "<" in code.co_qualname:
            return
        stmt = bisect.bisect_right(self.starts, f.f_lineno) - 1
        entry = self.seen.setdefault((rel, code.co_qualname), [depth, set()])
        entry[0] = min(entry[0], depth)
        entry[1].add(stmt)

    def _anchored(self, caller: types.FrameType | None) -> bool:
        """Whether an unnamed function called from ``caller`` is one the test is about: called
        by the test, by a function the test names, by a helper of one, or through code outside
        the package (a ``collections.abc`` mixin comparing a view) that the test called."""
        pkg = self.package_dir
        if caller is None:
            return False
        if caller.f_code is self.code or caller.f_code.co_name in self.names:
            return True
        if caller.f_code.co_filename.startswith(pkg):
            grand = caller.f_back
            return grand is not None and grand.f_code.co_name in self.names and grand.f_code.co_filename.startswith(pkg)
        f: types.FrameType | None = caller
        for _ in range(self.MAX_DEPTH):
            if f is None or f.f_code is self.code:
                return f is not None
            if f.f_code.co_filename.startswith(pkg):
                return f.f_code.co_name in self.names
            f = f.f_back
        return False

    def records(self) -> list[list]:
        """``[file, qualname, depth, statement indices]`` in first-call order."""
        return [[f, q, d, sorted(stmts)] for (f, q), (d, stmts) in self.seen.items()]


class _CallCounter:
    """Counts the calls a test makes, to Python functions and builtins alike, and stops the
    child once they pass ``budget``.

    Mining decides what is too slow by this count rather than by time: the same program from
    the same state makes the same calls on every run, however busy the machine, so a rerun
    keeps the same slots and the same kills. ``inner`` (a tracer) sees every event too.
    """

    def __init__(self, budget: int, w: int, inner: Callable[[types.FrameType, str, Any], None] | None):
        self.n = 0
        self.budget = budget
        self.w = w
        self.inner = inner

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            self.n += 1
            if self.n > self.budget:
                sys.setprofile(None)
                _send(self.w, {"status": "timeout", "reason": f"call budget of {self.budget:,} reached", "events": self.n})
        if self.inner is not None:
            self.inner(frame, event, arg)


# The first byte a child writes says whether it got as far as the candidate: CONFINED, then the
# JSON record; or UNCONFINED, then why the sandbox could not be set up (an ``infra`` verdict).
# A candidate runs only after CONFINED is written, so it cannot claim the sandbox failed.
CONFINED, UNCONFINED = b"\x01", b"\x00"


def _send(w: int, record: dict[str, Any]) -> NoReturn:
    """Write the child's record to the pipe and exit."""
    record["reason"] = str(record.get("reason", ""))[:MAX_REASON_CHARS]
    try:
        data = json.dumps(record).encode()
    except (TypeError, ValueError):
        data = json.dumps({"status": record["status"], "reason": "unprintable reason"}).encode()
    # The parent reads only after this process has exited: what does not fit in the pipe is
    # dropped (the record is then malformed: crashed) instead of waiting forever.
    os.set_blocking(w, False)
    try:
        os.write(w, data)
    except BlockingIOError:
        pass
    os._exit(0)


def _is_test_path(rel: str) -> bool:
    parts = rel.replace(os.sep, "/").split("/")
    name = parts[-1]
    return any(p in ("tests", "test", "testing") for p in parts[:-1]) or name.startswith("test_") or name == "conftest.py"


def _classify(exc: BaseException, code: types.CodeType, span: tuple[int, int]) -> dict[str, Any]:
    if isinstance(exc, capability.Violation):  # the guard's record says so too: see _guard_record
        return {"status": "rejected", "reason": str(exc)}
    tb = exc.__traceback__
    innermost = None
    slot_line = None
    while tb is not None:
        if tb.tb_frame.f_code is code:
            slot_line = tb.tb_lineno
        innermost = tb
        tb = tb.tb_next
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    # The line of an assert statement of the test body that raised (innermost frame is the
    # test's own): on the candidate's lines this is a failure; elsewhere mining reads it to
    # tell which earlier assert a mutant tripped.
    own = isinstance(exc, AssertionError) and innermost is not None and innermost.tb_frame.f_code is code
    if own and span[0] <= innermost.tb_lineno <= span[1]:
        return {"status": "failed", "reason": text, "assert_line": innermost.tb_lineno}
    if slot_line is None:
        where = "in setup"
    elif span[0] <= slot_line <= span[1]:
        where = "in the candidate"
    else:
        where = f"in the prefix (line {slot_line})"
    return {"status": "error", "reason": f"{text} {where}", "assert_line": innermost.tb_lineno if own else None}


def _observed(value: Any) -> dict[str, Any]:
    """The record of an observing run whose expression gave ``value``."""
    try:
        observation = observable(value)
    except BaseException as exc:  # noqa: BLE001 - repr, == and properties are library code
        observation = unobservable(f"reading the value raised {type(exc).__name__}")
    return {"status": "passed", "reason": "", "observation": observation.to_dict()}


def _observed_raise(record: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """An observing run that raised: the expression's own exception is its observation
    (``raises``); one in setup or the prefix leaves the record as it is (no observation)."""
    if record["status"] == "error" and record["reason"].endswith("in the candidate"):
        return {"status": "passed", "reason": "", "observation": raised(exc).to_dict()}
    return record


def _guard_record(namespace: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The record, or ``rejected`` when the capability layer's guard in ``namespace`` refused a
    reach during the run: however the candidate ended — passed, failed, or an error, even
    where library code or the candidate caught the guard's exception."""
    reason = capability.violation(namespace)
    return record if reason is None else {"status": "rejected", "reason": reason}


RECORD_FD = 3  # the record pipe's descriptor in every child


def _own_group_and_fds(w: int, tmp: str) -> int:
    """A forked child's own process group (so _kill_group reaches all it starts), no
    descriptor above stdio but the record pipe, moved from ``w`` to :data:`RECORD_FD`, and
    ``tmp`` as working directory (the private :data:`~sandbox.isolation.RUN_DIR` is made and
    entered by ``confine`` instead). Returns the record pipe's descriptor.

    The same descriptor everywhere: which number the pipe got depends on what the forking
    process holds open, and a mutant zygote holds more than the module zygote, so a number
    that varied would tell a candidate that a mutant is active."""
    os.setpgid(0, 0)
    if w != RECORD_FD:
        os.dup2(w, RECORD_FD, inheritable=False)
    # Only the record pipe stays open: the child must not hold the zygote's channels.
    os.closerange(RECORD_FD + 1, 1 << 16)
    if tmp != RUN_DIR:
        os.chdir(tmp)
    return RECORD_FD


def _prologue(w: int, tmp: str, seed: int) -> int:
    """First steps of a forked child: :func:`_own_group_and_fds`, quiet stdio and seeded
    random generators. Returns the record pipe's descriptor."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    w = _own_group_and_fds(w, tmp)
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    return w


def _random_states() -> tuple[Any, Any]:
    """The states of ``random`` and numpy's global generator, to hand to the group's candidates.

    ``random`` reseeds itself from the OS in every forked child (``os.register_at_fork``), so
    without this each candidate of a group would draw other numbers than the same candidate
    run alone — and than itself in the next run: a coin flip, not a verdict."""
    numpy = sys.modules.get("numpy")
    return random.getstate(), numpy.random.get_state() if numpy is not None else None


def _restore_random(states: tuple[Any, Any]) -> None:
    random.setstate(states[0])
    numpy = sys.modules.get("numpy")
    if numpy is not None and states[1] is not None:
        numpy.random.set_state(states[1])


def _enter_confinement(confinement: Confinement | None, tmp: str, w: int) -> None:
    """Confine this child, then say so with the first byte of the record (a child that cannot
    be confined reports why and exits: an ``infra`` verdict, never a less confined run)."""
    try:
        if confinement is not None:
            confine(confinement, tmp)
    except BaseException as exc:  # noqa: BLE001
        os.write(w, UNCONFINED + f"{type(exc).__name__}: {exc}".encode()[:MAX_REASON_CHARS])
        os._exit(0)
    os.write(w, CONFINED)


def _child_main(
    program: SlotProgram,
    built: tuple[types.FunctionType, tuple[int, int]],
    w: int,
    tmp: str,
    seed: int,
    prepare: Callable[[], None] | None,
    trace: tuple[str, set[str]] | None,
    learn_imports: bool,
    cpu_limit: float | None,
    call_budget: int | None,
    confinement: Confinement | None,
    settle: bool,
    observe: bool = False,
) -> NoReturn:
    """Body of the forked child; never returns. ``observe``: the candidate is an expression,
    and the record carries its observable form (see :func:`_observed`)."""
    record: dict[str, Any]
    if settle:
        gc.enable()  # the settled parent collects by hand; the test runs as pytest runs it
    # Only what mining's warm-up asks for: a set of every module name touches (and so copies)
    # hundreds of pages the child otherwise shares with its zygote.
    modules_before = set(sys.modules) if learn_imports else set()
    try:
        w = _prologue(w, tmp, seed)
        if prepare is not None:
            prepare()
        _enter_confinement(confinement, tmp, w)
        if cpu_limit:
            # CPU time, unlike wall time, does not grow when the machine is busy, so a limit on
            # it gives the same verdict from run to run; SIGPROF's default action kills.
            signal.setitimer(signal.ITIMER_PROF, cpu_limit)
        func, span = built
        tracer = counter = None
        if trace is not None:
            starts = [stmt.lineno for stmt in program.node.body[: program.slot]] + [span[0]]
            tracer = _Tracer(trace[0], trace[1], func.__code__, starts)
        if call_budget is not None:
            counter = _CallCounter(call_budget, w, tracer)
        if counter or tracer:
            sys.setprofile(counter or tracer)
        try:
            # At a fixed depth, whichever zygote forked this child (see sandbox.stack).
            value = call_at_depth(TEST_DEPTH - 1, program.call, func, tmp)
            record = _observed(value) if observe else {"status": "passed", "reason": ""}
        except BaseException as exc:  # noqa: BLE001 - pytest outcomes are BaseExceptions too
            sys.setprofile(None)
            record = _classify(exc, func.__code__, span)
            if observe:
                record = _observed_raise(record, exc)
        sys.setprofile(None)
        record = _guard_record(program.globals, record)
        if tracer is not None:
            record["calls"] = tracer.records()
        if counter is not None:
            record["events"] = counter.n
    except BaseException as exc:  # noqa: BLE001
        record = {"status": "error", "reason": f"{type(exc).__name__}: {exc} before the test ran"}
    if learn_imports:
        record["imports"] = sorted(set(sys.modules) - modules_before)[:500]
    _send(w, record)


def _group_main(program: SlotProgram, cands: list[tuple[types.CodeType, tuple[int, int]]], messages: bool, w: int,
                tmp: str, seed: int, timeout: float, confinement: Confinement | None, observe: bool = False) -> NoReturn:
    """Body of a group's child: setup and prefix once (the test's own code, trusted, as in the
    zygote), then each candidate in a confined child of its own on what the prefix left —
    the state a separate run would reach, without paying for it again. Sends
    ``{"verdicts": [...]}``; never returns."""
    tier = confinement.tier if confinement is not None else "none"
    record: dict[str, Any]
    try:
        w = _prologue(w, tmp, seed)
        if tier == "namespaces":
            # The prefix runs in a /tmp of this child's own, at the path every run uses; each
            # candidate sees what it left there through a copy-on-write layer of its own.
            tmp = enter_private_tmp(confinement)  # type: ignore[arg-type]
        else:
            os.chmod(tmp, 0o755)  # candidates run under uids of their own and may read tmp_path
        prefix = program.prefix_function(messages)
        try:
            names = call_at_depth(TEST_DEPTH - 1, program.call, prefix, tmp)  # as in _child_main
            outcome = None
        except BaseException as exc:  # noqa: BLE001 - pytest outcomes are BaseExceptions too
            outcome = {**_classify(exc, prefix.__code__, (0, -1)), "tier": tier}
            outcome["reason"] = outcome["reason"][:MAX_REASON_CHARS]
        if outcome is not None:
            verdicts = [outcome] * len(cands)
        else:
            scope = {**program.globals, **names}
            generators = _random_states()
            verdicts = []
            for code, span in cands:
                raw = _fork_and_wait(lambda cw, ctmp: _candidate_main(code, span, scope, cw, ctmp, confinement,
                                                                      generators, observe),
                                     confinement=confinement, timeout=timeout)
                verdicts.append(_verdict(*raw, timeout=timeout, tier=tier)[0].to_dict())
        record = {"verdicts": verdicts}
    except BaseException as exc:  # noqa: BLE001
        record = {"error": f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]}
    _send(w, record)


def _candidate_main(code: types.CodeType, span: tuple[int, int], scope: dict[str, Any], w: int, tmp: str,
                    confinement: Confinement | None, generators: tuple[Any, Any], observe: bool = False) -> NoReturn:
    """Body of one candidate's child in a group: confined, it runs the candidate's code with
    the prefix's variables (module globals, then the test's locals) as its namespace, and the
    random generators as the prefix left them (``generators``, see :func:`_random_states`)."""
    record: dict[str, Any]
    try:
        w = _own_group_and_fds(w, tmp)  # stdio is the group child's /dev/null already
        _restore_random(generators)
        _enter_confinement(confinement, tmp, w)
        try:
            # The candidate at the depth of the test function it belongs to, as when it runs
            # whole (exec takes a level of recursion itself: see sandbox.stack).
            call_at_depth(TEST_DEPTH - 1, exec, code, scope)  # noqa: S102 - the candidate, confined
            record = _observed(scope.get(OBSERVED)) if observe else {"status": "passed", "reason": ""}
        except BaseException as exc:  # noqa: BLE001
            record = _classify(exc, code, span)
            if observe:
                record = _observed_raise(record, exc)
        record = _guard_record(scope, record)
    except BaseException as exc:  # noqa: BLE001
        record = {"status": "error", "reason": f"{type(exc).__name__}: {exc} before the candidate ran"}
    _send(w, record)


# --------------------------------------------------------------------------- the parent


def _fork_and_wait(body: Callable[[int, str], NoReturn], *, confinement: Confinement | None, timeout: float,
                   tmp_root: str | None = None, settle: bool = False) -> tuple[bytes, int | None, bool, float, float]:
    """Fork a child that runs ``body(w, tmp)`` — ``w`` its record pipe, ``tmp`` a fresh
    directory — and wait for it, at most ``timeout`` seconds (then its group is killed).
    Returns the record, the wait status, whether it timed out, its CPU and wall seconds.

    At tier ``namespaces`` ``tmp`` is :data:`~sandbox.isolation.RUN_DIR`, the same path for
    every run, which the child makes in a ``/tmp`` of its own (``confine``): nothing to make or
    remove here. Otherwise a fresh directory under ``tmp_root``, removed after the child."""
    private = confinement is not None and confinement.tier == "namespaces"
    tmp = RUN_DIR if private else tempfile.mkdtemp(prefix="trident-run-", dir=tmp_root)
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MAX_RECORD_BYTES)  # a whole record fits: see _collect
    except OSError:
        pass  # the default 64 KiB; a bigger record is cut short (malformed), see _send
    if settle:
        gc.collect()
    start = time.monotonic()
    parent = os.getpid()
    try:
        pid = fork_child(confinement)
    except OSError as err:
        os.close(r)
        os.close(w)
        if not private:
            _remove_dir(tmp)
        raise _ForkFailed(str(err)) from None
    if pid == 0:  # child
        os.close(r)
        die_with_parent(parent)
        body(w, tmp)
    os.close(w)
    try:
        data, status, timed_out, cpu = _collect(pid, r, start + timeout)
    finally:
        os.close(r)
        if not private:
            _remove_dir(tmp)
    return data, status, timed_out, cpu, time.monotonic() - start


class _ForkFailed(OSError):
    pass


def _verdict(data: bytes, status: int | None, timed_out: bool, cpu: float, seconds: float, *, timeout: float,
             tier: str) -> tuple[Verdict, list[str]]:
    """The verdict (and the new imports a warm-up child reports) from what a child left."""
    if data.startswith(UNCONFINED):
        return Verdict("infra", f"sandbox set-up failed: {data[1:].decode(errors='replace')}", seconds, tier=tier), []
    if timed_out:
        return Verdict("timeout", f"no verdict within {timeout:g}s; process group killed", seconds, tier=tier), []
    assert status is not None
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGPROF, signal.SIGXCPU):
        return Verdict("timeout", "CPU limit reached; killed", seconds, cpu_seconds=cpu, tier=tier), []
    verdict, imports = _verdict_from(data[1:] if data.startswith(CONFINED) else b"", status, seconds)
    verdict.cpu_seconds = cpu
    verdict.tier = tier
    return verdict, imports


_COMPILE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)


def _not_compiled(err: BaseException, tier: str) -> Verdict:
    """The verdict for a candidate that does not compile (it never runs)."""
    if isinstance(err, SyntaxError):
        return Verdict("rejected", f"syntax error: {err.msg} (line {err.lineno})", tier=tier)
    return Verdict("rejected", f"cannot compile: {type(err).__name__}: {err}"[:MAX_REASON_CHARS], tier=tier)


def run_forked(
    program: SlotProgram,
    candidate: str,
    *,
    timeout: float,
    seed: int = 0,
    prepare: Callable[[], None] | None = None,
    trace: tuple[str, set[str]] | None = None,
    tmp_root: str | None = None,
    learn_imports: bool = False,
    messages: bool = True,
    cpu_limit: float | None = None,
    call_budget: int | None = None,
    confinement: Confinement | None = None,
    settle: bool = False,
    guard: bool = False,
    observe: bool = False,
) -> Verdict:
    """Fork a child that runs ``program`` with ``candidate``; the parent owns time and verdict.

    ``prepare`` runs in the child before the test (a mutant's code swap); ``trace`` is
    ``(package_dir, names)`` to record focal calls. With ``learn_imports`` (trusted code only:
    a task's own target), the modules the child imported are imported here too, so later
    children start with them loaded — libraries import lazily (networkx loads scipy on first
    use), and paying that in every child made them many times slower. ``messages``: see
    :meth:`SlotProgram.build`. ``cpu_limit``: CPU seconds after which the child is killed
    (status ``timeout``), on top of the wall-clock ``timeout``. ``call_budget``: count the
    calls the test makes (``Verdict.events``) and stop it with status ``timeout`` past this
    many — a limit that, unlike time, gives the same verdict on every run. ``confinement``:
    the isolation the child enters before it runs the candidate (``sandbox.isolation``);
    the verdict records its tier. ``settle``: the caller keeps its heap settled (see
    :func:`settle_heap`), so that cyclic garbage is collected here, at the same point on
    every run, rather than whenever the collector's counters say. ``guard``: the candidate is
    untrusted; its code runs under the capability layer (:mod:`sandbox.capability`), and a
    reach it refuses makes the verdict ``rejected``. ``observe``: ``candidate`` is an
    expression to evaluate in the slot; a run that gets that far is ``passed`` and its
    ``observation`` the value's observable form (:mod:`sandbox.observable`).
    """
    tier = confinement.tier if confinement is not None else "none"
    # The zygote compiles the candidate (the gate has parsed it here already): compiling in the
    # child cost several times more, every page it touched being a copy-on-write fault.
    try:
        built = program.build(candidate, messages, guard, observe)
    except capability.Refused as err:
        return Verdict("rejected", err.reason, tier=tier)
    except _COMPILE_ERRORS as err:
        return _not_compiled(err, tier)
    try:
        raw = _fork_and_wait(lambda w, tmp: _child_main(program, built, w, tmp, seed, prepare, trace, learn_imports,
                                                        cpu_limit, call_budget, confinement, settle, observe),
                             confinement=confinement, timeout=timeout, tmp_root=tmp_root, settle=settle)
    except _ForkFailed as err:
        return Verdict("infra", f"fork failed: {err}", tier=tier)
    verdict, imports = _verdict(*raw, timeout=timeout, tier=tier)
    if learn_imports:
        _import_quietly(imports)
    return verdict


def run_group(program: SlotProgram, candidates: list[str], *, timeout: float, seed: int = 0, messages: bool = True,
              confinement: Confinement | None = None, guard: bool = False,
              observe: bool = False) -> list[Verdict] | None:
    """Verdicts for several candidates in one slot, as :func:`run_forked` would give them,
    for the price of one setup and prefix: a child runs those once and forks each candidate
    from there (see :func:`_group_main`). Each candidate gets ``timeout``; the prefix one more.
    None when a candidate can only run inside the whole function (use :func:`run_forked`).
    ``guard`` and ``observe``: as for :func:`run_forked`."""
    tier = confinement.tier if confinement is not None else "none"
    verdicts: list[Verdict | None] = [None] * len(candidates)
    built: list[tuple[int, types.CodeType, tuple[int, int]]] = []
    for i, candidate in enumerate(candidates):
        try:
            alone = program.build_alone(candidate, messages, guard, observe)
        except capability.Refused as err:
            verdicts[i] = Verdict("rejected", err.reason, tier=tier)
            continue
        except _COMPILE_ERRORS as err:
            verdicts[i] = _not_compiled(err, tier)
            continue
        if alone is None:
            return None
        built.append((i, *alone))
    if built:
        cands = [(code, span) for _, code, span in built]
        limit = timeout * (len(cands) + 1)
        try:
            data, status, timed_out, cpu, seconds = _fork_and_wait(
                lambda w, tmp: _group_main(program, cands, messages, w, tmp, seed, timeout, confinement, observe),
                confinement=None, timeout=limit)
        except _ForkFailed as err:
            data, status, timed_out, cpu, seconds = b"", None, False, 0.0, 0.0
            failure = Verdict("infra", f"fork failed: {err}", tier=tier)
        else:
            failure = _group_failure(data, status, timed_out, seconds, limit, tier)
        rows = [] if failure is not None else json.loads(data)["verdicts"]
        for k, (i, _, _) in enumerate(built):
            verdicts[i] = failure or Verdict(**rows[k])
    return verdicts  # type: ignore[return-value]


def _group_failure(data: bytes, status: int | None, timed_out: bool, seconds: float, limit: float,
                   tier: str) -> Verdict | None:
    """What every candidate of a group gets when the group's child gave no verdicts."""
    if timed_out:
        return Verdict("timeout", f"setup and prefix gave no verdict within {limit:g}s; process group killed",
                       seconds, tier=tier)
    try:
        record = json.loads(data)
    except ValueError:
        record = {}
    if status == 0 and isinstance(record.get("verdicts"), list):
        return None
    if "error" in record:
        return Verdict("infra", f"group runner failed: {record['error']}", seconds, tier=tier)
    return Verdict("crashed", "the group's setup and prefix died without a verdict", seconds, tier=tier)


def settle_heap() -> None:
    """Make this process's heap a function of what it did, not of when: collect, freeze what
    exists (so later collections are cheap) and turn automatic collection off; ``run_forked``
    with ``settle=True`` then collects right before each fork.

    Why: objects hashed by address (``object()`` nodes, say) iterate in an order set by where
    they were allocated, so a test — and above all a mutant — can pass in one heap layout and
    fail in another. A child's layout is inherited from its parent; with automatic collection
    on, garbage is freed whenever allocation counters trip, and those counters also count the
    parent's waiting loops, whose length is a matter of timing. Mining settles its module
    zygotes so each run starts from the layout the same work always leaves.
    """
    gc.collect()
    gc.freeze()
    gc.disable()


def _import_quietly(names: list[str]) -> None:
    for name in names:
        if name in sys.modules or any(part.startswith("test") for part in name.split(".")):
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - a module that fails here just stays lazy
            pass


_RECORD_BUFFER: bytearray | None = None


def _record_view() -> memoryview:
    """One buffer per process for records: reading one allocates nothing that depends on its
    size or timing (a parent's heap must not carry the timing of its last run into the layout
    its next child starts from: see :func:`settle_heap`)."""
    global _RECORD_BUFFER
    if _RECORD_BUFFER is None:
        _RECORD_BUFFER = bytearray(MAX_RECORD_BYTES)
    return memoryview(_RECORD_BUFFER)


def _collect(pid: int, r: int, deadline: float) -> tuple[bytes, int | None, bool, float]:
    """Wait until the child exits or the deadline passes, then read its record; reap the child.

    The record pipe holds a whole record (``run_forked`` sizes it), so the child never waits on
    the parent: the parent sleeps until the exit and reads everything in one go — the same
    calls, whatever the timing. Returns the record bytes, the wait status, whether it timed
    out, and the child's CPU seconds."""
    pidfd = os.pidfd_open(pid)
    view = _record_view()
    reaped = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b"", None, True, 0.0
            if select.select([pidfd], [], [], remaining)[0]:
                break
        # The child has exited but is not reaped, so its pid and group cannot have been reused:
        # whatever it left running in its group dies now.
        _kill_group(pid)
        os.set_blocking(r, False)  # a process outside the group may still hold the write end
        size = 0
        try:
            while size < MAX_RECORD_BYTES and (n := os.readv(r, [view[size:]])):
                size += n
        except BlockingIOError:
            pass
        _, status, usage = os.wait4(pid, 0)
        reaped = True
        return bytes(view[:size]), status, False, usage.ru_utime + usage.ru_stime
    finally:
        if not reaped:  # timed out, or interrupted
            _kill_group(pid)
            os.waitpid(pid, 0)
        view.release()
        os.close(pidfd)


def _remove_dir(path: str) -> None:
    try:
        os.rmdir(path)  # most runs leave their directory empty
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _kill_group(pid: int) -> None:
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def _verdict_from(data: bytes, status: int, seconds: float) -> tuple[Verdict, list[str]]:
    """The verdict (and the child's new imports) from what the child left behind."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return Verdict("crashed", f"killed by signal {name}", seconds), []
    code = os.WEXITSTATUS(status)
    if code != 0:
        return Verdict("crashed", f"exited with status {code} without a verdict", seconds), []
    if not data:
        return Verdict("crashed", "exited 0 without a verdict record (exit status alone never counts)", seconds), []
    try:
        record = json.loads(data)
        status_text = record["status"]
        if status_text not in STATUSES or status_text == "infra":
            raise ValueError(status_text)
    except (ValueError, KeyError, TypeError):
        return Verdict("crashed", "malformed verdict record", seconds), []
    imports = [str(m) for m in record.get("imports", [])] if isinstance(record.get("imports"), list) else []
    line = record.get("assert_line")
    events = record.get("events")
    observation = record.get("observation")
    verdict = Verdict(status_text, str(record.get("reason", "")), seconds, record.get("calls"),
                      assert_line=line if isinstance(line, int) else None,
                      events=events if isinstance(events, int) else None,
                      observation=observation if isinstance(observation, dict) else None)
    return verdict, imports
