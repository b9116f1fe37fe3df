"""Fixtures for the reward tests: real mined networkx tasks, and the helper rewards on sys.path."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def mined(tmp_path_factory):
    """Real networkx tasks (test_isolate: five slots, most with killing mutants), mined once."""
    from sandbox.mining import MineConfig, mine
    from sandbox.tasks import load_tasks

    out = tmp_path_factory.mktemp("rewards-mine") / "tasks.jsonl"
    mine(MineConfig(out=out, files=["algorithms/tests/test_isolate.py"], workers=1, progress=False))
    return out, load_tasks(out)


@pytest.fixture(scope="session")
def isolate_task(mined):
    """``assert nx.number_of_isolates(G) == 2`` after G gets edge (0, 1) and nodes 2, 3."""
    return next(t for t in mined[1] if t.target == "assert nx.number_of_isolates(G) == 2")


@pytest.fixture
def naive_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    return HERE


@pytest.fixture(autouse=True)
def fresh_verdicts():
    """Each test starts without the verdicts of another test's last batch."""
    from rewards import execution

    execution._LAST = None
    yield
    execution._LAST = None
