"""Under a mutant, nothing outside the mutated function tells a candidate that one is active.

Probes read everything a candidate could compare — the recursion it has left (the stack's
depth), the environment, argv, the working directory and the files in its /tmp, the open file
descriptors, its process ids, module state — under the original library and under each of a
task's mutants, and must read the same values everywhere. The probes run with the static gate
and the capability layer off (so they can read what those layers would refuse: this is the
process layer's promise), and once more through the capability layer, where the stack depth is
all a candidate can measure.
"""

from __future__ import annotations

import pytest

from sandbox.api import Limits, server_for, shutdown
from sandbox.mining import MineConfig, mine
from sandbox.tasks import load_tasks
from sandbox.zygote import job_for

# Each probe fails with the value it read as its message.
PROBES = {
    "recursion left": (
        "ns = {}\nexec('def r(c):\\n    c[0] += 1\\n    r(c)', ns)\nc = [0]\n"
        "try:\n    ns['r'](c)\nexcept RecursionError:\n    pass\nassert c[0] is None, str(c[0])"),
    "environment": "import os\nv = repr(sorted(os.environ.items()))\nassert v is None, v",
    "argv": "import sys\nv = repr(sys.argv)\nassert v is None, v",
    "cwd and /tmp": "import os\nv = repr((os.getcwd(), sorted(os.listdir('/tmp')), sorted(os.listdir('.'))))\nassert v is None, v",
    "file descriptors": "import os\nv = repr(sorted(os.listdir('/proc/self/fd')))\nassert v is None, v",
    "process ids": "import os\nv = repr((os.getpid(), os.getppid(), os.getpgrp(), os.getuid() > 0))\nassert v is None, v",
    "modules": "import sys, hashlib\nv = hashlib.sha1(repr(sorted(sys.modules)).encode()).hexdigest()\nassert v is None, v",
    "random state": "import random, hashlib\nv = hashlib.sha1(repr(random.getstate()).encode()).hexdigest()\nassert v is None, v",
    "recursion limit": "import sys\nv = repr(sys.getrecursionlimit())\nassert v is None, v",
}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine") / "tasks.jsonl"
    mine(MineConfig(out=out, files=["algorithms/tests/test_cycles.py"], workers=1, max_tasks=40, progress=False))
    tasks = [t for t in load_tasks(out) if len(t.mutants) >= 2 and "G = " in t.prefix]
    return max(tasks, key=lambda t: len(t.mutants))


def _read(server, task, candidate: str, guard: bool, alone: bool) -> list[tuple[str, str]]:
    """(status, reason) of ``candidate`` on the original and under each mutant; ``alone``: one
    job per request (a test run whole), else beside a twin (a group forked from one prefix)."""
    seen = []
    for mutant in [None, *task.mutants]:
        jobs = [job_for(task, candidate, timeout=10, mutant=mutant, guard=guard)]
        if not alone:
            jobs.append(job_for(task, candidate + "\n", timeout=10, mutant=mutant, guard=guard))
        seen.append([(v.status, v.reason) for v in server.run(task.test_module, jobs)])
    return [row[0] for row in seen] + [row[-1] for row in seen]


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "group"])
def test_probes_read_the_same_values_under_every_mutant(task, alone):
    limits = Limits(gate=False, capabilities=False, confirm=False)
    server = server_for(task.package, limits)
    try:
        differ = {}
        for name, probe in PROBES.items():
            values = _read(server, task, probe, guard=False, alone=alone)
            assert all(status == "failed" for status, _ in values), (name, values[:2])
            if len({reason for _, reason in values}) != 1:
                differ[name] = sorted({reason[:200] for _, reason in values})
        assert not differ, differ
    finally:
        shutdown()


def test_recursion_through_the_capability_layer_ends_at_the_same_depth(task):
    """A guarded candidate measures depth the only way it can, by recursing until it cannot:
    the deepest recursion that passes is the same on the original, under each mutant, alone
    and in a group."""
    limits = Limits(gate=False, confirm=False)
    server = server_for(task.package, limits)

    def passes(n: int) -> list[str]:
        cand = f"r = lambda n: n == 0 or r(n - 1)\nassert r({n})"
        return [status for status, _ in _read(server, task, cand, guard=True, alone=True)
                + _read(server, task, cand, guard=True, alone=False)]

    try:
        lo, hi = 1, 1000  # passes at lo on the original alone; not at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid)[0] == "passed":
                lo = mid
            else:
                hi = mid
        assert set(passes(lo)) == {"passed"}
        assert "passed" not in set(passes(hi))
    finally:
        shutdown()
