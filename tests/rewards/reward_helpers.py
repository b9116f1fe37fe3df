"""Hand-made tasks, verdicts and a counting executor for the reward tests."""

from __future__ import annotations

from sandbox.execution import Verdict
from sandbox.tasks import Mutant, Task


def make_task(task_id: str = "pkg.tests.test_m::test_f#1", target: str = "assert f(x) == 3", mutants: int = 4) -> Task:
    """A task that is only data: for rewards that read a task, not for running it."""
    ms = tuple(Mutant(f"m{i}", "m.py", "f", "compare", (1, 0, 1, 1), "==", "!=") for i in range(mutants))
    return Task(id=task_id, package="pkg", package_version="1", test_module="pkg.tests.test_m", test_class=None,
                test_name="test_f", slot=1, setup="", prefix="x = 1", target=target, focal="", focal_functions=(),
                mutants=ms, split="train")


def verdict(status: str, kills: tuple[str, ...] = (), mutants: int = 0) -> Verdict:
    return Verdict(status, kills=list(kills), mutants=mutants)


class CountingExecutor:
    """Records every call and every candidate it was asked to run; returns canned verdicts or
    passes the work to another executor."""

    def __init__(self, inner=None, answer=None):
        self.inner, self.answer = inner, answer
        self.calls: list[tuple[bool, list[tuple[str, list[str]]]]] = []

    def score(self, items, *, mutants=True):
        self.calls.append((mutants, [(t.id, list(c)) for t, c in items]))
        if self.inner is not None:
            return self.inner.score(items, mutants=mutants)
        return [[self.answer(t, c) for c in cands] for t, cands in items]

    @property
    def candidates_run(self) -> int:
        return sum(len(c) for _, items in self.calls for _, c in items)
