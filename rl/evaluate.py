"""Pass and kill rates of models on a split, with bootstrap 95 % intervals: SFT vs RL.

Each model writes one assertion per task with the evaluation's edit system (``pretrain.evaluate``:
greedy, the model's own choice of retrieved start, critic-doubted positions denoised); every
candidate runs in the sandbox against the task and its mutants. Per model: ``pass`` (share of
tasks whose candidate passes) and ``kill`` (mean share of the task's mutants killed, over tasks
that have mutants), each with a percentile bootstrap interval over tasks; and for every model
after the first, the paired difference to the first with its interval (same resampled tasks).
``infra`` verdicts are left out (never scored as 0 or 1).

    python -m rl.evaluate --model runs/default/sft/final --model runs/default/rl/final --max-tasks 300
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from pretrain.data import DataConfig, Encoder
from pretrain.evaluate import EvalConfig, edit_starts, generate
from pretrain.model import DiffusionLM
from pretrain.retrieval import Retriever
from sandbox.api import Limits
from sandbox.tasks import Task, load_tasks

__all__ = ["bootstrap", "candidates", "compare", "main"]


def bootstrap(values: Sequence[Sequence[float]], n: int = 2000, seed: int = 0) -> list[dict[str, float]]:
    """Means of each row of ``values`` (M rows over the same T tasks) and of each row minus the
    first, with 95 % percentile intervals from ``n`` paired resamples of the tasks."""
    x = torch.tensor(values, dtype=torch.float64)  # (M, T)
    T = x.shape[1]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, T, (n, T), generator=g)
    means = x[:, idx].mean(-1)  # (M, n)
    out = []
    for m in range(x.shape[0]):
        lo, hi = torch.quantile(means[m], torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        row = {"mean": float(x[m].mean()), "lo": lo, "hi": hi}
        if m:
            d = means[m] - means[0]
            dlo, dhi = torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            row.update({"diff": float((x[m] - x[0]).mean()), "diff_lo": dlo, "diff_hi": dhi})
        out.append(row)
    return out


def candidates(model_dir: str | Path, tasks: Sequence[Task], train: Sequence[Task], cfg: EvalConfig) -> list[str]:
    """One assertion per task from the model's edit system (as ``pretrain.evaluate`` scores it)."""
    model = DiffusionLM.load(model_dir).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    starts = edit_starts(model, encoder, tasks, Retriever(train), retrieve_k=cfg.retrieve_k, adapt_cap=cfg.adapt_cap,
                         batch_size=cfg.batch_size)
    return generate(model, encoder, tasks, cfg.sampler, starts=starts, batch_size=cfg.batch_size)


def compare(models: dict[str, str | Path], tasks: Sequence[Task], train: Sequence[Task], *, cfg: EvalConfig | None = None,
            resamples: int = 2000) -> dict[str, Any]:
    """Pass and kill rates of each model on ``tasks``, with intervals and paired differences to
    the first model."""
    from sandbox.pool import Pool

    cfg = cfg or EvalConfig()
    texts = {name: candidates(path, tasks, train, cfg) for name, path in models.items()}
    items = [(task, [texts[name][i] for name in models]) for i, task in enumerate(tasks)]
    with Pool(workers=cfg.workers, limits=cfg.sandbox) as pool:
        verdicts = pool.score(items, mutants=True)
    keep = [i for i, row in enumerate(verdicts) if all(v.status != "infra" for v in row)]
    if not keep:
        raise ValueError("every task had an infra verdict (the sandbox failed): nothing to compare; see the "
                         "verdicts' reasons with `trident score`")
    mutated = [i for i in keep if tasks[i].mutants]
    names = list(models)
    passed = [[float(verdicts[i][j].passed) for i in keep] for j in range(len(names))]
    killed = [[len(verdicts[i][j].kills) / len(tasks[i].mutants) for i in mutated] for j in range(len(names))]
    report: dict[str, Any] = {"tasks": len(tasks), "scored": len(keep), "with_mutants": len(mutated), "models": {}}
    for j, (p, k) in enumerate(zip(bootstrap(passed, resamples), bootstrap(killed, resamples) if mutated else [{}] * len(names))):
        report["models"][names[j]] = {"path": str(models[names[j]]), "pass": p, "kill": k,
                                      "samples": texts[names[j]][:10]}
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['scored']} tasks scored ({report['with_mutants']} with mutants)",
             f"{'model':<16} {'pass % [95% CI]':<24} {'kill % [95% CI]':<24} diff to first (pass / kill)"]
    for name, m in report["models"].items():
        def cell(x: dict[str, float]) -> str:
            return f"{100 * x['mean']:5.1f} [{100 * x['lo']:4.1f}, {100 * x['hi']:4.1f}]" if x else "-"

        def diff(x: dict[str, float]) -> str:
            return f"{100 * x['diff']:+.1f} [{100 * x['diff_lo']:+.1f}, {100 * x['diff_hi']:+.1f}]" if "diff" in x else ""

        d = " / ".join(s for s in (diff(m["pass"]), diff(m["kill"])) if s)
        lines.append(f"{name:<16} {cell(m['pass']):<24} {cell(m['kill']):<24} {d}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Compare models' pass and kill rates on a split, with bootstrap 95 % intervals."""
    parser = argparse.ArgumentParser(prog="python -m rl.evaluate", description=main.__doc__)
    parser.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR",
                        help="model directory (repeat; the first is the baseline the others are compared with)")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--split", default="valid", help="split to evaluate on")
    parser.add_argument("--max-tasks", type=int, default=None, help="at most this many tasks (first in file order)")
    parser.add_argument("--workers", type=int, default=0, help="sandbox workers (0 = one per core)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 = greedy (the evaluation's edit system); > 0 samples at this temperature (as rollouts do)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (with --temperature)")
    parser.add_argument("--edit-threshold", type=float, default=None,
                        help="remask the start's positions whose sigma(critic) is below this (default: the evaluation's 0.05)")
    parser.add_argument("--out", type=Path, default=None, help="report JSON")
    args = parser.parse_args(argv)
    models: dict[str, str] = {}
    for spec in args.model:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path).parent.name or Path(path).name
        if not (Path(path) / "trident_model.json").is_file():
            parser.error(f"--model {spec}: '{path}' is not a Trident model directory (no trident_model.json)")
        if name in models:
            parser.error(f"--model {spec}: the name {name!r} is taken; give NAME=DIR")
        models[name] = path
    if not args.tasks.is_file():
        parser.error(f"--tasks {args.tasks}: no such file; run `trident mine` first")
    tasks = load_tasks(args.tasks)
    split = [t for t in tasks if t.split == args.split][:args.max_tasks]
    train = [t for t in tasks if t.split == "train"]
    if not split:
        parser.error(f"--split {args.split}: the task file has no such tasks")
    cfg = EvalConfig(split=args.split, workers=args.workers, sandbox=Limits())
    cfg.sampler = replace(cfg.sampler, temperature=args.temperature, seed=args.seed,
                          edit_threshold=cfg.sampler.edit_threshold if args.edit_threshold is None else args.edit_threshold)
    report = compare(models, split, train, cfg=cfg)
    report["temperature"], report["edit_threshold"] = args.temperature, cfg.sampler.edit_threshold
    print(format_report(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
