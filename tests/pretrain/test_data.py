"""The prompt: focal code without decorators and docstrings, setup, prefix and observations,
cut in a fixed order."""

from __future__ import annotations

import dataclasses

from pretrain.context import observation_lines, strip_focal
from pretrain.data import DataConfig, Encoder

FOCAL = '''# algorithms/x.py
@not_implemented_for("directed")
@nx._dispatchable
def f(G, k=2):
    """Return things.

    More words.
    """
    return [n for n in G if G.degree(n) >= k]
class C:
    \'\'\'One line.\'\'\'
    def g(self,
          x):
        r"""Raw docstring."""
        return x
'''


def test_strip_focal_drops_decorators_and_docstrings_only():
    assert strip_focal(FOCAL) == (
        '# algorithms/x.py\ndef f(G, k=2):\n    return [n for n in G if G.degree(n) >= k]\nclass C:\n'
        '    def g(self,\n          x):\n        return x')
    cut = FOCAL[: FOCAL.index("More words")]  # a text cut at a budget inside a docstring
    assert strip_focal(cut) == "# algorithms/x.py\ndef f(G, k=2):"


def test_observation_lines(small_tasks):
    task = dataclasses.replace(small_tasks[0], observations={
        "G": {"kind": "len", "text": "4"}, "r": {"kind": "literal", "text": "[1, 2]"},
        "w": {"kind": "approx", "text": "pytest.approx(0.5)"}, "e": {"kind": "none", "text": "", "reason": "nan"},
        "o": {"kind": "object", "text": "networkx.classes.digraph.DiGraph"}, "x": {"kind": "raises", "text": "KeyError"},
        "long": {"kind": "literal", "text": "[" + "1, " * 60 + "1]"}})
    lines = observation_lines(task)
    assert lines[:4] == ["# len(G) == 4", "# r == [1, 2]", "# w == pytest.approx(0.5)", "# o: DiGraph"]
    assert len(lines) == 5 and len(lines[4]) == 80 and lines[4].endswith("…")
    assert observation_lines(dataclasses.replace(task, observations=None)) == []


def test_the_prompt_holds_every_part_and_cuts_setup_first(small_tasks, tiny_tokenizer):
    task = dataclasses.replace(small_tasks[0], focal="def f(G):\n    return 1\n", setup="import networkx as nx\n" * 20,
                               prefix="G = nx.path_graph(4)\nr = f(G)\n", observations={"r": {"kind": "literal", "text": "1"}})
    roomy = Encoder(tiny_tokenizer, DataConfig(max_prompt=512))
    focal, setup, prefix, observed = roomy.parts(task)
    full = roomy.prompt(task)
    assert len(full) == len(focal) + len(setup) + len(prefix) + len(observed) + 3
    assert tiny_tokenizer.decode(list(observed)).strip() == "# r == 1"
    assert roomy.prompt_stats([task])["cut_any"] == 0.0
    need = len(focal) + len(prefix) + len(observed) + 3
    tight = Encoder(tiny_tokenizer, DataConfig(max_prompt=need + 2))
    ids = tight.prompt(task)
    assert len(ids) == need + 2 and list(ids[-1 - len(observed):-1]) == list(observed)  # observations kept, last
    stats = tight.prompt_stats([task])
    assert stats["cut_setup"] == 1.0 and stats["cut_focal"] == stats["cut_prefix"] == stats["cut_observations"] == 0.0
