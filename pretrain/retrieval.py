"""Retrieval: the target of the training task whose prefix is most like this task's.

The baseline every generator must beat, and the start state of diffusion as editing. Similarity
is TF-IDF cosine over the Python tokens of the prefix (identifiers, literals, operators), with
the focal functions' names added as tokens so that a test of the same function ranks first.
Ties go to the earlier training task, so results are deterministic.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

from rewards.text import python_tokens
from sandbox.tasks import Task


def _terms(task: Task) -> Counter:
    terms = Counter(python_tokens(task.prefix))
    for name in task.focal_functions:
        terms["@" + name.rsplit("::", 1)[-1]] += 1
    return terms


class Retriever:
    """``Retriever(train_tasks).nearest(task) -> Task``: most similar training task by prefix.

    ``other_modules``: never return a task of the query's own test module — what retrieval sees
    for a valid or test task (splits are by test file), given to a training task (RL rollouts).
    """

    def __init__(self, train: Sequence[Task], *, other_modules: bool = False) -> None:
        self.other_modules = other_modules
        if not train:
            raise ValueError("retrieval needs at least one training task; the task file has no 'train' split")
        self.train = list(train)
        docs = [_terms(t) for t in self.train]
        df = Counter(term for d in docs for term in d)
        n = len(docs)
        self.idf = {term: math.log((1 + n) / (1 + c)) + 1.0 for term, c in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, d in enumerate(docs):
            vec = self._vector(d)
            for term, w in vec.items():
                self.postings[term].append((i, w))

    def _vector(self, terms: Counter) -> dict[str, float]:
        vec = {t: (1 + math.log(c)) * self.idf.get(t, 0.0) for t, c in terms.items()}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {t: w / norm for t, w in vec.items() if w > 0}

    def ranked(self, task: Task, k: int, *, exclude_self: bool = True) -> list[Task]:
        """Up to ``k`` training tasks with distinct targets, most similar first (ties: file order).

        Tasks sharing no term with ``task`` are never returned; :meth:`nearest` falls back to the
        first training task then.
        """
        scores: dict[int, float] = defaultdict(float)
        for term, w in self._vector(_terms(task)).items():
            for i, wd in self.postings.get(term, ()):
                scores[i] += w * wd
        out: list[Task] = []
        seen: set[str] = set()
        for i, _ in sorted(scores.items(), key=lambda item: (-round(item[1], 12), item[0])):
            cand = self.train[i]
            if ((exclude_self and cand.id == task.id) or cand.target in seen
                    or (self.other_modules and cand.test_module == task.test_module)):
                continue
            seen.add(cand.target)
            out.append(cand)
            if len(out) == k:
                break
        return out

    def nearest(self, task: Task, *, exclude_self: bool = True) -> Task:
        """The most similar training task (the first one when nothing is similar)."""
        best = self.ranked(task, 1, exclude_self=exclude_self)
        return best[0] if best else self.train[0]
