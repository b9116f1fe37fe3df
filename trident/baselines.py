"""The systems a learned model must beat, each one assertion per task and learning nothing.

- ``targets``: the tasks' own assertions — a sanity check of the sandbox: they must all pass;
- ``trivial``: ``assert x is not None`` on the last name the prefix binds (:func:`trivial_assertion`);
- ``most_frequent``: the training split's most frequent assertion, the same for every task;
- ``retrieval``: the assertion of the most similar training task, its names adapted;
- ``observed``: a regression oracle in the way of Pynguin and EvoSuite: one equality on a value
  the prefix computed, as the unmutated library computes it (:func:`observed_assertion`);
- ``observed-all``: every observed value of the prefix, joined with ``and``
  (:func:`observed_all_assertion`).

The two ``observed`` baselines read the observations of the names the prefix binds
(:mod:`sandbox.observe`, stored in the task file by ``trident mine``); they never read the
target or the mutants.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from sandbox.observable import Observation
from sandbox.observe import Binding, bindings
from sandbox.tasks import Task

__all__ = ["BASELINES", "trivial_assertion", "observed_assertion", "observed_all_assertion",
           "baselines"]

BASELINES = {
    "targets": "the tasks' own assertions (a sanity check of the sandbox: they must all pass)",
    "trivial": "`assert x is not None` on the last name the test binds: passes without testing anything",
    "most_frequent": "the training split's most frequent assertion for every task (it games token F1)",
    "retrieval": "the assertion of the most similar training task, its names adapted to the test",
    "observed": "regression oracle: `assert x == <value>` on the last value the prefix computed, as observed",
    "observed-all": "regression oracle: every observed value the prefix bound, joined with `and`",
}


def trivial_assertion(task: Task) -> str:
    """``assert NAME is not None`` on the last name the test's prefix binds in its own scope
    (:func:`~sandbox.observe.bindings`; else the last it binds at all, an import or a definition;
    ``self`` in a test method whose prefix binds none, else the first name the module's setup
    binds): it passes whatever the code does, and the sandbox's gate accepts it, since it reads
    a name the test provides."""
    from pretrain.names import bound_names

    prefix = [b.name for b in bindings(task.prefix)] or bound_names(task.prefix)
    if prefix:
        return f"assert {prefix[-1]} is not None"
    setup = ["self"] if task.test_class else bound_names(task.setup)
    return f"assert {setup[0]} is not None" if setup else "assert None is None"


def _equalities(task: Task, observations: Mapping[str, Observation]) -> list[tuple[Binding, str]]:
    """``(binding, "NAME == TEXT")`` for each name the prefix binds whose value has an
    equality form (a literal, or ``pytest.approx`` for a float), in binding order."""
    out = []
    for b in bindings(task.prefix):
        o = observations.get(b.name)
        if o is not None and o.equality:
            out.append((b, f"{b.name} == {o.text}"))
    return out


def observed_assertion(task: Task, observations: Mapping[str, Observation]) -> str:
    """The ``observed`` baseline: one equality, ``assert NAME == VALUE``, on the last name the
    prefix bound *by computing it* (see :func:`sandbox.observe.bindings`) whose observed value has an equality
    form; else on the last bound name that has one; else the trivial ``assert NAME is not None``
    on the last bound name (:func:`trivial_assertion`)."""
    found = _equalities(task, observations)
    for binding, text in reversed(found):
        if binding.computed:
            return f"assert {text}"
    if found:
        return f"assert {found[-1][1]}"
    return trivial_assertion(task)


def observed_all_assertion(task: Task, observations: Mapping[str, Observation]) -> str:
    """The ``observed-all`` baseline: an equality for every name the prefix binds whose observed
    value has an equality form, joined with ``and`` in binding order; the trivial assertion
    when there is none."""
    found = _equalities(task, observations)
    if not found:
        return trivial_assertion(task)
    return "assert " + " and ".join(text for _, text in found)


def baselines(tasks: Sequence[Task], train: Sequence[Task],
              observations: Sequence[Mapping[str, Observation]]) -> dict[str, list[str]]:
    """Each baseline's assertion for every task (:data:`BASELINES`); ``observations[i]``:
    task ``i``'s observed bound names."""
    from pretrain.names import adaptations
    from pretrain.retrieval import Retriever
    from rewards.text import normalise

    if not train:
        raise ValueError("the task file has no train split: the retrieval and most-frequent baselines need one")
    counts = Counter(normalise(t.target) or t.target for t in train)
    frequent = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # ties: the first in sort order
    retriever = Retriever(train)
    return {
        "targets": [t.target for t in tasks],
        "trivial": [trivial_assertion(t) for t in tasks],
        "most_frequent": [frequent] * len(tasks),
        "retrieval": [adaptations(retriever.nearest(t).target, t, 1)[0] for t in tasks],
        "observed": [observed_assertion(t, o) for t, o in zip(tasks, observations)],
        "observed-all": [observed_all_assertion(t, o) for t, o in zip(tasks, observations)],
    }
