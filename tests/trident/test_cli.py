"""The `trident` command as a user runs it: a subprocess."""

import json
import subprocess
import sys

import pytest

JOBS = ["mine", "score", "observe", "sft", "seqkd", "rl", "eval", "pipeline", "demo"]


def trident(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trident", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("job", JOBS)
def test_every_job_has_help(job):
    r = trident(job, "--help")
    assert r.returncode == 0
    assert f"usage: trident {job}" in r.stdout


def test_the_job_list_is_its_help():
    r = trident("--help")
    assert r.returncode == 0, r.stderr
    assert all(job in r.stdout for job in JOBS)
    assert "bootstrap 95%" in r.stdout  # a literal % in a job's help, shown as written


def test_mine_help_lists_config_keys():
    out = trident("mine", "--help").stdout
    assert "mutants_per_task" in out and "slow_s" in out


def test_unknown_key_is_one_clear_error():
    r = trident("mine", "mutant_per_task=3")
    assert r.returncode == 2
    assert "unknown config key 'mutant_per_task'" in r.stderr and "did you mean 'mutants_per_task'" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_type_is_one_clear_error(tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("workers: two\n")
    r = trident("mine", "--config", str(cfg))
    assert r.returncode == 2
    assert "config key 'workers': expected int, got 'two'" in r.stderr
    r = trident("mine", "--max-files", "x")
    assert r.returncode == 2 and "'max_files'" in r.stderr


def test_rl_without_a_model_is_one_clear_error(tmp_path):
    r = trident("rl", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "rl"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "is not a Trident model directory" in r.stderr and "trident sft" in r.stderr
    assert not (tmp_path / "rl").exists()  # nothing written, no Ray started


def test_mine_and_score_end_to_end(tmp_path):
    out = tmp_path / "tasks.jsonl"
    r = trident("mine", "--out", str(out), "files=[algorithms/tests/test_reciprocity.py]", "progress=false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept" in r.stdout and out.is_file()
    assert (tmp_path / "tasks.config.yaml").is_file()
    tasks = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert tasks
    cands = tmp_path / "cands.jsonl"
    rows = [{"task_id": tasks[0]["id"], "candidate": tasks[0]["target"]}, {"task_id": tasks[0]["id"], "candidate": "assert False"}]
    cands.write_text("".join(json.dumps(r) + "\n" for r in rows))
    verdicts = tmp_path / "v.jsonl"
    r = trident("score", "--tasks", str(out), "--candidates", str(cands), "--out", str(verdicts), "progress=false")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert [g["status"] for g in got] == ["passed", "failed"]
    assert got[0]["mutants"] == len(tasks[0]["mutants"]) and len(got[0]["kills"]) == len(tasks[0]["mutants"])
    assert set(got[0]) >= {"task_id", "candidate", "status", "reason", "kills", "mutants", "tier", "seconds"}
    assert got[0]["tier"] in ("rlimits", "namespaces")  # the default floor is rlimits
    # observe what the prefix's names hold, from the command line and from a file
    names = list(tasks[0]["observations"])
    assert names, "the mined task carries the observations of its prefix's names"
    r = trident("observe", "--tasks", str(out), "--task", tasks[0]["id"], "--expr", names[-1], "--expr", "open('x')",
                "progress=false")
    assert r.returncode == 0, r.stderr
    assert f"{names[-1]}  ->  {tasks[0]['observations'][names[-1]]['kind']}" in r.stdout
    assert "open('x')  ->  none: rejected" in r.stdout and "observed 1 of 2 expressions" in r.stdout
    exprs = tmp_path / "e.jsonl"
    exprs.write_text(json.dumps({"task_id": tasks[0]["id"], "expression": names[-1]}) + "\n")
    r = trident("observe", "--tasks", str(out), "--expressions", str(exprs), "--out", str(tmp_path / "o.jsonl"),
                "progress=false")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["observation"] == tasks[0]["observations"][names[-1]]


def test_observe_bad_input_is_one_clear_error(tmp_path):
    r = trident("observe", "--task", "x")
    assert r.returncode == 2 and "give at least one --expr" in r.stderr and "Traceback" not in r.stderr
    r = trident("observe")
    assert r.returncode == 2 and "either --task ID" in r.stderr
    bad = tmp_path / "e.jsonl"
    bad.write_text('{"task_id": "t"}\n')
    from sandbox.tasks import write_tasks

    write_tasks(tmp_path / "t.jsonl", [])
    r = trident("observe", "--tasks", str(tmp_path / "t.jsonl"), "--expressions", str(bad))
    assert r.returncode == 1 and 'expected {"task_id": str, "expression": str}' in r.stderr and "Traceback" not in r.stderr


def test_score_with_a_bad_tier_names_the_choices(tmp_path):
    r = trident("score", "sandbox.min_tier=strong")
    assert r.returncode == 2 and "sandbox.min_tier" in r.stderr and "namespaces" in r.stderr, r.stderr


def test_score_with_unknown_task_id(tmp_path):
    from sandbox.tasks import write_tasks

    tasks = tmp_path / "t.jsonl"
    write_tasks(tasks, [])
    cands = tmp_path / "c.jsonl"
    cands.write_text('{"task_id": "nope", "candidate": "assert True"}\n')
    r = trident("score", "--tasks", str(tasks), "--candidates", str(cands), "--out", str(tmp_path / "v.jsonl"))
    assert r.returncode == 1 and "task id(s) not in" in r.stderr and "Traceback" not in r.stderr


def test_shipped_presets_load():
    from pathlib import Path

    from sandbox.mining import MineConfig
    from trident.config import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("mine.yaml", "mine-quick.yaml"):
        cfg = load_config(MineConfig, root / name)
        assert cfg.package == "networkx"
    assert load_config(MineConfig, root / "mine.yaml") == MineConfig()  # the preset states the defaults


def test_overrides_may_come_before_and_after_flags(tmp_path):
    r = trident("mine", "progress=false", "--out", str(tmp_path / "t.jsonl"), "max_files=0")
    assert r.returncode == 0, r.stderr
    r = trident("mine", "--out", str(tmp_path / "t.jsonl"), "--no-such-flag")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr
