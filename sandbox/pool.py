"""A pool of sandbox workers: many tasks' candidates spread over N zygote servers.

Each worker is one :class:`~sandbox.zygote.ZygoteServer` (a process with the library imported,
its module zygotes and their mutant zygotes, least recently used evicted beyond a bound, so
memory stays bounded however many tasks pass through). Work goes out in units — one task and
up to ``chunk`` of its candidates — from one queue, ordered by test module so that a worker
mostly finds the zygote it needs warm. A worker that dies gives its unit ``infra`` verdicts;
those candidates are retried once on a fresh worker, and what still fails stays ``infra``
(masked out of rewards, never scored as 0 or 1).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from typing import Callable, Sequence

from .api import Limits, execute_on
from .completion import Completed, complete_all, to_observe
from .execution import Verdict
from .observable import Observation
from .observe import bindings, observation_of, observe_on
from .tasks import Task
from .zygote import SandboxError, ZygoteServer


class Pool:
    """``Pool(workers=0, limits=Limits())``; :meth:`score` verdicts for many tasks at once."""

    def __init__(self, workers: int = 0, limits: Limits | None = None, chunk: int = 16, max_zygotes: int = 8):
        self.limits = limits or Limits()
        self.workers = workers or os.cpu_count() or 1
        self.chunk = chunk
        self.max_zygotes = max_zygotes
        self._servers: list[dict[str, ZygoteServer]] = [{} for _ in range(self.workers)]
        self.restarts = 0
        self._lock = threading.Lock()

    def server(self, worker: int, package: str, fresh: bool = False) -> ZygoteServer:
        servers = self._servers[worker]
        server = servers.get(package)
        if server is not None and (fresh or not server.alive()):
            server.close()
            server = None
            with self._lock:
                self.restarts += 1
        if server is None:
            server = servers[package] = ZygoteServer(package, self.limits.sandbox(), max_zygotes=self.max_zygotes,
                                                     replicas=self.limits.replicas)
        return server

    @property
    def tier(self) -> str | None:
        """The isolation tier the workers run at (None before the first one started)."""
        for servers in self._servers:
            for server in servers.values():
                return server.tier
        return None

    def score(self, items: Sequence[tuple[Task, Sequence[str]]], *, mutants: bool = True,
              on_done: Callable[[int], None] | None = None, observe: bool = False) -> list[list[Verdict]]:
        """Verdicts for each ``(task, candidates)`` pair, in order. ``on_done(n)`` is called as
        each unit of ``n`` candidates finishes (for progress bars). ``observe``: the
        candidates are expressions to observe (:mod:`sandbox.observe`); each verdict's
        ``observation`` holds the result."""
        out: list[list[Verdict | None]] = [[None] * len(c) for _, c in items]
        units: queue.SimpleQueue = queue.SimpleQueue()
        order = sorted(range(len(items)), key=lambda k: (items[k][0].package, items[k][0].test_module, k))
        for k in order:
            for lo in range(0, len(items[k][1]), self.chunk):
                units.put((k, lo))
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            while not errors:
                try:
                    k, lo = units.get_nowait()
                except queue.Empty:
                    return
                task, cands = items[k]
                part = list(cands[lo : lo + self.chunk])
                try:
                    verdicts = self._run_unit(worker, task, part, mutants, observe)
                except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                    errors.append(exc)
                    return
                out[k][lo : lo + len(part)] = verdicts
                if on_done is not None:
                    on_done(len(part))

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return [[v for v in row if v is not None] for row in out]

    def observe(self, items: Sequence[tuple[Task, Sequence[str]]], *,
                on_done: Callable[[int], None] | None = None) -> list[list[Observation]]:
        """Each ``(task, expressions)`` pair's observations, in order (:mod:`sandbox.observe`)."""
        return [[observation_of(v) for v in row] for row in self.score(items, on_done=on_done, observe=True)]

    def complete(self, items: Sequence[tuple[Task, Sequence[str]]], *,
                 on_done: Callable[[int], None] | None = None) -> list[list[Completed]]:
        """Each ``(task, candidates)`` pair's candidates completed (:mod:`sandbox.completion`):
        the expression of each completable one observed at the task's slot, its value filled in."""
        asked = [to_observe(cands) for _, cands in items]
        found = iter(self.observe([(task, e) for (task, _), e in zip(items, asked) if e], on_done=on_done))
        return [complete_all(cands, [o.to_dict() for o in next(found)] if e else []) for (_, cands), e in zip(items, asked)]

    def _run_unit(self, worker: int, task: Task, cands: list[str], mutants: bool, observe: bool) -> list[Verdict]:
        verdicts = self._attempt(worker, task, cands, mutants, fresh=False, observe=observe)
        retry = [i for i, v in enumerate(verdicts) if v.status == "infra"]
        if retry:
            again = self._attempt(worker, task, [cands[i] for i in retry], mutants, fresh=True, observe=observe)
            for i, v in zip(retry, again):
                verdicts[i] = v
        return verdicts

    def _attempt(self, worker: int, task: Task, cands: list[str], mutants: bool, fresh: bool,
                 observe: bool = False) -> list[Verdict]:
        try:
            server = self.server(worker, task.package, fresh=fresh)
            if observe:
                return observe_on(server, task, cands, limits=self.limits)
            return execute_on(server, task, cands, mutants=mutants, limits=self.limits)
        except (SandboxError, OSError, ValueError, KeyError) as err:
            return [Verdict("infra", f"sandbox worker failed: {err}") for _ in cands]

    def close(self) -> None:
        for servers in self._servers:
            while servers:
                servers.popitem()[1].close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def observe_tasks(tasks: Sequence[Task], *, workers: int = 0, limits: Limits | None = None,
                  progress: bool = True, pool: Pool | None = None) -> list[Task]:
    """``tasks`` with ``observations`` set: what each name the prefix binds holds at the slot
    (:func:`~sandbox.observe.bindings`, :mod:`sandbox.observe`), for task files of version 2.
    ``pool``: run on it (else on a pool of ``workers`` under ``limits``, closed after)."""
    from tqdm import tqdm

    names = [[b.name for b in bindings(t.prefix)] for t in tasks]
    items = [(t, n) for t, n in zip(tasks, names) if n]
    with tqdm(total=sum(len(n) for _, n in items), unit="obs", desc="observing", disable=not progress) as bar:
        if pool is not None:
            found = iter(pool.observe(items, on_done=bar.update))
        else:
            with Pool(workers, limits) as own:
                found = iter(own.observe(items, on_done=bar.update))
    out = []
    for task, n in zip(tasks, names):
        seen = next(found) if n else []
        out.append(dataclasses.replace(task, observations={k: o.to_dict() for k, o in zip(n, seen)}))
    return out
