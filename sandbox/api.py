"""The sandbox's Python API: ``execute`` candidates for a task, ``score_file`` for the CLI.

Execution goes through a :class:`~sandbox.zygote.ZygoteServer` per package, started on first
use and kept for the life of the process.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .execution import Verdict
from .tasks import Task, TaskFormatError, load_tasks
from .zygote import ZygoteServer, job_for

TIER = "none"  # the execution core isolates by fork only; hardened tiers come with the sandbox


@dataclass
class Limits:
    """Per-candidate limits."""

    timeout_s: float = field(default=5.0, metadata={"help": "wall-clock limit of one execution"})
    mutant_timeout_s: float = field(default=2.0, metadata={"help": "limit of one execution under a mutant"})


_SERVERS: dict[str, ZygoteServer] = {}


def _server(package: str) -> ZygoteServer:
    server = _SERVERS.get(package)
    if server is None or not server.alive():
        server = _SERVERS[package] = ZygoteServer(package)
    return server


@atexit.register
def shutdown() -> None:
    """Stop the zygote servers this process started."""
    while _SERVERS:
        _SERVERS.popitem()[1].close()


def execute(task: Task, candidates: Sequence[str], *, mutants: bool = True, limits: Limits | None = None) -> list[Verdict]:
    """Run each candidate in ``task``'s slot; with ``mutants``, a passing one also runs under
    each of the task's mutants, and ``kills`` lists the ids of those it killed."""
    limits = limits or Limits()
    server = _server(task.package)
    jobs = [job_for(task, c, timeout=limits.timeout_s) for c in candidates]
    verdicts = server.run(task.test_module, jobs)
    for v in verdicts:
        v.tier = TIER
    if mutants and task.mutants:
        passing = [i for i, v in enumerate(verdicts) if v.status == "passed"]
        mjobs = [job_for(task, candidates[i], timeout=limits.mutant_timeout_s, mutant=m) for i in passing for m in task.mutants]
        results = server.run(task.test_module, mjobs) if mjobs else []
        for k, i in enumerate(passing):
            chunk = results[k * len(task.mutants) : (k + 1) * len(task.mutants)]
            if any(r.status == "infra" for r in chunk):
                verdicts[i] = Verdict("infra", next(r.reason for r in chunk if r.status == "infra"), verdicts[i].seconds, tier=TIER)
                continue
            verdicts[i].kills = [m.id for m, r in zip(task.mutants, chunk) if r.status == "failed"]
            verdicts[i].mutants = len(task.mutants)
            verdicts[i].seconds += sum(r.seconds for r in chunk)
    return verdicts


def read_candidates(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"candidate file '{path}' not found")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) or not isinstance(row.get("candidate"), str):
                raise TaskFormatError(f'{path}:{lineno}: expected {{"task_id": str, "candidate": str}}')
            rows.append(row)
    return rows


def score_file(tasks_path: str | os.PathLike, candidates_path: str | os.PathLike, out: str | os.PathLike,
               *, mutants: bool = True, limits: Limits | None = None, progress: bool = True) -> dict[str, int]:
    """``trident score``: verdicts for a candidate file, one output line per input line."""
    from tqdm import tqdm

    tasks = {t.id: t for t in load_tasks(tasks_path)}
    rows = read_candidates(candidates_path)
    unknown = sorted({r["task_id"] for r in rows} - set(tasks))
    if unknown:
        raise TaskFormatError(f"{candidates_path}: {len(unknown)} task id(s) not in {tasks_path}, e.g. {unknown[0]!r}")
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_task.setdefault(r["task_id"], []).append(i)
    verdicts: list[Verdict | None] = [None] * len(rows)
    with tqdm(total=len(rows), unit="cand", desc="scoring", disable=not progress) as bar:
        for task_id, idx in by_task.items():
            for i, v in zip(idx, execute(tasks[task_id], [rows[i]["candidate"] for i in idx], mutants=mutants, limits=limits)):
                verdicts[i] = v
            bar.update(len(idx))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    counts: dict[str, int] = {}
    with open(tmp, "w", encoding="utf-8") as fh:
        for r, v in zip(rows, verdicts):
            assert v is not None
            counts[v.status] = counts.get(v.status, 0) + 1
            rec = {**r, "status": v.status, "reason": v.reason, "kills": v.kills, "mutants": v.mutants,
                   "tier": v.tier, "seconds": round(v.seconds, 4)}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return counts
