"""One RL learner update: minibatches of whole task groups against minibatches of shuffled
samples (the baseline, how the learner split a batch before), same batch, same run.

One rollout of ``--tasks-per-iteration`` training tasks with mutants from the SFT model with the
rollout settings of ``configs/rl.yaml`` (every start of a task once), rewards drawn from a seeded
generator in [0, 1] (the update's cost does not depend on their values; the sandbox is not run).
Then, alternating, ``--repeats`` updates of a fresh learner (``configs/rl.yaml``'s learner) with
each way of splitting. A task's start candidates are re-scored (forward and backward) by every
minibatch that holds one of its samples: with shuffled samples a task falls into about 2.7 of a
batch's 4 minibatches, with whole groups into one. Printed: seconds per update of each and the
ratio, and the optimizer steps of each.

    python bench/bench_learner_minibatch.py                     # the default SFT model
    python bench/bench_learner_minibatch.py --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def sample_minibatches(groups, rows, size: int, rng: random.Random):
    """The baseline: the samples shuffled one by one and cut every ``size``."""
    import torch

    order = rows.tolist()
    rng.shuffle(order)
    return [torch.tensor(sorted(order[lo:lo + size])) for lo in range(0, len(order), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/default/sft/final"), help="SFT model directory")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--tasks-per-iteration", type=int, default=32, help="tasks in the batch")
    parser.add_argument("--repeats", type=int, default=2, help="updates timed for each way")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch

    import rl.learner as learner_module
    from rl.config import RLConfig
    from rl.learner import Learner
    from rl.rollout import RolloutWorker
    from sandbox.tasks import load_tasks
    from trident.config import load_config

    cfg = load_config(RLConfig, ROOT / "configs" / "rl.yaml", overrides=[f"model={args.model}", f"tasks={args.tasks}"])
    train = load_tasks(args.tasks, "train")
    tasks = [t for t in train if t.mutants][:args.tasks_per_iteration]
    worker = RolloutWorker(str(args.model), cfg.rollout, train, threads=args.threads)
    t0 = time.perf_counter()
    ro = worker.rollout(tasks, iteration=0, seed=0)
    print(f"rollout: {len(ro)} samples of {len(tasks)} tasks in {time.perf_counter() - t0:.1f} s")
    rewards = torch.rand(len(ro), generator=torch.Generator().manual_seed(0))

    lcfg = cfg.learner
    lcfg.threads = args.threads
    grouped = learner_module.group_minibatches
    ways = {"shuffled samples (baseline)": sample_minibatches, "whole task groups": grouped}
    times: dict[str, list[float]] = {name: [] for name in ways}
    steps: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, split in ways.items():
            learner_module.group_minibatches = split
            learner = Learner(str(args.model), lcfg, seed=0)
            t0 = time.perf_counter()
            metrics = learner.train([ro], [rewards])
            times[name].append(time.perf_counter() - t0)
            steps[name] = metrics["rl/optimizer_steps"]
    learner_module.group_minibatches = grouped
    base = statistics.median(times["shuffled samples (baseline)"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:28s} {t:6.1f} s per update ({len(ts)} runs, median), {steps[name]:.0f} optimizer steps, "
              f"ratio to the baseline {t / base:.2f}x")


if __name__ == "__main__":
    main()
