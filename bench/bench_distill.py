"""A training step with every Trident loss component on, against a cross-entropy-only step.

The trainer's own step (``pretrain.sft.Step``: proposals, generator and critic passes) on real
mined tasks, same student, same batches, same run; the two configurations alternate step by
step so that other load on the machine hits both alike. "All components" is focal, kl, jsd,
semantic (all-MiniLM-L6-v2 on CPU), ast, pans (a sandbox run per scored row) and layer KD
(learned projections), so the step adds a no-grad teacher pass, the student's hidden states,
one sampled slot per row, the rewards, and the projections' backward.

    python bench/bench_distill.py                 # the default model size (3.7M), a same-size random teacher
    python bench/bench_distill.py --student-hidden 128 --student-layers 2 --teacher runs/default/sft/final
                                                  # the experiment's 0.9M student and its trained teacher

Needs a task file (``--tasks``; ``trident mine --config configs/mine-quick.yaml`` makes a small one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALL = [
    {"name": "focal", "gamma": 2.0, "weight": {"start": 0.5, "end": 0.3}},
    {"name": "jsd", "beta": 0.5, "temperature": 2.0, "weight": {"start": 0.3, "end": 0.4}},
    {"name": "kl", "temperature": 2.0, "weight": 0.1},
    {"name": "semantic", "rows": 8, "weight": {"start": 0.2, "end": 0.3}},
    {"name": "ast", "weight": 0.1},
    {"name": "pans", "rows": 8, "weight": 0.1},
    {"name": "layer", "weight": 0.5},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="teacher model directory (its tokenizer is used); default: a random teacher of the student's size")
    parser.add_argument("--student-hidden", type=int, default=256, help="student hidden size (default: the sft default)")
    parser.add_argument("--student-layers", type=int, default=4, help="student layers (default: the sft default)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (after one warm-up each)")
    parser.add_argument("--batch", type=int, default=32, help="tasks per step")
    parser.add_argument("--pans-rows", type=int, default=4, help="rows per step run in the sandbox for pans")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from pretrain.components import Components, load_teacher
    from pretrain.data import DataConfig, Encoder, collate
    from pretrain.losses import DiffusionLoss
    from pretrain.model import BackboneConfig, DiffusionLM
    from pretrain.sft import SFTConfig, Step, _param_groups, default_modifiers
    from pretrain.tokenizer import load_tokenizer, task_texts, train_tokenizer
    from sandbox.tasks import load_tasks

    if not args.tasks.is_file():
        raise SystemExit(f"task file '{args.tasks}' not found; mine one: trident mine --config configs/mine-quick.yaml, "
                         f"then --tasks runs/quick/mine/tasks.jsonl")
    train = [t for t in load_tasks(args.tasks) if t.split == "train"]
    tok = load_tokenizer(args.teacher) if args.teacher else train_tokenizer(task_texts(train), vocab_size=4096)
    cfg = SFTConfig(precision="bf16")
    heads = max(1, args.student_hidden // 64)
    sizes = BackboneConfig(hidden_size=args.student_hidden, num_hidden_layers=args.student_layers,
                           num_attention_heads=heads, intermediate_size=2 * args.student_hidden)
    student = DiffusionLM.build(sizes, tok, slot_len=cfg.data.slot_len, max_prompt=cfg.data.max_prompt)
    device = torch.device("cpu")
    if args.teacher:
        teacher = load_teacher(args.teacher, student, device)
    else:
        teacher = DiffusionLM.build(sizes, tok, slot_len=cfg.data.slot_len, max_prompt=cfg.data.max_prompt, seed=1).eval()
        teacher.requires_grad_(False)
    encoder = Encoder(tok, DataConfig())
    rows = [(e, t) for e, t in ((encoder.encode(t), t) for t in train) if e is not None]
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(rows), generator=g).tolist()
    n_batches = args.steps + 1
    batches = []
    for k in range(n_batches):
        pick = [rows[i] for i in order[k * args.batch:(k + 1) * args.batch]]
        batches.append((collate([e for e, _ in pick], student.special, cfg.data.pad_weight), [t for _, t in pick]))

    all_entries = [dict(e, rows=args.pans_rows) if e["name"] == "pans" else e for e in ALL]
    configs = {"ce only": Components.from_config(["ce"]), "all components": Components.from_config(all_entries)}
    steps, optims = {}, {}
    for name, comps in configs.items():
        comps.setup(student, teacher if comps.needs_teacher else None)
        steps[name] = Step(student, DiffusionLoss.from_config(default_modifiers()), cfg, device, components=comps,
                           teacher=teacher if comps.needs_teacher else None, encoder=encoder)
        decay, no_decay = _param_groups(torch.nn.ModuleList([student, comps]))
        optims[name] = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    print(f"student {student.num_parameters() / 1e6:.2f} M parameters, teacher {teacher.num_parameters() / 1e6:.2f} M "
          f"({'from ' + str(args.teacher) if args.teacher else 'random, same size'}); batch {args.batch} tasks; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"all components: {configs['all components'].describe()}")

    def step(name: str, k: int) -> tuple[float, float, dict]:
        batch, tasks = batches[k]
        comps = configs[name]
        comps.progress = 0.5
        begin, cpu = time.perf_counter(), time.process_time()
        total, metrics = steps[name].losses(batch, torch.Generator().manual_seed(k), tasks, None)
        optims[name].zero_grad(set_to_none=True)
        total.backward()
        optims[name].step()
        return time.perf_counter() - begin, time.process_time() - cpu, metrics

    names = list(configs)
    for n in names:
        step(n, 0)  # warm-up: the semantic model loads, the sandbox's zygote starts
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    last: dict[str, dict] = {}
    for k in range(1, n_batches):
        for n in names if k % 2 else names[::-1]:
            wall, cpu, metrics = step(n, k)
            times[n].append((wall, cpu))
            last[n] = metrics
    base = [statistics.median(x[j] for x in times[names[0]]) for j in (0, 1)]
    print(f"training step (corruption, teacher, generator, critic, backward, AdamW), median of {args.steps}:")
    for n in names:
        wall, cpu = (statistics.median(x[j] for x in times[n]) for j in (0, 1))
        print(f"  {n:<16} {wall * 1e3:8.0f} ms wall ({wall / base[0]:.2f}x ce only)  {cpu * 1e3:8.0f} ms CPU "
              f"({cpu / base[1]:.2f}x)")
    shown = {k: round(v, 4) for k, v in last["all components"].items() if k.startswith(("loss/", "weight/"))}
    print(f"last step's components: {shown}")
    print(f"(the machine's 1-minute load average was {os.getloadavg()[0]:.1f}; goal: all components <= 2x ce only)")


if __name__ == "__main__":
    main()
