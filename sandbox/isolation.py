"""Process isolation for children that run untrusted candidates, in tiers probed once.

The static gate (:mod:`sandbox.gate`) keeps a candidate away from ``os``, the file system and
the interpreter's internals; this module is the wall behind it, built on the assumption that
the language-level layers failed and the candidate runs arbitrary code (``ctypes`` included).
A server calls :func:`enter_namespaces` once; an execution child calls :func:`confine` after
the fork and before it runs the candidate:

``namespaces``
    network, IPC, UTS and mount namespaces for the server — no network but a loopback that is
    down; the host's tree read-only; a private tmpfs ``/tmp``; ``/var/tmp``, ``/dev/shm``,
    ``/run/lock`` and any other world-writable directory directly under ``/``, ``/var``,
    ``/run`` or ``/dev`` covered by empty read-only tmpfs — and mount and PID namespaces per
    child, forked straight in as its PID namespace's init (:func:`fork_child`): its own
    ``/proc``, only its own processes in view and none that outlive it; a fresh tmpfs ``/tmp``
    of its own with its working directory at the same path every run (:data:`RUN_DIR`), so a
    run's paths are the same for the library and each of its mutants and nothing a candidate
    writes reaches another. Plus everything of ``rlimits``. Needs root (or ``CAP_SYS_ADMIN``).
``rlimits``
    resource limits (address space, CPU, file size, open files, processes, no core files),
    an environment cut to a few harmless variables, no-new-privileges, a seccomp filter
    (:mod:`sandbox.seccomp`: no mount, namespace, ptrace, kernel-module … calls) and — as root,
    always — a uid of its own with an empty capability bounding set (so it can neither read
    the invoking user's files, nor signal or trace other processes, nor regain a capability,
    and ``RLIMIT_NPROC``, which does nothing for uid 0, holds).
``none``
    fork only; for trusted code (mining runs a test's own asserts).

A uid of its own must still read the Python installation and the library. When one of them
sits under a directory others cannot enter (a virtualenv under a ``0700`` home: the default on
a fresh machine), the server shows it in its own mount namespace instead of running children
as root: a world-readable tmpfs over that directory with only the needed paths bound back,
read-only (:func:`sandbox.mounts.expose`); nothing changes on the host. Only where mount
namespaces are not allowed does the probe refuse such a layout as root.

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
import stat
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from . import mounts, seccomp
from .mounts import libc

Tier = Literal["none", "rlimits", "namespaces"]
TIERS: tuple[str, ...] = get_args(Tier)  # weakest first

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_FIRST_UID = 200_000  # children as root run under _FIRST_UID + (pid mod _UIDS): no such user exists
_UIDS = 100_000
_TMP = "/tmp"
RUN_DIR = "/tmp/trident-run"  # a confined child's working directory at tier namespaces, the same every run
_SCRATCH = ("/var/tmp", "/dev/shm", "/run/lock", "/var/lock")  # emptied and read-only for the server
_SCRATCH_PARENTS = ("/", "/var", "/run", "/dev")  # where other world-writable directories are looked for
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED")



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
    """What :func:`confine` does in a child: the tier and its limits.

    ``own_uid`` is decided by :func:`probe`, not asked for: true whenever the server runs as
    root at a confining tier (a child as root would keep every capability the namespaces do not
    take away), false for other users, whose children run as themselves with no capabilities
    to drop."""

    tier: str = "none"
    memory_mb: int = 2048  # address space on top of what the zygote already maps
    file_mb: int = 64  # largest file a child may write; the private /tmp holds twice that
    open_files: int = 64
    processes: int = 32  # processes of the child's own uid (root) or on top of the user's (others)
    cpu_s: int = 0  # RLIMIT_CPU; 0 = none (the parent's timer is the limit that counts)
    own_uid: bool = False  # run under a uid of its own, capability bounding set empty (root, always)
    user_processes: int = 0  # without an own uid: processes the user had at probe time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TMP_KEEP: tuple[str, ...] = ()  # needed paths under /tmp, bound back into each child's own /tmp
_SHARED_RUN_DIR = False  # in a group's child: the children it confines start from its RUN_DIR


def enter_namespaces(c: Confinement, keep: tuple[str, ...] = ()) -> None:
    """Prepare the calling server process, once, before it forks any zygote.

    At every confining tier the seccomp filter is built here (a child only loads it). At tier
    ``namespaces``: new network, IPC, UTS and mount namespaces — no network, no host IPC
    objects — in which the host's tree is read-only, ``/tmp`` is a fresh tmpfs (writable by
    root: each run gets a ``/tmp`` of its own on top, see :func:`confine`) and the scratch
    directories (:func:`scratch_dirs`) are empty read-only tmpfs. As root, at any confining
    tier: what children import — the interpreter's prefixes, ``sys.path``, the packages
    already imported, the library (``keep``) — is made readable by a uid of its own where a
    private directory hides it (:func:`sandbox.mounts.expose`); at tier ``rlimits`` in a mount
    namespace made for that alone. A needed path under a covered directory is bound back."""
    global _TMP_KEEP
    if c.tier == "none":
        return
    seccomp.prepare()
    needed = mounts.needed_paths(keep)
    hidden = [p for p in needed if mounts.blocking(p)] if c.own_uid else []
    lib = libc()
    if c.tier == "namespaces":
        _check(lib.unshare(_CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS | _CLONE_NEWNS), "unshare")
    elif hidden:
        _check(lib.unshare(_CLONE_NEWNS),
               f"{hidden[0]} is under {mounts.blocking(hidden[0])}, which other users cannot enter, so children "
               f"under a uid of their own cannot import from it, and a mount namespace to show it to them is not "
               f"allowed here (install the virtualenv and the library in a world-readable directory, or run where "
               f"mount namespaces are allowed: root with CAP_SYS_ADMIN). unshare(CLONE_NEWNS)")
    else:
        return
    # Mounts made from here on stay in this namespace: nothing reaches the host's tree.
    mounts.make_private()
    if c.tier == "namespaces":
        mounts.read_only_tree()
        tmp = os.path.realpath(_TMP)
        _TMP_KEEP = tuple(mounts.minimal(mounts.under(needed, tmp)))
        mounts.cover(tmp, needed, mode=0o755, size_mb=2 * c.file_mb, writable=True)
        for d in scratch_dirs():
            mounts.cover(d, needed, mode=0o755, size_mb=1, writable=False)
    if hidden:
        mounts.expose(needed)


def scratch_dirs() -> list[str]:
    """World-writable directories (besides ``/tmp``) where a uid of its own could leave files
    for others or read theirs: ``/var/tmp``, ``/dev/shm``, ``/run/lock`` and any other one
    directly under ``/``, ``/var``, ``/run`` or ``/dev``."""
    found = list(_SCRATCH)
    for parent in _SCRATCH_PARENTS:
        try:
            with os.scandir(parent) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mode & stat.S_IWOTH:
                            found.append(e.path)
                    except OSError:
                        continue
        except OSError:
            continue
    tmp = os.path.realpath(_TMP)
    out: list[str] = []
    for d in found:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in out and real != tmp and not real.startswith(tmp + "/") \
                and real not in ("/", "/proc", "/sys", "/dev"):
            out.append(real)
    return out


def enter_private_tmp(c: Confinement) -> str:
    """For a group's child at tier ``namespaces`` (it runs the test's own setup and prefix, as
    root, unconfined): a mount namespace of its own with a fresh ``/tmp`` and :data:`RUN_DIR`
    in it, its working directory. Each candidate it then forks and confines starts from a
    copy-on-write view of what the prefix left there: it reads ``tmp_path`` as the prefix
    made it, and what it writes no later candidate sees. Returns :data:`RUN_DIR`."""
    global _SHARED_RUN_DIR
    _check(libc().unshare(_CLONE_NEWNS), "unshare")
    mounts.cover(os.path.realpath(_TMP), _TMP_KEEP, mode=0o755, size_mb=2 * c.file_mb, writable=True)
    os.mkdir(RUN_DIR, 0o755)
    os.chdir(RUN_DIR)
    _SHARED_RUN_DIR = True
    return RUN_DIR


def confine(c: Confinement, workdir: str) -> None:
    """Apply ``c`` to the calling (freshly forked) process, whose working directory is
    ``workdir``; at tier ``namespaces`` that is :data:`RUN_DIR`, made here in the child's own
    ``/tmp`` (a copy-on-write view of the group's one in a group's child).

    Order matters: mounts while the process may still mount; limits; the capability bounding
    set emptied while it still may be; the uid; no-new-privileges; the seccomp filter last,
    once nothing needs the calls it refuses. Raises ``OSError`` when a step fails; the caller
    reports that as an ``infra`` verdict, never runs the candidate less confined than promised.
    """
    if c.tier == "none":
        return
    lib = libc()
    # At tier namespaces this process is the init of a PID namespace of its own (fork_child
    # made it so) and its pid there is 1: its uid comes from its pid on the host, which the
    # old /proc still shows.
    host_pid = int(os.readlink("/proc/self")) if c.tier == "namespaces" else os.getpid()
    uid = _FIRST_UID + host_pid % _UIDS if c.own_uid else None
    owner = os.getuid() if uid is None else uid
    if c.tier == "namespaces":
        _check(lib.unshare(_CLONE_NEWNS), "unshare")
        # A bind's source must be a mount of this namespace: the group's run directory is
        # opened here, after the unshare, and before the fresh /tmp hides it.
        # An empty one (most tests leave nothing there) needs no layer: a fresh directory is the same view.
        shared = _SHARED_RUN_DIR and bool(os.listdir(workdir))
        base = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if shared else None
        try:
            _check(lib.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
            mounts.cover(os.path.realpath(_TMP), _TMP_KEEP, mode=0o1777, size_mb=2 * c.file_mb, writable=True)
            if base is None:
                os.mkdir(workdir, 0o700)
                os.chown(workdir, owner, owner)
            else:
                mounts.layer(base, workdir, owner, size_mb=2 * c.file_mb)
        finally:
            if base is not None:
                os.close(base)
        os.chdir(workdir)
    elif uid is not None:
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
    for key in list(os.environ):  # not environ.clear(): it lists the keys again for every one (quadratic)
        del os.environ[key]
    os.environ.update(_BASE_ENV)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    if uid is not None:
        _drop_bounding_set()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # no SECBIT_KEEP_CAPS: permitted, effective and ambient sets empty now
    _check(lib.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    seccomp.install()


def _cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 63  # dropping a capability the kernel does not know fails with EINVAL: see below


_CAP_LAST = _cap_last() if sys.platform.startswith("linux") else 0


def _drop_bounding_set() -> None:
    """Empty the capability bounding set, while this process still has ``CAP_SETPCAP``: nothing
    it or its children execute regains a capability, whatever setuid bits or file capabilities
    say."""
    lib = libc()
    for cap in range(_CAP_LAST + 1):
        if lib.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            if err == 22 and cap > 40:  # EINVAL: past the last capability this kernel knows
                break
            raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")


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

    Returns the confinement to use and, for each stronger tier that failed, why. As root a
    confining tier always runs children under a uid of their own; a tier counts only if such a
    child can read every path it imports from (:func:`sandbox.mounts.needed_paths`) — where a
    private directory hides them, only with a mount namespace to show them in. There is no
    fallback to children as root with capabilities: without mount namespaces such a layout
    leaves tier ``none`` (and the server refuses, below its ``min_tier``).
    """
    base = base or Confinement()
    failures: dict[str, str] = {}
    root = os.geteuid() == 0
    for tier in reversed(TIERS[: TIERS.index(want) + 1]):
        if tier == "none":
            return Confinement(**{**base.to_dict(), "tier": "none", "own_uid": False}), failures
        c = Confinement(**{**base.to_dict(), "tier": tier, "own_uid": root,
                            "user_processes": 0 if root else _user_processes()})
        err = _try(c, package_dir)
        if err is None:
            return c, failures
        failures[tier] = err
    raise AssertionError("unreachable")


def _readable(paths: list[str], own_uid: bool) -> None:
    """Raise ``PermissionError`` naming the first of ``paths`` this process cannot read."""
    for p in paths:
        try:
            if os.path.isdir(p):
                os.listdir(p)
            else:
                with open(p, "rb") as fh:
                    fh.read(1)
        except OSError as err:
            fix = (" (install the virtualenv and the library in a world-readable directory, or run where mount "
                   "namespaces are allowed: root or CAP_SYS_ADMIN)" if own_uid else "")
            raise PermissionError(err.errno, f"a confined child cannot read {p}: {err.strerror}{fix}") from None


def _try(c: Confinement, package_dir: str) -> str | None:
    """Enter ``c`` in a throwaway child that then reads every path a run imports from and
    writes a file in its work directory; None when all of that worked, else which step failed
    and why."""
    import shutil
    import tempfile

    needed = mounts.needed_paths((package_dir,)) + [os.path.join(package_dir, "__init__.py")]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = ""
        step = "enter the server's namespaces"
        try:
            enter_namespaces(c, (package_dir,))
            private = c.tier == "namespaces"
            step = "make a work directory"
            work = RUN_DIR if private else tempfile.mkdtemp(prefix="trident-probe-")
            step = "fork a child"
            inner = fork_child(c)  # as a run's child is forked
            if inner == 0:
                step = "confine the child"
                try:
                    confine(c, work)
                    step = "read the Python installation and the library"
                    _readable(needed, c.own_uid)
                    step = "write in the work directory"
                    with open(os.path.join(work, "probe"), "w") as fh:
                        fh.write("ok")
                except BaseException as exc:  # noqa: BLE001 - any failure means the tier is unusable
                    os.write(w, json.dumps({"error": f"{step}: {type(exc).__name__}: {exc}"}).encode())
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(inner, 0)
            if not private:
                shutil.rmtree(work, ignore_errors=True)  # /tmp itself may not be ours to write
            if status != 0:
                os._exit(0)  # the inner child reported why
        except BaseException as exc:  # noqa: BLE001 - any failure means the tier is unusable
            msg = f"{step}: {type(exc).__name__}: {exc}"
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


def sandbox_processes() -> list[int]:
    """Processes running under a sandbox child's uid on this machine (none may outlive its
    verdict: a PID namespace ends with its child)."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                uid = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            if _FIRST_UID <= uid < _FIRST_UID + _UIDS:
                pids.append(int(pid))
    return pids
