"""Text rewards against values worked out by hand."""

from __future__ import annotations

import pytest
from reward_helpers import make_task

from rewards.registry import RewardError, resolve
from rewards.text import python_tokens


def run(name, completions, targets=None, **kwargs):
    cols = {} if targets is None else {"target": targets}
    return resolve(name, **kwargs)(["prompt"] * len(completions), completions, **cols)


def test_ast_valid():
    cands = ["assert x", "x = 1", "", "   \n", "assert (", "assert x ==", "assert f(x) == 1  # note"]
    assert run("ast_valid", cands) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_exact_match_normalises_whitespace_parentheses_quotes_and_comments():
    target = "assert x == 'a'"
    cands = [
        "assert x == 'a'",
        "assert  (x=='a')   # same thing",
        'assert x == "a"',
        "assert x == 'b'",
        "assert x == 'a',",  # does not parse
        "assert 'a' == x",  # means the same, reads differently: not an exact match
    ]
    assert run("exact_match", cands, [target] * len(cands)) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_exact_match_with_a_target_that_does_not_parse_compares_collapsed_whitespace():
    assert run("exact_match", ["assert  f(x ==", "assert f(x)"], ["assert f(x ==", "assert f(x"]) == [1.0, 0.0]


def test_python_tokens():
    assert python_tokens("assert len(G) == 0  # comment\n") == ["assert", "len", "(", "G", ")", "==", "0"]
    assert python_tokens("assert f(x") == ["assert", "f", "(", "x"]  # what was read before the error
    assert python_tokens("assert s == 'a b'") == ["assert", "s", "==", "'a b'"]


def test_token_f1_hand_computed():
    cands = [
        "assert len(G) == 0",  # 7 tokens, 6 shared with the target's 7: 2*6/14
        "assert sorted(nx.isolates(G)) == [2, 3]",  # 16 and 16 tokens, 15 shared: 30/32
        "assert f(x",  # 4 tokens, all shared with the target's 7: 2*4/11
        "",  # nothing shared
        "assert len(G) == 3",
    ]
    targets = ["assert len(G) == 3", "assert list(nx.isolates(G)) == [3, 2]", "assert f(x) == 1",
               "assert x", "assert len( G )==3  # same tokens"]
    got = run("token_f1", cands, targets)
    assert got == pytest.approx([12 / 14, 30 / 32, 8 / 11, 0.0, 1.0])


def test_token_f1_counts_repeated_tokens_as_a_multiset():
    # candidate: assert a == a (4), target: assert a == b (4); shared: assert, a, == -> 2*3/8
    assert run("token_f1", ["assert a == a"], ["assert a == b"]) == [pytest.approx(6 / 8)]


def test_target_comes_from_the_task_column_when_there_is_no_target_column():
    task = make_task(target="assert f(x) == 3")
    r = resolve("token_f1")
    assert r(["p"], ["assert f(x) == 3"], task=[task]) == [1.0]
    assert r(["p"], ["assert f(x) == 3"], task=[task.to_dict()]) == [1.0]
    with pytest.raises(RewardError, match="reward 'token_f1' needs a 'target' column"):
        r(["p"], ["assert x"])
    with pytest.raises(RewardError, match="column 'target' must hold one value per completion \\(2\\), got 1"):
        r(["p", "p"], ["a", "b"], target=["a"])


def test_length():
    assert run("length", ["assert len(G) == 0", "", "assert f(x"]) == [7.0, 0.0, 4.0]
    assert run("length", ["  assert x  ", "assert f(x) == 1"], unit="chars") == [8.0, 16.0]
    with pytest.raises(RewardError, match="unit must be 'tokens' or 'chars'"):
        run("length", ["a"], unit="words")
