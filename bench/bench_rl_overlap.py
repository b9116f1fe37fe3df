"""How long the RL learner waits for data, with overlap on and off (the baseline), same run.

Two short `trident rl` runs from the same SFT model on the same tasks and seeds — one producing
iteration k+1 (rollouts and sandbox rewards) while the learner trains on k, one doing them in
turn — on one local Ray. Printed per run: the time split per iteration (rollout, reward, learn,
learner wait) and the learner's wait as a share of wall time, then the ratios on/off. The target
is a learner wait of at most 20 % of wall time with overlap on.

    python bench/bench_rl_overlap.py                      # the default SFT model, 6 iterations each
    python bench/bench_rl_overlap.py --iterations 10 --out runs/bench/overlap

The learner's wait in an iteration is its wall time minus the learner's own time in ``train``;
the first iteration (Ray and zygote start-up, no overlap possible yet) is left out of the sums.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def split(folder: Path) -> dict[str, float]:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()][1:]
    total = {k: sum(r.get(k) or 0.0 for r in rows) for k in
             ("time/iteration_s", "time/rollout_s", "time/reward_s", "time/learn_s", "time/wait_s")}
    n = max(1, len(rows))
    out = {k.split("/")[1]: v / n for k, v in total.items()}
    out["wait_share"] = total["time/wait_s"] / total["time/iteration_s"] if total["time/iteration_s"] else float("nan")
    out["samples_per_s"] = sum(r.get("rl/samples") or 0.0 for r in rows) / total["time/iteration_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/default/sft/final"), help="SFT model directory")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--iterations", type=int, default=6, help="iterations per run (the first is not counted)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/rl_overlap"), help="scratch folder (replaced)")
    args = parser.parse_args()

    import ray

    from rl.config import RLConfig
    from rl.driver import run
    from trident.config import load_config

    shutil.rmtree(args.out, ignore_errors=True)
    config = Path(__file__).resolve().parents[1] / "configs" / "rl.yaml"
    actors = load_config(RLConfig, config).actors  # one CPU each
    ray.init(address="local", num_cpus=max(actors, os.cpu_count() or 1), include_dashboard=False)
    results = {}
    for name, overlap in (("overlap off", False), ("overlap on", True)):
        cfg = load_config(RLConfig, config,
                          overrides=[f"model={args.model}", f"tasks={args.tasks}", f"out={args.out / name.replace(' ', '-')}",
                                     f"iterations={args.iterations}", "max_minutes=null", f"overlap={str(overlap).lower()}",
                                     "progress=false", f"checkpoint_every={args.iterations}"])
        run(cfg)
        results[name] = split(cfg.out)
    ray.shutdown()
    print(f"\nper iteration (s), iterations 2..{args.iterations}:")
    print(f"{'':<12} {'wall':>6} {'rollout':>8} {'reward':>7} {'learn':>6} {'wait':>6} {'wait share':>11} {'samples/s':>10}")
    for name, r in results.items():
        print(f"{name:<12} {r['iteration_s']:6.1f} {r['rollout_s']:8.1f} {r['reward_s']:7.1f} {r['learn_s']:6.1f} "
              f"{r['wait_s']:6.1f} {100 * r['wait_share']:10.1f}% {r['samples_per_s']:10.2f}")
    on, off = results["overlap on"], results["overlap off"]
    print(f"\nwall per iteration on/off: {on['iteration_s'] / off['iteration_s']:.2f}x; "
          f"learner wait share on: {100 * on['wait_share']:.1f}% (target <= 20%), off: {100 * off['wait_share']:.1f}%")


if __name__ == "__main__":
    main()
