"""Mining real networkx test files: verification, mutants, determinism, splits, errors."""

import json

import pytest

from sandbox.mining import MineConfig, MiningError, assign_splits, discover, mine
from sandbox.tasks import load_tasks

FILES = ["algorithms/tests/test_isolate.py", "algorithms/tests/test_reciprocity.py"]


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine") / "tasks.jsonl"
    summary = mine(MineConfig(out=out, files=FILES, workers=2, progress=False))
    return out, summary


def test_tasks_are_verified_and_carry_killing_mutants(mined):
    out, summary = mined
    tasks = load_tasks(out)
    assert summary["kept"] == len(tasks) > 0
    assert summary["candidate_slots"] >= summary["kept"] + sum(summary["drops"].values()) - summary["drops"].get("over max_tasks", 0)
    assert json.loads(out.with_name("tasks.summary.json").read_text())["kept"] == len(tasks)
    for t in tasks:
        assert t.target.startswith("assert")
        assert t.focal_functions and t.focal
        assert t.package == "networkx" and t.test_module.startswith("networkx.algorithms.tests.test_")
    assert any(t.mutants for t in tasks)
    # Every kept mutant is killed by its task's target under the real execution path.
    from sandbox.api import Limits, execute

    t = next(t for t in tasks if t.mutants)
    [v] = execute(t, [t.target])
    assert v.status == "passed" and set(v.kills) == {m.id for m in t.mutants}
    # A vacuous assert passes everywhere, so it kills nothing (the gate would not even run it).
    [vacuous] = execute(t, ["assert True"], limits=Limits(gate=False))
    assert vacuous.status == "passed" and vacuous.kills == []
    [gated] = execute(t, ["assert True"])
    assert gated.status == "rejected" and "vacuous" in gated.reason


def test_rerun_is_byte_identical(mined, tmp_path):
    out, _ = mined
    again = tmp_path / "tasks.jsonl"
    mine(MineConfig(out=again, files=FILES, workers=1, progress=False))
    assert again.read_bytes() == out.read_bytes()


def test_objects_hashed_by_address_mine_alike_whatever_runs_beside(tmp_path):
    """ISMAGS on plain ``object()`` nodes iterates sets in allocation order, and some of its
    mutants kill or not by heap layout. Mined alone, after another file, into another path
    and at the same time as each other, the file yields the same bytes."""
    from concurrent.futures import ThreadPoolExecutor

    ismags = "algorithms/isomorphism/tests/test_ismags.py"
    runs = [(tmp_path / "a.jsonl", [ismags]),
            (tmp_path / "a-longer-name.jsonl", ["algorithms/approximation/tests/test_clique.py", ismags])]
    with ThreadPoolExecutor(len(runs)) as pool:
        list(pool.map(lambda r: mine(MineConfig(out=r[0], files=r[1], workers=1, progress=False)), runs))

    def lines(path):
        return [line for line in path.read_text().splitlines() if "test_ismags::" in line]

    alone, after = lines(runs[0][0]), lines(runs[1][0])
    assert alone == after
    assert any("test_noncomparable_nodes" in line and '"mutants": [{' in line for line in alone)


def test_max_tasks_cuts_in_path_order(mined, tmp_path):
    out, _ = mined
    full = load_tasks(out)
    cut = tmp_path / "cut.jsonl"
    summary = mine(MineConfig(out=cut, files=FILES, max_tasks=3, progress=False))
    assert [t.id for t in load_tasks(cut)] == [t.id for t in full[:3]]
    assert summary["kept"] == 3


def test_splits_are_by_file_group():
    files = [f"t/test_{i}.py" for i in range(200)]
    cfg = MineConfig(valid_fraction=0.2, test_fraction=0.2)
    links = [["t/test_1.py", "t/test_2.py"], ["t/test_2.py", "t/test_3.py"]]
    splits = assign_splits(files, links, cfg)
    assert splits["t/test_1.py"] == splits["t/test_2.py"] == splits["t/test_3.py"]
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "valid", "test")}
    assert all(20 <= counts[s] <= 60 for s in ("valid", "test")), counts
    assert assign_splits(files, links, cfg) == splits  # deterministic


def test_no_file_in_two_splits(mined):
    out, _ = mined
    seen = {}
    for t in load_tasks(out):
        assert seen.setdefault(t.test_module, t.split) == t.split


def test_package_without_tests_is_a_clear_error(tmp_path):
    with pytest.raises(MiningError, match="package 'json' ships no test files"):
        mine(MineConfig(package="json", out=tmp_path / "x.jsonl", progress=False))
    with pytest.raises(MiningError, match="'no_such_pkg_xyz' is not installed"):
        mine(MineConfig(package="no_such_pkg_xyz", out=tmp_path / "x.jsonl", progress=False))


def test_discover_finds_networkx_tests():
    found = discover("networkx")
    assert len(found) > 200
    assert all(m.startswith("networkx.") and r.endswith(".py") for m, r in found)
    assert found == sorted(found, key=lambda x: x[1])


def test_bad_config_combination():
    with pytest.raises(ValueError, match="slow_s"):
        MineConfig(slow_s=20, timeout_s=10)


def test_interrupted_run_resumes_from_its_parts(mined, tmp_path):
    from sandbox.mining import _run_workers, _worker_settings, parts_dir

    out, _ = mined
    cfg = MineConfig(out=tmp_path / "tasks.jsonl", files=FILES, workers=1, progress=False)
    worker_cfg = _worker_settings(cfg)
    # A run that stopped after its first file leaves that file's part behind.
    module = "networkx.algorithms.tests.test_isolate"
    _run_workers(cfg, [(module, FILES[0])], worker_cfg)
    part = parts_dir(cfg) / f"{module}.json"
    data = json.loads(part.read_text())
    assert data["tasks"]
    # Mark the part so reuse is visible, then rerun: the part is used, the rest is mined.
    data["tasks"][0]["target"] = "assert 'resumed'"
    part.write_text(json.dumps(data))
    mine(cfg)
    targets = [t.target for t in load_tasks(cfg.out)]
    assert "assert 'resumed'" in targets
    assert len(targets) == len(load_tasks(out))
    assert not parts_dir(cfg).exists()  # removed once the task file is written
    # A part made with other settings is not reused.
    _run_workers(cfg, [(module, FILES[0])], worker_cfg)
    data = json.loads(part.read_text())
    data["tasks"][0]["target"] = "assert 'stale'"
    data["key"] = "other-settings"
    part.write_text(json.dumps(data))
    mine(cfg)
    assert cfg.out.read_bytes() == out.read_bytes()


def test_task_that_no_longer_matches_the_library_is_infra_not_a_score(mined):
    import dataclasses

    from sandbox.api import execute

    out, _ = mined
    task = load_tasks(out)[0]
    stale = dataclasses.replace(task, prefix=task.prefix + "\nx = 1")
    [v] = execute(stale, [task.target])
    assert v.status == "infra" and "re-mine" in v.reason


def test_another_library_mines_with_no_code_change(tmp_path):
    # toolz ships its test suite in its wheel (installed by the [test] extra).
    out = tmp_path / "toolz.jsonl"
    summary = mine(MineConfig(package="toolz", out=out, files=["tests/test_dicttoolz.py"], workers=1, progress=False))
    tasks = load_tasks(out)
    assert summary["kept"] == len(tasks) > 10
    assert all(t.package == "toolz" and t.test_module == "toolz.tests.test_dicttoolz" for t in tasks)
    assert any(t.mutants for t in tasks)
    assert all(ff.startswith("dicttoolz.py::") or "::" in ff for t in tasks for ff in t.focal_functions)
