"""What a process in a private mount namespace sees of the file system: the mount operations the
isolation tiers build their views from.

Every function here changes only the calling process's mount namespace, which must be its own
and private (:func:`make_private` first): the host's tree never changes.

* :func:`expose` — a child under a uid of its own must read the Python installation, the
  virtualenv and the library; when one of them sits under a directory others cannot enter (a
  virtualenv under a ``0700`` home, the default on a fresh machine), a world-readable tmpfs
  goes over the highest such directory and only the paths that are needed are bound back,
  read-only. Everything else in that directory (keys, other projects) disappears from view.
* :func:`cover` — a fresh tmpfs over a directory (a private ``/tmp``, an empty read-only
  ``/var/tmp``), with the needed paths under it bound back read-only.
* :func:`layer` — a copy-on-write view of a directory for one candidate (what a group's prefix
  left in its run directory): reads see the original, writes stay with the candidate.

Binds take their source from an ``O_PATH`` descriptor opened before the cover goes on
(``/proc/self/fd/N``), so no staging directory is needed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import sys
from typing import Any, Iterable

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2

_libc: Any = None


def libc() -> Any:
    """The C library, loaded once (Linux)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None, what: str) -> None:
    """mount(2); raises ``OSError`` naming ``what`` and the target."""
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} ({target}): {os.strerror(err)}")


def make_private() -> None:
    """Stop mount events propagating between this namespace and the host (``--make-rprivate /``)."""
    mount("none", "/", None, MS_REC | MS_PRIVATE, None, "mount --make-rprivate")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442, "amd64": 442, "arm64": 442}
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
_PER_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 0x400,
                    "nodiratime": 0x800, "relatime": 0x200000}


def read_only_tree() -> None:
    """Make every mount of this namespace read-only (the copies, not the host's mounts): whatever
    directory a uid of its own could write to on the host — world-writable ones nobody listed
    included — it cannot here. One ``mount_setattr(AT_RECURSIVE)`` (Linux 5.12); on an older
    kernel each mount of ``/proc/self/mountinfo`` is remounted read-only in turn."""
    import platform

    nr = _MOUNT_SETATTR.get(platform.machine().lower())
    if nr is not None:
        attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
        if libc().syscall(nr, _AT_FDCWD, b"/", _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
            return
        err = ctypes.get_errno()
        if err != 38:  # ENOSYS: an older kernel, below
            raise OSError(err, f"mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY): {os.strerror(err)}")
    with open("/proc/self/mountinfo") as fh:
        rows = [line.split() for line in fh]
    for row in sorted(rows, key=lambda r: r[4].count("/")):
        target = row[4].encode().decode("unicode_escape")  # \040 and friends
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for opt in row[5].split(","):
            flags |= _PER_MOUNT_FLAGS.get(opt, 0)
        try:
            mount(None, target, None, flags, None, "remount read-only")
        except OSError as err:
            if err.errno not in (2, 13):  # a mount point hidden or gone since mountinfo was read
                raise


# --------------------------------------------------------------------------- what is needed


def needed_paths(extra: Iterable[str] = ()) -> list[str]:
    """Real paths of what a confined child imports from: the interpreter's prefixes, every
    existing ``sys.path`` entry, the directory of every top-level module already imported
    (an editable install's packages live outside ``sys.path``), the packages an editable
    install maps (``__editable__…`` finders), and ``extra``."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *extra]
    paths += [p for p in sys.path if p]
    for name, mod in list(sys.modules.items()):
        if "." in name or mod is None:
            continue
        locations = list(getattr(mod, "__path__", None) or [])
        file = getattr(mod, "__file__", None)
        if not locations and isinstance(file, str):
            locations = [os.path.dirname(file)]
        paths += [p for p in locations if isinstance(p, str)]
        if name.startswith("__editable__") and isinstance(getattr(mod, "MAPPING", None), dict):
            paths += [p for p in mod.MAPPING.values() if isinstance(p, str)]
    seen: list[str] = []
    for p in paths:
        real = os.path.realpath(p)
        if os.path.exists(real) and real not in seen:
            seen.append(real)
    return seen


def minimal(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another one of them (binding the outer one shows them)."""
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def under(paths: Iterable[str], directory: str) -> list[str]:
    """Those of ``paths`` strictly inside ``directory``."""
    d = directory.rstrip("/") + "/"
    return [p for p in paths if p.startswith(d)]


def blocking(path: str) -> str | None:
    """The highest directory on the way to ``path`` (``path`` included) that a uid with no
    rights there cannot pass: an ancestor others cannot enter (no ``o+x``), or ``path`` itself
    when others cannot read it (a directory needs ``o+rx``, a file ``o+r``). None: readable."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        p = "/" + "/".join(parts[:i])
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return None  # gone: nothing to show
        last = i == len(parts)
        need = (stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)) if last else stat.S_IXOTH
        if mode & need != need:
            return p
    return None


def plan(paths: Iterable[str]) -> dict[str, list[str]]:
    """For :func:`expose`: each directory to cover and the paths to bind back under it.

    A path blocked by an ancestor is bound back whole under that ancestor's cover; a path that
    is itself unreadable is covered and each of its entries bound back (their modes are what
    other users see then)."""
    covers: dict[str, list[str]] = {}
    for p in sorted(set(paths)):  # not minimal(): a readable directory may hold a private one
        top = blocking(p)
        if top is None:
            continue
        if top == p:
            if not os.path.isdir(p):
                raise OSError(13, f"{p} is not readable by other users and is not a directory; "
                                  f"make it world-readable (chmod o+r)")
            covers.setdefault(p, []).extend(os.path.join(p, e) for e in os.listdir(p))
        else:
            covers.setdefault(top, []).append(p)
    return {top: minimal(keep) for top, keep in covers.items()}


def expose(paths: Iterable[str]) -> dict[str, list[str]]:
    """Make ``paths`` readable by any uid in this mount namespace (see the module docstring);
    returns what was covered and what was bound back under each cover."""
    paths = list(paths)
    done: dict[str, list[str]] = {}
    for _ in range(8):  # a private directory inside one bound back shows only on the next round
        covers = plan(paths)
        if not covers:
            return done
        for top, keep in covers.items():
            cover(top, keep, mode=0o755, size_mb=1, writable=False)
        done.update(covers)
    hidden = [p for p in paths if blocking(p)]
    if hidden:
        raise OSError(13, f"{hidden[0]} stays unreadable to other users; make it world-readable (chmod o+rX)")
    return done


# --------------------------------------------------------------------------- covering


def cover(directory: str, keep: Iterable[str] = (), *, mode: int, size_mb: int, writable: bool,
          inodes: int = 65536, owner: int | None = None) -> None:
    """Mount a fresh tmpfs (``mode``, at most ``size_mb``) over ``directory`` and bind each
    path of ``keep`` (inside ``directory``) back at its place, read-only, with its parents
    recreated world-readable. Not ``writable``: the tmpfs itself is read-only too. ``owner``:
    the uid that owns the new tmpfs's root (root when None)."""
    keep = minimal(under(keep, directory))
    sources: list[tuple[str, str, Any]] = []
    try:
        for k in keep:
            st = os.lstat(k)
            if stat.S_ISLNK(st.st_mode):
                sources.append((k, "link", os.readlink(k)))
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
                sources.append((k, kind, os.open(k, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)))
        opts = f"mode={mode:o},size={size_mb}m,nr_inodes={inodes}"
        if owner is not None:
            opts += f",uid={owner},gid={owner}"
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, opts, "mount tmpfs")
        for path, kind, src in sources:
            _make_parents(path, directory)
            if kind == "link":
                os.symlink(src, path)
                continue
            if kind == "dir":
                os.mkdir(path, 0o755)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            mount(f"/proc/self/fd/{src}", path, None, MS_BIND | MS_REC, None, "bind the original back")
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None,
                  "make the bound original read-only")
        if not writable:
            mount(None, directory, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None, "make the tmpfs read-only")
    finally:
        for _, kind, src in sources:
            if kind != "link":
                os.close(src)


def _make_parents(path: str, top: str) -> None:
    """Create the missing directories between ``top`` and ``path``, mode 0755 whatever the umask."""
    missing = []
    d = os.path.dirname(path)
    while d != top and not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        os.mkdir(d)
        os.chmod(d, 0o755)


# --------------------------------------------------------------------------- layering


def layer(base: int, target: str, owner: int, *, size_mb: int) -> None:
    """Make ``target`` (a directory to be created, inside a fresh tmpfs) a copy-on-write view
    of the directory open as ``base`` (an ``O_PATH`` descriptor): its files are there, what is
    written lands in a private upper layer, owned by ``owner``. An overlay mount; where the
    kernel has no overlayfs, a copy."""
    stage = os.path.join(os.path.dirname(target), ".trident-layers")
    os.mkdir(stage, 0o700)
    try:
        mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=700,size={size_mb}m,nr_inodes=65536",
              "mount tmpfs for the layers")
        lower, upper, work = (os.path.join(stage, d) for d in ("lower", "upper", "work"))
        for d in (lower, upper, work):
            os.mkdir(d, 0o700)
        mount(f"/proc/self/fd/{base}", lower, None, MS_BIND | MS_REC, None, "bind the group's run directory")
        mount(None, lower, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None,
              "make the group's run directory read-only")
        os.mkdir(target, 0o700)
        try:
            mount("overlay", target, "overlay", MS_NOSUID | MS_NODEV,
                  f"lowerdir={lower},upperdir={upper},workdir={work}", "mount overlay")
        except OSError as err:
            if err.errno != 19:  # ENODEV: no overlayfs in this kernel
                raise
            shutil.copytree(lower, target, symlinks=True, dirs_exist_ok=True)
    finally:
        # The overlay holds its layers itself: the staging mounts go, and nothing of them shows.
        libc().umount2(stage.encode(), MNT_DETACH)
        os.rmdir(stage)
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), owner, owner)
    os.chown(target, owner, owner)
