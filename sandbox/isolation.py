"""Process isolation for children that run untrusted candidates, in tiers probed once.

The static gate (:mod:`sandbox.gate`) keeps a candidate away from ``os``, the file system and
the interpreter's internals; this module is the second wall, for whatever gets past it. A
server calls :func:`enter_namespaces` once; an execution child calls :func:`confine` after the
fork and before it runs the candidate:

``namespaces``
    network, IPC, UTS and mount namespaces for the server — no network but a loopback that is
    down, a private tmpfs ``/tmp``, read-only ``/var/tmp`` and ``/dev/shm`` — and mount and PID
    namespaces per child, forked straight in as its PID namespace's init (:func:`fork_child`):
    only its own processes in view and none that outlive it; plus everything of ``rlimits``.
    Needs root (or ``CAP_SYS_ADMIN``).
``rlimits``
    resource limits (address space, CPU, file size, open files, processes, no core files),
    no-new-privileges, an environment cut to a few harmless variables and — as root — a uid of
    its own (so it can neither read the invoking user's files nor signal other processes, and
    ``RLIMIT_NPROC``, which does nothing for uid 0, holds).
``none``
    fork only; for trusted code (mining runs a test's own asserts).

:func:`probe` finds the best tier this machine allows by trying it in a throwaway child, so a
tier that a container forbids is known before the first candidate runs. Every verdict records
the tier it was reached under; a configured ``min_tier`` the machine cannot give is an error
(see ``sandbox.api``). The threat model is in ``docs/sandbox.md``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

Tier = Literal["none", "rlimits", "namespaces"]
TIERS: tuple[str, ...] = get_args(Tier)  # weakest first

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_FIRST_UID = 200_000  # children as root run under _FIRST_UID + (pid mod _UIDS): no such user exists
_UIDS = 100_000
_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED")

_libc: Any = None


def libc() -> Any:
    """The C library, loaded once (Linux)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


if sys.platform.startswith("linux"):
    libc()  # loaded once in the zygote: loading it in each forked child cost ~2 ms of CPU


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def set_parent_death_signal(sig: int) -> None:
    if sys.platform.startswith("linux"):
        libc().prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


@dataclass(frozen=True)
class Confinement:
    """What :func:`confine` does in a child: the tier and its limits."""

    tier: str = "none"
    memory_mb: int = 2048  # address space on top of what the zygote already maps
    file_mb: int = 64  # largest file a child may write; also the size of its private tmpfs mounts
    open_files: int = 64
    processes: int = 32  # processes of the child's own uid (root) or on top of the user's (others)
    cpu_s: int = 0  # RLIMIT_CPU; 0 = none (the parent's timer is the limit that counts)
    own_uid: bool = False  # run under a uid of its own (root only)
    user_processes: int = 0  # without an own uid: processes the user had at probe time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def enter_namespaces(c: Confinement, keep: tuple[str, ...] = ()) -> None:
    """Move the calling server process into new network, IPC, UTS and mount namespaces, once,
    before it forks any zygote (tier ``namespaces``): no network, no host IPC objects, and
    fresh tmpfs mounts on ``/tmp`` (writable by root only: each child gets a directory of its
    own there, removed after it), ``/var/tmp`` and ``/dev/shm`` (read-only). A directory that
    holds the Python installation, the virtualenv or a path in ``keep`` (the library) is left
    as it is: covering it would hide what children import."""
    if c.tier != "namespaces":
        return
    lib = libc()
    _check(lib.unshare(_CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWNS), "unshare")
    # Mounts made from here on stay in this namespace: nothing reaches the host's tree.
    _check(lib.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    needed = [os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *keep)]
    for d in _PRIVATE_DIRS:
        if os.path.isdir(d) and not any(n.startswith(os.path.realpath(d) + os.sep) for n in needed):
            writable = d == "/tmp"
            opts = f"size={2 * c.file_mb if writable else 1}m,nr_inodes=65536,mode=0755".encode()
            _check(lib.mount(b"tmpfs", d.encode(), b"tmpfs", flags | (0 if writable else _MS_RDONLY), opts), f"mount tmpfs on {d}")


def confine(c: Confinement, workdir: str) -> None:
    """Apply ``c`` to the calling (freshly forked) process, whose working directory is ``workdir``.

    Raises ``OSError`` when a step fails; the caller reports that as an ``infra`` verdict, never
    runs the candidate less confined than promised.
    """
    if c.tier == "none":
        return
    if c.tier == "namespaces":
        # This process is the init of a PID namespace of its own (fork_child made it so); it
        # adds a mount namespace for its own /proc. Its pid there is 1: its uid comes from its
        # pid on the host, which the old /proc still shows.
        host_pid = int(os.readlink("/proc/self"))
        _check(libc().unshare(_CLONE_NEWNS), "unshare")
        _check(libc().mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
    else:
        host_pid = os.getpid()
    uid = _FIRST_UID + host_pid % _UIDS if c.own_uid else None
    if uid is not None:
        os.chown(workdir, uid, uid)
    mb = 1 << 20
    limits = [
        (resource.RLIMIT_AS, _mapped_bytes() + c.memory_mb * mb),
        (resource.RLIMIT_FSIZE, c.file_mb * mb),
        (resource.RLIMIT_NOFILE, c.open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, c.processes + (0 if uid is not None else c.user_processes)),
    ]
    if c.cpu_s:
        limits.append((resource.RLIMIT_CPU, c.cpu_s))
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    os.environ.clear()
    os.environ.update(_BASE_ENV)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _check(libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


_BASE_ENV = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}


def scrubbed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a sandbox server starts with: what Python and the libraries need to
    behave the same, and nothing else (no tokens, keys or cloud credentials to read back from
    ``/proc/self/environ``)."""
    keep = _KEPT_ENV + ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "HF_HUB_OFFLINE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra or {})
    return env


_OWN_PID_NAMESPACE: tuple[int, int] | None = None  # (pid that opened it, descriptor)


def fork_child(c: Confinement | None) -> int:
    """``os.fork()``; at tier ``namespaces`` the child is the init of a new PID namespace, so
    whatever it forks, however it detaches, dies with it. The caller's own children go back
    to its PID namespace right after (a zygote forked later must not land in a dead one)."""
    if c is None or c.tier != "namespaces":
        return os.fork()
    global _OWN_PID_NAMESPACE
    lib = libc()
    if _OWN_PID_NAMESPACE is None or _OWN_PID_NAMESPACE[0] != os.getpid():  # a fork may have closed it
        _OWN_PID_NAMESPACE = (os.getpid(), os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC))
    own = _OWN_PID_NAMESPACE[1]
    _check(lib.unshare(_CLONE_NEWPID), "unshare")
    try:
        pid = os.fork()
    except BaseException:
        _check(lib.setns(own, _CLONE_NEWPID), "setns")
        raise
    if pid:
        _check(lib.setns(own, _CLONE_NEWPID), "setns")
    return pid


def _mapped_bytes() -> int:
    """Virtual memory the process maps now (the zygote's libraries), from /proc."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _user_processes() -> int:
    """Processes (threads count too, for RLIMIT_NPROC) of this real uid: what a non-root
    child's process limit must sit on top of."""
    uid = os.getuid()
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}")
                if st.st_uid == uid:
                    n += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                continue
    return n


def probe(package_dir: str, want: str = "namespaces", base: Confinement | None = None) -> tuple[Confinement, dict[str, str]]:
    """The strongest tier up to ``want`` that works here, tried in throwaway children.

    Returns the confinement to use and, for each stronger tier that failed, why. A tier counts
    only if a child under it can still read the library (a uid of its own cannot read a
    virtualenv under a private home directory: then the tier runs without that uid step, or
    is skipped).
    """
    base = base or Confinement()
    failures: dict[str, str] = {}
    for tier in reversed(TIERS[: TIERS.index(want) + 1]):
        if tier == "none":
            return Confinement(**{**base.to_dict(), "tier": "none", "own_uid": False}), failures
        for own_uid in ([True, False] if os.geteuid() == 0 else [False]):
            c = Confinement(**{**base.to_dict(), "tier": tier, "own_uid": own_uid,
                                "user_processes": 0 if own_uid else _user_processes()})
            err = _try(c, package_dir)
            if err is None:
                return c, failures
            failures[f"{tier}{' (own uid)' if own_uid else ''}"] = err
    raise AssertionError("unreachable")


def _try(c: Confinement, package_dir: str) -> str | None:
    """Enter ``c`` in a throwaway child that then reads the library and writes a file in its
    work directory; None when all of that worked, else what failed."""
    import shutil
    import tempfile

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = ""
        try:
            enter_namespaces(c, (package_dir,))
            work = tempfile.mkdtemp(prefix="trident-probe-")
            inner = fork_child(c)  # as a run's child is forked
            if inner == 0:
                try:
                    confine(c, work)
                    with open(os.path.join(package_dir, "__init__.py"), "rb") as fh:
                        fh.read(1)
                    with open(os.path.join(work, "probe"), "w") as fh:
                        fh.write("ok")
                except BaseException as exc:  # noqa: BLE001 - any failure means the tier is unusable
                    os.write(w, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(inner, 0)
            shutil.rmtree(work, ignore_errors=True)  # /tmp itself may not be ours to write
            if status != 0:
                os._exit(0)  # the inner child reported why
        except BaseException as exc:  # noqa: BLE001 - any failure means the tier is unusable
            msg = f"{type(exc).__name__}: {exc}"
        os.write(w, json.dumps({"error": msg}).encode())
        os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        os.close(r)
    try:
        return json.loads(data)["error"] or None
    except (ValueError, KeyError):
        return "the probe child died without a report"
