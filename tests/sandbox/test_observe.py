"""Observations: the observable form of a value, and observing expressions at real networkx slots."""

from __future__ import annotations

import dataclasses
import enum
import json

import numpy as np
import pytest

from sandbox.api import Limits
from sandbox.gate import check_expression
from sandbox.observable import MAX_LITERAL_CHARS, Observation, agree, observable
from sandbox.observe import bindings, observe
from sandbox.pool import Pool
from sandbox.tasks import load_tasks, write_tasks


# ------------------------------------------------------------------------------- forms


class Color(enum.IntEnum):
    RED = 1


class Point:
    def __init__(self):
        self.x, self.y, self._hidden = 1, "a", 3

    def method(self):
        return 0


@pytest.mark.parametrize("value, kind, text", [
    (3, "literal", "3"),
    (True, "literal", "True"),
    (None, "literal", "None"),
    ("abc", "literal", "'abc'"),
    ([1, (2, 3)], "literal", "[1, (2, 3)]"),
    ((1,), "literal", "(1,)"),
    ({"b", "a", "c"}, "literal", "{'a', 'b', 'c'}"),  # sorted: the same text under every hash seed
    (frozenset({2, 1}), "literal", "{1, 2}"),
    (set(), "literal", "set()"),
    ({"b": 1, "a": [2]}, "literal", "{'a': [2], 'b': 1}"),
    (np.int64(7), "literal", "7"),
    (Color.RED, "literal", "1"),
    ([0.5, 1], "literal", "[0.5, 1]"),  # exact inside a collection
    (1 / 3, "approx", "pytest.approx(0.3333333333333333)"),
    (np.float64(2.5), "approx", "pytest.approx(2.5)"),
    (range(4), "len", "4"),
    ({1: Point()}, "len", "1"),
])
def test_observable_form_by_type(value, kind, text):
    o = observable(value)
    assert (o.kind, o.text) == (kind, text)


def test_an_object_gives_its_type_and_public_literal_attributes():
    o = observable(Point())
    assert o.kind == "object"
    assert o.text.endswith("Point")
    assert dict(o.attributes) == {"x": "1", "y": "'a'"}  # no private names, no methods


def test_unobservable_values_say_why():
    assert "nan" in observable(float("nan")).reason
    big = observable("x" * (MAX_LITERAL_CHARS + 1))
    assert big.kind == "none" and f"at most {MAX_LITERAL_CHARS}" in big.reason
    assert observable(list(range(1000))).to_dict() == {"kind": "len", "text": "1000"}  # too long: its length


def test_two_runs_must_agree():
    a, b = Observation("literal", "[1, 2]"), Observation("literal", "[2, 1]")
    assert agree(a, a) == a
    assert agree(a, b).kind == "none" and "nondeterministic" in agree(a, b).reason
    assert Observation.from_dict(a.to_dict()) == a


def test_an_expression_to_observe_passes_the_gate_as_an_assertion_would():
    assert check_expression("len(G)", {"G"}) is None
    assert "not one expression" in check_expression("G) or (1", {"G"})
    assert "not one expression" in check_expression("G\nimport os", {"G"})
    assert check_expression("open('f').read()", {"G"}) is not None
    assert check_expression("G.__class__.__subclasses__()", {"G"}) is not None
    assert check_expression("1 + 1", {"G"}) is not None  # reads nothing the test provides


# ------------------------------------------------------------------------------- what a prefix binds


def test_bindings_mark_what_was_computed():
    prefix = ("G = nx.path_graph(4)\nexpected = {2}\nr = sorted(nx.bfs_tree(G, 0))\nn = len(r)\n"
              "k = len([1, 2])\nfor u, v in G.edges():\n    pass\nxs = [i for i in range(3)]\nexpected = f(G)\n")
    assert [tuple(b) for b in bindings(prefix)] == [
        ("G", True), ("r", True), ("n", True), ("k", False), ("u", True), ("v", True), ("xs", False),
        ("expected", True)]  # its last binding computes it; comprehension variables are not bound
    assert bindings("x = (") == []


# ------------------------------------------------------------------------------- at real slots


def test_observations_at_a_real_slot(task):
    names = [b.name for b in bindings(task.prefix)]
    assert "G" in names
    exprs = ["len(G)", "sorted(G)", "G", "1 / 0 if G else 0", "open('/etc/passwd').read()",
             "'x' * 5000 if G else ''", "list({str(n) for n in G} | {'a', 'b', 'c', 'd', 'e', 'f'})"]
    obs = observe(task, exprs)
    by = dict(zip(exprs, obs))
    n = int(by["len(G)"].text)
    assert by["len(G)"].kind == "literal" and n > 0
    assert by["sorted(G)"].kind == "literal" and by["sorted(G)"].text.startswith("[")
    assert by["G"].to_dict() == {"kind": "len", "text": str(n)}  # a graph has no literal: its length
    assert by["1 / 0 if G else 0"].to_dict() == {"kind": "raises", "text": "ZeroDivisionError"}
    assert by["open('/etc/passwd').read()"].kind == "none" and "rejected" in by["open('/etc/passwd').read()"].reason
    assert "at most" in by["'x' * 5000 if G else ''"].reason  # too large to print: a reason, not a crash
    # The order of a set of strings follows the hash seed: the two runs disagree.
    assert "nondeterministic" in by["list({str(n) for n in G} | {'a', 'b', 'c', 'd', 'e', 'f'})"].reason


def test_observations_never_read_the_target_or_the_mutants(task):
    exprs = ["len(G)", "sorted(G)", "sorted(d for n, d in G.degree())"]
    blank = dataclasses.replace(task, target="", mutants=(), focal="", focal_functions=())
    first = [o.to_dict() for o in observe(task, exprs)]
    assert first == [o.to_dict() for o in observe(blank, exprs)]
    assert json.dumps(first) == json.dumps([o.to_dict() for o in observe(task, exprs)])  # the same bytes twice


def test_mined_tasks_carry_their_prefix_observations(tasks, tmp_path):
    observed = [t for t in tasks if t.observations]
    assert len(observed) > len(tasks) // 2
    t = next(t for t in observed if "G" in t.observations)
    assert t.observations["G"]["kind"] in ("len", "object")
    assert set(t.observations) == {b.name for b in bindings(t.prefix)}
    # A version-2 file round-trips; a version-1 file still loads, without observations.
    path = tmp_path / "tasks.jsonl"
    write_tasks(path, tasks)
    assert load_tasks(path) == tasks
    lines = path.read_text().splitlines()
    head = json.loads(lines[0]) | {"version": 1}
    rows = [json.dumps({k: v for k, v in json.loads(line).items() if k != "observations"}) for line in lines[1:]]
    old = tmp_path / "v1.jsonl"
    old.write_text("\n".join([json.dumps(head), *rows]) + "\n")
    assert all(t.observations is None for t in load_tasks(old))


def test_completion_fills_the_observed_value(task):
    n = observe(task, ["len(G)"])[0].text
    with Pool(workers=1, limits=Limits()) as pool:
        done = pool.complete([(task, ["assert len(G) == 999", "assert len(G) != 999", "assert G.is_directed() is True",
                                      "assert (len(G)\n  + 0) == -1"])])[0]
        verdicts = pool.score([(task, [c.text for c in done])], mutants=False)[0]
    assert [c.text for c in done] == [f"assert len(G) == {n}", "assert len(G) != 999", "assert G.is_directed() is False",
                                      f"assert (len(G)\n  + 0) == {n}"]
    assert [c.filled for c in done] == [True, False, True, True]
    assert all(v.passed for v in verdicts)
