"""The paired bootstrap rl.evaluate reports with (common.stats): means, intervals, differences to the first
model; and rl.evaluate's report, config and comparison."""

from __future__ import annotations

import pytest

from common.stats import bootstrap
from rl.evaluate import format_report


def test_bootstrap_means_intervals_and_paired_differences():
    base = [1.0, 0.0, 0.0, 1.0] * 25  # 50 %
    better = [1.0, 1.0, 0.0, 1.0] * 25  # 75 %, never worse on a task
    rows = bootstrap([base, base, better], n=500, seed=1)
    assert [r["mean"] for r in rows] == [0.5, 0.5, 0.75]
    for r in rows:
        assert r["lo"] <= r["mean"] <= r["hi"] and r["hi"] - r["lo"] < 0.3
    assert "diff" not in rows[0]
    assert rows[1]["diff"] == 0.0 and rows[1]["diff_lo"] == rows[1]["diff_hi"] == 0.0  # paired: same resamples
    assert rows[2]["diff"] == pytest.approx(0.25) and rows[2]["diff_lo"] > 0.1
    assert bootstrap([base, better], n=500, seed=1) == [rows[0], rows[2]]  # deterministic given the seed


def test_the_report_table_names_every_model():
    p = bootstrap([[1.0, 0.0], [1.0, 1.0]], n=50)
    k = bootstrap([[0.5, 0.0], [0.5, 0.5]], n=50)
    report = {"scored": 2, "with_mutants": 2,
              "models": {"sft": {"pass": p[0], "kill": k[0]}, "rl": {"pass": p[1], "kill": k[1]}}}
    text = format_report(report)
    assert "sft" in text and "rl" in text and "+50.0" in text


def test_the_rollout_system_reads_an_rl_config(tmp_path):
    from rl.evaluate import rollout_config
    from rl.rollout import RolloutConfig

    assert rollout_config() == RolloutConfig()
    path = tmp_path / "rl.yaml"
    path.write_text("model: m\nrollout:\n  samples: 2\n  sampler: {remask: confidence, temperature: 0.7}\n")
    cfg = rollout_config(path, samples=3)
    assert cfg.samples == 3 and cfg.sampler.remask == "confidence" and cfg.sampler.temperature == 0.7
    assert cfg.sampler.steps == RolloutConfig().sampler.steps  # absent keys keep their defaults
    path.write_text("rollout:\n  sampels: 2\n")
    with pytest.raises(ValueError, match="unknown rollout key.*sampels.*samples"):
        rollout_config(path)
    path.write_text("rollout:\n  sampler: {temprature: 1}\n")
    with pytest.raises(ValueError, match="unknown rollout.sampler key.*temprature"):
        rollout_config(path)
    path.write_text("rollout:\n  sampler: {top_p: 0.5}\n")
    with pytest.raises(ValueError, match="top_p"):
        rollout_config(path)


def test_the_cli_refuses_mixed_systems(tmp_path, capsys):
    from rl.evaluate import main

    model = tmp_path / "m"
    model.mkdir()
    (model / "trident_model.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--system", "rollout", "--temperature", "1"])
    assert "apply to --system greedy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--rl-config", "x.yaml"])
    assert "--system rollout only" in capsys.readouterr().err


def test_the_same_policy_under_the_rollout_system_differs_by_nothing(tiny_model_dir, small_tasks):
    # Every model sees the same random numbers: one policy twice gives identical samples and a
    # paired difference of exactly 0. Real sandbox, real tasks.
    from dataclasses import replace

    from pretrain.evaluate import EvalConfig
    from rl.evaluate import compare
    from rl.rollout import RolloutConfig
    from sandbox.api import Limits

    train = [t for t in small_tasks if t.split == "train"]
    valid = [t for t in small_tasks if t.split == "valid"][:4]
    rollout = replace(RolloutConfig(), samples=2)
    report = compare({"a": tiny_model_dir, "b": tiny_model_dir}, valid, train,
                     cfg=EvalConfig(workers=1, sandbox=Limits()), rollout=rollout, resamples=100)
    assert report["system"] == "rollout" and report["samples_per_task"] == 2
    a, b = report["models"]["a"], report["models"]["b"]
    assert a["samples"] == b["samples"] and len(a["samples"]) == 2 * min(5, len(valid))
    assert b["pass"]["diff"] == 0.0 and 0.0 <= a["pass"]["mean"] <= 1.0
