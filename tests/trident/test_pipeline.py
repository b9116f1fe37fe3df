"""`trident pipeline` and `trident eval` as a user runs them: real networkx tasks mined by the
pipeline, tiny models, a real local Ray, the sandbox, the report.

The end-to-end test is the CI-sized pipeline: it is killed during SFT, run again (finished stages
skipped, SFT resumed, RL and eval run), run a third time (everything skipped), and its report is
checked; then ``--from eval`` redoes the last stage and keeps the earlier one aside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Six small networkx test files whose split (fixed by the file's name) covers train, valid and test.
TINY = """\
name: tiny
mine:
  files: [algorithms/tests/test_triads.py, algorithms/tests/test_wiener.py, algorithms/tests/test_tournament.py,
          algorithms/traversal/tests/test_edgedfs.py, algorithms/components/tests/test_semiconnected.py,
          algorithms/assortativity/tests/test_pairs.py]
  mutants_per_task: 2
  max_mutant_tries: 4
  workers: 2
  progress: false
tokenizer: {vocab_size: 600}
teacher:
  model: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}
  data: {slot_len: 32, max_prompt: 48}
  batch_size: 8
  max_steps: 6
  save_every: 3
  eval_every: 3
  eval_tasks: 8
  final_eval: false
  progress: false
kd: [ce, {name: jsd, weight: 0.5}]
sft:
  model: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}
  data: {slot_len: 32, max_prompt: 48}
  batch_size: 8
  max_steps: SFT_STEPS
  save_every: 2
  eval_every: 0
  eval_tasks: 8
  final_eval: false
  progress: false
rl:
  iterations: RL_ITERATIONS
  tasks_per_iteration: 4
  checkpoint_every: 1
  progress: false
  rollout: {samples: 2}
  learner: {minibatch: 4, threads: 1}
  ray: {rollout_workers: 1, sandbox_workers: 1}
eval:
  k: 2
  steps: [4, 32]
  semantic: true
  resamples: 200
  progress: false
"""


def tiny_config(folder: Path, sft_steps: int = 8, rl_iterations: int = 2) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.replace("SFT_STEPS", str(sft_steps)).replace("RL_ITERATIONS", str(rl_iterations)))
    return path


def trident(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trident", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_plan_wires_every_stage_to_the_ones_before(tmp_path):
    from trident.config import load_config
    from trident.pipeline import PipelineConfig, plan

    cfg = load_config(PipelineConfig, tiny_config(tmp_path), [f"root={tmp_path}"])
    stages = plan(cfg)
    root = tmp_path / "tiny"
    assert list(stages) == ["mine", "tokenizer", "teacher", "sft", "rl", "eval"]
    tasks = root / "mine" / "tasks.jsonl"
    assert stages["mine"].out == tasks
    assert stages["teacher"].tasks == stages["sft"].tasks == stages["rl"].tasks == stages["eval"].tasks == tasks
    assert stages["teacher"].tokenizer == stages["sft"].tokenizer == root / "tokenizer"
    assert stages["sft"].loss.teacher == root / "teacher" / "final"
    assert [c if isinstance(c, str) else c["name"] for c in stages["sft"].loss.components] == ["ce", "jsd"]
    assert stages["rl"].model == root / "sft" / "final" and stages["rl"].out == root / "rl"
    assert stages["eval"].models == {"sft": root / "sft" / "final", "rl": root / "rl" / "final",
                                     "teacher": root / "teacher" / "final"}
    assert stages["eval"].runs == {"teacher": root / "teacher"}
    no_teacher = plan(load_config(PipelineConfig, tiny_config(tmp_path), ["teacher=null", f"root={tmp_path}"]))
    assert "teacher" not in no_teacher and no_teacher["sft"].loss.teacher is None


def test_seeds_share_mine_and_tokenizer_and_run_each_model_stage_per_seed(tmp_path):
    from trident.config import load_config
    from trident.pipeline import PipelineConfig, plan

    stages = plan(load_config(PipelineConfig, tiny_config(tmp_path), [f"root={tmp_path}", "seeds=[3,4]"]))
    root = tmp_path / "tiny"
    assert list(stages) == ["mine", "tokenizer"] + [f"seed-{s}/{k}" for s in (3, 4) for k in ("teacher", "sft", "rl", "eval")]
    for s in (3, 4):
        where = root / f"seed-{s}"
        assert all(stages[f"seed-{s}/{k}"].seed == s for k in ("teacher", "sft", "rl", "eval"))
        assert stages[f"seed-{s}/rl"].model == where / "sft" / "final"
        assert stages[f"seed-{s}/sft"].loss.teacher == where / "teacher" / "final"
        assert stages[f"seed-{s}/eval"].models["rl"] == where / "rl" / "final"
        assert stages[f"seed-{s}/sft"].tasks == root / "mine" / "tasks.jsonl"
    with pytest.raises(Exception, match="repeats a seed"):
        load_config(PipelineConfig, tiny_config(tmp_path), ["seeds=[1,1]"])


def test_seeds_summary_gives_mean_range_and_paired_differences(tmp_path):
    from trident.seeds import summarise, write_seeds

    def evaluation(kill_sft, kill_rl):
        def system(kind, kill, **extra):
            return {"kind": kind, "metrics": {"pass@1": {"mean": 0.9}, "kill": {"mean": kill}, "length": {"mean": 30.0}},
                    **extra}
        return {"split": "test", "tasks": 10, "systems": {
            "observed": system("baseline", 0.3),
            "sft": system("model", kill_sft, diff={}, vs={"observed": {"kill": {"diff": kill_sft - 0.3, "lo": -0.1, "hi": 0.1}}}),
            "rl": system("model", kill_rl, diff={"kill": {"diff": kill_rl - kill_sft, "lo": 0.01, "hi": 0.2}},
                         vs={"observed": {"kill": {"diff": kill_rl - 0.3, "lo": 0.0, "hi": 0.3}}})}}

    evals = {0: evaluation(0.2, 0.4), 1: evaluation(0.25, 0.35), 2: evaluation(0.3, 0.5)}
    out = summarise(evals)
    assert out["systems"]["rl"]["kill"]["mean"] == pytest.approx(0.4166666, abs=1e-6)
    assert (out["systems"]["rl"]["kill"]["min"], out["systems"]["rl"]["kill"]["max"]) == (0.35, 0.5)
    rl_sft = next(p for p in out["paired"] if p["system"] == "rl" and p["against"] == "sft" and p["metric"] == "kill")
    assert rl_sft["mean"] == pytest.approx(0.1666666, abs=1e-6) and rl_sft["above_0"] == 3
    assert rl_sft["interval_above_0"] == 3 and 0 < rl_sft["lo"] < rl_sft["mean"] < rl_sft["hi"]
    for seed, e in evals.items():
        (tmp_path / f"{seed}.json").write_text(__import__("json").dumps(e))
    text = write_seeds(tmp_path, {s: tmp_path / f"{s}.json" for s in evals}).read_text()
    assert "| rl | 90.0 [90.0, 90.0] | 41.7 [35.0, 50.0] | 30 [30, 30] |" in text
    assert "| rl − observed | kill |" in text


def test_bad_stage_names_are_one_clear_error(tmp_path):
    r = trident("pipeline", "--config", str(tiny_config(tmp_path)), "--from", "train", f"root={tmp_path}")
    assert r.returncode == 2 and "start" in r.stderr and "Traceback" not in r.stderr
    r = trident("pipeline", "--config", str(tiny_config(tmp_path)), "teacher=null", "--until", "teacher",
                f"root={tmp_path}")
    assert r.returncode == 2 and "no teacher stage" in r.stderr
    r = trident("pipeline", "--config", str(tiny_config(tmp_path)), "--from", "rl", f"root={tmp_path}")
    assert r.returncode == 1 and "stage mine before it has not finished" in r.stderr
    assert not (tmp_path / "tiny" / "rl").exists()


def test_eval_without_a_model_is_one_clear_error_and_writes_nothing(tmp_path):
    r = trident("eval", "--split", "test", cwd=tmp_path)
    assert r.returncode == 1 and "no model to evaluate: give --model DIR" in r.stderr
    assert "Traceback" not in r.stderr and not any(tmp_path.iterdir())
    r = trident("eval", "--model", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "is not a Trident model directory" in r.stderr


# How long a stage may take to write its first checkpoint before the run counts as hung. A guard
# against hanging, not a speed check (speed is bench/'s): a loaded 2-core machine took over
# 400 s to finish the interrupted SFT and reach RL's first checkpoint.
HUNG_S = 1200


def _kill_when(path: Path, args: list[str], seconds: float = HUNG_S) -> str:
    """Run ``trident ARGS``, kill it (SIGKILL, its whole process group) once ``path`` exists, and
    return what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "trident", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        _wait_for(path, proc, seconds)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.stdout.read()  # type: ignore[union-attr]


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""  # type: ignore[union-attr]
        assert time.time() - t0 < seconds, f"{path} did not appear in {seconds} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_pipeline_killed_during_sft_and_rl_resumes_and_reports(tmp_path):
    cfg = tiny_config(tmp_path, sft_steps=400, rl_iterations=30)
    root = tmp_path / "tiny"
    args = ["pipeline", "--config", str(cfg), f"root={tmp_path}"]
    _kill_when(root / "sft" / "checkpoints" / "latest", args)
    assert not (root / "sft" / "stage.json").exists()
    finished = {s: (root / s / "stage.json").stat().st_mtime_ns for s in ("mine", "tokenizer", "teacher")}

    second = _kill_when(root / "rl" / "checkpoints" / "latest", args)
    assert "resuming at step" in second  # SFT went on from the checkpoint written before the first kill
    assert (root / "sft" / "stage.json").is_file() and not (root / "rl" / "stage.json").exists()
    finished["sft"] = (root / "sft" / "stage.json").stat().st_mtime_ns
    sft_log = (root / "sft" / "metrics.jsonl").read_text()
    assert json.loads((root / "sft" / "summary.json").read_text())["steps"] == 400

    r = trident(*args)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for stage in ("mine", "tokenizer", "teacher", "sft"):
        assert f"[{stage}] finished earlier" in r.stdout
        assert (root / stage / "stage.json").stat().st_mtime_ns == finished[stage]  # not redone
    assert (root / "sft" / "metrics.jsonl").read_text() == sft_log
    assert "rl: resuming" in r.stdout  # from the checkpoint written before the kill
    for stage in ("rl", "eval"):
        assert f"[{stage}] done" in r.stdout
    assert json.loads((root / "rl" / "summary.json").read_text())["iterations"] == 30

    report = (root / "eval" / "report.md").read_text()
    result = json.loads((root / "eval" / "eval.json").read_text())
    fitted = [n for n in ("sft", "rl", "teacher") if "error" not in result["ranker"][n]]
    assert list(result["systems"]) == ["targets", "trivial", "most_frequent", "retrieval", "observed", "observed-all",
                                       "sft", "sft:written", "rl", "rl:written", "teacher", "teacher:written"] + [
        f"{n}:{how}" for n in fitted for how in ("ranked", "likely")]
    assert result["systems"]["observed"]["metrics"]["pass@1"]["mean"] == 1.0  # observed values hold on the original
    assert {"pass@1", "kill", "length"} <= set(result["systems"]["rl"]["vs"]["observed"])
    assert result["clusters"]["keep"] >= 1 and "## Against the regression oracle" in report
    outputs = [json.loads(line) for line in (root / "eval" / "outputs.jsonl").read_text().splitlines()]
    assert len(outputs) == result["tasks"] * (len(result["systems"]) + 3 * result["k"])  # systems, then 3 models' k samples
    assert {o["system"] for o in outputs} == set(result["systems"]) and all("status" in o for o in outputs)
    assert result["split"] == "test" and result["tasks"] > 0
    assert result["systems"]["targets"]["metrics"]["pass@1"]["mean"] == 1.0  # the sanity check holds
    assert result["systems"]["targets"]["metrics"]["exact_match"]["mean"] == 1.0
    for name in ("trivial", "most_frequent", "retrieval", "sft", "rl"):
        assert f"| {name} " in report
    assert result["k"] == 2 and "pass@k" in result["systems"]["rl"]["metrics"]
    assert set(result["systems"]["rl"]["diff"]) >= {"pass@1", "kill"}
    for plot in ("loss", "reward", "steps", "calibration", "kd_weights"):
        assert (root / "eval" / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{plot}.png" in report
    assert f"report: {root / 'eval' / 'report.md'}" in r.stdout

    again = trident(*args)
    assert again.returncode == 0
    assert all(f"[{s}] finished earlier" in again.stdout for s in ("mine", "tokenizer", "teacher", "sft", "rl", "eval"))

    changed = trident(*args, "eval.k=3")
    assert changed.returncode == 1 and "stage eval finished" in changed.stderr and "--from eval" in changed.stderr

    redo = trident(*args, "eval.k=3", "--from", "eval")
    assert redo.returncode == 0, (redo.stdout + redo.stderr)[-3000:]
    assert (root / "eval.prev-1" / "report.md").read_text() == report  # the earlier evaluation is kept
    assert json.loads((root / "eval" / "eval.json").read_text())["k"] == 3


@pytest.mark.slow
@pytest.mark.ray
def test_ray_job_submit_runs_the_tiny_pipeline(ray_head, tmp_path):
    head = ray_head("disabled")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    tiny_config(job_dir)
    job = head.submit(job_dir, ["-m", "trident", "pipeline", "--config", "tiny.yaml", "teacher=null",
                                f"root={tmp_path / 'runs'}"])
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout.lower()
    root = tmp_path / "runs" / "tiny"
    result = json.loads((root / "eval" / "eval.json").read_text())
    assert list(result["systems"])[:10] == ["targets", "trivial", "most_frequent", "retrieval", "observed",
                                            "observed-all", "sft", "sft:written", "rl", "rl:written"]
    assert result["systems"]["targets"]["metrics"]["pass@1"]["mean"] == 1.0
    assert "| rl " in (root / "eval" / "report.md").read_text()
    assert "on Ray at" in job.stdout  # the RL stage joined the head the job runs on, not a Ray of its own
