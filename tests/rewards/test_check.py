"""`trident rewards check` as a user runs it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rewards.check import negate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def trident(*args, **env):
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "trident", "rewards", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=environ)


def test_help_lists_the_action_and_the_keys():
    r = trident("--help")
    assert r.returncode == 0
    assert "usage: trident rewards" in r.stdout and "ACTION REWARD" in r.stdout and "max_tasks" in r.stdout


def test_a_naive_exit_code_reward_is_flagged(mined):
    tasks, _ = mined
    r = trident("check", "naive_rewards:exit_code", "--tasks", str(tasks), "max_tasks=2")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "imports: ok" in out and "pickles: ok" in out and "runs: ok" in out
    # it pays a candidate the gate refused (os._exit(0)) as much as the task's own target
    row = next(line for line in out.splitlines() if line.strip().startswith("os-exit-0"))
    assert row.split()[1:4] == ["1.00", "rejected", "!"]
    assert "FLAGGED: exit_code pays" in out and "Traceback" not in r.stderr


def test_the_built_in_composition_passes():
    # no task file: the check mines a few networkx tasks itself
    r = trident("check", "configs/rewards.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "tasks: 3 of" in out and "mined from networkx" in out
    target = next(line for line in out.splitlines() if line.strip().startswith("target"))
    assert target.split()[1:3] == ["1.00", "passed"]  # pans 1 and every mutant killed: 0.5 + 0.5
    assert "!" not in out.split("pays (")[1].split("\n\n")[0].split("\n", 1)[1]
    from sandbox.redteam import HOSTILE

    assert f"OK: trident pays no hostile candidate ({3 * len(HOSTILE)} runs on 3 task(s))" in out


def test_an_unknown_reward_lists_the_known_ones():
    r = trident("check", "pas")
    assert r.returncode == 1
    assert "imports: FAILED - unknown reward 'pas' (did you mean 'pass'?)" in r.stdout and "token_f1" in r.stdout


def test_a_reward_that_does_not_pickle_is_reported(tmp_path, mined):
    (tmp_path / "closure_rewards.py").write_text(
        "def make():\n"
        "    def inner(prompts, completions, **kw):\n"
        "        return [0.0] * len(completions)\n"
        "    return inner\n"
        "zero = make()\n")
    r = trident("check", "closure_rewards:zero", "--tasks", str(mined[0]), "max_tasks=1",
                PYTHONPATH=str(tmp_path))
    assert r.returncode == 1
    assert "pickles: FAILED" in r.stdout and "module level" in r.stdout and "FAILED: inner pays no hostile" in r.stdout


def test_negate():
    assert negate("assert nx.is_isolate(G, 2)") == "assert not nx.is_isolate(G, 2)"
    assert negate("assert a == b, 'msg'") == "assert not a == b, 'msg'"
    assert negate("x = 1") is None
