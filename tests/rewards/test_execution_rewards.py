"""pass, kill and pans: from hand-made verdicts, and from the real sandbox once per candidate."""

from __future__ import annotations

import pytest
from reward_helpers import CountingExecutor, make_task, verdict

from rewards.adapter import to_trl
from rewards.composition import ComponentConfig, Composition, CompositionConfig
from rewards.execution import SerialExecutor, passes
from rewards.registry import RewardError, resolve


def test_pass():
    vs = [verdict("passed"), verdict("failed"), verdict("rejected"), verdict("infra"), verdict("timeout")]
    assert resolve("pass")(None, ["c"] * 5, verdicts=vs) == [1.0, 0.0, 0.0, None, 0.0]


def test_kill_is_the_fraction_of_the_tasks_mutants_killed():
    task, bare = make_task(mutants=4), make_task(mutants=0)
    vs = [verdict("passed", ("m0", "m2"), 4), verdict("passed", (), 4), verdict("failed"), verdict("infra"),
          verdict("passed")]
    got = resolve("kill")(None, ["c"] * 5, verdicts=vs, task=[task, task, task, task, bare])
    assert got == [0.5, 0.0, 0.0, None, None]  # no mutants: not applicable


def test_kill_without_a_task_column_counts_the_verdicts_mutant_runs():
    vs = [verdict("passed", ("m1",), 3), verdict("error"), verdict("passed")]
    assert resolve("kill")(None, ["c"] * 3, verdicts=vs) == [pytest.approx(1 / 3), 0.0, None]


def test_kill_refuses_verdicts_scored_without_mutants():
    with pytest.raises(RewardError, match="candidate 0 passed but ran under no mutants.*mutants=True"):
        resolve("kill")(None, ["c"], verdicts=[verdict("passed")], task=[make_task(mutants=4)])


def test_pans_needs_all_four_parts():
    cands = [
        "assert f(x) == 3",  # all four
        "y = f(x)",  # no assert
        "assert True",  # trivial (the gate calls it vacuous)
        "assert f(x) ==",  # does not parse
        "assert f(x) == 4",  # does not pass
        "assert f(x) == 3",  # the sandbox failed
    ]
    vs = [verdict("passed")] * 4 + [verdict("failed"), verdict("infra")]
    assert resolve("pans")(None, cands, verdicts=vs) == [1.0, 0.0, 0.0, 0.0, 0.0, None]


def test_verdicts_may_be_rows_of_a_score_file():
    rows = [{"task_id": "t", "candidate": "c", "status": "passed", "reason": "", "kills": ["m0"], "mutants": 4,
             "tier": "rlimits", "seconds": 0.01}, {"status": "failed"}]
    assert resolve("kill")(None, ["c", "d"], verdicts=rows) == [0.25, 0.0]
    with pytest.raises(RewardError, match="verdict 0 has no 'status'"):
        resolve("pass")(None, ["c"], verdicts=[{"kills": []}])


def test_an_execution_reward_without_verdicts_or_tasks_says_what_it_needs():
    with pytest.raises(RewardError, match="reward 'pass' needs a 'task' column"):
        resolve("pass")(None, ["assert x"])


def test_infra_is_none_never_zero_or_one():
    infra = CountingExecutor(answer=lambda task, cand: verdict("infra"))
    task = make_task()
    r = resolve("pass").with_executor(infra)
    assert r(None, ["assert f(x) == 3"], task=[task]) == [None]
    comp = Composition.from_config(CompositionConfig(), executor=infra)
    [scored] = comp.score(None, ["assert f(x) == 3"], task=[task])
    assert scored.total is None and "infra" in scored.note
    assert scored.verdict.status == "infra" and scored.components == {"pans": None, "kill": None}


# --------------------------------------------------------------------------- the real sandbox


CANDIDATES = [
    "assert nx.number_of_isolates(G) == 2",  # the task's own target
    "assert nx.number_of_isolates(G) == 3",  # runs and fails
    "assert True",  # refused by the gate
    "assert nx.number_of_isolates(G)",  # passes; kills fewer mutants than the target
]


def test_a_composition_runs_each_candidate_once_and_keeps_every_component(isolate_task):
    ex = CountingExecutor(inner=SerialExecutor())
    cfg = CompositionConfig(components=[ComponentConfig("pass"), ComponentConfig("kill"), ComponentConfig("pans"),
                                        ComponentConfig("token_f1", weight=0.0)])
    comp = Composition.from_config(cfg, executor=ex)
    n = len(CANDIDATES)
    scored = comp.score([isolate_task.prefix] * n, CANDIDATES, task=[isolate_task.to_dict()] * n)

    assert len(ex.calls) == 1 and ex.candidates_run == n  # one sandbox call, each candidate once
    assert ex.calls[0][0] is True  # with mutants: kill needs them
    assert [s.verdict.status for s in scored] == ["passed", "failed", "rejected", "passed"]
    target = scored[0]
    assert target.components == {"pass": 1.0, "kill": 1.0, "pans": 1.0, "token_f1": 1.0}
    assert set(target.verdict.kills) == {m.id for m in isolate_task.mutants}
    assert target.total == 3.0 and target.gates == {"ast_valid": 1.0}
    assert scored[1].components["pass"] == 0.0 and scored[1].total == 0.0
    assert scored[2].components["pans"] == 0.0 and "vacuous" in scored[2].verdict.reason
    weak = scored[3]
    assert weak.components["pass"] == 1.0 and weak.components["kill"] < 1.0


def test_an_execution_reward_called_alone_runs_the_sandbox_itself(isolate_task):
    n = len(CANDIDATES)
    ex = CountingExecutor(inner=SerialExecutor())
    assert resolve("pass").with_executor(ex)(None, CANDIDATES, task=[isolate_task] * n) == [1.0, 0.0, 0.0, 1.0]
    assert ex.calls[0][0] is False  # pass needs no mutant runs
    # the plain function, called directly as TRL would, computes its verdicts too
    assert passes(None, CANDIDATES[:2], task=[isolate_task] * 2) == [1.0, 0.0]


def test_separate_reward_functions_share_one_run_per_candidate():
    # TRL calls each reward function in turn on the same batch
    ex = CountingExecutor(answer=lambda task, cand: verdict("passed", ("m0",), 4))
    kill, pass_ = (to_trl(resolve(name).with_executor(ex)) for name in ("kill", "pass"))
    task = make_task(mutants=4)
    cols = {"task": [task, task], "completion_ids": [[1], [2]], "trainer_state": None}
    assert kill(prompts=["p", "p"], completions=["assert f(x) == 3", "assert f(x)"], **cols) == [0.25, 0.25]
    assert pass_(prompts=["p", "p"], completions=["assert f(x) == 3", "assert f(x)"], **cols) == [1.0, 1.0]
    assert ex.candidates_run == 2 and len(ex.calls) == 1
    # a verdict without mutant runs cannot serve a reward that needs them: kill after pass runs again
    assert pass_(prompts=["p"], completions=["assert g(x)"], task=[task]) == [1.0]
    assert kill(prompts=["p"], completions=["assert g(x)"], task=[task]) == [0.25]
    assert [mutants for mutants, _ in ex.calls] == [True, False, True]


def test_focal_pays_a_passing_candidate_that_calls_a_function_under_test():
    from dataclasses import replace

    task = replace(make_task(), focal_functions=("pkg/m.py::f", "pkg/m.py::Graph.degree"))
    cands = ["assert f(x) == 3",  # calls f, passes
             "assert G.degree(1) == 2",  # a method under test, by its last name
             "assert x == 1",  # calls nothing under test
             "assert f(x) == 4",  # calls f, fails
             "assert g(f) == 3",  # f only named, not called
             "assert f(x) ==",  # does not parse
             "assert f(x) == 3"]  # the sandbox failed
    vs = [verdict("passed")] * 3 + [verdict("failed"), verdict("passed"), verdict("error"), verdict("infra")]
    assert resolve("focal")(None, cands, verdicts=vs, task=[task] * 7) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, None]
    with pytest.raises(RewardError, match="reward 'focal' needs a 'task' column"):
        resolve("focal")(None, cands[:1], verdicts=vs[:1])
