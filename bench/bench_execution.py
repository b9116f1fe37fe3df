"""Verified executions per second: the execution core vs one `python -m pytest` per candidate.

Same slots, same run. The core imports each test module once in a zygote and forks a child
per candidate; the baseline writes each slot (prefix + target) as a test file and runs a fresh
`python -m pytest` process on it, as a harness without a zygote would.

    python bench/bench_execution.py                 # 100 slots mined from networkx
    python bench/bench_execution.py --n 50 --tasks runs/default/mine/tasks.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sandbox.api import Limits, execute, shutdown
from sandbox.mining import MineConfig, mine
from sandbox.tasks import Task, load_tasks

DEFAULT_FILES = [
    "algorithms/tests/test_cycles.py",
    "algorithms/tests/test_dag.py",
    "algorithms/tests/test_matching.py",
    "classes/tests/test_function.py",
]


def slots(args: argparse.Namespace, tmp: Path) -> list[Task]:
    if args.tasks:
        return load_tasks(args.tasks)[: args.n]
    out = tmp / "tasks.jsonl"
    print(f"mining {args.n} slots from networkx ({', '.join(DEFAULT_FILES)}) ...", flush=True)
    mine(MineConfig(out=out, files=DEFAULT_FILES, max_tasks=args.n, mutants_per_task=0, max_mutant_tries=0,
                    progress=False))
    return load_tasks(out)


def pytest_file(task: Task, candidate: str) -> str:
    """The slot as a pytest file: the test module's globals, its class for setup, the slot."""
    body = textwrap.indent(task.prefix + "\n" + candidate, " " * (8 if task.test_class else 4))
    head = f"import {task.test_module} as _m\nglobals().update({{k: v for k, v in vars(_m).items() if not k.startswith(('test', '__'))}})\n"
    if task.test_class:
        args = "self, tmp_path" if "tmp_path" in task.prefix else "self"
        return head + f"class TestSlot(_m.{task.test_class}):\n    def {task.test_name}({args}):\n{body}\n"
    args = "tmp_path" if "tmp_path" in task.prefix else ""
    return head + f"def {task.test_name}({args}):\n{body}\n"


def run_baseline(tasks: list[Task], tmp: Path) -> tuple[float, int, list[float]]:
    passed, times = 0, []
    start = time.perf_counter()
    for i, task in enumerate(tasks):
        path = tmp / f"test_slot_{i}.py"
        path.write_text(pytest_file(task, task.target))
        node = f"{path}::TestSlot::{task.test_name}" if task.test_class else f"{path}::{task.test_name}"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                              cwd=tmp, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        passed += proc.returncode == 0
    return time.perf_counter() - start, passed, times


def run_core(tasks: list[Task]) -> tuple[float, int, list[float]]:
    execute(tasks[0], [tasks[0].target], mutants=False)  # start the zygote server (counted below too)
    shutdown()
    passed, times = 0, []
    start = time.perf_counter()
    for task in tasks:
        t0 = time.perf_counter()
        [v] = execute(task, [task.target], mutants=False, limits=Limits(timeout_s=10))
        times.append(time.perf_counter() - t0)
        passed += v.status == "passed"
    return time.perf_counter() - start, passed, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="number of slots")
    parser.add_argument("--tasks", type=Path, help="task file to take slots from (default: mine them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trident-bench-") as d:
        tmp = Path(d)
        tasks = slots(args, tmp)
        n = len(tasks)
        core_s, core_ok, core_t = run_core(tasks)
        base_s, base_ok, base_t = run_baseline(tasks, tmp)
    shutdown()
    core_rate, base_rate = core_ok / core_s, base_ok / base_s
    print(f"\nslots: {n} (targets, which must pass)")
    print(f"{'':24}{'verified/s':>12}{'passed':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for name, rate, ok, t in (("execution core", core_rate, core_ok, core_t), ("pytest per candidate", base_rate, base_ok, base_t)):
        p99 = sorted(t)[min(len(t) - 1, int(0.99 * len(t)))]
        print(f"{name:24}{rate:12.1f}{ok:8d}{1000 * statistics.median(t):9.1f}{1000 * p99:9.1f}")
    print(f"\nratio (core / pytest per candidate, verified executions per second): {core_rate / base_rate:.1f}x")
    print("(the core's time includes starting its zygote server and importing each test module once)")


if __name__ == "__main__":
    main()
