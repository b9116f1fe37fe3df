"""`trident observe`: what expressions evaluate to at tasks' slots, on the unmutated library.

Either one task and expressions on the command line (``--task ID --expr 'len(G)' --expr
'sorted(G)'``), printed; or a JSONL file of ``{"task_id", "expression"}`` rows, written as the
same rows with the observation added (``kind``, ``text``, ``reason``; see
:mod:`sandbox.observable`). Expressions are treated as model output: gated, confined and run
under the capability layer, each observation confirmed by a second run under other seeds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import Limits
from .pool import Pool
from .tasks import TaskFormatError, load_tasks, read_rows

__all__ = ["ObserveConfig", "observe_job", "read_expressions"]


@dataclass
class ObserveConfig:
    """`trident observe`: observable forms of expressions at tasks' slots."""

    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine`"})
    task: str | None = field(default=None, metadata={"help": "one task id, observed with the expressions of expr (printed)"})
    expr: list[str] = field(default_factory=list, metadata={"help": "expressions to observe at --task (--expr, repeated)"})
    expressions: Path | None = field(default=None, metadata={"help": 'JSONL of {"task_id", "expression"} rows (instead of --task/--expr)'})
    out: Path | None = field(default=None, metadata={"help": "JSONL to write: each input row with its observation"})
    workers: int = field(default=0, metadata={"help": "sandbox worker processes; 0 = one per core"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "limits and isolation of each execution"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        if (self.task is None) == (self.expressions is None):
            raise ValueError("give either --task ID with --expr EXPR (repeated) or expressions=FILE.jsonl")
        if self.task is not None and not self.expr:
            raise ValueError(f"--task {self.task}: give at least one --expr EXPRESSION to observe")


def read_expressions(path: str | os.PathLike) -> list[dict[str, Any]]:
    rows = read_rows(path, ("task_id", "expression"), "expression file")
    if not rows:
        raise TaskFormatError(f"expression file '{path}' has no rows; write one {{\"task_id\", \"expression\"}} per line")
    return rows


def observe_job(cfg: ObserveConfig) -> list[dict[str, Any]]:
    """Observe, write ``cfg.out`` when given; returns the rows with their observations."""
    from tqdm import tqdm

    tasks = {t.id: t for t in load_tasks(cfg.tasks)}
    if cfg.task is not None:
        rows = [{"task_id": cfg.task, "expression": e} for e in cfg.expr]
    else:
        rows = read_expressions(cfg.expressions)  # type: ignore[arg-type]
    unknown = sorted({r["task_id"] for r in rows} - set(tasks))
    if unknown:
        raise TaskFormatError(f"{len(unknown)} task id(s) not in {cfg.tasks}, e.g. {unknown[0]!r}")
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_task.setdefault(r["task_id"], []).append(i)
    items = [(tasks[k], [rows[i]["expression"] for i in idx]) for k, idx in by_task.items()]
    with tqdm(total=len(rows), unit="expr", desc="observing", disable=not cfg.progress) as bar, \
            Pool(cfg.workers, cfg.sandbox) as pool:
        found = pool.observe(items, on_done=bar.update)
    out = [dict(r) for r in rows]
    for idx, seen in zip(by_task.values(), found):
        for i, o in zip(idx, seen):
            out[i]["observation"] = o.to_dict()
    if cfg.out is not None:
        path = Path(cfg.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in out))
        os.replace(tmp, path)
    return out
