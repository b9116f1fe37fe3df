"""A seccomp filter for candidate children: the system calls that reach past the process.

Why: the uid of its own, the empty capability sets and the namespaces already make these calls
fail for a candidate — but only as long as every one of those checks in the kernel holds. A
filter makes them fail before the kernel looks at credentials at all, so a mistake in one layer
(a child left with a capability, a kernel bug in a namespace check) is not an escape by itself.

What the filter returns ``EPERM`` for (:data:`BLOCKED`): changing the mount tree (``mount``,
``umount2``, ``pivot_root``, ``chroot`` and the new mount API), leaving or making namespaces
(``setns``, ``unshare``, ``clone`` with a namespace flag), reading or steering other processes
(``ptrace``, ``process_vm_*``, ``kcmp``, ``pidfd_getfd``), loading code into the kernel
(modules, ``kexec``, ``bpf``), kernel facilities a test never needs and attacks often use
(``perf_event_open``, ``userfaultfd``, keyrings, ``io_uring``, file handles), and host-wide
settings (clock, swap, reboot, accounting, quotas, ``syslog``, ``personality``, I/O ports).
``clone3`` returns ``ENOSYS``: its flags live in memory a filter cannot read, and on ``ENOSYS``
the C library falls back to ``clone``, whose flags the filter checks. Every other call is
allowed; a call from another architecture's table (32-bit entry points) kills the process.

How: :func:`prepare` builds the BPF program once per process (the server, before it forks)
and :func:`install` loads it in a child with one ``prctl`` — after ``PR_SET_NO_NEW_PRIVS``,
which an unprivileged process needs for it. The program comes from libseccomp
(``libseccomp.so.2``) when it is installed; without it, from a small program built here for
x86_64 and aarch64 (same rules, numbers from the kernel's tables, checked against libseccomp by
the tests). On any other architecture without libseccomp, :func:`program` raises
:class:`SeccompUnavailable` saying to install libseccomp: the probe then reports the tier as
unusable rather than running candidates unfiltered.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import Any

BLOCKED: tuple[str, ...] = (
    # the mount tree
    "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr", "open_tree_attr",
    # namespaces (clone with a namespace flag: see CLONE_NAMESPACES)
    "setns", "unshare",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # code into the kernel
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    # kernel facilities tests do not need and exploits do
    "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at",
    # host-wide settings
    "swapon", "swapoff", "reboot", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm", "personality", "quotactl", "quotactl_fd", "syslog", "vhangup",
)

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
# (CLONE_NEWTIME, 0x80, is part of clone's exit-signal byte; only clone3 and unshare take it).
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
_X32_SYSCALL_BIT = 0x40000000

# The kernel's numbers for the calls above (arch/x86/entry/syscalls/syscall_64.tbl and the
# generic include/uapi/asm-generic/unistd.h that aarch64 uses); a name an architecture lacks
# is left out. Only used without libseccomp.
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (AUDIT_ARCH_X86_64, {
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "fsopen": 430, "fsmount": 432,
        "fsconfig": 431, "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "open_tree_attr": 467, "setns": 308, "unshare": 272, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "settimeofday": 164, "clock_settime": 227,
        "clock_adjtime": 305, "adjtimex": 159, "iopl": 172, "ioperm": 173, "personality": 135, "quotactl": 179,
        "quotactl_fd": 443, "syslog": 103, "vhangup": 153, "clone": 56, "clone3": 435,
    }),
    "aarch64": (AUDIT_ARCH_AARCH64, {
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "fsopen": 430, "fsmount": 432,
        "fsconfig": 431, "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "open_tree_attr": 467, "setns": 268, "unshare": 97, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "settimeofday": 170, "clock_settime": 112,
        "clock_adjtime": 266, "adjtimex": 171, "personality": 92, "quotactl": 60, "quotactl_fd": 443,
        "syslog": 116, "vhangup": 58, "clone": 220, "clone3": 435,
    }),
}

# seccomp return values and prctl options (linux/seccomp.h, linux/prctl.h)
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# classic BPF opcodes
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_NR_OFFSET, _ARCH_OFFSET, _ARG0_OFFSET = 0, 4, 16  # struct seccomp_data; args[0]'s low half (little-endian)


class SeccompUnavailable(OSError):
    """No way to build the filter here (no libseccomp, an architecture without a built-in table)."""


def machine() -> str:
    """This machine's architecture as the tables name it."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


# --------------------------------------------------------------------------- building

_PROGRAM: bytes | None = None


def program() -> bytes:
    """The filter as raw BPF (``struct sock_filter`` array), built once per process."""
    global _PROGRAM
    if _PROGRAM is None:
        try:
            _PROGRAM = from_libseccomp()
        except OSError:
            _PROGRAM = handbuilt(machine())
    return _PROGRAM


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_SCMP_CMP_MASKED_EQ = 7
_SCMP_FLTATR_ACT_BADARCH = 2


def from_libseccomp() -> bytes:
    """The filter built by libseccomp for the native architecture. Raises ``OSError`` when
    libseccomp is not installed or fails."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ctx = lib.seccomp_init(_RET_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    native = _TABLES.get(machine(), (0, {}))[1]
    try:
        _ok(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_ACT_BADARCH, _RET_KILL_PROCESS), "seccomp_attr_set")
        eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS

        def number(name: str) -> int | None:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # a call newer than this libseccomp: the kernel's number, where known
                return native.get(name)
            return nr  # negative: a call this architecture lacks (libseccomp skips it)

        for name in BLOCKED:
            nr = number(name)
            if nr is not None:
                _ok(lib.seccomp_rule_add_array(ctx, eperm, nr, 0, None), f"seccomp_rule_add({name})")
        for flag in _bits(CLONE_NAMESPACES):
            cmp = _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag)
            _ok(lib.seccomp_rule_add_array(ctx, eperm, number("clone"), 1, ctypes.byref(cmp)), "seccomp_rule_add(clone)")
        _ok(lib.seccomp_rule_add_array(ctx, enosys, number("clone3"), 0, None), "seccomp_rule_add(clone3)")
        r, w = os.pipe()
        try:
            _ok(lib.seccomp_export_bpf(ctx, w), "seccomp_export_bpf")
            os.close(w)
            w = -1
            data = b""
            while chunk := os.read(r, 1 << 16):
                data += chunk
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    finally:
        lib.seccomp_release(ctx)
    if not data or len(data) % 8:
        raise OSError(errno.EINVAL, "libseccomp exported no filter")
    return data


def handbuilt(arch: str) -> bytes:
    """The same filter, assembled here for ``arch`` (``x86_64`` or ``aarch64``). Raises
    :class:`SeccompUnavailable` for another architecture."""
    if arch not in _TABLES:
        raise SeccompUnavailable(errno.ENOSYS, f"no seccomp filter for {arch}: libseccomp.so.2 is not installed and there "
                                               f"is no built-in table for this architecture; install libseccomp "
                                               f"(apt-get install libseccomp2, dnf install libseccomp)")
    audit_arch, table = _TABLES[arch]
    # (code, jump-if-true label, jump-if-false label, k); labels are resolved below.
    prog: list[tuple[int, Any, Any, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH_OFFSET),
        (_JEQ_K, 0, "kill", audit_arch),
        (_LD_W_ABS, 0, 0, _NR_OFFSET),
    ]
    if arch == "x86_64":
        prog.append((_JGE_K, "kill", 0, _X32_SYSCALL_BIT))  # the x32 ABI's numbers
    prog.append((_JEQ_K, "clone", 0, table["clone"]))
    prog.append((_JEQ_K, "enosys", 0, table["clone3"]))
    prog += [(_JEQ_K, "eperm", 0, table[name]) for name in BLOCKED if name in table]
    labels = {"allow": len(prog)}
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels["clone"] = len(prog)
    prog.append((_LD_W_ABS, 0, 0, _ARG0_OFFSET))
    prog.append((_JSET_K, "eperm", "allow2", CLONE_NAMESPACES))
    labels["allow2"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels["eperm"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))
    labels["enosys"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS))
    labels["kill"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_KILL_PROCESS))
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt, jf = (labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf))
        assert 0 <= jt < 256 and 0 <= jf < 256, "jump out of range"
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask >> i & 1]


def _ok(ret: int, what: str) -> None:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")


# --------------------------------------------------------------------------- loading


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_LOADABLE: tuple[bytes, Any, _SockFprog, Any] | None = None  # (program, its buffer, sock_fprog, libc)


def prepare() -> None:
    """Build the filter and everything :func:`install` needs, in this process (the server,
    once): a child then loads it with one system call (loading the C library or building the
    program in each child would cost milliseconds)."""
    global _LOADABLE
    prog = program()
    if _LOADABLE is None or _LOADABLE[0] is not prog:
        buf = ctypes.create_string_buffer(prog, len(prog))
        _LOADABLE = (prog, buf, _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p)),
                     ctypes.CDLL(None, use_errno=True))


def install() -> None:
    """Load the filter into the calling process (and so every process it starts). Needs
    no-new-privileges (or ``CAP_SYS_ADMIN``); raises ``OSError`` when the kernel refuses."""
    prepare()
    assert _LOADABLE is not None
    _, _, fprog, libc = _LOADABLE
    ulong = ctypes.c_ulong
    if libc.prctl(_PR_SET_SECCOMP, ulong(_SECCOMP_MODE_FILTER), ctypes.byref(fprog), ulong(0), ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
