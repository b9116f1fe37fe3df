"""Ray wiring: connect, and pools of actors whose lost work is redone on fresh actors.

The worker classes are plain (``rl.rollout.RolloutWorker``, ``rl.rewarding.SandboxWorker``,
``rl.learner.Learner``); ``ray.remote`` wraps them here only. A pool keeps one slot per actor;
when a call fails because its actor died (``RayActorError``, e.g. the process was killed or
its node went away), the slot gets a fresh actor and the unit is submitted again — up to
``retries`` times, after which a sandbox unit counts as ``infra`` (masked out of rewards) and a
rollout unit fails the run. Each unit's result is stored once, by its index: nothing lost,
nothing counted twice.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import ray
from ray.exceptions import RayActorError

from sandbox.api import Limits
from sandbox.execution import Verdict
from sandbox.tasks import Task

from .learner import Learner, LearnerConfig, RLError
from .rewarding import SandboxWorker, infra_verdicts
from .rollout import RolloutConfig, Rollouts, RolloutWorker

__all__ = ["connect", "ActorPool", "SandboxPool", "RolloutPool", "LearnerGroup"]

# Exceptions that mean "the actor is gone", not "the work is bad".
LOST = (RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ActorUnavailableError)


def connect(address: str | None, num_cpus: int) -> tuple[str, bool, bool]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local Ray with
    ``num_cpus`` logical CPUs. Returns how it connected (for the log), whether this call started
    or joined Ray (so the caller disconnects when done; an existing connection is kept), and
    whether it started a local Ray (no other node will join it)."""
    if ray.is_initialized():
        return "the Ray this process already joined", False, False
    address = address or os.environ.get("RAY_ADDRESS")
    # The actors import this project's packages; on a cluster `ray job submit --working-dir .` ships them.
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"Ray at {address}", True, False
    # address="local": always a new local instance, never a stray cluster that happens to run here.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return f"a local Ray ({num_cpus} logical CPUs)", True, True


class ActorPool:
    """Actors made by ``make()``; units of work run on them with lost units redone."""

    def __init__(self, make: Callable[[], Any], size: int, retries: int, name: str) -> None:
        self.make, self.retries, self.name = make, retries, name
        self.actors = [make() for _ in range(size)]
        self.replaced = 0  # actors replaced after they died
        self.redone = 0  # units submitted again because their actor died

    def replace(self, slot: int) -> Any:
        try:
            ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        self.actors[slot] = self.make()
        self.replaced += 1
        return self.actors[slot]

    def run(self, units: Sequence[Any], call: Callable[[Any, Any], Any], *,
            on_result: Callable[[int, Any], None] | None = None,
            on_lost: Callable[[int, Any, BaseException], Any] | None = None,
            prepare: Callable[[Any], None] | None = None, per_actor: int = 2) -> list[Any]:
        """Each unit's result, in order. ``call(actor, unit)`` submits a unit (returns an ObjectRef);
        up to ``per_actor`` units wait on each actor. ``on_result(i, result)`` sees results as they
        finish. A unit whose actor died is redone on a fresh actor (``prepare(actor)`` readies it,
        e.g. with the current weights); after ``retries`` redos ``on_lost(i, unit, error)`` gives
        its result (or raises)."""
        results: list[Any] = [None] * len(units)
        done = [False] * len(units)
        attempts = [0] * len(units)
        todo = list(range(len(units)))[::-1]  # a stack: pop() takes the lowest index first
        inflight: dict[Any, tuple[int, int, Any]] = {}  # ref -> (unit, slot, actor it went to)
        load = [0] * len(self.actors)

        def submit() -> None:
            while todo:
                slot = min(range(len(self.actors)), key=lambda s: load[s])
                if load[slot] >= per_actor:
                    return
                i = todo.pop()
                actor = self.actors[slot]
                inflight[call(actor, units[i])] = (i, slot, actor)
                load[slot] += 1

        submit()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            i, slot, actor = inflight.pop(ref)
            load[slot] -= 1
            try:
                result = ray.get(ref)
            except LOST as exc:
                attempts[i] += 1
                # The other units waiting on the dead actor fail too: its slot is replaced once.
                if self.actors[slot] is actor:
                    fresh = self.replace(slot)
                    if prepare is not None:
                        try:
                            prepare(fresh)
                        except LOST:
                            pass  # the unit sent to it fails too, and is redone on the next one
                if attempts[i] > self.retries:
                    if on_lost is None:
                        raise RLError(f"{self.name}: a unit of work was lost {attempts[i]} times with its actor "
                                      f"({exc.__class__.__name__}); the cluster may be short of memory") from exc
                    result = on_lost(i, units[i], exc)
                else:
                    self.redone += 1
                    todo.append(i)
                    submit()
                    continue
            results[i], done[i] = result, True
            if on_result is not None:
                on_result(i, result)
            submit()
        assert all(done), f"{self.name}: units left without a result"
        return results

    def shutdown(self) -> None:
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass


class SandboxPool(ActorPool):
    """Sandbox actors, one CPU each; verdicts for (task, candidates) units."""

    def __init__(self, size: int, limits: Limits, retries: int, num_cpus: float = 1.0) -> None:
        remote = ray.remote(num_cpus=num_cpus, max_restarts=0)(SandboxWorker)
        super().__init__(lambda: remote.remote(limits), size, retries, "sandbox pool")

    def score(self, items: Sequence[tuple[Task, Sequence[str]]], *, mutants: bool,
              on_result: Callable[[int, list[Verdict]], None] | None = None) -> list[list[Verdict]]:
        def lost(i: int, unit: tuple[Task, Sequence[str]], exc: BaseException) -> list[Verdict]:
            return infra_verdicts(len(unit[1]), f"sandbox worker lost {self.retries + 1} times: {exc.__class__.__name__}")

        return self.run(items, lambda actor, unit: actor.score.remote(unit[0], list(unit[1]), mutants),
                        on_result=on_result, on_lost=lost)

    def complete(self, items: Sequence[tuple[Task, Sequence[str]]]) -> list[list[str]]:
        """Each unit's candidates completed (``SandboxWorker.complete``); a unit lost with its
        actor keeps its candidates as written."""
        return self.run(items, lambda actor, unit: actor.complete.remote(unit[0], list(unit[1])),
                        on_lost=lambda i, unit, exc: list(unit[1]))


class RolloutPool(ActorPool):
    """Rollout actors, each with a policy copy synced to the learner's weights."""

    def __init__(self, size: int, model_dir: str, cfg: RolloutConfig, train: Sequence[Task], retries: int,
                 threads: int, num_cpus: float = 1.0) -> None:
        remote = ray.remote(num_cpus=num_cpus, max_restarts=0)(RolloutWorker)
        train_ref = ray.put(list(train))
        self.weights: tuple[Any, int, float] | None = None  # (ObjectRef of the state dict, version, mask bias)
        super().__init__(lambda: remote.remote(model_dir, cfg, train_ref, threads=threads), size, retries,
                         "rollout pool")

    def set_weights(self, weights_ref: Any, version: int, mask_logit_bias: float) -> None:
        self.weights = (weights_ref, version, mask_logit_bias)
        calls = [(slot, actor.set_weights.remote(weights_ref, version, mask_logit_bias))
                 for slot, actor in enumerate(self.actors)]
        for slot, ref in calls:
            try:
                ray.get(ref)
            except LOST:  # it died since the last iteration: a fresh one gets the weights
                self._sync(self.replace(slot))

    def _sync(self, actor: Any) -> None:
        if self.weights is not None:
            ray.get(actor.set_weights.remote(*self.weights))

    def rollouts(self, chunks: Sequence[tuple[list[Task], int, int, int]],
                 on_result: Callable[[int, Rollouts], None] | None = None) -> list[Rollouts]:
        """``chunks`` of (tasks, iteration, seed, group offset); results come back as they finish."""
        return self.run(chunks, lambda actor, c: actor.rollout.remote(c[0], iteration=c[1], seed=c[2], group_offset=c[3]),
                        on_result=on_result, prepare=self._sync, per_actor=1)

    def greedy(self, tasks: Sequence[Task]) -> list[str]:
        """The evaluation's greedy assertion for each of ``tasks`` with the weights the actors hold,
        the tasks shared among the actors."""
        n = len(self.actors)
        shares = [list(tasks[j::n]) for j in range(n) if tasks[j::n]]
        done = self.run(shares, lambda actor, share: actor.greedy.remote(share), prepare=self._sync, per_actor=1)
        out: list[str] = [""] * len(tasks)
        for j, texts in enumerate(done):
            out[j::n] = texts
        return out


class LearnerGroup:
    """The learner actors: one, or ``cfg.workers`` data-parallel ones (``num_gpus`` each) joined
    in a torch process group (NCCL on GPUs, gloo on CPU) whose rank 0 hosts the rendezvous. Each
    gets the whole batch and takes its share of every minibatch; the gradients are summed, so
    they all hold the same weights, which (and the state) are read from rank 0."""

    def __init__(self, model_dir: str, cfg: LearnerConfig, *, seed: int) -> None:
        remote = ray.remote(Learner).options(num_cpus=1, num_gpus=cfg.num_gpus, max_restarts=0)
        # the same seed everywhere: every learner shuffles and subsamples the batch alike
        self.actors = [remote.remote(model_dir, cfg, seed=seed) for _ in range(cfg.workers)]
        if len(self.actors) > 1:
            init = ray.get(self.actors[0].rendezvous.remote())
            ray.get([a.join.remote(rank, len(self.actors), init) for rank, a in enumerate(self.actors)])

    @property
    def lead(self) -> Any:
        return self.actors[0]

    def train(self, rollouts: Any, rewards: Any, start_rewards: Any = None) -> list[Any]:
        """Start an update on every learner (the batch goes to the object store once); the refs."""
        if len(self.actors) > 1:
            rollouts, rewards, start_rewards = ray.put(rollouts), ray.put(rewards), ray.put(start_rewards)
        return [a.train.remote(rollouts, rewards, start_rewards) for a in self.actors]

    @staticmethod
    def metrics(refs: list[Any]) -> dict[str, float]:
        """The update's metrics: each the mean over the learners that report it (their shares)."""
        parts = ray.get(refs)
        keys = {k for m in parts for k in m}
        return {k: sum(m[k] for m in parts if k in m) / sum(1 for m in parts if k in m) for k in keys}

    def load_state(self, state: dict[str, Any]) -> None:
        ray.get([a.load_state.remote(state) for a in self.actors])

    def shutdown(self) -> None:
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
