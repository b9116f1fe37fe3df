"""One SFT training step (forward, cross-entropy on the slot, backward) of the default backbone
in fp32 against bf16 autocast, on this machine's CPU: the ratio ``precision: auto`` decides on.
On a CPU with native bfloat16 (AVX512-BF16, AMX) bf16 is the faster; elsewhere it is emulated.

    python bench/bench_precision.py [--batch 32] [--steps 3] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pretrain.hardware import native_bf16
from pretrain.model import DiffusionLM
from pretrain.sft import SFTConfig
from pretrain.tokenizer import train_tokenizer


def step_seconds(model: DiffusionLM, ids: torch.Tensor, bf16: bool, steps: int) -> float:
    """Best of ``steps`` timed steps after one warm-up step."""
    L = model.slot_len
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids, torch.ones_like(ids), last=L).logits
        F.cross_entropy(logits.float().flatten(0, 1), ids[:, -L:].flatten()).backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="rows per step (the default SFT batch)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision; the best counts")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SFTConfig()
    texts = [f"assert f(x{i}) == {i} and g(y{i}) is not None  # {i % 7}" for i in range(2000)]
    tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size)
    model = DiffusionLM.build(cfg.model, tokenizer, slot_len=cfg.data.slot_len, max_prompt=cfg.data.max_prompt)
    model.train()
    width = cfg.data.slot_len + cfg.data.max_prompt
    ids = torch.randint(5, len(tokenizer), (args.batch, width), generator=torch.Generator().manual_seed(0))
    fp32 = step_seconds(model, ids, False, args.steps)
    bf16 = step_seconds(model, ids, True, args.steps)
    print(f"{model.num_parameters() / 1e6:.1f}M parameters, batch {args.batch} x {width} tokens, "
          f"{torch.get_num_threads()} threads, native bfloat16: {native_bf16()}")
    print(f"fp32 step {fp32:.3f} s, bf16 autocast step {bf16:.3f} s: bf16 takes {bf16 / fp32:.2f}x fp32's time")


if __name__ == "__main__":
    main()
