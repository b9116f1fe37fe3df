"""A training step with all six loss modifiers on, against plain cross-entropy.

Same model, same corrupted batch, same run: a small ``DiffusionLM`` (ModernBERT, H=256, four
layers) over a tokenizer trained here on networkx's own source files, rows of networkx code
whose last ``--slot`` positions are the slot, corrupted once by ``pretrain.corruption.corrupt``.
One step is forward + backward + AdamW step; the two losses alternate step by step so that
load from other work on the machine hits both alike. The loss sees the slot only
(``logits[:, -L:]``), as the trainer passes it (``--whole-row`` passes every position).
Also timed: the loss alone (forward + backward from fixed logits), where the modifiers'
extra softmax work shows undiluted by the model.

    python bench/bench_loss.py                          # 16 x 256, slot 48, 5 steps each
    python bench/bench_loss.py --steps 10 --threads 2 --whole-row
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALL_SIX = [
    {"name": "mask_ratio_weighting", "max_weight": 10.0},
    {"name": "task_weighting", "unmask": 1.0, "remask": 2.0, "identity": 1.0},
    {"name": "dynamic_logit_bias", "target_prob": 0.05},
    {"name": "state_dependent_penalty", "weight": 0.1},
    {"name": "entropy_penalty", "weight": 0.01},
    {"name": "hard_negative_mining", "mode": "hardest_k", "k": 4},
]


def networkx_source(max_chars: int) -> str:
    """networkx's own .py files, read from disk, up to ``max_chars`` characters."""
    spec = importlib.util.find_spec("networkx")
    root = Path(spec.origin).parent  # type: ignore[union-attr, arg-type]
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per loss (after one warm-up step each)")
    parser.add_argument("--batch", type=int, default=16, help="rows per batch")
    parser.add_argument("--seq", type=int, default=256, help="row length T (prompt + slot)")
    parser.add_argument("--slot", type=int, default=48, help="slot length L: the last L positions of each row")
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    parser.add_argument("--whole-row", action="store_true", help="hand the loss all T positions, not only the slot")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from pretrain.corruption import corrupt
    from pretrain.losses import DiffusionLoss
    from pretrain.model import BackboneConfig, DiffusionLM
    from pretrain.tokenizer import SpecialIds, train_tokenizer

    start = time.perf_counter()
    text = networkx_source(2_000_000)
    tokenizer = train_tokenizer([text[i : i + 10_000] for i in range(0, len(text), 10_000)], vocab_size=args.vocab)
    special = SpecialIds.from_tokenizer(tokenizer)
    V = len(tokenizer)
    print(f"tokenizer: {V} tokens, trained on {len(text) / 1e6:.1f} M characters of networkx source "
          f"in {time.perf_counter() - start:.1f} s")

    B, T, L = args.batch, args.seq, args.slot
    ids = torch.tensor(tokenizer(text[:400_000])["input_ids"])
    if len(ids) < B * T:
        raise SystemExit(f"only {len(ids)} tokens of source for a {B} x {T} batch; lower --batch or --seq")
    clean = ids[: B * T].view(B, T)
    slot = torch.zeros(B, T, dtype=torch.bool)
    slot[:, -L:] = True
    gen = torch.Generator().manual_seed(0)
    c = corrupt(clean, slot, special, V, generator=gen, wrong_prob=0.1)
    weights = slot.float()
    lo = 0 if args.whole_row else T - L  # what the loss sees

    model = DiffusionLM.build(BackboneConfig(max_position_embeddings=max(512, T)), tokenizer,
                              slot_len=L, max_prompt=T - L)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = {"plain cross-entropy": DiffusionLoss(), "all six modifiers": DiffusionLoss.from_config(ALL_SIX)}
    print(f"model: {model.num_parameters() / 1e6:.1f} M parameters; batch {B} x {T}, slot {L}, loss over "
          f"{T - lo} positions per row; torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")

    def args_of(logits: torch.Tensor) -> tuple:
        return (logits, c.input_ids[:, lo:], c.targets[:, lo:], c.kind[:, lo:], weights[:, lo:], c.t, special)

    def step(loss_fn: DiffusionLoss) -> tuple[float, float]:
        begin, cpu = time.perf_counter(), time.process_time()
        optim.zero_grad(set_to_none=True)
        out = model(c.input_ids)
        loss, _ = loss_fn(*args_of(out.logits[:, lo:]))
        loss.backward()
        optim.step()
        return time.perf_counter() - begin, time.process_time() - cpu

    fixed = model(c.input_ids).logits[:, lo:].detach()

    def loss_only(loss_fn: DiffusionLoss) -> tuple[float, float]:
        logits = fixed.clone().requires_grad_()
        begin, cpu = time.perf_counter(), time.process_time()
        loss, _ = loss_fn(*args_of(logits))
        loss.backward()
        return time.perf_counter() - begin, time.process_time() - cpu

    names = list(losses)
    for bench, reps, label in ((step, args.steps, "training step (forward + backward + AdamW)"),
                               (loss_only, max(20, 4 * args.steps), "loss alone (forward + backward)")):
        times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for n in names:
            bench(losses[n])  # warm-up
        for i in range(reps):
            for n in names if i % 2 == 0 else names[::-1]:  # interleaved, alternating who goes first
                times[n].append(bench(losses[n]))
        base = [statistics.median(x[j] for x in times[names[0]]) for j in (0, 1)]
        print(f"{label}, median of {reps}:")
        for n in names:
            wall, cpu = (statistics.median(x[j] for x in times[n]) for j in (0, 1))
            print(f"  {n:<20} {wall * 1e3:9.1f} ms wall ({wall / base[0]:.3f}x plain)  "
                  f"{cpu * 1e3:9.1f} ms CPU ({cpu / base[1]:.3f}x plain)")
    load = os.getloadavg()[0]
    bias = losses["all six modifiers"].mask_logit_bias
    print(f"(CPU: this process's CPU time, less sensitive to other work on the machine; "
          f"the machine's 1-minute load average was {load:.1f}; learned [MASK] bias after the run: {bias:+.3f}; "
          f"goal for the training step: <= 1.15x)")


if __name__ == "__main__":
    main()
