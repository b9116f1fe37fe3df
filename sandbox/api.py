"""The sandbox's Python API: ``execute`` candidates for a task, ``score_file`` for the CLI.

Untrusted candidates pass the static gate (:mod:`sandbox.gate`), then run confined
(:mod:`sandbox.isolation`) in children of zygotes (:mod:`sandbox.zygote`); under a mutant they
run in a zygote of that mutant. ``execute`` uses one server per package and limits, started on
first use and kept for the life of the process; :class:`sandbox.pool.Pool` spreads many tasks
over several.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .execution import Verdict
from .isolation import TIERS, Confinement, Tier
from .tasks import Task, TaskFormatError, load_tasks, read_rows
from .zygote import ZygoteServer, job_for


@dataclass
class Limits:
    """Per-candidate limits and the isolation to run candidates under."""

    timeout_s: float = field(default=5.0, metadata={"help": "wall-clock limit of one execution"})
    mutant_timeout_s: float = field(default=2.0, metadata={"help": "limit of one execution under a mutant"})
    memory_mb: int = field(default=2048, metadata={"help": "address space a child may add to its zygote's"})
    file_mb: int = field(default=64, metadata={"help": "largest file a child may write (and size of its private tmpfs)"})
    open_files: int = field(default=64, metadata={"help": "open files per child"})
    processes: int = field(default=32, metadata={"help": "processes per child (its own uid as root)"})
    tier: Tier = field(default="namespaces", metadata={"help": "strongest isolation tier to use (docs/sandbox.md)"})
    min_tier: Tier = field(default="rlimits", metadata={"help": "refuse to run below this tier"})
    gate: bool = field(default=True, metadata={"help": "check candidates with the static gate before running them"})
    capabilities: bool = field(default=True, metadata={
        "help": "run candidate code under the runtime capability layer (what it reaches is checked when reached)"})
    confirm: bool = field(default=True, metadata={
        "help": "confirm every pass and every kill by a second run in another server process (another hash "
                "seed, random seed and memory layout): a verdict that does not repeat is no pass and no kill"})

    def __post_init__(self) -> None:
        for name in ("tier", "min_tier"):
            if getattr(self, name) not in TIERS:
                raise ValueError(f"{name} must be one of {', '.join(TIERS)}, not {getattr(self, name)!r}")
        if TIERS.index(self.tier) < TIERS.index(self.min_tier):
            raise ValueError(f"tier ({self.tier}) is below min_tier ({self.min_tier})")

    @property
    def replicas(self) -> int:
        """Server processes a worker needs: two when verdicts are confirmed."""
        return 2 if self.confirm else 1

    def sandbox(self) -> dict[str, Any]:
        """What a zygote server needs to confine runs (see ``sandbox.zygote.serve``)."""
        confinement = Confinement(memory_mb=self.memory_mb, file_mb=self.file_mb, open_files=self.open_files,
                                  processes=self.processes, cpu_s=math.ceil(max(self.timeout_s, self.mutant_timeout_s)) + 1)
        fields = asdict(confinement)
        for name in ("tier", "own_uid", "user_processes"):  # the server's probe decides these
            fields.pop(name)
        return {"want": self.tier, "min_tier": self.min_tier, "limits": fields}


@dataclass
class ScoreConfig:
    """`trident score`: verdicts for candidate assertions."""

    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine`"})
    candidates: Path = field(default=Path("candidates.jsonl"), metadata={"help": 'JSONL of {"task_id", "candidate"}'})
    out: Path = field(default=Path("verdicts.jsonl"), metadata={"help": "verdict JSONL to write"})
    mutants: bool = field(default=True, metadata={"help": "run passing candidates under the task's mutants"})
    workers: int = field(default=0, metadata={"help": "sandbox worker processes; 0 = one per core"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "limits and isolation of each execution"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


_SERVERS: dict[tuple[str, str, int], ZygoteServer] = {}
_log = logging.getLogger("trident.sandbox")


def server_for(package: str, limits: Limits) -> ZygoteServer:
    """This process's server for ``package`` under ``limits`` (started on first use)."""
    sandbox = limits.sandbox()
    key = (package, json.dumps(sandbox, sort_keys=True), limits.replicas)
    server = _SERVERS.get(key)
    if server is None or not server.alive():
        server = _SERVERS[key] = ZygoteServer(package, sandbox, replicas=limits.replicas)
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
    return execute_on(server_for(task.package, limits), task, candidates, mutants=mutants, limits=limits)


def execute_on(server: ZygoteServer, task: Task, candidates: Sequence[str], *, mutants: bool, limits: Limits) -> list[Verdict]:
    """:func:`execute` on a given server (the pool's workers each have one).

    With ``limits.confirm`` (and a server of two replicas), a pass counts only when a second
    run in the other replica — another hash seed, ``random`` seed and memory layout — passes
    too, and a mutant counts as killed only when the candidate fails with its own assertion
    under it in both replicas. A candidate the capability layer rejects under a mutant but
    not on the original earns no kill (a mutant changes behaviour, not what may be reached)."""
    def jobs(cands: Sequence[str], replica: int, mutant: Any = None) -> list[dict[str, Any]]:
        timeout = limits.timeout_s if mutant is None else limits.mutant_timeout_s
        # pytest's failure explanations (its assertion rewrite is most of a candidate's compile
        # time) only for the run whose reason is reported; the others need only where it failed.
        return [job_for(task, c, timeout=timeout, gate=limits.gate and mutant is None, guard=limits.capabilities,
                        mutant=mutant, seed=replica, messages=replica == 0 and mutant is None) for c in cands]

    replicas = min(limits.replicas, server.replicas)
    verdicts = server.run(task.test_module, jobs(candidates, 0))
    passing = [i for i, v in enumerate(verdicts) if v.status == "passed"]
    if replicas > 1 and passing:
        for i, again in zip(passing, server.run(task.test_module, jobs([candidates[i] for i in passing], 1), replica=1)):
            if again.status != "passed":
                verdicts[i] = _not_repeated(verdicts[i], again)
        passing = [i for i in passing if verdicts[i].status == "passed"]
    if mutants and task.mutants and passing:
        # Only candidates that passed (so passed the gate) run under mutants: no second gate.
        per_replica = [[job for m in task.mutants for job in jobs([candidates[i] for i in passing], k, m)]
                       for k in range(replicas)]
        results = server.run_each(task.test_module, per_replica)
        n, M = len(passing), len(task.mutants)
        for j, i in enumerate(passing):
            # Jobs go mutant by mutant (a mutant zygote serves all candidates at once).
            runs = [[results[k][m * n + j] for m in range(M)] for k in range(replicas)]
            infra = next((r for chunk in runs for r in chunk if r.status == "infra"), None)
            if infra is not None:
                verdicts[i] = Verdict("infra", f"under a mutant: {infra.reason}", verdicts[i].seconds, tier=verdicts[i].tier)
                continue
            # A kill is an AssertionError raised by the candidate's own line ("failed") in every
            # replica; a timeout, a crash, a rejection or any other exception under a mutant is not.
            verdicts[i].kills = [m.id for k_m, m in enumerate(task.mutants)
                                 if all(runs[k][k_m].status == "failed" for k in range(replicas))]
            verdicts[i].mutants = M
            verdicts[i].seconds += sum(r.seconds for chunk in runs for r in chunk)
            only_mutant = [m.id for k_m, m in enumerate(task.mutants) if any(runs[k][k_m].status == "rejected"
                                                                                for k in range(replicas))]
            if only_mutant:
                _log.warning("task %s: candidate %r rejected by the capability layer under mutant(s) %s only "
                             "(no kill)", task.id, candidates[i][:80], ", ".join(only_mutant))
    return verdicts


def _not_repeated(first: Verdict, again: Verdict) -> Verdict:
    """The verdict of a candidate that passed once and then not in the other replica."""
    status = again.status if again.status != "passed" else "failed"
    reason = (f"passed in one run but {again.status} in a second run under another hash seed and random seed: "
              f"the verdict is not reproducible ({again.reason})")
    return Verdict(status, reason[:2000], first.seconds + again.seconds, tier=first.tier, cpu_seconds=first.cpu_seconds)


def read_candidates(path: str | os.PathLike) -> list[dict[str, Any]]:
    return read_rows(path, ("task_id", "candidate"), "candidate file")


def score_file(tasks_path: str | os.PathLike, candidates_path: str | os.PathLike, out: str | os.PathLike,
               *, mutants: bool = True, limits: Limits | None = None, progress: bool = True,
               workers: int = 0) -> dict[str, int]:
    """``trident score``: verdicts for a candidate file, one output line per input line, from a
    :class:`~sandbox.pool.Pool` of ``workers`` processes (0: one per core)."""
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
    items = [(tasks[task_id], [rows[i]["candidate"] for i in idx]) for task_id, idx in by_task.items()]
    from .pool import Pool

    with tqdm(total=len(rows), unit="cand", desc="scoring", disable=not progress) as bar, \
            Pool(workers, limits) as pool:
        for idx, row in zip(by_task.values(), pool.score(items, mutants=mutants, on_done=bar.update)):
            for i, v in zip(idx, row):
                verdicts[i] = v
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
