"""The baselines a learned model must beat: their rules on made-up observations, and on real tasks."""

from __future__ import annotations

import dataclasses

from sandbox.observable import Observation
from trident.baselines import observed_all_assertion, observed_assertion


def _observations(task):
    return {k: Observation.from_dict(v) for k, v in (task.observations or {}).items()}


PREFIX = "G = nx.path_graph(3)\nexpected = [0, 1]\nr = sorted(G)\nw = nx.density(G)\nlabel = 'x'\n"
SEEN = {"G": Observation("len", "3"), "expected": Observation("literal", "[0, 1]"),
        "r": Observation("literal", "[0, 1, 2]"), "w": Observation("approx", "pytest.approx(0.5)"),
        "label": Observation("literal", "'x'")}


def test_observed_asserts_the_last_computed_value(small_tasks):
    task = dataclasses.replace(small_tasks[0], prefix=PREFIX)
    # w is the last name bound by computing it (label and expected are written by hand).
    assert observed_assertion(task, SEEN) == "assert w == pytest.approx(0.5)"
    assert observed_assertion(task, {**SEEN, "w": Observation("none", reason="nan")}) == "assert r == [0, 1, 2]"
    # No computed name has an equality form: the last bound name that has one.
    only_written = {k: v for k, v in SEEN.items() if k in ("G", "expected", "label")}
    assert observed_assertion(task, only_written) == "assert label == 'x'"
    # Nothing observable: the trivial assertion on the last bound name.
    assert observed_assertion(task, {}) == "assert label is not None"


def test_observed_all_joins_every_equality_in_binding_order(small_tasks):
    task = dataclasses.replace(small_tasks[0], prefix=PREFIX)
    assert observed_all_assertion(task, SEEN) == ("assert expected == [0, 1] and r == [0, 1, 2] and "
                                                  "w == pytest.approx(0.5) and label == 'x'")
    assert observed_all_assertion(task, {}) == "assert label is not None"


def test_baselines_targets_and_observed_pass_and_trivial_is_accepted(small_tasks):
    from sandbox import gate
    from sandbox.pool import Pool
    from trident.baselines import baselines

    test = [t for t in small_tasks if t.split == "valid"][:10]
    train = [t for t in small_tasks if t.split == "train"]
    b = baselines(test, train, [_observations(t) for t in test])
    assert b["targets"] == [t.target for t in test]
    assert len(set(b["most_frequent"])) == 1
    assert all(gate.check(text) is None for text in b["trivial"])
    with Pool(workers=1) as pool:
        verdicts = pool.score([(t, [b["targets"][i], b["trivial"][i]]) for i, t in enumerate(test)], mutants=False)
    assert all(row[0].passed for row in verdicts)  # the tasks' own assertions pass: the sanity check holds
    assert sum(row[1].passed for row in verdicts) >= len(test) // 2  # trivial passes most of the time
    with Pool(workers=1) as pool:
        observed = pool.score([(t, [b["observed"][i], b["observed-all"][i]]) for i, t in enumerate(test)], mutants=False)
    assert all(row[0].passed and row[1].passed for row in observed)  # observed values hold on the original


def test_trivial_assertion_reads_a_name_the_test_provides(small_tasks):
    import dataclasses

    from pretrain.names import bound_names
    from trident.baselines import trivial_assertion

    task = next(t for t in small_tasks if bound_names(t.prefix))
    assert trivial_assertion(task) == f"assert {bound_names(task.prefix)[-1]} is not None"
    method = dataclasses.replace(task, prefix="", test_class="TestX")
    assert trivial_assertion(method) == "assert self is not None"
    function = dataclasses.replace(task, prefix="", test_class=None, setup="import networkx as nx\n")
    assert trivial_assertion(function) == "assert nx is not None"

