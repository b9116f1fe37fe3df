"""Pass and kill rates of models on a split, with bootstrap 95 % intervals: SFT vs RL.

Two systems write the assertions, every model through the same one:

- ``greedy`` (default): one assertion per task with the evaluation's edit system
  (``pretrain.evaluate``: greedy, the model's own choice of retrieved start, critic-doubted
  positions denoised);
- ``rollout``: ``--samples`` assertions per task with the sampler RL trains (``rl.rollout``, the
  rollout section of an RL config: temperature 1, the model's start, critic-doubted positions plus
  random extra edits), seeded per batch of tasks so every model sees the same random numbers.
  A task's rates are then the mean over its samples (pass@1 of the sampled policy).

Every candidate runs in the sandbox against the task and its mutants. Per model: ``pass`` (share
of tasks whose candidate passes) and ``kill`` (mean share of the task's mutants killed, over tasks
that have mutants), each with a percentile bootstrap interval over tasks; and for every model
after the first, the paired difference to the first with its interval (same resampled tasks).
A task with an ``infra`` verdict is left out (never scored as 0 or 1).

    python -m rl.evaluate --model runs/default/sft/final --model runs/default/rl/final --max-tasks 300
    python -m rl.evaluate --system rollout --rl-config runs/default/rl/config.yaml --model ... --model ...
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Sequence

from common.stats import bootstrap
from pretrain.data import DataConfig, Encoder
from pretrain.evaluate import EvalConfig, edit_starts, generate
from pretrain.model import DiffusionLM
from pretrain.retrieval import Retriever
from pretrain.sampler import SamplerConfig
from sandbox.api import Limits
from sandbox.tasks import Task, load_tasks

from .rollout import RolloutConfig, RolloutWorker

__all__ = ["candidates", "compare", "main", "rollout_config", "sampled_candidates"]


def candidates(model_dir: str | Path, tasks: Sequence[Task], train: Sequence[Task], cfg: EvalConfig) -> list[str]:
    """One assertion per task from the model's edit system (as ``pretrain.evaluate`` scores it)."""
    model = DiffusionLM.load(model_dir).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    starts = edit_starts(model, encoder, tasks, Retriever(train), retrieve_k=cfg.retrieve_k, adapt_cap=cfg.adapt_cap,
                         batch_size=cfg.batch_size)
    return generate(model, encoder, tasks, cfg.sampler, starts=starts, batch_size=cfg.batch_size)


def sampled_candidates(model_dir: str | Path, tasks: Sequence[Task], train: Sequence[Task], rollout: RolloutConfig,
                       *, seed: int = 0, batch_tasks: int = 16) -> list[list[str]]:
    """``rollout.samples`` assertions per task from the sampler RL trains, the batch of tasks
    ``b`` sampled with seed ``seed + b`` (the same random numbers for every model)."""
    worker = RolloutWorker(str(model_dir), rollout, train)
    G = rollout.samples
    out: list[list[str]] = []
    for b, lo in enumerate(range(0, len(tasks), batch_tasks)):
        texts = worker.rollout(tasks[lo : lo + batch_tasks], iteration=0, seed=seed + b).texts
        out.extend(texts[i : i + G] for i in range(0, len(texts), G))
    return out


def rollout_config(path: str | Path | None = None, samples: int | None = None) -> RolloutConfig:
    """The ``rollout`` section of an RL config or run folder's ``config.yaml`` (defaults where a
    key is absent; no file: the defaults), optionally with another number of samples."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict) or not isinstance(loaded.get("rollout", {}), dict):
            raise ValueError(f"{path}: not an RL config (no 'rollout' section as a mapping)")
        data = dict(loaded.get("rollout") or {})
    known = {f.name for f in fields(RolloutConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown rollout key(s) {unknown}; valid keys: {sorted(known)}")
    sampler = dict(data.pop("sampler", None) or {})
    bad = sorted(set(sampler) - {f.name for f in fields(SamplerConfig)})
    if bad:
        raise ValueError(f"{path}: unknown rollout.sampler key(s) {bad}; valid keys: "
                         f"{sorted(f.name for f in fields(SamplerConfig))}")
    cfg = RolloutConfig(**data)
    # replace() re-runs both configs' checks on the merged values.
    cfg = replace(cfg, sampler=replace(cfg.sampler, **sampler))
    return replace(cfg, samples=samples) if samples is not None else cfg


def compare(models: dict[str, str | Path], tasks: Sequence[Task], train: Sequence[Task], *, cfg: EvalConfig | None = None,
            rollout: RolloutConfig | None = None, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Pass and kill rates of each model on ``tasks``, with intervals and paired differences to
    the first model: one greedy assertion per task (``cfg``), or with ``rollout`` that config's
    ``samples`` sampled ones, a task's rates then the mean over its samples."""
    from sandbox.pool import Pool

    cfg = cfg or EvalConfig()
    if rollout is None:
        texts = {name: [[t] for t in candidates(path, tasks, train, cfg)] for name, path in models.items()}
    else:
        texts = {name: sampled_candidates(path, tasks, train, rollout, seed=seed) for name, path in models.items()}
    names = list(models)
    items = [(task, [c for name in names for c in texts[name][i]]) for i, task in enumerate(tasks)]
    with Pool(workers=cfg.workers, limits=cfg.sandbox) as pool:
        verdicts = pool.score(items, mutants=True)
    keep = [i for i, row in enumerate(verdicts) if all(v.status != "infra" for v in row)]
    if not keep:
        raise ValueError("every task had an infra verdict (the sandbox failed): nothing to compare; see the "
                         "verdicts' reasons with `trident score`")
    mutated = [i for i in keep if tasks[i].mutants]

    def per_model(i: int, j: int) -> list:
        n = len(texts[names[j]][i])
        return verdicts[i][j * n : (j + 1) * n]

    passed = [[sum(v.passed for v in per_model(i, j)) / len(per_model(i, j)) for i in keep] for j in range(len(names))]
    killed = [[sum(len(v.kills) for v in per_model(i, j)) / (len(per_model(i, j)) * len(tasks[i].mutants))
               for i in mutated] for j in range(len(names))]
    report: dict[str, Any] = {"tasks": len(tasks), "scored": len(keep), "with_mutants": len(mutated),
                              "system": "greedy" if rollout is None else "rollout",
                              "samples_per_task": 1 if rollout is None else rollout.samples, "models": {}}
    for j, (p, k) in enumerate(zip(bootstrap(passed, resamples), bootstrap(killed, resamples) if mutated else [{}] * len(names))):
        report["models"][names[j]] = {"path": str(models[names[j]]), "pass": p, "kill": k,
                                      "samples": [c for row in texts[names[j]][:5] for c in row]}
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['scored']} tasks scored ({report['with_mutants']} with mutants), system "
             f"{report.get('system', 'greedy')}, {report.get('samples_per_task', 1)} sample(s) per task",
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
    parser.add_argument("--system", choices=("greedy", "rollout"), default="greedy",
                        help="greedy: one assertion per task, the evaluation's edit system; rollout: --samples per "
                             "task from the sampler RL trains (the rollout section of --rl-config)")
    parser.add_argument("--rl-config", type=Path, default=None,
                        help="rollout: the RL config (or a run's config.yaml) whose rollout section samples "
                             "(default: the rollout defaults, as configs/rl.yaml)")
    parser.add_argument("--samples", type=int, default=4, help="rollout: samples per task")
    parser.add_argument("--out", type=Path, default=None, help="report JSON")
    args = parser.parse_args(argv)
    if args.system == "greedy" and args.rl_config:
        parser.error("--rl-config applies to --system rollout only")
    if args.system == "rollout" and (args.temperature or args.edit_threshold is not None):
        parser.error("--temperature and --edit-threshold apply to --system greedy; the rollout system's sampler "
                     "comes from --rl-config")
    if args.rl_config and not args.rl_config.is_file():
        parser.error(f"--rl-config {args.rl_config}: no such file")
    if args.samples < 1:
        parser.error(f"--samples {args.samples}: must be >= 1")
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
    rollout = None
    if args.system == "rollout":
        try:
            rollout = rollout_config(args.rl_config, args.samples)
        except (ValueError, TypeError) as exc:
            parser.error(f"--rl-config {args.rl_config}: {exc}")
        report = compare(models, split, train, cfg=cfg, rollout=rollout, seed=args.seed)
        report["rollout"] = json.loads(json.dumps(asdict(rollout), default=str))
    else:
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
