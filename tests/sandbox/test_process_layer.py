"""The process layer on its own: what holds when the language-level layers have failed.

With the static gate and the capability layer switched off, candidates attack through
``ctypes`` — unmount their private ``/tmp`` and ``/proc``, make or enter namespaces, trace or
read other processes, write into the library, leave files for the next candidate — in a real
mined networkx task, as root, in two installation layouts: the interpreter under a directory
other users cannot enter (``0700``, a fresh machine's home directory) and under a
world-readable one. In both, candidates must run (no refusal) under a uid of their own with no
capabilities; every attack must fail; the task's own target must still pass and kill the same
mutants right after; nothing on the host may change.

The seccomp filter is also checked on its own: both ways of building it (libseccomp and the
built-in assembler) are run through a small BPF interpreter for every call they must refuse,
and loaded into a child that then tries the harmless ones.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import os
import pwd
import shutil
import stat
import struct
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import networkx
import pytest

import sandbox
from sandbox import mounts, seccomp
from sandbox.api import Limits, execute_on, server_for, shutdown
from sandbox.isolation import RUN_DIR, Confinement, confine, enter_namespaces, fork_child, sandbox_processes
from sandbox.redteam import PLANTED
from sandbox.zygote import SlotRef, job_for

NX_DIR = Path(networkx.__file__).parent
PROJECT_DIR = Path(sandbox.__file__).parent
FLAG = "trident-process-layer-flag"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="a uid of its own per child, namespaces and the layouts need root")


def _limits(**kw) -> Limits:
    """Gate and capability layer off; one replica (no confirming second run) where that exists."""
    names = {f.name for f in dataclasses.fields(Limits)}
    off = {k: v for k, v in (("capabilities", False), ("confirm", False)) if k in names}
    return Limits(timeout_s=3, mutant_timeout_s=3, gate=False, min_tier="namespaces", **off, **kw)




# --------------------------------------------------------------------------- layouts


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system: no data copied
    except OSError:
        shutil.copy2(src, dst)


def _interpreter_copy(mode: int) -> tuple[str, str]:
    """A copy of this interpreter's installation (hard links where possible) in a new temporary
    directory of ``mode``, with the project's site-packages reached through a ``.pth`` file;
    returns that directory and the copied executable."""
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    top = tempfile.mkdtemp(prefix="trident-layout-")
    os.chmod(top, mode)
    prefix = os.path.join(top, "python")
    os.makedirs(os.path.join(prefix, "bin"))
    os.chmod(prefix, 0o755)
    exe = os.path.join(prefix, "bin", ver)
    _link_or_copy(os.path.realpath(getattr(sys, "_base_executable", sys.executable)), exe)
    skip = {"test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip"}
    shutil.copytree(os.path.join(sys.base_prefix, "lib"), os.path.join(prefix, "lib"), symlinks=True,
                    copy_function=_link_or_copy, ignore=lambda d, names: [n for n in names if d.endswith(ver) and n in skip])
    site = os.path.join(prefix, "lib", ver, "site-packages")
    os.makedirs(site)
    with open(os.path.join(site, "trident.pth"), "w") as fh:
        fh.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return top, exe


@pytest.fixture(params=["private", "world-readable"])
def layout(request, monkeypatch):
    """``private``: the interpreter under a directory other users cannot enter — this machine's
    own layout when it is so, else a copy under a 0700 directory. ``world-readable``: this
    machine's own when it is so, else a copy under a 0755 one. Yields the layout's name."""
    if not ROOT:
        pytest.skip("a uid of its own per child, namespaces and the layouts need root")
    private = request.param == "private"
    own_hidden = mounts.blocking(os.path.realpath(sys.base_prefix)) is not None
    top = None
    if own_hidden != private:
        top, exe = _interpreter_copy(0o700 if private else 0o755)
        monkeypatch.setattr(sys, "executable", exe)  # what ZygoteServer starts
        prefix = os.path.join(top, "python")
    else:
        prefix = os.path.realpath(sys.base_prefix)
    assert (mounts.blocking(prefix) is not None) == private, (prefix, mounts.blocking(prefix))
    shutdown()
    try:
        yield request.param
    finally:
        shutdown()
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)


# --------------------------------------------------------------------------- the host


def _host_state() -> dict[str, object]:
    """What a candidate must not change: files in the library and the shared scratch
    directories, this process's mount table, and a few names under /tmp and in the project's
    package (which people edit while tests run: only the planted name is watched there)."""
    seen: dict[str, object] = {str(PROJECT_DIR / PLANTED): (PROJECT_DIR / PLANTED).exists()}
    for root in (NX_DIR, Path("/var/tmp"), Path("/dev/shm"), Path("/run/lock")):
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(("pytest-", "tmp"))]
            for f in filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except OSError:
                    continue
                seen[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    with open("/proc/self/mountinfo") as fh:
        seen["mounts"] = sorted(line.split(" - ")[0].split(" ", 4)[4] for line in fh)
    for name in (FLAG, "trident-run", ".trident-layers"):
        seen[f"/tmp/{name}"] = os.path.lexists(f"/tmp/{name}")
    return seen


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


# --------------------------------------------------------------------------- the attacks

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def _attacks(server_pid: int, zygotes: list[int], secret: str) -> dict[str, str]:
    """Each candidate asserts that its attack worked: ``failed`` or ``error`` means it did not."""
    others = [server_pid, *zygotes]
    return {
        "uid-is-root": "import os\nassert os.getuid() == 0 or os.geteuid() == 0",
        "any-capability": "assert any(int(l.split()[1], 16) for l in open('/proc/self/status') if l.startswith('Cap'))",
        "umount-tmp": LIBC + "assert libc.umount2(b'/tmp', 2) == 0",
        "umount-proc": LIBC + "assert libc.umount2(b'/proc', 2) == 0",
        "mount-tmpfs": LIBC + "assert libc.mount(b'x', os.getcwd().encode(), b'tmpfs', 0, None) == 0",
        "remount-root-rw": LIBC + "assert libc.mount(None, b'/', None, 0x20 | 0x1000, None) == 0",
        "unshare-all": LIBC + "assert libc.unshare(0x00020000 | 0x10000000 | 0x40000000) == 0",
        "unshare-user": LIBC + "assert libc.unshare(0x10000000) == 0",
        "unshare-net": LIBC + "assert libc.unshare(0x40000000) == 0",
        "setns-net": LIBC + "fd = os.open('/proc/1/ns/net', os.O_RDONLY)\nassert libc.setns(fd, 0) == 0",
        "setns-host-net": LIBC + f"fd = os.open('/proc/{server_pid}/ns/net', os.O_RDONLY)\nassert libc.setns(fd, 0) == 0",
        "ptrace-parent": LIBC + "assert libc.ptrace(16, os.getppid(), 0, 0) == 0",
        "ptrace-visible": LIBC + "assert [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid() "
                                 "and libc.ptrace(16, int(p), 0, 0) == 0]",
        "ptrace-own-child": LIBC + "pid = os.fork()\nif pid == 0:\n    import time\n    time.sleep(30)\n    os._exit(0)\n"
                                   "assert libc.ptrace(16, pid, 0, 0) == 0",
        "proc-mem-sandbox": f"assert [open(f'/proc/{{p}}/mem', 'rb') for p in {others!r}]",
        # The server is an ancestor: the C library sits at the same address there.
        "process-vm-readv": LIBC + "buf = ctypes.create_string_buffer(8)\n"
                                   "at = ctypes.cast(libc.getpid, ctypes.c_void_p).value\n"
                                   "local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)\n"
                                   "remote = (ctypes.c_void_p * 2)(at, 8)\n"
                                   f"assert libc.process_vm_readv({server_pid}, local, 1, remote, 1, 0) == 8",
        "kill-server": f"import os, signal\nassert os.kill({server_pid}, signal.SIGKILL) is None",
        "write-library": f"assert open({str(NX_DIR / PLANTED)!r}, 'w').write('x = 1') == 5",
        "write-project": f"assert open({str(PROJECT_DIR / PLANTED)!r}, 'w').write('x = 1') == 5",
        "write-var-tmp": f"assert open('/var/tmp/{FLAG}', 'w').write('x') == 1",
        "write-dev-shm": f"assert open('/dev/shm/{FLAG}', 'w').write('x') == 1",
        "write-run-lock": f"assert open('/run/lock/{FLAG}', 'w').write('x') == 1",
        "read-secret": f"assert open({secret!r}).read()",
        "list-home": f"import os\nassert len(os.listdir({pwd.getpwuid(0).pw_dir!r})) > 1",
    }


# A candidate writes into its /tmp, working directory and tmp_path; the next one looks for it.
WRITE_FLAGS = (f"assert open('/tmp/{FLAG}', 'w').write('x') == 1 and open('{FLAG}', 'w').write('x') == 1 "
               f"and open('/dev/null', 'w').write('x') == 1")
READ_FLAGS = f"import os\nassert os.path.exists('/tmp/{FLAG}') or os.path.exists('{FLAG}')"


def _target_holds(server, task, limits, baseline, after):
    v = execute_on(server, task, [task.target], mutants=True, limits=limits)[0]
    return None if v.status == "passed" and v.kills == baseline.kills else f"after {after}: target {v.status} kills={v.kills}"


@needs_root
def test_attacks_through_ctypes_fail_in_both_layouts(task, layout, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("trident-process-layer-secret")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    limits = _limits()
    before = _host_state()
    server = server_for(task.package, limits)
    try:
        assert server.tier == "namespaces", server.tier_failures  # candidates run: no refusal
        baseline = execute_on(server, task, [task.target], mutants=True, limits=limits)[0]
        assert baseline.status == "passed" and set(baseline.kills) == {m.id for m in task.mutants}, baseline
        problems = []
        attacks = _attacks(server.proc.pid, _children(server.proc.pid), str(secret))
        for name, cand in attacks.items():
            v = execute_on(server, task, [cand], mutants=True, limits=limits)[0]
            if v.status not in ("failed", "error") or v.kills:
                problems.append(f"{name}: {v.status} ({v.reason[:160]}) kills={v.kills}")
            problems.append(_target_holds(server, task, limits, baseline, name))
        # Another candidate's files: in one group (a fork per candidate from the prefix's child),
        # then in separate runs.
        group = execute_on(server, task, [WRITE_FLAGS, READ_FLAGS, task.target], mutants=False, limits=limits)
        alone = [execute_on(server, task, [c], mutants=False, limits=limits)[0] for c in (WRITE_FLAGS, READ_FLAGS)]
        for where, (w, r) in (("group", group[:2]), ("alone", alone)):
            if w.status != "passed":  # its own /tmp and working directory are writable
                problems.append(f"write-flags ({where}): {w.status} {w.reason[:160]}")
            if r.status != "failed":
                problems.append(f"read-flags ({where}): {r.status} {r.reason[:160]}")
        if group[2].status != "passed":
            problems.append(f"target after the flags in a group: {group[2].status}")
        problems.append(_target_holds(server, task, limits, baseline, "the flags"))
        problems = [p for p in problems if p]
        assert not problems, "\n".join(problems)
        assert server.alive()
    finally:
        shutdown()
        for planted in (NX_DIR / PLANTED, PROJECT_DIR / PLANTED):
            if planted.exists():  # reported below; never left behind
                planted.unlink()
    after = _host_state()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, changed[:10]
    deadline = time.monotonic() + 5
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandbox_processes()


def _imported_from_tmp() -> list[str]:
    """Top-level names under /tmp of what the sandbox's children import from (they stay visible
    in a child's own /tmp): the project, the interpreter, the library."""
    tmp = Path("/tmp").resolve()
    roots = (sys.prefix, sys.base_prefix, PROJECT_DIR, NX_DIR)
    return sorted({Path(r).resolve().relative_to(tmp).parts[0] for r in roots if Path(r).resolve().is_relative_to(tmp)})


@needs_root
def test_runs_see_fixed_paths_and_a_group_shares_only_the_prefix(layout):
    """tmp_path and the working directory are the same path in every run; a group's
    candidates read what the prefix wrote there, write to it freely, and never see what an
    earlier candidate of the group wrote."""
    from sandbox.mining import _slots, _test_def
    import networkx.readwrite.tests.test_gexf as mod

    node, _, _ = _test_def(mod.test_gexf_v1_3)
    ref = SlotRef(None, "test_gexf_v1_3", _slots(node)[-1])
    target = "assert nx.utils.graphs_equal(G, expected)"
    cands = [
        target,
        f"import os\nassert str(fname) == '{RUN_DIR}/tmp_path/basic.gexf' and os.getcwd() == '{RUN_DIR}'",
        "open(fname, 'a').write('junk')\nopen(tmp_path / 'extra', 'w').write('x')\nassert open(fname).read().endswith('junk')",
        "assert not (tmp_path / 'extra').exists() and 'junk' not in open(fname).read()",
        # Nothing of the layers shows (what children import from under /tmp does: the
        # interpreter of a layout, a checkout of the project).
        "import os\nassert os.listdir(tmp_path) == ['basic.gexf'] and not os.path.exists('/tmp/.trident-layers')\n"
        f"assert [n for n in os.listdir('/tmp') if not n.startswith('trident-layout-') and n not in {_imported_from_tmp()!r}]"
        " == ['trident-run']",
        target,
    ]
    server = server_for("networkx", _limits())
    try:
        group = server.run(mod.__name__, [job_for(ref, c, timeout=5) for c in cands])
        alone = [server.run(mod.__name__, [job_for(ref, c, timeout=5, cpu_limit=5)])[0] for c in cands]
    finally:
        shutdown()
    assert [(v.status, v.tier) for v in group] == [("passed", "namespaces")] * len(cands), [v.reason for v in group]
    assert [v.status for v in alone] == ["passed"] * len(cands), [v.reason for v in alone]


def _without_sys_admin() -> None:
    ctypes.CDLL(None).prctl(24, 21, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_ADMIN: gone after exec


@pytest.mark.parametrize("layout", ["private"], indirect=True)
def test_a_hidden_install_without_mount_namespaces_is_refused_never_run_as_root(layout):
    """Where no mount namespace can show a private installation to a uid of its own, the server
    refuses (naming the step and the fix) instead of running children as root."""
    import subprocess

    code = ("import sys; from sandbox.api import Limits, server_for\n"
            "try:\n    server_for('networkx', Limits(confirm=False) if 'confirm' in Limits.__dataclass_fields__ "
            "else Limits())\n"
            "except Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\nprint('started')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       preexec_fn=_without_sys_admin)
    assert r.returncode == 3, r.stdout + r.stderr[-2000:]
    assert "SandboxError" in r.stdout and "world-readable directory" in r.stdout and "mount namespaces" in r.stdout


# --------------------------------------------------------------------------- the filter


def _bpf(prog: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Run a classic BPF seccomp program on one system call; returns the action."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        cls, op, src = code & 0x07, code & 0xF0, code & 0x08
        pc += 1
        if cls == 0x00:  # LD
            a = struct.unpack_from("=I", data, k)[0] if code & 0xE0 == 0x20 else mem[k] if code & 0xE0 == 0x60 else k
        elif cls == 0x01:  # LDX
            x = mem[k] if code & 0xE0 == 0x60 else k
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU
            v = x if src else k
            a = {0x00: a + v, 0x10: a - v, 0x50: a & v, 0x40: a | v, 0xA0: a ^ v}[op] & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            v = x if src else k
            if op == 0x00:
                pc += k
                continue
            hit = {0x10: a == v, 0x20: a > v, 0x30: a >= v, 0x40: bool(a & v)}[op]
            pc += jt if hit else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:
            x, a = (a, x) if op == 0 else (x, x)


def _programs() -> list[tuple[str, bytes]]:
    progs = [("built-in", seccomp.handbuilt(seccomp.machine()))] if seccomp.machine() in seccomp._TABLES else []
    try:
        progs.append(("libseccomp", seccomp.from_libseccomp()))
    except OSError:
        pass
    return progs


def test_both_filters_refuse_every_listed_call_and_nothing_else():
    arch = seccomp.machine()
    if arch not in seccomp._TABLES:
        pytest.skip(f"no built-in table for {arch}")
    audit, table = seccomp._TABLES[arch]
    eperm, enosys, allow = 0x50000 | errno.EPERM, 0x50000 | errno.ENOSYS, 0x7FFF0000
    for name, prog in _programs():
        for call in seccomp.BLOCKED:
            if call in table:
                assert _bpf(prog, table[call], audit) == eperm, (name, call)
        for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
            assert _bpf(prog, table["clone"], audit, flag | 17) == eperm, (name, hex(flag))
        assert _bpf(prog, table["clone"], audit, 17) == allow, name  # fork
        assert _bpf(prog, table["clone"], audit, 0x003D0F00) == allow, name  # a thread
        assert _bpf(prog, table["clone3"], audit) == enosys, name
        for nr in (0, 1, 2, 3, 9, 39, 57, 61, 257):  # read, write, mmap, getpid … on either table
            if nr not in table.values():
                assert _bpf(prog, nr, audit) == allow, (name, nr)
        assert _bpf(prog, 0, 0x40000003) & 0xFFFF0000 in (0x80000000, 0), name  # i386 entry point: killed
        if arch == "x86_64":
            assert _bpf(prog, 0x40000000 | 1, audit) & 0xFFFF0000 in (0x80000000, 0), name  # x32: killed


def test_the_built_in_tables_match_libseccomp():
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.skip("libseccomp is not installed")
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    for arch, (audit, table) in seccomp._TABLES.items():
        for name, nr in table.items():
            known = lib.seccomp_syscall_resolve_name_arch(audit, name.encode())
            assert known in (nr, -1), (arch, name, nr, known)  # -1: newer than this libseccomp


def test_a_filtered_child_is_refused_and_still_forks_and_threads():
    for name, prog in _programs():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                libc = ctypes.CDLL(None, use_errno=True)
                assert libc.prctl(38, 1, 0, 0, 0) == 0
                seccomp._PROGRAM, seccomp._LOADABLE = prog, None
                seccomp.install()
                table = seccomp._TABLES[seccomp.machine()][1]

                def refused(ret, err=errno.EPERM):
                    return ret == -1 and ctypes.get_errno() == err

                assert refused(libc.personality(0xFFFFFFFF))
                assert refused(libc.unshare(0x10000000))
                assert refused(libc.ptrace(0, 0, 0, 0))  # PTRACE_TRACEME
                assert refused(libc.syscall(table["clone3"], 0, 0), errno.ENOSYS)
                child = libc.syscall(table["clone"], 0x10000000 | 17, 0, 0, 0, 0)
                if child == 0:
                    os._exit(0)
                assert child == -1 and ctypes.get_errno() == errno.EPERM
                forked = os.fork()
                if forked == 0:
                    os._exit(7)
                assert os.waitstatus_to_exitcode(os.waitpid(forked, 0)[1]) == 7
                import threading

                seen = []
                t = threading.Thread(target=seen.append, args=(1,))
                t.start()
                t.join()
                assert seen == [1]
                code = 0
            except BaseException as exc:  # noqa: BLE001
                os.write(w, repr(exc).encode())
            os._exit(code)
        os.close(w)
        report = os.read(r, 4096)
        os.close(r)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, (name, report)


# --------------------------------------------------------------------------- the view


def test_plan_covers_the_highest_hidden_directory_and_binds_back_only_what_is_needed():
    top = Path(tempfile.mkdtemp(prefix="trident-plan-"))
    try:
        top.chmod(0o755)
        if mounts.blocking(str(top)) is not None:
            pytest.skip("the temporary directory itself sits under a private one")
        home, closed = top / "home", top / "open" / "closed"
        (home / "venv" / "lib").mkdir(parents=True)
        (home / "secret").mkdir()
        (closed / "a").mkdir(parents=True)
        (closed / "b.py").write_text("")
        for d in (home / "venv", home / "venv" / "lib", top / "open", closed / "a"):
            d.chmod(0o755)
        home.chmod(0o700)
        closed.chmod(0o700)
        covers = mounts.plan([str(home / "venv" / "lib"), str(home / "venv"), str(closed), str(top / "open")])
        assert covers == {str(home): [str(home / "venv")], str(closed): [str(closed / "a"), str(closed / "b.py")]}
    finally:
        for d in (top / "home", top / "open" / "closed"):
            if d.exists():
                d.chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


# --------------------------------------------------------------------------- the cost


@needs_root
def test_cost_per_child_of_each_layer():
    """Milliseconds a confined child spends in ``confine`` (tier namespaces and rlimits) and in
    loading the seccomp filter, measured in children of a process that entered the server's
    namespaces. Run with ``-s`` to see the numbers."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = {}
        try:
            seccomp.prepare()  # as the server does
            for tier in ("rlimits", "namespaces"):
                c = Confinement(tier=tier, own_uid=True)
                if tier == "namespaces":
                    enter_namespaces(c, (str(NX_DIR),))
                times = {"confine": [], "seccomp": []}
                for _ in range(20):
                    work = RUN_DIR if tier == "namespaces" else tempfile.mkdtemp()
                    cr, cw = os.pipe()
                    child = fork_child(c)
                    if child == 0:
                        t0 = time.perf_counter()
                        seccomp_install = seccomp.install
                        spent = []

                        def timed():
                            t = time.perf_counter()
                            seccomp_install()
                            spent.append(time.perf_counter() - t)

                        seccomp.install = timed
                        confine(c, work)
                        total = time.perf_counter() - t0
                        os.write(cw, struct.pack("=dd", total, spent[0]))
                        os._exit(0)
                    os.close(cw)
                    total, filt = struct.unpack("=dd", os.read(cr, 16))
                    os.close(cr)
                    os.waitpid(child, 0)
                    if tier != "namespaces":
                        shutil.rmtree(work, ignore_errors=True)
                    times["confine"].append(total * 1000)
                    times["seccomp"].append(filt * 1000)
                out[tier] = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, repr(exc).encode())
            os._exit(1)
    os.close(w)
    report = os.read(r, 4096).decode()
    os.close(r)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, report
    medians = json.loads(report)
    print(f"\nmedian ms per child: {medians}")
    assert medians["namespaces"]["confine"] < 50 and medians["rlimits"]["confine"] < 50
