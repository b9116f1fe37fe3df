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
    """``Retriever(train_tasks).nearest(task) -> Task``: most similar training task by prefix."""

    def __init__(self, train: Sequence[Task]) -> None:
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

    def nearest(self, task: Task, *, exclude_self: bool = True) -> Task:
        scores: dict[int, float] = defaultdict(float)
        for term, w in self._vector(_terms(task)).items():
            for i, wd in self.postings.get(term, ()):
                scores[i] += w * wd
        best, best_score = 0, -1.0
        for i, s in sorted(scores.items()):
            if exclude_self and self.train[i].id == task.id:
                continue
            if s > best_score + 1e-12:
                best, best_score = i, s
        return self.train[best]
