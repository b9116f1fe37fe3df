"""Observations against plain candidate execution: the same tasks, the same pool, one run.

For each task, the names its prefix binds are observed (``sandbox.observe``: gate, capability
layer, confined child, the observable form read in the child, and every observation confirmed by
a second run under other seeds), and as many candidates — the task's target, each a distinct
text — are executed without mutants (every pass confirmed the same way). Both with the default
``Limits`` at the strongest isolation tier, zygotes warm (each is timed on a second pass, as RL
and evaluation reuse them). Prints observations/s, candidates/s and their ratio, and whether two
passes gave the same observations byte for byte.

    python bench/bench_observe.py --tasks runs/demo/mine/tasks.jsonl --n 60
    python bench/bench_observe.py --n 40                      # mines a few networkx files itself
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sandbox import mined, spread  # noqa: E402

from sandbox.api import Limits  # noqa: E402
from sandbox.observe import bindings  # noqa: E402
from sandbox.pool import Pool  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="tasks (taken evenly across the file)")
    parser.add_argument("--tasks", type=Path, help="task file (default: mine a few networkx files)")
    parser.add_argument("--workers", type=int, default=0, help="pool workers (0: one per core)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trident-bench-") as d:
        from sandbox.tasks import load_tasks

        tasks = spread(load_tasks(args.tasks) if args.tasks else mined(args.n, Path(d)), args.n)
    names = [[b.name for b in bindings(t.prefix)] for t in tasks]
    keep = [i for i, n in enumerate(names) if n]
    observe_items = [(tasks[i], names[i]) for i in keep]
    score_items = [(tasks[i], [tasks[i].target + (f"  # {k}" if k else "") for k in range(len(names[i]))]) for i in keep]
    total = sum(len(n) for _, n in observe_items)
    modules = len({t.test_module for t in tasks})
    with Pool(args.workers, Limits(), max_zygotes=modules + 1) as pool:
        first = pool.observe(observe_items)  # starts the workers and warms every zygote
        pool.score(score_items, mutants=False)
        start = time.perf_counter()
        second = pool.observe(observe_items)
        observe_s = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = pool.score(score_items, mutants=False)
        score_s = time.perf_counter() - start
        tier = pool.tier
    same = json.dumps([[o.to_dict() for o in row] for row in first]) == json.dumps([[o.to_dict() for o in row] for row in second])
    kinds: dict[str, int] = {}
    for row in second:
        for o in row:
            kinds[o.kind] = kinds.get(o.kind, 0) + 1
    passed = sum(v.passed for row in verdicts for v in row)
    print(f"\n{len(keep)} tasks ({modules} test modules), {total} expressions (the names their prefixes bind); "
          f"tier {tier}, everything on, zygotes warm; workers: {args.workers or 'one per core'}")
    print(f"observations: {total / observe_s:8.1f} /s   kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"candidates:   {total / score_s:8.1f} /s   ({passed} of {total} passed)")
    print(f"ratio (observations/s / candidates/s, same tasks and pool): {score_s / observe_s:.2f}x")
    print(f"the same bytes on two passes: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
