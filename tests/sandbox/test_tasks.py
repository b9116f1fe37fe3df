import json

import pytest

from sandbox.tasks import SCHEMA_VERSION, Mutant, Task, TaskFormatError, load_tasks, read_header, write_tasks


def _task(**kw):
    base = dict(
        id="pkg.tests.test_x::test_a#1", package="pkg", package_version="1.0", test_module="pkg.tests.test_x",
        test_class=None, test_name="test_a", slot=1, setup="import pkg", prefix="x = pkg.f(2)",
        target="assert x == 4", focal="def f(n):\n    return n * 2", focal_functions=("f.py::f",),
        mutants=(Mutant("abc123", "f.py", "f", "arithmetic_swap", (2, 11, 2, 16), "n * 2", "(n // 2)"),),
        split="train",
    )
    base.update(kw)
    return Task(**base)


def test_round_trip_is_exact(tmp_path):
    tasks = [_task(), _task(id="pkg.tests.test_x::TestC::test_b#0", test_class="TestC", split="valid", mutants=())]
    path = tmp_path / "t.jsonl"
    assert write_tasks(path, tasks, package="pkg") == 2
    loaded = load_tasks(path)
    assert loaded == tasks
    assert loaded[0].mutants[0].span == (2, 11, 2, 16)
    assert read_header(path)["version"] == SCHEMA_VERSION
    assert [t.id for t in load_tasks(path, split="valid")] == ["pkg.tests.test_x::TestC::test_b#0"]
    # Same tasks, same bytes.
    again = tmp_path / "u.jsonl"
    write_tasks(again, loaded, package="pkg")
    assert again.read_bytes() == path.read_bytes()


def test_other_version_is_a_clear_error(tmp_path):
    path = tmp_path / "t.jsonl"
    write_tasks(path, [_task()])
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head["version"] = SCHEMA_VERSION + 1
    path.write_text("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    with pytest.raises(TaskFormatError, match=rf"schema v{SCHEMA_VERSION + 1}.*reads v{SCHEMA_VERSION}.*re-mine"):
        load_tasks(path)


def test_missing_field_names_field_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    write_tasks(path, [_task()])
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["target"]
    path.write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(TaskFormatError, match=r"t.jsonl:2: missing field\(s\) target"):
        load_tasks(path)


def test_not_a_task_file_and_missing_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(TaskFormatError, match="not a Trident task file"):
        load_tasks(path)
    with pytest.raises(TaskFormatError, match="not found; create it with `trident mine"):
        load_tasks(tmp_path / "nope.jsonl")


def test_bad_split_rejected(tmp_path):
    with pytest.raises(TaskFormatError, match="split 'dev' is not one of train, valid, test"):
        Task.from_dict({**_task().to_dict(), "split": "dev"})
