"""How much the start choice decides: for valid tasks, the pass and kill rates of the start the
model picks (its most likely candidate, as the evaluation edits), of the best candidate (oracle),
of the average candidate, and the expected pass rate of drawing by softmax(loglik / T).

    python bench/start_headroom.py [--tasks 150] [--model runs/default/sft/final]
"""

from __future__ import annotations

import argparse
import statistics as st

import torch

from pretrain.data import DataConfig, Encoder, collate
from pretrain.evaluate import start_candidates
from pretrain.model import DiffusionLM
from pretrain.retrieval import Retriever
from pretrain.sampler import slot_log_likelihood
from sandbox.api import Limits
from sandbox.pool import Pool
from sandbox.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=150, help="first valid tasks in file order")
    parser.add_argument("--model", default="runs/default/sft/final")
    parser.add_argument("--task-file", default="runs/default/mine/tasks.jsonl")
    args = parser.parse_args()
    tasks = load_tasks(args.task_file)
    train = [t for t in tasks if t.split == "train"]
    valid = [t for t in tasks if t.split == "valid"][:args.tasks]
    model = DiffusionLM.load(args.model).eval()
    enc = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    rows, owner, texts = start_candidates(enc, valid, Retriever(train), retrieve_k=5, adapt_cap=16)
    with torch.no_grad():
        ll = torch.cat([slot_log_likelihood(model, b.input_ids, b.attention_mask)
                        for b in (collate(rows[lo:lo + 64], model.special, 0.0) for lo in range(0, len(rows), 64))])
    own = torch.tensor(owner)
    kept = [i for i in range(len(valid)) if (own == i).any()]
    items = [(valid[i], [texts[c] for c in torch.nonzero(own == i).flatten().tolist()]) for i in kept]
    lls = [ll[own == i] for i in kept]
    with Pool(workers=0, limits=Limits()) as pool:
        verdicts = pool.score(items, mutants=True)
    n = len(kept)
    chosen = [int(x.argmax()) for x in lls]
    passed = [[float(v.passed) for v in row] for row in verdicts]
    print(f"{n} valid tasks with candidates, {st.mean(len(p) for p in passed):.1f} candidates each")
    print(f"pass: chosen {st.mean(p[c] for p, c in zip(passed, chosen)):.3f}  best {st.mean(max(p) for p in passed):.3f}"
          f"  average candidate {st.mean(st.mean(p) for p in passed):.3f}")
    mut = [k for k in range(n) if items[k][0].mutants]
    kill = [[len(v.kills) / len(items[k][0].mutants) for v in verdicts[k]] for k in mut]
    print(f"kill ({len(mut)} tasks with mutants): chosen {st.mean(kill[j][chosen[k]] for j, k in enumerate(mut)):.3f}"
          f"  best {st.mean(max(x) for x in kill):.3f}")
    for temp in (1.0, 3.0):
        e = st.mean(float((torch.softmax(x / temp, 0) * torch.tensor(p)).sum()) for x, p in zip(lls, passed))
        print(f"expected pass drawing by softmax(loglik / {temp:g}): {e:.3f}")


if __name__ == "__main__":
    main()
