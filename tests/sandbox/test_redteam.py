"""Red team: hostile candidates earn no pass and no kill, and the host and the pool survive them.

Each hostile candidate runs in the slot of a real mined networkx task with mutants, through
the same path as RL scoring (static gate, isolation, mutant zygotes), on one worker, followed
by the task's own target, which must still pass and kill exactly its mutants. A second pass
runs the process-level attacks with the gate switched off, to show what the isolation holds
on its own. Afterwards no file outside the sandbox's temporary directories has changed and no
sandbox process is left.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import networkx
import pytest

from sandbox.api import Limits, execute_on, server_for, shutdown
from sandbox.isolation import sandbox_processes
from sandbox.redteam import HOSTILE, PLANTED, REACHING, UNGATED

NX_DIR = Path(networkx.__file__).parent
SECRET = "trident-red-team-secret-4b1d"



def test_known_good_targets_pass_and_kill_their_mutants(tasks):
    from sandbox.pool import Pool

    with Pool(workers=2) as pool:
        rows = pool.score([(t, [t.target]) for t in tasks])
        assert pool.tier in ("rlimits", "namespaces")
    bad = [(t.id, v.status, v.reason[:80]) for t, [v] in zip(tasks, rows)
           if v.status != "passed" or set(v.kills) != {m.id for m in t.mutants}]
    assert not bad


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "id_rsa"
    path.write_text(SECRET)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def _snapshot() -> dict[str, tuple[int, int]]:
    """Size and mtime of every file in the library, in the shared scratch places a child could
    write to, and in the working directory (not /tmp, which other processes change all the
    time; a child there has only its own directory, removed after it)."""
    seen = {}
    for root in (NX_DIR, Path("/var/tmp"), Path("/dev/shm"), Path.cwd()):
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            # Temporary directories of this test session and of other tools come and go.
            dirnames[:] = [d for d in dirnames if not d.startswith(("pytest-", "trident-", "tmp")) and d not in ("__pycache__", ".git", ".pytest_cache")]
            for f in filenames:
                if f.startswith(("trident-", "pytest-", "tmp")):  # other tests' logs and temp files
                    continue
                p = os.path.join(dirpath, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                seen[p] = (st.st_size, st.st_mtime_ns)
    return seen


def _run_all(task, secret_file, limits, table, allowed_for):
    os.environ["TRIDENT_RED_TEAM"] = SECRET  # the client has a secret; the sandbox must not
    try:
        server = server_for(task.package, limits)
        before = _snapshot()
        baseline = execute_on(server, task, [task.target], mutants=True, limits=limits)[0]
        assert baseline.status == "passed" and set(baseline.kills) == {m.id for m in task.mutants}, baseline
        problems = []
        for name, cand in table:
            cand = cand.replace("{secret_file}", str(secret_file))
            v = execute_on(server, task, [cand], mutants=True, limits=limits)[0]
            if v.status not in allowed_for(name) or v.kills:
                problems.append(f"{name}: {v.status} ({v.reason[:120]}) kills={v.kills}")
            if v.status == "rejected" and not v.reason:
                problems.append(f"{name}: rejected without a reason")
            after = execute_on(server, task, [task.target], mutants=True, limits=limits)[0]
            if after.status != "passed" or after.kills != baseline.kills:
                problems.append(f"{name}: the next candidate got {after.status} kills={after.kills}")
        assert not problems, "\n".join(problems)
        assert server.alive()
        changed = {p for p, s in _snapshot().items() if before.get(p, s) != s} | (set(_snapshot()) - set(before))
        assert not changed, sorted(changed)[:10]
        deadline = time.monotonic() + 5
        while sandbox_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not sandbox_processes()
    finally:
        os.environ.pop("TRIDENT_RED_TEAM", None)
        shutdown()
        planted = NX_DIR / PLANTED
        if planted.exists():  # reported by the snapshot above; never left in the library
            planted.unlink()


def test_hostile_candidates_earn_nothing_through_the_gate(task, secret_file):
    allowed = {name: statuses for name, _, statuses in HOSTILE}
    assert len(HOSTILE) >= 30
    _run_all(task, secret_file, Limits(timeout_s=3, mutant_timeout_s=3), [(n, c) for n, c, _ in HOSTILE],
             lambda name: allowed[name])


def test_the_capability_layer_alone_refuses_what_the_library_reaches(task, secret_file):
    """The second round's attacks with the static gate off: each is refused when it reaches a
    denied module, value or callable, and the reason names the path it took."""
    limits = Limits(timeout_s=3, mutant_timeout_s=3, gate=False)
    table = [(n, c) for n, c, _ in HOSTILE if n in REACHING]
    assert len(table) == len(REACHING)
    _run_all(task, secret_file, limits, table, lambda name: {"rejected"})
    server = server_for(task.package, limits)
    try:
        verdicts = execute_on(server, task, [c for _, c in table], mutants=False, limits=limits)
    finally:
        shutdown()
    vague = [(n, v.reason) for (n, _), v in zip(table, verdicts) if not v.reason.startswith("capability:")]
    assert not vague, vague


@pytest.mark.skipif(os.geteuid() != 0, reason="the isolation tiers beyond rlimits need root")
def test_isolation_alone_holds_the_process_level_attacks(task, secret_file):
    limits = Limits(timeout_s=3, mutant_timeout_s=3, gate=False, capabilities=False, min_tier="namespaces")
    server = server_for(task.package, limits)
    [who] = execute_on(server, task, ["import os\nassert os.getuid() == 0"], mutants=False, limits=limits)
    # Always a uid of its own, wherever the library is installed (docs/sandbox.md).
    assert who.status == "failed", (who.status, who.reason, server.tier_failures)
    _run_all(task, secret_file, limits, [(n, c) for n, c, _ in HOSTILE if n in UNGATED], UNGATED.__getitem__)


def _without_sys_admin() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(24, 21, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_ADMIN: gone after exec


def test_min_tier_above_what_the_machine_gives_is_one_clear_error():
    if os.geteuid() != 0:
        pytest.skip("as a user without privileges the namespaces tier is unavailable anyway; tested as root")
    code = ("import sys; from sandbox.api import Limits, server_for\n"
            "try:\n    server_for('networkx', Limits(min_tier='namespaces'))\n"
            "except Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       preexec_fn=_without_sys_admin)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "SandboxError" in r.stdout and "below min_tier 'namespaces'" in r.stdout and "lower min_tier" in r.stdout


def test_a_dead_worker_gives_infra_then_a_retry_on_a_fresh_one(task):
    from sandbox.pool import Pool

    with Pool(workers=1, limits=Limits(timeout_s=3)) as pool:
        [[first]] = pool.score([(task, [task.target])], mutants=False)
        assert first.status == "passed"
        os.kill(pool.server(0, task.package).proc.pid, signal.SIGKILL)
        [[again]] = pool.score([(task, [task.target])], mutants=False)
        assert again.status == "passed" and pool.restarts == 1
