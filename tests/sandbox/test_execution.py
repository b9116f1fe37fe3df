"""The execution core on a real networkx test: pytest semantics, parent-owned verdicts."""

import os

import networkx
import pytest

from sandbox.execution import run_forked, run_group
from sandbox.slot import SlotProgram
from sandbox.mutants import Patcher, generate

MODULE = "networkx.algorithms.tests.test_cycles"
NX_DIR = os.path.dirname(networkx.__file__)


@pytest.fixture(scope="module")
def program():
    # TestCycles.setup_class builds self.G; slot 3 follows three prefix statements.
    return SlotProgram(MODULE, "TestCycles", "test_cycle_basis", 3)


def test_prefix_and_target_come_from_the_installed_source(program):
    assert program.prefix_text == "G = self.G\ncy = nx.cycle_basis(G, 0)\nsort_cy = sorted(sorted(c) for c in cy)"
    assert program.target_text == "assert sort_cy == [[0, 1, 2, 3], [0, 1, 6, 7, 8], [0, 3, 4, 5]]"


def test_target_passes(program):
    v = run_forked(program, program.target_text, timeout=10)
    assert v.status == "passed", v.reason


def test_wrong_assertion_fails_with_pytest_message(program):
    v = run_forked(program, "assert len(sort_cy) == 4", timeout=10)
    assert v.status == "failed"
    # pytest's rewriting explains the comparison.
    assert "assert 3 == 4" in v.reason and "len(" in v.reason


def test_exception_is_error_not_failure(program):
    v = run_forked(program, "assert sort_cy[10] == 1", timeout=10)
    assert v.status == "error"
    assert v.reason.startswith("IndexError") and "in the candidate" in v.reason


def test_assertion_error_raised_inside_a_call_is_not_a_failure(program):
    # An AssertionError from deeper code is not "raised on the candidate's own line".
    v = run_forked(program, "assert [x for x in [1] if (_ for _ in ()).throw(AssertionError())]", timeout=10)
    assert v.status == "error", v


def test_hang_is_killed_by_the_parent(program):
    v = run_forked(program, "while True:\n    pass", timeout=0.5)
    assert v.status == "timeout"
    assert 0.5 <= v.seconds < 5


def test_exit_zero_without_record_is_not_a_pass(program):
    v = run_forked(program, "import os; os._exit(0)", timeout=10)
    assert v.status == "crashed" and "exit status alone never counts" in v.reason


def test_pytest_skip_is_not_a_pass(program):
    v = run_forked(program, "import pytest; pytest.skip('no')", timeout=10)
    assert v.status == "error" and v.reason.startswith("Skipped")


def test_syntax_error_is_rejected(program):
    v = run_forked(program, "assert (", timeout=10)
    assert v.status == "rejected" and "syntax error" in v.reason


def test_candidate_cannot_change_the_zygote(program):
    run_forked(program, "nx.cycle_basis = None\nassert True", timeout=10)
    assert networkx.cycle_basis is not None
    assert run_forked(program, program.target_text, timeout=10).status == "passed"


def test_tmp_path_fixture_in_a_plain_function():
    # test_gexf_v1_3(tmp_path) writes a file into tmp_path and reads it back; its only
    # top-level assert is its last statement.
    from sandbox.mining import _slots, _test_def
    import networkx.readwrite.tests.test_gexf as mod

    node, _, _ = _test_def(mod.test_gexf_v1_3)
    prog = SlotProgram(mod.__name__, None, "test_gexf_v1_3", _slots(node)[-1])
    assert run_forked(prog, prog.target_text, timeout=10).status == "passed"
    assert run_forked(prog, "assert False", timeout=10).status == "failed"


GROUP = [
    "assert sort_cy == [[0, 1, 2, 3], [0, 1, 6, 7, 8], [0, 3, 4, 5]]",  # passes
    "assert len(sort_cy) == 4",                                          # fails, with pytest's message
    "assert sort_cy[10] == 1",                                           # IndexError: error
    "n = len(G)\nassert all(len(c) < n for c in sort_cy)",               # a name of its own, a generator
    "import os; os._exit(0)",                                            # exit 0, no record: crashed
    "while True:\n    pass",                                             # timeout
    "nx.cycle_basis = None\nassert self.G is G",                         # changes a global, then passes
    "assert (",                                                          # rejected
]


def _key(v):
    return v.status, v.reason, v.assert_line


def test_a_group_gets_the_verdicts_of_separate_runs(program):
    alone = [run_forked(program, c, timeout=1) for c in GROUP]
    group = run_group(program, GROUP, timeout=1)
    assert [_key(v) for v in group] == [_key(v) for v in alone]
    assert [v.status for v in group] == ["passed", "failed", "error", "passed", "crashed", "timeout", "passed", "rejected"]
    # What one candidate of a group did to module state is not seen by the next.
    assert _key(run_group(program, [GROUP[6], GROUP[0]], timeout=1)[1]) == _key(alone[0])


def test_a_group_whose_prefix_fails_gives_each_candidate_that_verdict():
    # With cycle_basis returning None, the prefix's sorted(... for c in cy) raises.
    prog = SlotProgram(MODULE, "TestCycles", "test_cycle_basis", 3)
    patcher = Patcher(NX_DIR)
    mutant = next(m for m in generate(NX_DIR, "algorithms/cycles.py", "cycle_basis") if m.operator == "return_value")
    alone = run_forked(prog, "assert True", timeout=5, prepare=patcher.prepare(mutant))
    assert alone.status == "error" and "in the prefix" in alone.reason
    pid = os.fork()
    if pid == 0:  # as a mutant zygote does: apply the mutant, then run the group
        patcher.prepare(mutant)()
        group = run_group(prog, ["assert True", "assert G"], timeout=5)
        os._exit(0 if [_key(v) for v in group] == [_key(alone)] * 2 else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_a_group_can_read_what_the_prefix_wrote_to_tmp_path():
    from sandbox.mining import _slots, _test_def
    import networkx.readwrite.tests.test_gexf as mod

    node, _, _ = _test_def(mod.test_gexf_v1_3)
    prog = SlotProgram(mod.__name__, None, "test_gexf_v1_3", _slots(node)[-1])
    assert [v.status for v in run_group(prog, [prog.target_text, "assert False"], timeout=10)] == ["passed", "failed"]


def test_a_method_candidate_needing_the_whole_function_is_left_to_separate_runs(program):
    assert run_group(program, ["assert super() is not None", GROUP[0]], timeout=5) is None
    assert run_group(program, ["assert self.__dict__", GROUP[0]], timeout=5) is not None  # a dunder is not mangled


def test_mutant_kill_detection(program):
    patcher = Patcher(NX_DIR)
    mutants = generate(NX_DIR, "algorithms/cycles.py", "cycle_basis")
    outcomes = {m.id: run_forked(program, program.target_text, timeout=1, prepare=patcher.prepare(m)).status for m in mutants}
    killed = [m for m in mutants if outcomes[m.id] == "failed"]
    assert killed, "some mutant of cycle_basis must be killed by its own test"
    # The mutation reached the code through nx.cycle_basis (a dispatch wrapper) in the child only.
    assert run_forked(program, program.target_text, timeout=10).status == "passed"
    # A killed mutant is killed by the target, not by any assertion: a vacuous one kills nothing.
    assert run_forked(program, "assert True", timeout=1, prepare=patcher.prepare(killed[0])).status == "passed"


def test_mutant_that_no_longer_matches_is_refused():
    from dataclasses import replace

    from sandbox.mutants import MutantError

    m = generate(NX_DIR, "algorithms/cycles.py", "cycle_basis")[0]
    with pytest.raises(MutantError, match="does not match the installed"):
        Patcher(NX_DIR).prepare(replace(m, original="something else"))


def test_call_budget_counts_calls_the_same_on_every_run(program):
    # Counting is what makes mining's slowness decisions repeatable: the same program makes the
    # same calls every time, busy machine or not.
    counts = {run_forked(program, program.target_text, timeout=10, call_budget=10**7).events for _ in range(3)}
    assert len(counts) == 1 and counts.pop() > 10
    heavier = run_forked(program, "assert sum(len(str(i)) for i in range(1000)) > 0", timeout=10, call_budget=10**7)
    assert heavier.status == "passed" and heavier.events > 1000


def test_call_budget_stops_a_loop_that_calls(program):
    v = run_forked(program, "assert all(len(str(i)) >= 0 for i in iter(int, 1))", timeout=20, call_budget=20_000)
    assert v.status == "timeout" and "call budget of 20,000" in v.reason
    assert v.events == 20_001 and v.seconds < 10
