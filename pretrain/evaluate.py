"""Evaluation of a Stage 1 model on a split, with the baselines beside it.

Systems, each scored on the same tasks with the scorers of ``rewards.text`` and the sandbox:

- ``retrieval``: the target of the most similar training task (pretrain/retrieval.py);
- ``retrieval+names``: that target with the names it reads but this test does not define
  replaced by the prefix's most recently bound name (pretrain/names.py): how much of a gain
  is plain renaming;
- ``constant``: one fixed assertion for every task (token F1 is gamed by it: never a headline);
- ``diffusion``: the model from an all-[MASK] slot;
- ``edit``: diffusion as editing. The start is chosen by the model: the ``retrieve_k`` most
  similar training targets, each with its undefined names adapted to the prefix in every
  combination (up to ``adapt_cap``), ranked by the model's own likelihood of the whole slot
  (:func:`pretrain.sampler.slot_log_likelihood`); then the positions the critic doubts are
  remasked and denoised.

And the critic as an error detector: on valid slots where some tokens were replaced by the
model's own wrong guesses, the AUROC of ``1 - σ(z_i)`` for spotting them, next to the AUROC of
the generator's confidence ``1 - p(x_i)`` on the same positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from common.stats import auroc
from sandbox.api import Limits
from sandbox.tasks import Task

from .data import DataConfig, Encoded, Encoder, collate
from .model import DiffusionLM
from .names import adaptations
from .retrieval import Retriever
from .sampler import (SamplerConfig, diffusion_generate, edit_start, is_assertion, sample_tokens,
                      slot_log_likelihood)


@dataclass
class EvalConfig:
    """How a Stage 1 model is evaluated."""

    split: Literal["valid", "test"] = field(default="valid", metadata={"help": "split to evaluate on"})
    max_tasks: int | None = field(default=None, metadata={"help": "evaluate at most this many tasks (first in file order)"})
    batch_size: int = field(default=64, metadata={"help": "tasks generated together"})
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(temperature=0.0, steps=48, block_size=1,
                                                                         eos_when_parses=True, syntax_guard=True,
                                                                         edit_threshold=0.05),
                                   metadata={"help": "sampler settings: by default greedy, one position per step left to right, an end only after an assertion that parses, brackets guarded, and edits only where the critic is nearly sure (measured best on a 3.7M model; docs/pretrain.md)"})
    execute: bool = field(default=True, metadata={"help": "run candidates in the sandbox for the pass rate"})
    workers: int = field(default=0, metadata={"help": "sandbox workers; 0 = one per core"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "sandbox limits"})
    retrieve_k: int = field(default=5, metadata={"help": "edit: the model chooses its start among this many most similar training targets (measured best of 3/5/10 on valid; docs/pretrain.md)"})
    adapt_cap: int = field(default=16, metadata={"help": "edit: at most this many name adaptations per retrieved target"})
    constant: str = field(default="assert len(G) == 0", metadata={"help": "the constant baseline's assertion"})
    wrong_share: float = field(default=0.15, metadata={"help": "share of target tokens replaced by wrong ones for the critic AUROC"})
    seed: int = field(default=0, metadata={"help": "seed of the AUROC corruption"})

    def __post_init__(self) -> None:
        if self.retrieve_k < 1:
            raise ValueError(f"evaluation.retrieve_k={self.retrieve_k} must be >= 1 (1 = edit the nearest target)")
        if self.adapt_cap < 1:
            raise ValueError(f"evaluation.adapt_cap={self.adapt_cap} must be >= 1 (1 = one adaptation per target)")


SYSTEMS = ("retrieval", "retrieval+names", "constant", "diffusion", "edit")


def start_rows(encoder: Encoder, tasks: Sequence[Task], starts: Sequence[str] | None = None) -> list[Encoded]:
    """Each task's prompt with its slot all [MASK], or holding its start text (one per task) when
    that fits the slot (else all [MASK])."""
    rows = []
    for k, task in enumerate(tasks):
        row = encoder.encode_prompt_only(task)
        if starts is not None:
            fitted = encoder.slot(starts[k])
            if fitted is not None:
                row = Encoded(row.task_id, row.prompt, fitted[0], fitted[1])
        rows.append(row)
    return rows


def generate(model: DiffusionLM, encoder: Encoder, tasks: Sequence[Task], sampler: SamplerConfig, *,
             starts: Sequence[str] | None = None, batch_size: int = 64) -> list[str]:
    """Assertions for ``tasks``: from all-[MASK], or by editing ``starts`` (one per task)."""
    model.eval()
    out: list[str] = []
    for lo in range(0, len(tasks), batch_size):
        chunk = tasks[lo:lo + batch_size]
        rows = start_rows(encoder, chunk, None if starts is None else starts[lo:lo + batch_size])
        batch = collate(rows, model.special, 0.0).to(model.device)
        ids = batch.input_ids
        if starts is not None:
            ids = edit_start(model, ids, batch.attention_mask, sampler)
        result = diffusion_generate(model, ids, batch.attention_mask, sampler, record=False)
        out += [encoder.decode(row.tolist()) for row in result.tokens]
    return out


@torch.no_grad()
def start_candidates(encoder: Encoder, tasks: Sequence[Task], retriever: Retriever, *, retrieve_k: int,
                     adapt_cap: int) -> tuple[list[Encoded], list[int], list[str]]:
    """The candidate starts of each task: its ``retrieve_k`` most similar training targets, each
    adapted to the prefix's names (:func:`pretrain.names.adaptations`), as rows (prompt + slot),
    the index of the task each belongs to, and their texts. Candidates longer than the slot are
    skipped, so a task may have none."""
    rows, owner, texts = [], [], []
    for i, task in enumerate(tasks):
        prompt = encoder.prompt(task)
        for near in retriever.ranked(task, retrieve_k):
            for text in adaptations(near.target, task, adapt_cap):
                fitted = encoder.slot(text)
                if fitted is not None:
                    rows.append(Encoded(task.id, prompt, fitted[0], fitted[1]))
                    owner.append(i)
                    texts.append(text)
    return rows, owner, texts


def edit_starts(model: DiffusionLM, encoder: Encoder, tasks: Sequence[Task], retriever: Retriever, *,
                retrieve_k: int, adapt_cap: int, batch_size: int = 64) -> list[str]:
    """Each task's edit start: of its :func:`start_candidates`, the slot the model finds most
    likely; a task with none keeps its nearest target."""
    model.eval()
    rows, owner, texts = start_candidates(encoder, tasks, retriever, retrieve_k=retrieve_k, adapt_cap=adapt_cap)
    scores: list[float] = []
    for lo in range(0, len(rows), batch_size):
        batch = collate(rows[lo:lo + batch_size], model.special, 0.0).to(model.device)
        scores += slot_log_likelihood(model, batch.input_ids, batch.attention_mask).tolist()
    best: dict[int, tuple[float, str]] = {}
    for i, score, text in zip(owner, scores, texts):
        if i not in best or score > best[i][0]:
            best[i] = (score, text)
    return [best[i][1] if i in best else retriever.nearest(task).target for i, task in enumerate(tasks)]


def text_scores(tasks: Sequence[Task], texts: Sequence[str]) -> dict[str, float]:
    from rewards.text import exact_match, f1, python_tokens

    n = max(1, len(texts))
    parsed = sum(1 for t in texts if is_assertion(t))
    exact = exact_match(None, list(texts), target=[t.target for t in tasks])
    f1s = [f1(python_tokens(c), python_tokens(t.target)) for c, t in zip(texts, tasks)]
    return {"ast_valid": parsed / n, "exact_match": sum(exact) / n, "token_f1": sum(f1s) / n,
            "distinct": len(set(texts)) / n}


def execution_rates(tasks: Sequence[Task], systems: dict[str, list[str]], cfg: EvalConfig) -> dict[str, dict[str, float]]:
    """Per system, the share of its candidates that pass in the sandbox (``pass``) and that are
    PANS (pass, assert, non-trivial, parse: ``rewards.execution.pans``), one pool for all;
    ``infra`` verdicts (the sandbox failed, not the candidate) are left out of both."""
    from rewards.execution import pans_parts
    from sandbox.pool import Pool

    items = [(task, [texts[i] for texts in systems.values()]) for i, task in enumerate(tasks)]
    with Pool(workers=cfg.workers, limits=cfg.sandbox) as pool:
        verdicts = pool.score(items, mutants=False)
    out = {}
    for j, (name, texts) in enumerate(systems.items()):
        ok = [i for i, row in enumerate(verdicts) if row[j].status == "passed"]
        infra = sum(1 for row in verdicts if row[j].status == "infra")
        n = max(1, len(tasks) - infra)
        out[name] = {"pass": len(ok) / n, "pans": sum(all(pans_parts(texts[i]).values()) for i in ok) / n}
    return out


@torch.no_grad()
def critic_auroc(model: DiffusionLM, encoder: Encoder, tasks: Sequence[Task], cfg: EvalConfig) -> dict[str, float]:
    """AUROC for spotting wrong slot tokens: the critic's vs the generator's confidence.

    Wrong tokens are the model's own samples from an all-[MASK] slot where they differ from
    the target: the mistakes it really makes, not random noise.
    """
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed)
    s = model.special
    forbidden = torch.tensor(sorted(set(s.never_generated()) | {s.pad}), device=model.device)
    crit_scores: list[float] = []
    conf_scores: list[float] = []
    labels: list[bool] = []
    rows = [e for e in (encoder.encode(t) for t in tasks) if e is not None]
    L = model.slot_len
    for lo in range(0, len(rows), cfg.batch_size):
        batch = collate(rows[lo:lo + cfg.batch_size], s, 0.0).to(model.device)
        clean = batch.input_ids
        blank = clean.clone()
        blank[:, -L:] = s.mask
        guess = sample_tokens(model(blank, batch.attention_mask, last=L).logits, forbidden, g)  # (B, L)
        target_pos = batch.content[:, -L:]  # target tokens and [EOS]
        coin = torch.rand(guess.shape, generator=g).to(model.device) < cfg.wrong_share
        wrong = coin & target_pos & (guess != clean[:, -L:])
        state = clean.clone()
        state[:, -L:] = torch.where(wrong, guess, clean[:, -L:])
        out = model(state, batch.attention_mask, last=L)
        p_tok = torch.softmax(out.logits[:, -L:].float(), -1).gather(-1, state[:, -L:, None]).squeeze(-1)  # (B, L)
        crit = torch.sigmoid(out.critic[:, -L:].float())
        sel = target_pos
        crit_scores += (1 - crit[sel]).tolist()
        conf_scores += (1 - p_tok[sel]).tolist()
        labels += wrong[sel].tolist()
    return {"critic_auroc": auroc(crit_scores, labels), "confidence_auroc": auroc(conf_scores, labels),
            "wrong_positions": sum(labels), "positions": len(labels)}


def evaluate(model: DiffusionLM, encoder: Encoder, tasks: Sequence[Task], train: Sequence[Task], cfg: EvalConfig) -> dict[str, Any]:
    """All systems on ``tasks``: a dict of ``{system: {metric: value}}`` plus the critic AUROCs."""
    tasks = list(tasks)[:cfg.max_tasks] if cfg.max_tasks else list(tasks)
    retriever = Retriever(train)
    retrieved = [retriever.nearest(t).target for t in tasks]
    starts = edit_starts(model, encoder, tasks, retriever, retrieve_k=cfg.retrieve_k, adapt_cap=cfg.adapt_cap,
                         batch_size=cfg.batch_size)
    systems = {
        "retrieval": retrieved,
        "retrieval+names": [adaptations(text, task, 1)[0] for text, task in zip(retrieved, tasks)],
        "constant": [cfg.constant] * len(tasks),
        "diffusion": generate(model, encoder, tasks, cfg.sampler, batch_size=cfg.batch_size),
        "edit": generate(model, encoder, tasks, cfg.sampler, starts=starts, batch_size=cfg.batch_size),
    }
    report: dict[str, Any] = {name: text_scores(tasks, texts) for name, texts in systems.items()}
    if cfg.execute:
        for name, rates in execution_rates(tasks, systems, cfg).items():
            report[name].update(rates)
    report["critic"] = critic_auroc(model, encoder, tasks, cfg)
    report["tasks"] = len(tasks)
    report["samples"] = {name: texts[:20] for name, texts in systems.items()}
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as JSON and print its table: one row per system, then the critic."""
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    print(f"evaluation: {path}")


def format_report(report: dict[str, Any]) -> str:
    metrics = ("ast_valid", "exact_match", "pass", "pans", "token_f1", "distinct")
    lines = [f"{str(report['tasks']) + ' tasks':<16}" + " ".join(f"{m:>11}" for m in metrics)]
    for name in SYSTEMS:
        if name not in report:  # a report written before the system existed
            continue
        row = report[name]
        lines.append(f"{name:<16}" + " ".join(f"{row[m]:>11.1%}" if m in row else f"{'-':>11}" for m in metrics))
    c = report["critic"]
    lines.append(f"wrong-token AUROC: critic {c['critic_auroc']:.3f}, generator confidence {c['confidence_auroc']:.3f} "
                 f"({c['wrong_positions']} wrong of {c['positions']} positions)")
    lines.append("(token F1 is gamed by the constant guess: compare systems on pass and exact match)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pretrain.evaluate --model DIR``: evaluate a trained model against the baselines."""
    import argparse

    from sandbox.tasks import load_tasks

    parser = argparse.ArgumentParser(prog="python -m pretrain.evaluate", description=main.__doc__)
    parser.add_argument("--model", type=Path, required=True, help="model directory from `trident sft` (its final/)")
    parser.add_argument("--tasks", type=Path, default=Path("runs/default/mine/tasks.jsonl"), help="task file")
    parser.add_argument("--split", default="valid", help="split to evaluate on")
    parser.add_argument("--max-tasks", type=int, default=None, help="evaluate at most this many tasks")
    parser.add_argument("--out", type=Path, default=None, help="report JSON (default: eval-SPLIT.json beside the model)")
    args = parser.parse_args(argv)
    model = DiffusionLM.load(args.model).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    tasks = load_tasks(args.tasks)
    split = [t for t in tasks if t.split == args.split]
    train = [t for t in tasks if t.split == "train"]
    cfg = EvalConfig(split=args.split, max_tasks=args.max_tasks)
    report = evaluate(model, encoder, split, train, cfg)
    write_report(report, args.out or args.model.parent / f"eval-{args.split}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
