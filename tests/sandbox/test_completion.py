"""Completion fills the value of a candidate's assertion from an observation and keeps the
model's own text for what is checked; everything outside the completed forms is kept as written."""

from __future__ import annotations

import dataclasses

import pytest

from sandbox.completion import Completed, complete, fill, observed_expression


def lit(text: str) -> dict:
    return {"kind": "literal", "text": text}


# (id, candidate, observed expression, observation, completed text)
FILLED = [
    ("eq", "assert f(x) == 3", "f(x)", lit("4"), "assert f(x) == 4"),
    ("eq-string", "assert G.name == 'a'", "G.name", lit("'abc'"), "assert G.name == 'abc'"),
    ("eq-list", "assert sorted(G) == [1]", "sorted(G)", lit("[1, 2]"), "assert sorted(G) == [1, 2]"),
    ("eq-set", "assert set(G) == set()", "set(G)", lit("{1, 2}"), "assert set(G) == {1, 2}"),
    ("eq-dict", "assert d == {}", "d", lit("{'a': 1}"), "assert d == {'a': 1}"),
    ("eq-negative", "assert f(x) == -1", "f(x)", lit("2"), "assert f(x) == 2"),
    ("eq-tuple", "assert t == (1, 2)", "t", lit("(3, 4)"), "assert t == (3, 4)"),
    ("mirror", "assert 3 == f(x)", "f(x)", lit("5"), "assert f(x) == 5"),
    ("mirror-list", "assert [1] == list(G)", "list(G)", lit("[2]"), "assert list(G) == [2]"),
    ("len", "assert len(G) == 2", "len(G)", lit("4"), "assert len(G) == 4"),
    ("is-none-to-eq", "assert f(x) is None", "f(x)", lit("3"), "assert f(x) == 3"),
    ("is-true-to-false", "assert nx.is_tree(G) is True", "nx.is_tree(G)", lit("False"),
     "assert nx.is_tree(G) is False"),
    ("is-false-to-none", "assert g() is False", "g()", lit("None"), "assert g() is None"),
    ("eq-to-none", "assert f(x) == 0", "f(x)", lit("None"), "assert f(x) is None"),
    ("eq-to-true", "assert f(x) == 3", "f(x)", lit("True"), "assert f(x) is True"),
    ("approx", "assert f(x) == 0.3", "f(x)", {"kind": "approx", "text": "pytest.approx(0.3333333333333333)"},
     "assert f(x) == pytest.approx(0.3333333333333333)"),
    ("approx-replaced", "assert f(x) == approx(0.5)", "f(x)", lit("1"), "assert f(x) == 1"),
    ("pytest-approx-replaced", "assert f(x) == pytest.approx(0.5)", "f(x)",
     {"kind": "approx", "text": "pytest.approx(0.25)"}, "assert f(x) == pytest.approx(0.25)"),
    ("message", "assert f(x) == 3, 'f of x'", "f(x)", lit("4"), "assert f(x) == 4, 'f of x'"),
    ("message-mirror", "assert 3 == f(x), msg(x)", "f(x)", lit("4"), "assert f(x) == 4, msg(x)"),
    ("message-is", "assert f(x) is None, \"why\"", "f(x)", lit("True"), "assert f(x) is True, \"why\""),
    ("spacing-kept", "assert  f( x ,y )==3", "f( x ,y )", lit("4"), "assert f( x ,y ) == 4"),
    ("multi-line", "assert nx.shortest_path(G,\n                        0,  3) == [0]",
     "nx.shortest_path(G,\n                        0,  3)", lit("[0, 1, 3]"),
     "assert nx.shortest_path(G,\n                        0,  3) == [0, 1, 3]"),
    ("multi-line-parenthesized", "assert (\n    a +\n      b\n) == 1", "a +\n      b", lit("2"),
     "assert (a +\n      b) == 2"),
    ("low-precedence-kept-parenthesized", "assert (a or b) == 1", "a or b", lit("2"), "assert (a or b) == 2"),
    ("comparison-kept-parenthesized", "assert (x == y) == 1", "x == y", lit("True"), "assert (x == y) is True"),
    ("semicolon", "assert f(x) == 1;", "f(x)", lit("2"), "assert f(x) == 2"),
]


@pytest.mark.parametrize("candidate, expression, observation, expected",
                         [case[1:] for case in FILLED], ids=[case[0] for case in FILLED])
def test_filled(candidate, expression, observation, expected):
    assert observed_expression(candidate) == expression
    assert fill(candidate, observation) == expected
    assert complete(candidate, observation) == Completed(expected, True, expression, observation["kind"])


@pytest.mark.parametrize("candidate, expression, observation, expected",
                         [case[1:] for case in FILLED], ids=[case[0] for case in FILLED])
def test_idempotent(candidate, expression, observation, expected):
    once = fill(candidate, observation)
    assert fill(once, observation) == once
    assert observed_expression(once) == expression
    assert complete(once, observation).filled is False


# Candidates outside the completed forms: no expression, kept as written whatever is observed.
NOT_A_FORM = [
    ("not-equal", "assert f(x) != 3"),
    ("less", "assert f(x) < 3"),
    ("in", "assert 3 in f(x)"),
    ("not-in", "assert x not in G"),
    ("and", "assert f(x) == 3 and g(x) == 4"),
    ("chained", "assert 1 == f(x) == 1"),
    ("two-statements", "y = f(x)\nassert y == 3"),
    ("two-asserts", "assert f(x) == 3\nassert g(x) == 4"),
    ("bare-assert", "assert f(x)"),
    ("not", "assert not f(x)"),
    ("syntax-error", "assert f(x) =="),
    ("empty", ""),
    ("no-assert", "f(x) == 3"),
    ("both-literal", "assert 3 == 3"),
    ("literal-is-none", "assert None is None"),
    ("no-literal", "assert f(x) == g(x)"),
    ("both-approx", "assert approx(1.0) == pytest.approx(1.0)"),
    ("is-not-singleton", "assert f(x) is G"),
    ("is-not", "assert f(x) is not None"),
    ("indented", "    assert f(x) == 3"),
]


@pytest.mark.parametrize("candidate", [case[1] for case in NOT_A_FORM], ids=[case[0] for case in NOT_A_FORM])
def test_not_a_form_kept(candidate):
    assert observed_expression(candidate) is None
    assert fill(candidate, lit("4")) == candidate
    assert complete(candidate, lit("4")) == Completed(candidate, False, None, "literal")


# Observations that are not values keep the candidate, though its expression is found.
NOT_A_VALUE = [
    ("len", {"kind": "len", "text": "4"}),
    ("object", {"kind": "object", "text": "networkx.classes.graph.Graph"}),
    ("raises", {"kind": "raises", "text": "NetworkXError"}),
    ("none", {"kind": "none", "text": "", "reason": "the prefix failed"}),
    ("literal-not-a-literal", {"kind": "literal", "text": "<Graph>"}),
    ("missing-text", {"kind": "literal"}),
]


@pytest.mark.parametrize("observation", [case[1] for case in NOT_A_VALUE], ids=[case[0] for case in NOT_A_VALUE])
def test_observation_not_a_value_kept(observation):
    candidate = "assert len(G.edges) == 3"
    assert observed_expression(candidate) == "len(G.edges)"
    assert fill(candidate, observation) == candidate
    result = complete(candidate, observation)
    assert result.text == candidate
    assert result.filled is False
    assert result.expression == "len(G.edges)"
    assert result.kind == observation["kind"]


def test_literal_true_turns_equality_into_identity():
    assert fill("assert f(x) == 3", lit("True")) == "assert f(x) is True"
    assert fill("assert f(x) == 3", lit("1")) == "assert f(x) == 1"


def test_same_value_keeps_the_candidate_verbatim():
    # Only whitespace (or a comment) would change: the model's own text is returned.
    candidate = "assert f(x)==[1,2]  # as documented"
    result = complete(candidate, lit("[1, 2]"))
    assert result == Completed(candidate, False, "f(x)", "literal")
    assert fill("assert g() is None", lit("None")) == "assert g() is None"


def test_whitespace_inside_a_string_is_a_change():
    assert fill("assert f(x) == 'ab'", lit("'a b'")) == "assert f(x) == 'a b'"


def test_observed_tuple_without_parentheses_is_parenthesized():
    filled = fill("assert f(x) == (1,)", lit("1, 2"))
    assert filled == "assert f(x) == (1, 2)"


def test_completed_is_frozen():
    result = complete("assert f(x) == 3", lit("4"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "assert True"  # type: ignore[misc]
