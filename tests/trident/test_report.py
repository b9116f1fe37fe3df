"""Tests for trident.report: the Markdown report's tables, plots, absent-plot lines and warning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trident.report import summary, write_report

METRICS = ["exact_match", "token_f1", "ast_valid", "pass@1", "pass@k", "kill", "pans", "semantic"]


def _m(mean: float, lo: float, hi: float) -> dict[str, float]:
    return {"mean": mean, "lo": lo, "hi": hi}


def _metrics(pass1: float, *, sampled: bool = True) -> dict[str, dict[str, float]]:
    out = {"exact_match": _m(0.05, 0.01, 0.09), "token_f1": _m(0.40, 0.35, 0.45), "ast_valid": _m(0.95, 0.90, 0.99),
           "pass@1": _m(pass1, max(pass1 - 0.05, 0), min(pass1 + 0.05, 1)), "kill": _m(0.20, 0.10, 0.30),
           "pans": _m(0.15, 0.10, 0.20), "semantic": _m(0.62, 0.60, 0.65)}
    if sampled:
        out["pass@k"] = _m(0.40, 0.30, 0.50)
    return out


def _evaluation(targets_pass: float = 1.0) -> dict:
    sft = _metrics(0.259)
    sft["pass@1"] = _m(0.259, 0.220, 0.297)
    return {
        "split": "test", "tasks": 87, "scored": 86, "with_mutants": 40, "k": 4,
        "task_file": "runs/demo/mine/tasks.jsonl", "metrics": METRICS,
        "systems": {
            "targets": {"kind": "baseline", "about": "the tasks' own assertions (sanity check: must pass)",
                        "metrics": {"pass@1": _m(targets_pass, targets_pass, targets_pass), "kill": _m(0.9, 0.8, 1.0)}},
            "trivial": {"kind": "baseline", "about": "assert x is not None", "metrics": _metrics(0.8, sampled=False)},
            "most_frequent": {"kind": "baseline", "about": "the most frequent assertion",
                              "metrics": _metrics(0.1, sampled=False)},
            "sft": {"kind": "model", "path": "runs/demo/sft/final", "metrics": sft, "diff": {}},
            "rl": {"kind": "model", "path": "runs/demo/rl/final", "metrics": _metrics(0.30),
                   "diff": {"pass@1": {"diff": 0.021, "lo": -0.004, "hi": 0.045},
                            "semantic": {"diff": -0.013, "lo": -0.03, "hi": 0.004}}},
        },
        "samples": {
            "sft": [{"task": "t1", "target": "assert a | b == 3", "candidate": "assert a == 3"},
                    {"task": "t2", "target": "assert f(x)", "candidate": "assert x is not None"}],
            "rl": [{"task": "t1", "target": "assert a | b == 3", "candidate": "assert a | b"}],
        },
        "steps_curve": {"sft": [{"steps": 4, "pass": 0.1, "lo": 0.05, "hi": 0.15},
                                {"steps": 8, "pass": 0.2, "lo": 0.15, "hi": 0.25}],
                        "rl": [{"steps": 4, "pass": 0.15, "lo": 0.1, "hi": 0.2},
                               {"steps": 8, "pass": 0.25, "lo": 0.2, "hi": 0.3}]},
        "calibration": {"sft": {"predicted": [0.1, 0.15, 0.5, 0.9, 1.0], "passed": [0, 0, 1, 1, 1], "auroc": 0.71},
                        "rl": {"predicted": [0.2, 0.8], "passed": [0, 1], "auroc": float("nan")}},
        "settings": {"seed": 0, "greedy sampler": {"steps": 16, "temperature": 0.0}, "sandbox tier": "process"},
    }


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sft_run(path: Path, kd: bool) -> Path:
    rows = []
    for step in range(10, 60, 10):
        row = {"step": step, "loss/total": 5.0 / step, "train/lr": 1e-3}
        if kd:
            row.update({"weight/focal": 0.5, "weight/jsd": 0.3, "weight/semantic": 0.2, "loss/jsd": 0.4})
        rows.append(row)
    rows.append({"step": 50, "valid/loss": 0.12})
    return _write_jsonl(path, rows)


def _rl_run(path: Path) -> Path:
    rows = [{"step": i, "rewards/pans/mean": 0.1 + 0.01 * i, "rewards/kill/mean": 0.05 * i % 1,
             "rewards/mytotal/mean": 0.2, "rl/pass_rate": 0.3, "rl/kill_rate": 0.1} for i in range(8)]
    rows[3].pop("rl/kill_rate")  # a row without a key is skipped for that key
    _write_jsonl(path, rows)
    (path / "config.yaml").write_text("rewards:\n  name: mytotal\n")
    return path


def _linked_pngs(report: Path) -> list[Path]:
    return [report.parent / link for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


def test_report_tables_plots_and_samples(tmp_path: Path) -> None:
    runs = {"sft": _sft_run(tmp_path / "sft", kd=True), "rl": _rl_run(tmp_path / "rl")}
    report = write_report(_evaluation(), tmp_path / "eval", runs)
    text = report.read_text()
    assert report == tmp_path / "eval" / "report.md"
    assert text.startswith("# Trident evaluation: test split")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for name in ("targets (baseline)", "trivial (baseline)", "most_frequent (baseline)", "sft", "rl"):
        assert name in rows
    assert "| 25.9 [22.0, 29.7] |" in rows["sft"]
    assert "| 0.62 [0.60, 0.65] |" in rows["sft"]  # semantic is a cosine, not a percent
    assert "| 100.0 [100.0, 100.0] |" in rows["targets (baseline)"]
    assert rows["trivial (baseline)"].count("–") == 1  # no pass@k for a deterministic baseline
    assert "+2.1 [−0.4, +4.5]" in rows["rl − sft"]
    assert "−0.01 [−0.03, +0.00]" in rows["rl − sft"]
    assert "runs/demo/rl/final" in text and "the most frequent assertion" in text
    assert "Warning" not in text
    assert "Best model on pass@1: **rl**" in text

    links = _linked_pngs(report)
    assert {p.name for p in links} == {"loss.png", "reward.png", "steps.png", "calibration.png", "kd_weights.png"}
    for png in links:
        assert png.read_bytes().startswith(b"\x89PNG")
    assert "AUROC" not in text  # AUROC goes into the plot's legend, not the text

    # Samples: one row per task of the first system, candidates side by side, `|` escaped.
    assert "| `t1` | `assert a \\| b == 3` | `assert a == 3` | `assert a \\| b` |" in text
    assert "| `t2` | `assert f(x)` | `assert x is not None` | – |" in text
    assert "- greedy sampler.steps: 16" in text and "- sandbox tier: process" in text


def test_absent_plots_say_why(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    write_report(_evaluation(), out, {"sft": _sft_run(tmp_path / "sft", kd=True)})
    assert (out / "plots" / "kd_weights.png").exists()

    evaluation = _evaluation()
    evaluation["steps_curve"] = {}
    del evaluation["calibration"]
    text = write_report(evaluation, out, {"sft": _sft_run(tmp_path / "sft", kd=False),
                                          "teacher": tmp_path / "missing"}).read_text()
    assert "*no KD in this run: the student was trained without a teacher.*" in text
    assert not (out / "plots" / "kd_weights.png").exists()  # the earlier run's file is gone too
    assert "no RL reward curve" in text and not (out / "plots" / "reward.png").exists()
    assert "no steps curve" in text and "no calibration plot" in text
    assert {p.name for p in _linked_pngs(out / "report.md")} == {"loss.png"}

    text = write_report(evaluation, tmp_path / "bare").read_text()
    assert "no KD weights: no run folder with a metrics.jsonl was given" in text
    assert "no training-loss curve" in text
    assert not list((tmp_path / "bare" / "plots").iterdir())


@pytest.mark.parametrize("targets_pass, warned", [(0.95, True), (0.99, False), (1.0, False)])
def test_warning_when_targets_fail(tmp_path: Path, targets_pass: float, warned: bool) -> None:
    evaluation = _evaluation(targets_pass)
    text = write_report(evaluation, tmp_path).read_text()
    lines = [line for line in text.splitlines() if line.startswith("**Warning:**")]
    assert len(lines) == warned
    if warned:
        assert "95.0 %" in lines[0] and "the tasks' own assertions should all pass; check the sandbox" in lines[0]
    assert ("WARNING:" in summary(evaluation)) == warned


def test_summary_names_systems_and_best_model() -> None:
    text = summary(_evaluation())
    lines = text.splitlines()
    assert len(lines) == 7  # header, five systems, best model
    for name in ("targets", "trivial", "most_frequent", "sft", "rl"):
        assert any(line.split()[0] == name for line in lines[1:6])
    assert "pass@1 25.9 [22.0, 29.7]" in text and "kill 20.0 [10.0, 30.0]" in text
    assert lines[-1] == "best model: rl (pass@1 30.0 [25.0, 35.0])"
