"""Retrieval baseline and AUROC, on real tasks and hand-computed values."""

from __future__ import annotations

import math

from common.stats import auroc
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


def test_ranked_gives_distinct_targets_most_similar_first(small_tasks):
    train = [t for t in small_tasks if t.split == "train"]
    r = Retriever(train)
    for task in [t for t in small_tasks if t.split == "valid"][:10]:
        ranked = r.ranked(task, 5)
        assert 1 <= len(ranked) <= 5 and task.id not in {t.id for t in ranked}
        assert len({t.target for t in ranked}) == len(ranked)
        assert ranked[0] is r.nearest(task)


def _task(prefix: str, setup: str = "import networkx as nx\n", **kw):
    from sandbox.tasks import Task

    fields = dict(id="m::t#0", package="networkx", package_version="0", test_module="m", test_class=None,
                  test_name="t", slot=0, setup=setup, prefix=prefix, target="assert True", focal="",
                  focal_functions=(), mutants=(), split="valid")
    return Task(**{**fields, **kw})


def test_undefined_names_are_those_no_setup_prefix_or_builtin_binds():
    from pretrain.names import undefined_names

    task = _task("G = nx.path_graph(3)\nfor u, v in G.edges:\n    pass\n", setup="import networkx as nx\nK = 3\n")
    assert undefined_names("assert len(T1) == K and G and u and sorted(x for x in answer)", task) == ["T1", "answer"]
    assert undefined_names("assert nx.is_connected(G)", task) == []
    assert undefined_names("assert (", task) == []  # does not parse: nothing to say


def test_substitute_renames_variables_but_not_attributes_or_keywords():
    from pretrain.names import substitute

    got = substitute("assert T.T(weight=T) == {T: T.weight}", {"T": "G", "weight": "w"})
    assert got == "assert G.T(weight=G) == {G: G.weight}"
    assert substitute("assert 'T' == T", {"T": "H"}) == "assert 'T' == H"  # strings untouched


def test_adaptations_use_the_prefix_names_most_recent_first_up_to_the_cap():
    from pretrain.names import adaptations

    task = _task("G = nx.Graph()\nH = G.copy()\nresult = len(H)\n")
    assert adaptations("assert nx.is_empty(G)", task) == ["assert nx.is_empty(G)"]  # nothing to adapt
    got = adaptations("assert T1 == answer", task, cap=4)
    assert got == ["assert result == result", "assert result == H", "assert result == G", "assert H == result"]
    assert adaptations("assert T1", _task("")) == ["assert T1"]  # nothing bound: nothing to adapt to
