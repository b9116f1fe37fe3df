"""The distillation experiment: a teacher and four students trained at the same budget.

Students (configs/distill/*.yaml, all 0.9M parameters, the default teacher's tokenizer), each
trained for the same number of steps on the same batches, for every seed of ``--seeds``:
``student-ce`` (gold, cross-entropy), ``student-kl`` (ce + KL to the teacher), ``student-trident``
(the Trident preset: focal, JSD, semantic) and ``student-trident-layer`` (the preset + layer KD).
Each final model and the teacher then generate from an all-[MASK] slot on the valid split with
the default evaluation sampler, scored for exact match, token F1, AST-valid, pass and PANS in the
sandbox. Speed: generation tasks/s of a student and of the teacher, timed alternately.

A run folder per student and seed (``runs/distill/<config>-s<seed>``); finished trainings,
evaluations and the speed timing are kept and skipped on a re-run, so a stopped experiment goes
on where it was (and a finished one only prints its table again). ``valid_masked_acc`` is the
teacher-forced accuracy at masked slot positions of the run's last validation.

    python bench/distill_experiment.py                      # seeds 0 and 1, 400 steps, full valid split
    python bench/distill_experiment.py --seeds 0 --steps 50 --max-tasks 64   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = ("student-ce", "student-kl", "student-trident", "student-trident-layer")
METRICS = ("exact_match", "token_f1", "ast_valid", "pans", "pass")


def evaluate_model(model_dir: Path, tasks: list, max_tasks: int | None) -> dict:
    from pretrain.data import DataConfig, Encoder
    from pretrain.evaluate import EvalConfig, execution_rates, generate, text_scores
    from pretrain.model import DiffusionLM

    model = DiffusionLM.load(model_dir).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    cfg = EvalConfig(max_tasks=max_tasks)
    tasks = tasks[:max_tasks] if max_tasks else tasks
    import torch

    t0 = time.monotonic()
    with torch.no_grad():
        texts = generate(model, encoder, tasks, cfg.sampler, batch_size=cfg.batch_size)
    seconds = time.monotonic() - t0
    scores = {**text_scores(tasks, texts), **execution_rates(tasks, {"m": texts}, cfg)["m"]}
    return {**scores, "tasks": len(tasks), "generate_s": seconds, "parameters": model.num_parameters(),
            "samples": texts[:10]}


def speed(student_dir: Path, teacher_dir: Path, tasks: list, reps: int) -> dict:
    """Generation tasks/s of student and teacher on the same tasks, alternating, median of ``reps``."""
    import torch

    from pretrain.data import DataConfig, Encoder
    from pretrain.evaluate import EvalConfig, generate
    from pretrain.model import DiffusionLM

    models = {}
    for name, d in (("student", student_dir), ("teacher", teacher_dir)):
        m = DiffusionLM.load(d).eval()
        models[name] = (m, Encoder(m.tokenizer, DataConfig(slot_len=m.slot_len, max_prompt=m.max_prompt)))
    sampler = EvalConfig().sampler
    times: dict[str, list[float]] = {n: [] for n in models}
    for r in range(reps):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            m, enc = models[name]
            t0 = time.monotonic()
            with torch.no_grad():
                generate(m, enc, tasks, sampler, batch_size=64)
            times[name].append(time.monotonic() - t0)
    out = {f"{n}_tasks_per_s": len(tasks) / statistics.median(t) for n, t in times.items()}
    out["student_speedup"] = out["student_tasks_per_s"] / out["teacher_tasks_per_s"]
    out["tasks"] = len(tasks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds; every config trains once per seed")
    parser.add_argument("--steps", type=int, default=400, help="training steps of every student (the budget)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="student configs in configs/distill/")
    parser.add_argument("--teacher", type=Path, default=Path("runs/default/sft/final"), help="teacher model directory")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--out", type=Path, default=Path("runs/distill"), help="experiment folder")
    parser.add_argument("--max-tasks", type=int, default=None, help="evaluate on at most this many valid tasks")
    parser.add_argument("--speed-tasks", type=int, default=128, help="valid tasks timed for the speed ratio")
    args = parser.parse_args()

    from pretrain.sft import SFTConfig, train
    from sandbox.tasks import load_tasks
    from trident.config import load_config

    root = Path(__file__).resolve().parents[1]
    if not (args.teacher / "trident_model.json").is_file():
        raise SystemExit(f"teacher '{args.teacher}' not found; train it: trident sft --config configs/sft.yaml")
    valid = [t for t in load_tasks(args.tasks) if t.split == "valid"]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}

    def evaluated(name: str, model_dir: Path) -> dict:
        path = model_dir.parent / f"eval-distill-{args.max_tasks or 'all'}.json"
        if path.is_file():
            return json.loads(path.read_text())
        print(f"[{name}] evaluating on {args.max_tasks or len(valid)} valid tasks", flush=True)
        report = evaluate_model(model_dir, valid, args.max_tasks)
        path.write_text(json.dumps(report, indent=1) + "\n")
        return report

    results["teacher"] = evaluated("teacher", args.teacher)
    for seed in args.seeds:
        for name in args.configs:
            run = args.out / f"{name}-s{seed}"
            cfg = load_config(SFTConfig, root / "configs" / "distill" / f"{name}.yaml",
                              [f"out={run}", f"seed={seed}", f"max_steps={args.steps}", f"tasks={args.tasks}",
                               f"tokenizer={args.teacher}", "final_eval=false", "progress=false", "log_every=50"])
            if cfg.loss.teacher is not None:
                cfg.loss.teacher = args.teacher
            print(f"[{name} seed {seed}] training {args.steps} steps -> {run}", flush=True)
            summary = train(cfg)
            report = evaluated(f"{name} seed {seed}", run / "final")
            report["train_minutes"] = summary.get("minutes")
            results[f"{name}-s{seed}"] = report
    for name, report in results.items():
        run = args.teacher.parent if name == "teacher" else args.out / name
        report["valid_masked_acc"] = last_validation(run / "metrics.jsonl").get("valid/masked_acc")
    cached = args.out / "speed.json"
    if cached.is_file():
        speeds = json.loads(cached.read_text())
    else:
        print(f"timing generation of a student and the teacher on {args.speed_tasks} valid tasks", flush=True)
        speeds = speed(args.out / f"{args.configs[0]}-s{args.seeds[0]}" / "final", args.teacher,
                       valid[:args.speed_tasks], reps=3)
        cached.write_text(json.dumps(speeds, indent=1) + "\n")
    (args.out / "results.json").write_text(json.dumps({"runs": results, "speed": speeds, "steps": args.steps,
                                                       "seeds": args.seeds}, indent=1) + "\n")
    table = format_table(results, args.configs, args.seeds, speeds)
    (args.out / "results.md").write_text(table + "\n")
    print(table)


def last_validation(metrics: Path) -> dict:
    """The run's last validation row (teacher-forced valid loss and accuracies), or {}."""
    if not metrics.is_file():
        return {}
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return next((r for r in reversed(rows) if "valid/masked_acc" in r), {})


def format_table(results: dict, configs: list[str], seeds: list[int], speeds: dict) -> str:
    n = results["teacher"]["tasks"]
    cols = (*METRICS, "valid_masked_acc")
    lines = [f"| model ({n} valid tasks) | " + " | ".join(cols) + " | train min | tasks/s |",
             "|---" * (len(cols) + 3) + "|"]
    t = results["teacher"]
    lines.append("| teacher (3.7M) | " + " | ".join(f"{100 * (t[m] or 0):.1f} %" for m in cols)
                 + f" | – | {speeds['teacher_tasks_per_s']:.1f} |")
    for name in configs:
        runs = [results[f"{name}-s{s}"] for s in seeds if f"{name}-s{s}" in results]
        cells = []
        for m in cols:
            vals = [100 * (r[m] or 0) for r in runs]
            cells.append(f"{statistics.mean(vals):.1f} %" + (f" ({' / '.join(f'{v:.1f}' for v in vals)})" if len(vals) > 1 else ""))
        minutes = statistics.mean(r.get("train_minutes") or 0 for r in runs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {minutes:.1f} | {speeds['student_tasks_per_s']:.1f} |")
    lines.append(f"\nStudents generate {speeds['student_speedup']:.2f}x as many tasks/s as the teacher "
                 f"({speeds['tasks']} tasks, median of 3, alternating). Per-seed values in brackets, seeds {seeds}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
