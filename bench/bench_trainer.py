"""The SFT trainer against a plain PyTorch masked-LM loop on the same model and batches.

Both sides train the same ``DiffusionLM`` (built from the same config and seed) on the same
batches (the trainer's data cursor, replayed), with AdamW, gradient clipping and the same
precision; tokens/s counts every token of every row, measured over the steps after the first
``--skip``. The trainer's side is ``pretrain.sft.train`` itself, run to ``--steps``:

- ``trainer (same math)``: critic off, no modifiers, no wrong tokens, no suffix rows, so its
  work per step equals the plain loop's (random masking + cross-entropy on the slot); the ratio
  is the trainer's own overhead (goal: >= 0.9x);
- ``trainer (default)``: the default SFT config (two passes, three modifiers), for reference.

Each side runs ``--repeats`` times, alternating, and the best run of each is compared, so that
load from other work on the machine counts against neither.

    python bench/bench_trainer.py                       # 30 steps, batch 32, 2 repeats
    python bench/bench_trainer.py --steps 60 --tasks runs/default/mine/tasks.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plain_loop(cfg, rows, tokenizer, steps: int, skip: int) -> float:
    """Tokens/s of a bare masked-LM loop: mask slot tokens with prob t, cross-entropy on them."""
    import torch
    import torch.nn.functional as F

    from pretrain.data import collate
    from pretrain.model import DiffusionLM
    from pretrain.sft import Cursor

    model = DiffusionLM.build(cfg.model, tokenizer, slot_len=cfg.data.slot_len, max_prompt=cfg.data.max_prompt, seed=cfg.seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                            weight_decay=cfg.optim.weight_decay)
    cursor = Cursor(len(rows), cfg.seed)
    g = torch.Generator().manual_seed(0)
    L = cfg.data.slot_len
    mask_id = model.special.mask
    tokens, start = 0, None
    for step in range(1, steps + 1):
        batch = collate([rows[i] for i in cursor.take(cfg.batch_size)], model.special, cfg.data.pad_weight)
        slot = batch.input_ids[:, -L:]
        t = torch.rand(slot.shape[0], 1, generator=g)
        masked = torch.rand(slot.shape, generator=g) < t
        ids = batch.input_ids.clone()
        ids[:, -L:] = torch.where(masked, torch.full_like(slot, mask_id), slot)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits = model(ids, batch.attention_mask, last=L).logits  # (B, L, V)
        loss = F.cross_entropy(logits.float()[masked], slot[masked])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        if step == skip:
            start = time.monotonic()
        elif step > skip:
            tokens += int(batch.attention_mask.sum())
    return tokens / (time.monotonic() - start)


def trainer_run(cfg, out: Path, steps: int, skip: int) -> float:
    """Tokens/s of ``pretrain.sft.train`` between its step ``skip`` and step ``steps`` log lines."""
    from pretrain.sft import train

    train(replace(cfg, out=out, max_steps=steps, log_every=1, eval_every=0, save_every=steps + 1, progress=False,
                  final_eval=False))
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    timed = [r for r in rows if "perf/tokens_per_s" in r]
    t0 = next(r["time"] for r in timed if r["step"] == skip)
    t1 = next(r["time"] for r in timed if r["step"] == steps)
    # Per-window tokens/s times the window's length gives the tokens of each step.
    tokens, prev = 0.0, t0
    for r in timed:
        if r["step"] > skip:
            tokens += r["perf/tokens_per_s"] * (r["time"] - prev)
            prev = r["time"]
    return tokens / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file from `trident mine`")
    parser.add_argument("--steps", type=int, default=30, help="steps per run")
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the timing (warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; the best counts")
    parser.add_argument("--batch", type=int, default=32, help="tasks per step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="both sides' precision (auto: bf16 only on a CPU with native bfloat16)")
    args = parser.parse_args()

    import torch

    from pretrain.data import Encoder
    from pretrain.sft import CorruptionConfig, CriticConfig, SFTConfig, _load_splits
    from pretrain.tokenizer import save_tokenizer, task_texts, train_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.tasks.is_file():
        raise SystemExit(f"bench_trainer: task file '{args.tasks}' not found; mine one with `trident mine --out {args.tasks}`")
    from pretrain.hardware import resolve_precision

    base = SFTConfig(tasks=args.tasks, batch_size=args.batch, precision=resolve_precision(args.precision, torch.device("cpu")))
    train_tasks = _load_splits(base)["train"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    tokenizer = train_tokenizer(task_texts(train_tasks), vocab_size=base.vocab_size)
    save_tokenizer(tokenizer, tmp / "tokenizer")
    base = replace(base, tokenizer=tmp / "tokenizer")
    same = replace(base, modifiers=[], critic=CriticConfig(weight=0.0),
                   corruption=CorruptionConfig(wrong_prob=0.0, suffix_rows=0.0, antithetic=False))
    encoder = Encoder(tokenizer, base.data)
    rows = [e for e in (encoder.encode(t) for t in train_tasks) if e is not None]

    results: dict[str, list[float]] = {"plain loop": [], "trainer (same math)": [], "trainer (default)": []}
    for rep in range(args.repeats):
        results["plain loop"].append(plain_loop(base, rows, tokenizer, args.steps, args.skip))
        results["trainer (same math)"].append(trainer_run(same, tmp / f"same{rep}", args.steps, args.skip))
        results["trainer (default)"].append(trainer_run(base, tmp / f"default{rep}", args.steps, args.skip))
        print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} tok/s" for k, v in results.items()), flush=True)

    best = {k: max(v) for k, v in results.items()}
    plain = best["plain loop"]
    print(f"\n{args.steps} steps x {args.batch} tasks, {torch.get_num_threads()} threads, precision {base.precision}, "
          f"best of {args.repeats}")
    print(f"{'side':<22} {'tokens/s':>10} {'vs plain':>9}")
    for name, value in best.items():
        print(f"{name:<22} {value:>10,.0f} {value / plain:>8.2f}x")
    print(f"\ntrainer overhead: {best['trainer (same math)'] / plain:.2f}x of the plain loop's tokens/s (goal >= 0.90x)")


if __name__ == "__main__":
    main()
