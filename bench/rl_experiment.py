"""The RL experiment: from the default SFT model, RL runs of 18.5 minutes each (under 20 with
start-up) on 2 cores, compared with the SFT model on the valid split (pass and kill rates,
bootstrap 95 % intervals). The variants:

- ``gae-critic``: GAE with the critic as value, critic remasking, every training task, the reward
  0.5 pans + 0.5 kill;
- ``group-critic``: the same with the critic-free ``group`` advantage;
- ``gae-confidence``: ``gae-critic``, but rollouts remask by the generator's confidence;
- ``group-kill``: ``group-critic`` with the reward weighing kill 0.75 and pans 0.25;
- ``group-mutants``: ``group-critic`` trained only on the tasks with mutants (every group can
  earn kill reward);
- ``group-mutants-kill``: both: tasks with mutants only, kill 0.75 and pans 0.25;
- ``groupmean-mutants-kill``: the same with ``group_mean`` (no division by a group's std, so a
  group that differs in kill moves the policy 3x as much as one that differs in pans only), each
  sample's start drawn from the policy;
- ``all-starts``: configs/rl.yaml as it was until ``flat-start``: ``groupmean-mutants-kill`` with
  every candidate start of a task taken once (``rollout.start_draw=all``), its term weighted by π;
- ``split-credit``: ``all-starts`` with ``learner.credit=split``: each start is also run as it
  was, the start choice's advantage is that run's reward against the task's other starts, and the
  denoising steps' advantage is what their edits changed, ``R - R(start)``;
- ``value-light``: ``all-starts`` with ``learner.value_coef=0.05``: the value head's BCE, whose
  gradient in the shared trunk is half the policy's at 0.5 (bench/bench_rl_gradients.py), weighs a
  tenth as much;
- ``top-layers``: ``all-starts`` with ``learner.train_layers=2``: the
  embeddings (tied to the output projection) and the lower 2 of the 4 layers keep the SFT weights;
- ``select``: ``all-starts`` with ``select_tasks=256`` and a checkpoint every 8 iterations: whole
  test files of at least 256 training tasks held out, and ``final/`` the checkpoint whose greedy
  pass + kill rate on them is highest (on 2 cores the held-out files did not predict the valid
  split: docs/rl.md, "Choosing the checkpoint, on the valid split");
- ``flat-start``: configs/rl.yaml as it is: the start choice alone (no denoising edits) among a
  task's 8 most likely candidates, each taken once, at ``start_temperature`` 4.

The variants before ``flat-start`` edit their starts (4 candidates, ``mask_share`` 0.1, start
temperature 1) and train every layer, as they were measured; those before ``all-starts`` draw their
starts.

    python bench/rl_experiment.py                    # all thirteen, about 4 h 30 min; in runs/rlexp/ (compare.json, compare.txt)
    python bench/rl_experiment.py --only gae-critic group-critic   # some of them
    python bench/rl_experiment.py --max-tasks 200    # a shorter evaluation

Each run is `trident rl --config configs/rl.yaml out=runs/rlexp/NAME ...`; a run whose folder
already holds ``final/`` is not run again. Runs go one after another (each needs the 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# Against configs/rl.yaml (group_mean, tasks with mutants only, 0.25 pans + 0.75 kill, every start once). Every
# variant but top-layers pins every layer trained, and every one before flat-start the edits of 4 starts at
# temperature 1, as they were measured.
EVERY_TASK = "mutants_only=false"
EQUAL = "rewards.components=[{name: pans, weight: 0.5}, {name: kill, weight: 0.5}]"
EDITS = ["rollout.samples=4", "rollout.start_top=4", "rollout.start_temperature=1", "rollout.mask_share=0.1",
         "rollout.sampler.edit_threshold=0.05", "learner.minibatch=32"]
ALL = "learner.train_layers=0"
MEASURED = [ALL, *EDITS]  # the variants before flat-start, as they were measured
VARIANTS = {
    "gae-critic": [*MEASURED, "learner.advantage=gae", "rollout.start_draw=sample", EVERY_TASK, EQUAL],
    "group-critic": [*MEASURED, "learner.advantage=group", "rollout.start_draw=sample", EVERY_TASK, EQUAL],
    "gae-confidence": [*MEASURED, "learner.advantage=gae", "rollout.sampler.remask=confidence", "rollout.start_draw=sample",
                       EVERY_TASK, EQUAL],
    "group-kill": [*MEASURED, "learner.advantage=group", "rollout.start_draw=sample", EVERY_TASK],
    "group-mutants": [*MEASURED, "learner.advantage=group", "rollout.start_draw=sample", EQUAL],
    "group-mutants-kill": [*MEASURED, "learner.advantage=group", "rollout.start_draw=sample"],
    "groupmean-mutants-kill": [*MEASURED, "rollout.start_draw=sample"],  # configs/rl.yaml as it was measured first
    "all-starts": [*MEASURED],  # configs/rl.yaml before flat-start: every candidate start of a task once, weighted by π
    "split-credit": [*MEASURED, "learner.credit=split"],  # the start credited with its own run, the edits with their change
    "value-light": [*MEASURED, "learner.value_coef=0.05"],  # the value's gradient in the shared trunk a tenth as strong
    "top-layers": ["learner.train_layers=2", *EDITS],  # only the top 2 of 4 layers and the heads learn
    # final/ is the checkpoint (every 8 iterations) best on 256+ held-out training tasks' greedy pass + kill
    "select": [*MEASURED, "select_tasks=256", "checkpoint_every=8"],
    "flat-start": [ALL],  # configs/rl.yaml as it is: the start choice alone among 8, at start temperature 4
}


def summarize(out: Path, names: list[str]) -> str:
    """Per run: iterations in the budget, the training reward and pass/kill rates of the first and
    last ten iterations, the mean ``start/greedy_gain`` (the reward of the policy's most likely
    start minus the SFT model's, on each iteration's tasks before it learns from them), and the
    time split (per iteration, the first left out)."""
    import json

    lines = [f"{'run':<16} {'iters':>5} {'reward first10 -> last10':>26} {'pass':>13} {'kill':>13} "
             f"{'greedy gain':>11} {'rollout':>7} {'reward':>6} {'learn':>6} {'wait':>5} {'wait share':>10}"]
    for name in names:
        rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]

        def mean(key: str, part: list[dict]) -> float:
            xs = [r[key] for r in part if r.get(key) is not None]
            return sum(xs) / len(xs) if xs else float("nan")

        first, last, timed = rows[:10], rows[-10:], rows[1:]
        wall = sum(r["time/iteration_s"] for r in timed)
        lines.append(
            f"{name:<16} {len(rows):>5} {mean('rewards/trident/mean', first):>12.3f} -> {mean('rewards/trident/mean', last):.3f}"
            f"      {mean('rl/pass_rate', first):.3f}->{mean('rl/pass_rate', last):.3f} "
            f"{mean('rl/kill_rate', first):.3f}->{mean('rl/kill_rate', last):.3f} "
            f"{mean('start/greedy_gain', rows):+11.3f} "
            f"{mean('time/rollout_s', timed):7.1f} {mean('time/reward_s', timed):6.1f} {mean('time/learn_s', timed):6.1f} "
            f"{mean('time/wait_s', timed):5.1f} {100 * sum(r['time/wait_s'] for r in timed) / wall:9.1f}%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rlexp"), help="folder of the runs and the comparison")
    parser.add_argument("--sft", type=Path, default=Path("runs/default/sft/final"), help="SFT model to start from")
    parser.add_argument("--minutes", type=float, default=18.5, help="wall-time budget of each run")
    parser.add_argument("--max-tasks", type=int, default=None, help="evaluate on at most this many valid tasks")
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), help="variants to run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (task order, sampling, learner)")
    args = parser.parse_args()
    for name in args.only:
        out = args.out / name
        if (out / "final" / "trident_model.json").is_file():
            print(f"{name}: done ({out / 'final'})")
            continue
        cmd = [sys.executable, "-m", "trident", "rl", "--config", "configs/rl.yaml", f"model={args.sft}", f"out={out}",
               f"max_minutes={args.minutes}", "iterations=1000", "progress=false", f"seed={args.seed}", *VARIANTS[name]]
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    cmd = [sys.executable, "-m", "rl.evaluate", "--model", f"sft={args.sft}",
           *[x for name in args.only for x in ("--model", f"{name}={args.out / name / 'final'}")],
           "--out", str(args.out / "compare.json")]
    if args.max_tasks:
        cmd += ["--max-tasks", str(args.max_tasks)]
    print(" ".join(cmd[1:]), flush=True)
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    table = summarize(args.out, args.only)
    print(table + "\n\n" + result.stdout)
    (args.out / "compare.txt").write_text(table + "\n\n" + result.stdout)


if __name__ == "__main__":
    main()
