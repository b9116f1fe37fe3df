"""Where the learner's gradient comes from: the norms of its three parts on real batches.

One update of ``configs/rl.yaml``'s learner on a batch sums three gradients in the shared trunk:
the denoising steps' PPO term, the start choice's PPO term, and ``value_coef`` times the value
head's BCE toward R. This samples batches of training tasks with the configured rollout, runs
them in the sandbox (real rewards), and splits one minibatch's gradient into those parts (the
optimizer is not stepped and nothing clipped, so every batch is measured at the SFT weights):

- value = g(value_coef) - g(0); start = g with the start column's advantages - g without them;
  steps = the rest. The KL term is 0 at the reference, so it adds nothing here.

Prints each part's norm per batch and the means, their cosines, and the value part's norm over
the policy parts' (the ratio ``value_coef`` scales linearly).

    python bench/bench_rl_gradients.py                      # 4 batches of 8 tasks, about 3 min on 2 cores
    python bench/bench_rl_gradients.py --batches 8 learner.value_coef=0.05
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch


def flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.detach().flatten().cpu()
                      for p in model.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/rl.yaml"))
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8, help="tasks per batch (one minibatch: 8 x 4 samples = 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="configuration overrides")
    args = parser.parse_args()

    from rewards.composition import Composition
    from rl.config import RLConfig
    from rl.learner import Learner
    from rl.rewarding import SandboxWorker, compose
    from rl.rollout import RolloutWorker
    from sandbox.tasks import load_tasks
    from trident.config import load_config

    cfg = load_config(RLConfig, args.config, args.overrides)
    torch.set_num_threads(cfg.learner.threads)
    pool = [t for t in load_tasks(cfg.tasks) if t.split == "train"]
    train = [t for t in pool if t.mutants] if cfg.mutants_only else pool
    rng = random.Random(args.seed)
    worker = RolloutWorker(str(cfg.model), cfg.rollout, pool)
    learner = Learner(str(cfg.model), cfg.learner)
    learner.opt.step = lambda *a, **k: None  # measure at the SFT weights, batch after batch
    learner.cfg.grad_clip = 0.0  # clipping would rescale each part by the whole's norm
    composition = Composition.from_config(cfg.rewards)
    sandbox = SandboxWorker()
    coef = cfg.learner.value_coef
    rows = []
    print(f"{'batch':>5} {'steps':>7} {'start':>7} {'value':>7} {'value/policy':>12} {'cos(steps,start)':>16} "
          f"{'cos(value,policy)':>17} {'reward':>6}")
    for b in range(args.batches):
        tasks = rng.sample(train, args.tasks)
        ro = worker.rollout(tasks, iteration=b, seed=args.seed * 1000 + b)
        per_task = [(t, [x for x, tid in zip(ro.texts, ro.task_ids) if tid == t.id]) for t in tasks]
        verdicts = [v for t, texts in per_task for v in sandbox.score(t, texts, composition.mutants)]
        rewards, _, _ = compose(composition, [t for t, texts in per_task for _ in texts],
                                [x for _, texts in per_task for x in texts], verdicts)
        (adv, mask), = learner.advantages([ro], [rewards])
        idx = torch.nonzero(mask.any(-1)).flatten()
        with torch.no_grad():
            ref = learner._start_log_probs(learner.reference, ro.start, torch.arange(len(ro)))[0].float() \
                if ro.start is not None else None

        def grad(a: torch.Tensor, value_coef: float) -> torch.Tensor:
            learner.cfg.value_coef = value_coef
            learner._minibatch(ro, rewards, a, mask, idx, ref)
            return flat_grad(learner.policy)

        no_start = adv.clone()
        if ro.start is not None:
            no_start[:, 0] = 0
        full, policy, steps = grad(adv, coef), grad(adv, 0.0), grad(no_start, 0.0)
        value, start = full - policy, policy - steps
        row = [float(steps.norm()), float(start.norm()), float(value.norm())]
        row += [row[2] / max(float(policy.norm()), 1e-12), float(torch.cosine_similarity(steps, start, 0)),
                float(torch.cosine_similarity(value, policy, 0)), float(rewards.nanmean())]
        rows.append(row)
        print(f"{b:>5} {row[0]:7.3f} {row[1]:7.3f} {row[2]:7.3f} {row[3]:12.2f} {row[4]:16.3f} {row[5]:17.3f} "
              f"{row[6]:6.3f}", flush=True)
    mean = [sum(col) / len(col) for col in zip(*rows)]
    print(f"{'mean':>5} {mean[0]:7.3f} {mean[1]:7.3f} {mean[2]:7.3f} {mean[3]:12.2f} {mean[4]:16.3f} {mean[5]:17.3f} "
          f"{mean[6]:6.3f}")
    print(f"value_coef {coef:g}: the value part's norm is {mean[3]:.2f}x the policy parts' (steps + start)")


if __name__ == "__main__":
    main()
