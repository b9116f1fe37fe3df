"""`trident seqkd`: sequence-level knowledge distillation data — the teacher's best of N samples.

For each task of a split (train by default) the teacher samples ``n`` slots from its own
distribution; the best one is kept, by the teacher's own score (its mean per-token
log-likelihood of the whole slot, :func:`pretrain.sampler.slot_log_likelihood` over the token
count, so length does not decide) or, with ``select: execution``, the best-scored among those
that pass in the sandbox (PANS: pass, assert, non-trivial, parse; a task where none does gets
no output and trains on gold only). The student reads the file through ``sequence_kd.path`` of
``trident sft`` and trains on these outputs mixed with gold at ``sequence_kd.ratio``; its
``semantic`` component can measure proximity to them (``reference: teacher | both``).

Output: JSONL, one row per task ``{"task_id", "text", "score", "passed", "assertion", "n"}``
(``text`` null where no sample was kept), appended a chunk at a time, so a stopped run resumes
where it was (tasks already in the file are skipped).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from sandbox.api import Limits
from sandbox.tasks import load_tasks

from .data import DataConfig, Encoded, Encoder, collate
from .errors import TrainError
from .model import DiffusionLM
from .sampler import SamplerConfig, diffusion_generate, is_assertion, slot_log_likelihood


@dataclass
class SeqKDConfig:
    """`trident seqkd`: the teacher's best of N samples for each task, for sequence-level KD."""

    teacher: Path | None = field(default=None, metadata={"help": "teacher DiffusionLM directory (a `trident sft` run's final/)"})
    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine`"})
    out: Path = field(default=Path("runs/default/seqkd/teacher.jsonl"), metadata={"help": "output JSONL (resumed when it exists)"})
    split: Literal["train", "valid", "test"] = field(default="train", metadata={"help": "split to write outputs for"})
    n: int = field(default=4, metadata={"help": "samples per task"})
    select: Literal["score", "execution"] = field(default="score", metadata={"help": "score: the teacher's mean log-likelihood; execution: the best-scored sample that passes in the sandbox"})
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(temperature=1.0, steps=48, block_size=1, eos_when_parses=True,
                                                                         syntax_guard=True),
                                   metadata={"help": "teacher sampling: by default at temperature 1, one position per step left to right, brackets guarded"})
    batch_size: int = field(default=64, metadata={"help": "slots generated together"})
    max_tasks: int | None = field(default=None, metadata={"help": "at most this many tasks (first in file order)"})
    workers: int = field(default=0, metadata={"help": "sandbox workers for select=execution; 0 = one per core"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "sandbox limits for select=execution"})
    seed: int = field(default=0, metadata={"help": "seed of the sampling"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n={self.n} must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.sampler.temperature == 0 and self.n > 1:
            raise ValueError(f"sampler.temperature=0 draws the same slot {self.n} times; sample at a temperature > 0 "
                             f"or set n=1")


def read_outputs(path: Path) -> dict[str, str]:
    """``{task_id: text}`` of a file written by :func:`run`; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"sequence-level KD file '{path}' not found; make it with `trident seqkd --teacher DIR --out {path}`")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if row["text"] is not None:  # None: no sample of the teacher's was kept for the task
                    out[str(row["task_id"])] = str(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise TrainError(f"'{path}' line {lineno} is not a `trident seqkd` row ({exc}); remake the file "
                                 f"or remove the line") from None
    return out


def _done(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    done = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                done.add(str(json.loads(line)["task_id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a stop mid-write: its task is redone
    return done


@torch.no_grad()
def best_of_n(teacher: DiffusionLM, encoder: Encoder, tasks: list, cfg: SeqKDConfig, seed: int,
              pool: Any = None) -> list[dict[str, Any]]:
    """For each task, the best of ``cfg.n`` teacher samples as an output row (``text`` None: none
    was kept: each was empty, too long, or failed in the sandbox under ``select: execution``)."""
    rows = [encoder.encode_prompt_only(t) for t in tasks for _ in range(cfg.n)]
    texts: list[str] = []
    for k, lo in enumerate(range(0, len(rows), cfg.batch_size)):
        batch = collate(rows[lo:lo + cfg.batch_size], teacher.special, 0.0).to(teacher.device)
        sampler = dataclasses.replace(cfg.sampler, seed=seed + k)  # the n copies of a prompt draw apart in a batch
        result = diffusion_generate(teacher, batch.input_ids, batch.attention_mask, sampler, record=False)
        texts += [encoder.decode(r.tolist()) for r in result.tokens]
    scores = _mean_log_likelihood(teacher, encoder, [r.prompt for r in rows], texts, cfg.batch_size)
    passed: list[bool | None] = [None] * len(texts)
    if cfg.select == "execution":
        from rewards.execution import pans

        verdicts = pool.score([(t, texts[i * cfg.n:(i + 1) * cfg.n]) for i, t in enumerate(tasks)], mutants=False)
        flat = [v for row in verdicts for v in row]
        passed = [r == 1.0 for r in pans(None, texts, verdicts=flat)]
    out: list[dict[str, Any]] = []
    for i, task in enumerate(tasks):
        span = range(i * cfg.n, (i + 1) * cfg.n)
        keep = [j for j in span if scores[j] > float("-inf") and (passed[j] if cfg.select == "execution" else True)]
        if not keep:  # recorded all the same, so that a resumed run does not redo the task
            out.append({"task_id": task.id, "text": None, "score": None, "passed": None, "assertion": False, "n": cfg.n})
            continue
        j = max(keep, key=lambda k: scores[k])
        out.append({"task_id": task.id, "text": texts[j], "score": scores[j], "passed": passed[j],
                    "assertion": is_assertion(texts[j]), "n": cfg.n})
    return out


def _mean_log_likelihood(model: DiffusionLM, encoder: Encoder, prompts: list, texts: list[str], batch_size: int) -> list[float]:
    """The teacher's mean per-token log-likelihood of each text in its slot (-inf: empty, or too
    long for the slot once re-tokenized; such a sample is never kept)."""
    encoded, where = [], []
    for i, (prompt, text) in enumerate(zip(prompts, texts)):
        slot = encoder.slot(text) if text else None
        if slot is not None:
            encoded.append(Encoded("", prompt, slot[0], slot[1]))
            where.append(i)
    scores = [float("-inf")] * len(texts)
    for lo in range(0, len(encoded), batch_size):
        chunk = encoded[lo:lo + batch_size]
        batch = collate(chunk, model.special, 0.0).to(model.device)
        total = slot_log_likelihood(model, batch.input_ids, batch.attention_mask).tolist()
        for k, (e, s) in enumerate(zip(chunk, total)):
            scores[where[lo + k]] = s / e.length
    return scores


def run(cfg: SeqKDConfig) -> dict[str, Any]:
    """Write (or complete) ``cfg.out``; returns counts."""
    from tqdm import tqdm

    if cfg.teacher is None:
        raise TrainError("give the teacher: `trident seqkd --teacher DIR` (a `trident sft` run's final/)")
    if not cfg.tasks.is_file():
        raise TrainError(f"task file '{cfg.tasks}' not found; mine one with `trident mine --out {cfg.tasks}`")
    teacher = DiffusionLM.load(cfg.teacher).eval()
    encoder = Encoder(teacher.tokenizer, DataConfig(slot_len=teacher.slot_len, max_prompt=teacher.max_prompt))
    tasks = [t for t in load_tasks(cfg.tasks) if t.split == cfg.split][:cfg.max_tasks]
    done = _done(cfg.out)
    todo = [t for t in tasks if t.id not in done]
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    per_chunk = max(1, cfg.batch_size // cfg.n)
    kept = 0
    pool = None
    if cfg.select == "execution" and todo:
        from sandbox.pool import Pool

        pool = Pool(workers=cfg.workers, limits=cfg.sandbox)
    print(f"seqkd: {teacher.num_parameters() / 1e6:.1f}M-parameter teacher, best of {cfg.n} by {cfg.select}; "
          f"{len(todo)} of {len(tasks)} {cfg.split} tasks to do" + (f" ({len(done)} already in '{cfg.out}')" if done else ""))
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="seqkd", unit="task", disable=not cfg.progress,
               dynamic_ncols=True)
    try:
        with open(cfg.out, "a", encoding="utf-8") as fh:
            for lo in range(0, len(todo), per_chunk):
                chunk = todo[lo:lo + per_chunk]
                seed = cfg.seed * 1_000_003 + len(done) + lo  # a resumed run draws afresh, deterministically
                for row in best_of_n(teacher, encoder, chunk, cfg, seed, pool):
                    fh.write(json.dumps(row) + "\n")
                    kept += row["text"] is not None
                fh.flush()
                os.fsync(fh.fileno())
                bar.update(len(chunk))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
    total = len(read_outputs(cfg.out))
    print(f"seqkd: {kept} outputs kept now (of {len(todo)} tasks), {total} in all; file: {cfg.out}")
    return {"written": kept, "total": total, "tasks": len(tasks)}
