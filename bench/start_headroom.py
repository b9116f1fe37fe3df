"""How much the start choice decides: for the tasks of a split (valid by default), the pass and
kill rates of the start the model picks (its most likely candidate, as the evaluation edits), of
the best candidate (oracle), of the best among the k most likely (the most a start policy over
them can reach), of the average candidate, and for start temperatures T how peaked the start policy
softmax(loglik / T) over a task's 4 most likely candidates (rollout.start_top) is: its mean entropy,
the mean probability of the most likely candidate, the expected pass rate of drawing from it, and
the mean size of the start term's exact expected policy gradient on a task's scores,
``Σ_c |∂/∂ℓ(c) Σ_c' π(c') A(c') log π(c')| = Σ_c π(c) |R(c) - Σ_c' π(c') R(c')| / T`` (R the pass
reward), against T = 1: a peaked π hands the learner almost no gradient, since the most likely
start's ``∇ log π`` vanishes as its π → 1 and every other start weighs its own small π.
Last, the pass and kill rates of the 8 most likely candidates that call a function under test
(the ``focal`` reward's test) and of those that do not.

    python bench/start_headroom.py [--tasks 150] [--model runs/default/sft/final] [--split valid|train] [--top 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics as st

import torch

from pretrain.data import DataConfig, Encoder, collate
from pretrain.evaluate import start_candidates
from pretrain.model import DiffusionLM
from pretrain.retrieval import Retriever
from pretrain.sampler import slot_log_likelihood
from rewards.execution import calls_focal
from sandbox.api import Limits
from sandbox.pool import Pool
from sandbox.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=150, help="first tasks of the split in file order (or of a sample: --seed)")
    parser.add_argument("--model", default="runs/default/sft/final")
    parser.add_argument("--task-file", default="runs/default/mine/tasks.jsonl")
    parser.add_argument("--split", default="valid", help="tasks of this split (train: each retrieves from the others' files)")
    parser.add_argument("--seed", type=int, default=None, help="a random sample of the split (this seed) instead of its first tasks")
    parser.add_argument("--top", type=int, default=4, help="candidates the start policy draws among (rollout.start_top)")
    args = parser.parse_args()
    tasks = load_tasks(args.task_file)
    train = [t for t in tasks if t.split == "train"]
    valid = [t for t in tasks if t.split == args.split]
    if args.seed is not None:
        random.Random(args.seed).shuffle(valid)
    valid = valid[:args.tasks]
    model = DiffusionLM.load(args.model).eval()
    enc = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    # A training task retrieves from other test files only, as RL rollouts and a valid task do.
    retriever = Retriever(train, other_modules=args.split == "train")
    rows, owner, texts = start_candidates(enc, valid, retriever, retrieve_k=5, adapt_cap=16)
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
    print(f"{n} {args.split} tasks with candidates, {st.mean(len(p) for p in passed):.1f} candidates each")
    print(f"pass: chosen {st.mean(p[c] for p, c in zip(passed, chosen)):.3f}  best {st.mean(max(p) for p in passed):.3f}"
          f"  average candidate {st.mean(st.mean(p) for p in passed):.3f}")
    mut = [k for k in range(n) if items[k][0].mutants]
    kill = [[len(v.kills) / len(items[k][0].mutants) for v in verdicts[k]] for k in mut]
    print(f"kill ({len(mut)} tasks with mutants): chosen {st.mean(kill[j][chosen[k]] for j, k in enumerate(mut)):.3f}"
          f"  best {st.mean(max(x) for x in kill):.3f}")
    # What a start policy over the k most likely candidates can reach at best: the best of those k.
    order = [torch.argsort(x, descending=True).tolist() for x in lls]
    print("best of the k most likely candidates (k = 1 is the chosen start):")
    for k in (1, 2, 4, 8, 16):
        best_pass = st.mean(max(p[c] for c in o[:k]) for p, o in zip(passed, order))
        best_kill = st.mean(max(kill[j][c] for c in order[i][:k]) for j, i in enumerate(mut))
        print(f"  k = {k:>2}: pass {best_pass:.3f}  kill {best_kill:.3f}")
    # Which candidates kill: those that call a function under test (the `focal` reward), or the others.
    kill_of = dict(zip(mut, kill))
    top8 = [(k, c, calls_focal(items[k][1][c], items[k][0].focal_functions)) for k, o in enumerate(order) for c in o[:8]]
    print("the 8 most likely candidates, by whether they call a function under test (reward 'focal'):")
    for calls in (True, False):
        picked = [(k, c) for k, c, f in top8 if f == calls]
        killed = [kill_of[k][c] for k, c in picked if k in kill_of]
        print(f"  {'call one' if calls else 'do not  '}: {len(picked)} candidates, pass {st.mean(passed[k][c] for k, c in picked):.3f}"
              f"  kill {st.mean(killed):.3f} (share of mutants, {len(killed)} on tasks with mutants)")
    print(f"start policy over the {args.top} most likely candidates (rollout.start_top):")
    print(f"{'T':>5} {'entropy':>8} {'top prob':>9} {'expected pass':>14} {'gradient vs T=1':>16}")
    base = None
    for temp in (1.0, 2.0, 4.0, 8.0):
        ent, top, exp_pass, grad = [], [], [], []
        for x, p in zip(lls, passed):
            keep = torch.argsort(x, descending=True)[:args.top]
            pi = torch.softmax(x[keep] / temp, 0)
            r = torch.tensor(p)[keep]
            ent.append(float(-(pi * pi.clamp_min(1e-30).log()).sum()))
            top.append(float(pi.max()))
            exp_pass.append(float((pi * r).sum()))
            grad.append(float((pi * (r - (pi * r).sum()).abs()).sum()) / temp)
        base = base or st.mean(grad)
        print(f"{temp:>5g} {st.mean(ent):>8.3f} {st.mean(top):>9.3f} {st.mean(exp_pass):>14.3f} "
              f"{st.mean(grad) / base:>15.2f}x")


if __name__ == "__main__":
    main()
