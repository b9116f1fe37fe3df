"""rl.evaluate's paired bootstrap: means, intervals, differences to the first model."""

from __future__ import annotations

import pytest

from rl.evaluate import bootstrap, format_report


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
