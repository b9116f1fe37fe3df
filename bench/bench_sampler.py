"""Sampler quality against steps: no remasking vs confidence vs critic remasking.

One trained model, the first ``--n`` valid tasks, every candidate run in the sandbox. For each
remask policy and each step count the sampler generates from an all-[MASK] slot; the table
gives AST-valid, exact match and pass rate, and a PNG plots pass rate and exact match against
steps. Same model, tasks and seed for every cell: only the policy and K change.

    python bench/bench_sampler.py --model runs/default/sft/final
    python bench/bench_sampler.py --steps 4,8,16,32 --budget 0.2 --n 200 --plot sampler.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("runs/default/sft/final"), help="model directory from `trident sft`")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--split", default="valid", help="split to draw tasks from")
    parser.add_argument("--n", type=int, default=200, help="tasks (the first n of the split)")
    parser.add_argument("--steps", default="4,8,16,32", help="comma-separated step counts K")
    parser.add_argument("--policies", default="none,confidence,critic", help="remask policies to compare")
    parser.add_argument("--budget", type=float, default=0.2, help="remask budget for confidence/critic")
    parser.add_argument("--block-size", type=int, default=1, help="sampler block size (widened to ceil(L/K) when K < L/size)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")
    parser.add_argument("--no-parse-gate", action="store_true", help="allow [EOS] anywhere (eos_when_parses off)")
    parser.add_argument("--no-syntax-guard", action="store_true", help="let left-to-right fills close brackets that are not open (syntax_guard off)")
    parser.add_argument("--plot", type=Path, default=Path("runs/bench/sampler_quality.png"), help="PNG to write")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args()

    import torch

    from pretrain.data import DataConfig, Encoder
    from pretrain.evaluate import EvalConfig, execution_rates, generate, text_scores
    from pretrain.model import DiffusionLM
    from pretrain.sampler import SamplerConfig
    from sandbox.tasks import load_tasks

    model = DiffusionLM.load(args.model).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    tasks = load_tasks(args.tasks, split=args.split)[:args.n]
    steps = [int(s) for s in args.steps.split(",")]
    policies = args.policies.split(",")
    base = SamplerConfig(block_size=args.block_size, temperature=args.temperature, eos_when_parses=not args.no_parse_gate,
                         syntax_guard=not args.no_syntax_guard)
    systems: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for policy in policies:
        for k in steps:
            cfg = replace(base, steps=k, remask=policy, remask_budget=0.0 if policy == "none" else args.budget)
            t0 = time.monotonic()
            with torch.no_grad():
                systems[f"{policy}/{k}"] = generate(model, encoder, tasks, cfg)
            seconds[f"{policy}/{k}"] = time.monotonic() - t0
            print(f"generated {policy:<10} K={k:<3} in {seconds[f'{policy}/{k}']:.1f}s", flush=True)
    rates = execution_rates(tasks, systems, EvalConfig())
    table = []
    for name, texts in systems.items():
        policy, k = name.split("/")
        table.append({"policy": policy, "steps": int(k), **text_scores(tasks, texts), "pass": rates[name]["pass"],
                      "seconds": seconds[name]})

    print(f"\n{len(tasks)} {args.split} tasks, model {args.model}, block {args.block_size}, temperature {args.temperature}, "
          f"remask budget {args.budget}, parse gate {'off' if args.no_parse_gate else 'on'}, "
          f"syntax guard {'off' if args.no_syntax_guard else 'on'}")
    print(f"{'policy':<11} {'K':>3} {'ast_valid':>9} {'exact':>7} {'pass':>7} {'distinct':>8} {'gen s':>6}")
    for r in table:
        print(f"{r['policy']:<11} {r['steps']:>3} {r['ast_valid']:>9.1%} {r['exact_match']:>7.1%} {r['pass']:>7.1%} "
              f"{r['distinct']:>8.1%} {r['seconds']:>6.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    _plot(table, policies, args.plot, f"{len(tasks)} {args.split} tasks, remask budget {args.budget}")
    print(f"plot: {args.plot}")


def _plot(table: list[dict], policies: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, metric, label in zip(axes, ("pass", "exact_match", "ast_valid"), ("pass rate", "exact match", "AST-valid")):
        for policy in policies:
            rows = sorted((r for r in table if r["policy"] == policy), key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in rows], [100 * r[metric] for r in rows], marker="o", label=policy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps K")
        ax.set_ylabel(f"{label} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="remask")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
