"""The sandbox pool against a fresh `python -m pytest` process per candidate, same candidates.

The candidates are the targets of mined tasks (so every one must pass, and under its task's
mutants kill exactly the mutants mining kept: any difference is verdict drift). One run
measures, on the same candidates:

* the pool at each isolation tier (``none``, ``rlimits``, ``namespaces``) without mutants,
  with the capability layer on and every pass confirmed by a second run in the other server
  (both runs counted, as RL pays for them): candidates per second and the per-candidate time
  from fork to verdict (p50, p99); and the floor, tier ``none`` with the capability layer and
  the confirmation off, for the ratio of everything on to nothing on;
* the pool at the strongest tier with mutants: scored candidates per second (each costs 1 + M
  executions) and the drift count;
* with ``--per-task k``, each task's target k times, each a distinct text (a group of samples
  per prompt, as in RL): the group runs setup and prefix once and forks each candidate from there;
* with ``--warm``, the second of two passes over the same tasks (zygotes kept, as RL keeps
  them from one iteration to the next);
* the baseline: each slot written as a test file and run by a fresh `python -m pytest`
  (on the first ``--baseline-n`` candidates; the ratio compares rates).

    python bench/bench_sandbox.py --tasks runs/default/mine/tasks.jsonl        # 500 candidates
    python bench/bench_sandbox.py --n 100 --baseline-n 30                       # mines its own
    python bench/bench_sandbox.py --tasks T --n 63 --per-task 8 --warm          # RL's shape
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_execution import DEFAULT_FILES, run_baseline  # noqa: E402  (the same pytest baseline as there)

from sandbox.api import Limits  # noqa: E402
from sandbox.isolation import TIERS  # noqa: E402
from sandbox.pool import Pool  # noqa: E402
from sandbox.tasks import Task  # noqa: E402


def spread(tasks: list[Task], n: int) -> list[Task]:
    """``n`` tasks taken evenly across the file (many test modules, not the first few)."""
    if len(tasks) <= n:
        return tasks
    step = len(tasks) / n
    return [tasks[int(i * step)] for i in range(n)]


def run_pool(tasks: list[Task], tier: str, workers: int, mutants: bool, per_task: int = 1, warm: bool = False,
             layers: bool = True) -> dict:
    limits = Limits(tier=tier, min_tier=tier, timeout_s=10, mutant_timeout_s=10, capabilities=layers, confirm=layers)
    # Distinct texts (the target, then with a comment), as a group of samples mostly is: the
    # same text twice could be compiled once, which would flatter the figure.
    items = [(t, [t.target + (f"  # sample {k}" if k else "") for k in range(per_task)]) for t in tasks]
    modules = len({t.test_module for t in tasks})
    with Pool(workers, limits, max_zygotes=modules + 1 if warm else 8) as pool:
        pool.score([(tasks[0], [tasks[0].target])], mutants=False)  # start the workers
        if warm:  # as RL reuses zygotes from one iteration to the next: time the second pass
            pool.score(items, mutants=mutants)
        start = time.perf_counter()
        rows = pool.score(items, mutants=mutants)
        wall = time.perf_counter() - start
        got = pool.tier
    verdicts = [v for row in rows for v in row]
    passed = sum(v.status == "passed" for v in verdicts)
    drift = sorted({t.id for t, row in zip(tasks, rows) for v in row
                    if v.status != "passed" or (mutants and set(v.kills) != {m.id for m in t.mutants})})
    secs = sorted(v.seconds for v in verdicts)
    return {"tier": got, "rate": len(verdicts) / wall, "passed": passed, "drift": drift, "wall": wall,
            "p50": statistics.median(secs), "p99": secs[min(len(secs) - 1, int(0.99 * len(secs)))],
            "executions": per_task * sum(1 + (len(t.mutants) if mutants else 0) for t in tasks)}


def baseline(tasks: list[Task], tmp: Path) -> dict:
    wall, passed, times = run_baseline(tasks, tmp)
    times.sort()
    return {"rate": len(tasks) / wall, "passed": passed, "p50": statistics.median(times),
            "p99": times[min(len(times) - 1, int(0.99 * len(times)))]}


def mined(n: int, tmp: Path) -> list[Task]:
    from sandbox.mining import MineConfig, mine
    from sandbox.tasks import load_tasks

    out = tmp / "tasks.jsonl"
    print(f"mining {n} tasks from networkx ({', '.join(DEFAULT_FILES)}) ...", flush=True)
    mine(MineConfig(out=out, files=DEFAULT_FILES, max_tasks=n, progress=False))
    return load_tasks(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="number of candidates (targets of distinct tasks)")
    parser.add_argument("--tasks", type=Path, help="task file (default: mine a few networkx files)")
    parser.add_argument("--workers", type=int, default=0, help="pool workers (0: one per core)")
    parser.add_argument("--baseline-n", type=int, default=None, help="candidates for the pytest baseline (default: all)")
    parser.add_argument("--per-task", type=int, default=1,
                        help="candidates per task, as RL samples a group per prompt (the target, repeated)")
    parser.add_argument("--warm", action="store_true",
                        help="time a second pass over the same tasks, every module zygote kept from the first "
                             "(RL's steady state); default: the first pass, zygotes started as they are needed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trident-bench-") as d:
        tmp = Path(d)
        from sandbox.tasks import load_tasks

        tasks = spread(load_tasks(args.tasks) if args.tasks else mined(args.n, tmp), args.n)
        n = len(tasks)
        floor = run_pool(tasks, "none", args.workers, False, args.per_task, args.warm, layers=False)
        results = {tier: run_pool(tasks, tier, args.workers, False, args.per_task, args.warm) for tier in TIERS}
        best = results["namespaces"]["tier"] or "namespaces"
        scored = run_pool(tasks, best, args.workers, True, args.per_task, args.warm)
        base = baseline(tasks[: args.baseline_n or n], tmp)
    print(f"\ncandidates: {n} targets of mined tasks ({len({t.test_module for t in tasks})} test modules) x {args.per_task} "
          f"per task; pool workers: {args.workers or 'one per core'}; zygotes: {'warm (second pass)' if args.warm else 'cold'}")
    print(f"{'':58}{'cand/s':>9}{'passed':>8}{'p50 ms':>9}{'p99 ms':>9}")
    rows = [("pool, tier none, capability layer and confirmation off", floor)]
    rows += [(f"pool, tier {r['tier']}, everything on", r) for r in results.values()]
    for label, r in rows:
        print(f"{label:58}{r['rate']:9.1f}{r['passed']:8d}{1000 * r['p50']:9.1f}{1000 * r['p99']:9.1f}")
    print(f"{'pytest per candidate':58}{base['rate']:9.1f}{base['passed']:8d}{1000 * base['p50']:9.1f}{1000 * base['p99']:9.1f}")
    top = results["namespaces"]
    print(f"\nratio (pool at tier {top['tier']}, everything on / pytest per candidate, candidates per second): "
          f"{top['rate'] / base['rate']:.1f}x")
    print(f"ratio (everything on at tier {top['tier']} / tier none with the same layers): "
          f"{top['rate'] / results['none']['rate']:.2f}x; (/ tier none, capability layer and confirmation off): "
          f"{top['rate'] / floor['rate']:.2f}x")
    cost = {t: 1000 / r["rate"] - 1000 / results["none"]["rate"] for t, r in results.items() if t != "none"}
    print("cost of isolation per candidate (wall ms per candidate over tier none, all workers): "
          + ", ".join(f"{t} {c:+.2f}" for t, c in cost.items()))
    print(f"\nwith mutants (tier {scored['tier']}): {scored['rate']:.1f} scored candidates/s, "
          f"{scored['executions'] / scored['wall']:.1f} executions/s ({scored['executions']} executions)")
    print(f"verdict drift (target not passing, or kills != the task's mutants): {len(scored['drift'])}"
          + (f", e.g. {scored['drift'][:3]}" if scored["drift"] else ""))


if __name__ == "__main__":
    main()
