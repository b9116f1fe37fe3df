"""Retrieval baseline and AUROC, on real tasks and hand-computed values."""

from __future__ import annotations

import math

from pretrain.evaluate import auroc
from pretrain.retrieval import Retriever


def test_auroc_hand_values():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    # one positive ranked below one of two negatives: 1 of 2 pairs right
    assert auroc([0.5, 0.3, 0.4], [True, False, False]) == 1.0
    assert auroc([0.35, 0.3, 0.4], [True, False, False]) == 0.5
    assert auroc([0.5, 0.5], [True, False]) == 0.5  # ties count half
    assert math.isnan(auroc([0.1, 0.2], [True, True]))


def test_retrieval_finds_a_task_of_the_same_test_and_never_the_task_itself(small_tasks):
    train = [t for t in small_tasks if t.split == "train"]
    r = Retriever(train)
    for task in train[:10]:
        got = r.nearest(task)
        assert got.id != task.id
    # a valid task whose test function has training slots retrieves from that function
    same = [t for t in small_tasks if t.split == "valid" and any(u.test_name == t.test_name for u in train)]
    hits = sum(r.nearest(t).test_name == t.test_name for t in same)
    assert same and hits / len(same) >= 0.5
