"""Fixtures shared by the sandbox's attack tests: real tasks mined from networkx's
``test_cycles.py`` (about 40 slots, several with mutants)."""

from __future__ import annotations

import pytest

from sandbox.mining import MineConfig, mine
from sandbox.tasks import load_tasks


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine") / "tasks.jsonl"
    mine(MineConfig(out=out, files=["algorithms/tests/test_cycles.py"], workers=1, max_tasks=40, progress=False))
    return load_tasks(out)


@pytest.fixture(scope="module")
def task(tasks):
    # A slot whose prefix binds G and whose target kills mutants.
    return next(t for t in tasks if t.mutants and "G = " in t.prefix and "cycle_basis" in t.prefix)
