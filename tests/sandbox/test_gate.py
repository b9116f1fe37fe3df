"""The static gate refuses forgeries and vacuous assertions, each for the right reason, and lets
real networkx-style assertions through."""

from __future__ import annotations

import pytest

from sandbox.gate import MAX_CHARS, MAX_STATEMENTS, check

KNOWN = frozenset({"G", "nx", "x", "self", "_helper_known"})

# (id, candidate, fragment the reason must contain)
REJECTED = [
    # Size, syntax, shape.
    ("empty", "", "empty"),
    ("whitespace", "  \n\t\n", "empty"),
    ("too-long", "assert G == [" + ", ".join(["1"] * 1500) + "]", f"at most {MAX_CHARS} are allowed"),
    ("too-many-statements", "\n".join(f"a{i} = G" for i in range(MAX_STATEMENTS)) + "\nassert a0",
     f"at most {MAX_STATEMENTS} are allowed"),
    ("syntax-error", "assert G ==", "syntax error"),
    ("null-byte", "assert G\x00", "null bytes"),
    ("no-assert", "h = nx.complement(G)", "no assert statement"),
    ("comment-only", "# assert G", "no assert statement"),
    ("import", "import os", "found an 'import' statement"),
    ("import-from", "from os import _exit\nassert G", "found an 'import' statement"),
    ("exit-statement", "os._exit(0)", "found an expression statement"),
    ("bare-call", "nx.is_connected(G)", "a bare expression or call is not an assertion"),
    ("pytest-skip", "pytest.skip()", "found an expression statement"),
    ("exec-statement", "exec('x')", "found an expression statement"),
    ("class", "class X: pass", "found a class definition"),
    ("def", "def f():\n    return True\nassert f()", "found a function definition"),
    ("for-loop", "for n in G:\n    assert n", "found a 'for' loop"),
    ("while-loop", "while True: pass", "found a 'while' loop"),
    ("if", "if G:\n    assert G", "found an 'if' statement"),
    ("with", "with G:\n    assert G", "found a 'with' statement"),
    ("try", "try:\n    assert G\nexcept Exception:\n    pass", "found a 'try' statement"),
    ("raise", "raise SystemExit(0)", "found a 'raise' statement"),
    ("global", "global G\nassert G", "found a 'global' statement"),
    ("pass", "pass", "found a 'pass' statement"),
    ("del", "del G", "found a 'del' statement"),
    ("aug-assign", "x = 1; x += 1", "found an augmented assignment"),
    ("ann-assign", "y: int = len(G)\nassert y", "found an annotated assignment"),
    ("match", "match G:\n    case _:\n        assert G", "found a 'match' statement"),
    ("attribute-store", "G.x = 1\nassert G.x", "assignment to an attribute (G.x)"),
    ("patch-library", "nx.cycle_basis = len\nassert G", "assignment to an attribute (nx.cycle_basis)"),
    ("subscript-store", "G.graph['x'] = 1\nassert G", "assignment to an item"),
    ("starred-store", "a, *b = G\nassert a", "assignment to a starred target"),
    # Names.
    ("dunder-import", "assert __import__('os')", "name '__import__' is not allowed"),
    ("os-exit-in-assert", "assert os._exit(0)", "name 'os' is not allowed in an assertion"),
    ("pytest-exit", "assert pytest.exit(returncode=0)", "name 'pytest' is not allowed"),
    ("getattr", "assert getattr(G, 'x')", "name 'getattr' is not allowed"),
    ("eval", "assert eval('1')", "name 'eval' is not allowed in an assertion"),
    ("open", "assert open('/etc/passwd')", "name 'open' is not allowed"),
    ("globals", "assert globals()", "name 'globals' is not allowed"),
    ("sys-modules", "assert sys.modules", "name 'sys' is not allowed"),
    ("signal-alarm", "assert signal.alarm(0) is None", "name 'signal' is not allowed"),
    ("ctypes", "assert ctypes", "name 'ctypes' is not allowed"),
    ("builtins-dunder", "assert __builtins__", "names starting with '_' are private"),
    ("underscore", "assert G == _", "name '_' is not allowed"),
    ("rebind-denied", "eval = G\nassert eval", "name 'eval' is not allowed"),
    ("denied-in-comprehension", "assert all(os for n in G)", "name 'os' is not allowed"),
    ("object", "assert G != object()", "name 'object' is not allowed"),
    ("type-builds-class", "assert type('X', (), {})", "type(x)"),
    ("type-as-value", "t = type\nassert t(G)", "type(x)"),
    ("type-keywords", "assert type(G, x=1)", "type(x)"),
    # Attributes and strings.
    ("dunder-class", "assert G.__class__", "is a class, always true"),
    ("dunder-code", "assert G.add_edge.__code__", "attribute '__code__' is not allowed (dunder attributes)"),
    ("subclasses", "assert ().__class__.__bases__[0].__subclasses__()", "attribute '__bases__' is not allowed"),
    ("private-name", "assert _helper(G)", "name '_helper' is not allowed"),
    ("code-of-mutant", "assert nx.cycle_basis.__code__.co_code", "attribute '__code__' is not allowed"),
    ("format-escape", 'assert "{0.__globals__}".format(G)', "found __globals__"),
    ("format-harmless-dunder", 'assert "{0.__class__}".format(G)', "attribute 'format' is not allowed"),
    ("format-attribute", "assert G.format", "attribute 'format' is not allowed"),
    ("format-plain-string", 'assert "{0.graph}".format(G)', "attribute 'format' is not allowed"),
    ("frame-walk", "assert (n for n in G).gi_frame.f_back", "attribute 'gi_frame' is not allowed"),
    ("mro", "assert G.mro()", "attribute 'mro' is not allowed"),
    ("library-os", "assert nx.utils.os.system('true') == 0", "attribute 'os' is not allowed"),
    ("fstring-dunder", 'assert f"{G.add_edge.__globals__}"', "attribute '__globals__' is not allowed"),
    ("dunder-string", "assert G.graph.get('__globals__')", "string constants containing '__'"),
    ("dunder-bytes", "assert G != b'__code__'", "string constants containing '__'"),
    ("message-checked", "assert G, eval('1')", "name 'eval' is not allowed"),
    ("message-dunder", "assert G, G.__dict__", "attribute '__dict__' is not allowed"),
    # Expressions.
    ("lambda-dunder", "assert sorted(G, key=lambda n: n.__dict__)", "attribute '__dict__' is not allowed"),
    ("lambda-no-known", "assert (lambda: 1)()", "vacuous assertion"),
    ("walrus", "assert (n := len(G)) == 4", "assignment expression"),
    # Vacuous.
    ("true", "assert True", "vacuous assertion: the test is the constant True"),
    ("one", "assert 1", "vacuous assertion: the test is the constant 1"),
    ("string", 'assert "x"', "vacuous assertion: the test is the constant 'x'"),
    ("none", "assert None", "vacuous assertion: the test is the constant None"),
    ("tuple-message", 'assert (G, "msg")', "vacuous assertion: a non-empty tuple is always true"),
    ("tuple-compare-message", 'assert (G == 0, "G is empty")', "without parentheses"),
    ("list", "assert [G]", "vacuous assertion: a non-empty list is always true"),
    ("dict", "assert {'a': G}", "vacuous assertion: a non-empty dict is always true"),
    ("generator", "assert (n for n in G)", "vacuous assertion: a generator expression is always true"),
    ("same-sides", "assert x == x", "vacuous assertion: both sides of '==' are the same expression (x)"),
    ("same-attributes", "assert G.graph is G.graph", "both sides of 'is' are the same expression"),
    ("pytest-other", "assert pytest.raises(ValueError)", "name 'pytest' is not allowed"),
    ("dunder-dict", "assert G.__dict__", "attribute '__dict__' is not allowed"),
    ("hasattr-dunder-elsewhere", "assert hasattr(G, 'x') and '__code__' in G", "string constants containing '__'"),
    ("same-chained", "assert 0 < x <= x", "both sides of '<=' are the same expression"),
    ("same-not-equal", "assert G != G", "both sides of '!=' are the same expression"),
    ("or-true", "assert G.order() or True", "vacuous assertion: an operand of 'or' is always true"),
    ("or-same", "assert G.order() == 3 or G == G", "an operand of 'or' is always true"),
    ("and-all-true", "assert 1 and G == G", "every operand of 'and' is always true"),
    ("not-none", "assert not None", "vacuous assertion: 'not None' is always true"),
    ("not-zero", "assert not 0", "'not 0' is always true"),
    ("not-empty-string", 'assert not ""', "is always true"),
    ("no-known-name", "assert len([1]) == 1", "vacuous assertion: the test uses no name"),
    ("no-known-name-sorted", "assert sorted([2, 1]) == [1, 2]", "uses no name"),
    ("comprehension-shadows", "assert all(x > 0 for x in [1, 2])", "uses no name"),
    ("shadowed-known", "G = 3\nassert G == 3", "uses no name"),
    ("assigned-from-nothing", "h = [1, 2]\nassert len(h) == 2", "uses no name"),
    ("message-not-a-use", 'assert len([1]) == 1, f"{G}"', "uses no name"),
    # Vacuous forms a red team found the earlier rules let through.
    ("module-object", "assert nx", "'nx' is a module, class or function"),
    ("module-attribute-path", "assert nx.utils", "'nx.utils' is a module, class or function"),
    ("iterator", "assert iter(G)", "'iter(...)' is always true"),
    ("type-object", "assert type(G)", "'type(...)' is always true"),
    ("id-object", "assert id(G)", "'id(...)' is always true"),
    ("docstring", "assert nx.is_connected.__doc__", "describes an object"),
    ("name-of", "assert G.__name__", "describes an object"),
    ("or-callable", "assert nx.is_connected(G) == 'WRONG' or callable(nx.is_connected)", "a module, class or function is callable"),
    ("or-lambda-call", "assert nx.is_connected(G) == 'WRONG' or (lambda: 1)()", "an operand of 'or' ((lambda: 1)())"),
    ("or-lambda", "assert G == 0 or (lambda: 0)", "a lambda is always true"),
    ("starred-display", "assert [*[G]]", "a non-empty list is always true"),
    ("starred-dict", "assert {**{'a': G}}", "a non-empty dict is always true"),
    ("same-sides-in-with-call", "assert nx.info(G) in nx.info(G)", "both sides of 'in' are the same expression"),
    ("same-sides-subset-with-call", "assert set(G) <= set(G)", "both sides of '<=' are the same expression"),
]

OBJECTS = frozenset({"nx"})

# Real networkx test styles, each with KNOWN as the names the prefix and module provide.
ACCEPTED = [
    "assert nx.is_connected(G)",
    # Real networkx targets: private state, the module's private helpers, pytest.approx,
    # descriptive dunders, cached views.
    "assert G._adj == {0: {}}",
    "assert _helper_known(G)",
    "assert x == pytest.approx(1.083, abs=1e-3)",
    "assert str(G) == f'{type(G).__name__} with 3 nodes'",
    "assert id(G.edges) == id(G.edges)",
    "assert list(nx.lexicographical_topological_sort(G, key=lambda x: x)) == [1, 2]",
    'assert not hasattr(G, "_graph")',
    'assert not hasattr(G, "__setitem__")',
    "assert all(nx.is_connected(G) for _ in range(3))",
    "assert sorted(nx.cycle_basis(G)) == [[0, 1, 2]]",
    "assert len(G) == 4 and G.number_of_edges() == 3",
    "assert type(x) == int",
    "assert all(d == 2 for n, d in G.degree())",
    "assert {n for n in G} == set(range(4))",
    'assert G.has_edge(0, 1), "edge missing"',
    "H = nx.complement(G)\nassert len(H) == len(G)",
    "assert abs(x - 0.5) < 1e-9",
    "assert not G.is_directed()",
    'assert G.edges[0, 1]["weight"] == 3',
    "assert [] == list(nx.selfloop_edges(G))",
    "assert False",
    "assert 0",
    "assert 0 < x <= 1",
    'assert nx.is_tree(G), f"not a tree: {sorted(G.edges())}"',
    "a, b = nx.bipartite.sets(G)\nassert a == {0, 2}\nassert b == {1, 3}",
    "assert nx.number_connected_components(G) == 1",
    "assert nx.shortest_path_length(G, 0, 3) == 2",
    "assert isinstance(x, float) and x > 0",
    "assert dict(G.degree()) == {0: 1, 1: 2, 2: 1}",
    "assert G.nodes[0].get('color') is None",
    "assert self.G.adj == {0: {1: {}}, 1: {0: {}}}",
    "assert x != x + 1",
    "assert not G.graph",
    "assert ()",
    "assert (*G,)",
    "assert G.order() == 3 or G.size() == 2",
    "assert set(G.neighbors(0)) == {1, 2}",
    "assert [n for n in G if G.degree(n) > 2] == []",
    "assert G.graph.get('name') == 'Petersen'",
    "assert f'{G}' == 'Graph with 3 nodes'",
    # Operator dunders called directly, as some libraries' own tests do; and objects' truth where
    # it depends on the code (a bound value, a call).
    "assert x.__add__(G) is NotImplemented",
    "assert G.__eq__(G)",
    "assert G.__class__ is nx.Graph",
    "assert type(G).__name__ == 'Graph'",
    "assert x",
    "assert nx.is_connected(G) or x is None",
    "assert callable(x)",
    "assert set(G) == set(G)",
    "assert '__add__' in x",
]


@pytest.mark.parametrize("candidate, fragment", [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejects_for_the_right_reason(candidate, fragment):
    reason = check(candidate, KNOWN, OBJECTS)
    assert reason is not None, f"accepted: {candidate!r}"
    assert fragment in reason, reason


@pytest.mark.parametrize("candidate", ACCEPTED)
def test_accepts_real_assertions(candidate):
    assert check(candidate, KNOWN, OBJECTS) is None


def test_enough_cases():
    assert len(REJECTED) >= 40 and len(ACCEPTED) >= 15


def test_limits_are_inclusive():
    at_limit = "assert G == " + "1" * (MAX_CHARS - len("assert G == "))
    assert len(at_limit) == MAX_CHARS and check(at_limit, KNOWN) is None
    statements = "\n".join(f"a{i} = G" for i in range(MAX_STATEMENTS - 1)) + "\nassert a0"
    assert check(statements, KNOWN) is None


def test_no_known_names_skips_only_the_use_rule():
    # Callers that know nothing about the task still get every other rule.
    assert check("assert sorted([2, 1]) == [1, 2]") is None
    assert check("assert True").startswith("vacuous assertion")
    assert check("assert os.getpid()") == "name 'os' is not allowed in an assertion"


def test_a_name_from_a_known_value_becomes_known():
    assert check("h = nx.complement(G)\nassert h", {"nx", "G"}) is None
    assert check("h = [1]\nassert h", {"nx", "G"}).startswith("vacuous assertion")
    # The use rule reads the test, not the message, and every assert is checked.
    assert check("assert G\nassert len([1]) == 1", {"G"}).startswith("vacuous assertion")


def test_security_reasons_come_before_vacuity():
    assert check("assert True\nimport os", KNOWN).endswith("found an 'import' statement")
    assert check("assert True, os", KNOWN) == "name 'os' is not allowed in an assertion"


def test_deep_nesting_is_a_reason_not_a_crash():
    reason = check("assert " + "-" * 1990 + "G", KNOWN)
    assert reason is not None and ("nested" in reason or "parsed" in reason or "syntax" in reason)
    reason = check("assert " + "(" * 150 + "G" + ")" * 150, KNOWN)
    assert reason is None or "nest" in reason or "syntax" in reason
