"""common.stats: AUROC on hand-computed cases, the (clustered) paired bootstrap, seed summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.stats import auroc, bootstrap, mean_range, paired, t_interval


def test_auroc_hand_values():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0  # perfect
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0  # inverse
    assert auroc([0.35, 0.3, 0.4], [True, False, False]) == 0.5  # 1 of 2 pairs right
    assert auroc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    # positive 0.5 ties one negative (1/2) and beats 0.2 (1); positive 0.9 beats both (2): 3.5 / 4
    assert auroc([0.5, 0.5, 0.2, 0.9], [True, False, False, True]) == 0.875
    assert math.isnan(auroc([0.1, 0.2], [True, True]))
    assert math.isnan(auroc([0.1, 0.2], [False, False]))


def _old_bootstrap_means(values):
    return [float(np.mean(v)) for v in values]


def test_bootstrap_without_clusters_means_intervals_and_differences():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, 200).astype(float).tolist()
    better = [max(b, float(u < 0.3)) for b, u in zip(base, rng.random(200))]
    rows = bootstrap([base, base, better], n=800, seed=2)
    assert [r["mean"] for r in rows] == pytest.approx(_old_bootstrap_means([base, base, better]))
    for r in rows:
        assert r["lo"] <= r["mean"] <= r["hi"]
        assert r["clusters"] == 200 and r["n"] == 200  # every task its own cluster
    assert "diff" not in rows[0]
    assert rows[1]["diff"] == 0.0 and rows[1]["diff_lo"] == rows[1]["diff_hi"] == 0.0
    assert rows[2]["diff"] == pytest.approx(np.mean(better) - np.mean(base))
    assert 0.0 < rows[2]["diff_lo"] <= rows[2]["diff"] <= rows[2]["diff_hi"]
    assert bootstrap([base, base, better], n=800, seed=2) == rows  # deterministic given the seed
    assert bootstrap([base, base, better], n=800, seed=5) != rows


def test_clusters_of_perfectly_correlated_tasks_widen_the_interval():
    # 10 clusters of 20 tasks, every task of a cluster scoring the same: effectively 10 observations
    per_cluster = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    values = [v for v in per_cluster for _ in range(20)]
    labels = [f"test_{c}.py" for c in range(10) for _ in range(20)]
    flat = bootstrap([values], n=2000, seed=0)[0]
    clustered = bootstrap([values], n=2000, seed=0, clusters=labels)[0]
    assert flat["mean"] == clustered["mean"] == 0.5
    assert clustered["clusters"] == 10 and clustered["n"] == 200 and flat["clusters"] == 200
    assert clustered["lo"] <= 0.5 <= clustered["hi"]
    assert clustered["hi"] - clustered["lo"] > 2 * (flat["hi"] - flat["lo"])  # ~sqrt(20) wider in truth
    # clusters of one task each are exactly the unclustered bootstrap
    assert bootstrap([values], n=300, seed=4, clusters=list(range(200))) == bootstrap([values], n=300, seed=4)


def test_cluster_resample_is_the_mean_over_the_drawn_clusters_tasks():
    # unequal clusters: a has one task scoring 1, b has three scoring 0; the only resample values
    # are all-a (1), all-b (0) and one of each (1/4), so both percentiles lie in {0, 1/4, 1}
    r = bootstrap([[1.0, 0.0, 0.0, 0.0]], n=1, seed=0, clusters=["a", "b", "b", "b"])[0]
    assert r["mean"] == 0.25 and r["clusters"] == 2
    assert r["lo"] == r["hi"] and r["lo"] in (0.0, 0.25, 1.0)


def test_paired_differences():
    a = [0.2, 0.9, 0.4, 0.7, 0.1, 0.6, 0.3, 0.8]
    same = paired(a, a, n=500, seed=1)
    assert same == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "clusters": 8, "n": 8}
    shifted = [x + 0.1 for x in a]
    noisy = [x + 0.1 + e for x, e in zip(a, [0.05, -0.04, 0.02, -0.01, 0.03, -0.05, 0.0, 0.01])]
    up = paired(noisy, a, n=1000, seed=1, clusters=["f1", "f1", "f2", "f2", "f3", "f3", "f4", "f4"])
    assert up["diff"] == pytest.approx(0.1 + 0.01 / 8)
    assert 0.0 < up["lo"] <= up["diff"] <= up["hi"] and up["clusters"] == 4 and up["n"] == 8
    assert paired(shifted, a)["lo"] == pytest.approx(0.1)  # a constant shift has no spread
    # the same draws as bootstrap's differences to the first row
    b = bootstrap([a, noisy], n=1000, seed=1)[1]
    p = paired(noisy, a, n=1000, seed=1)
    assert (p["lo"], p["hi"]) == pytest.approx((b["diff_lo"], b["diff_hi"]))


def test_errors():
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match="differ in length"):
        paired([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="no tasks"):
        bootstrap([[], []])
    with pytest.raises(ValueError, match="3 cluster labels for 2 tasks"):
        bootstrap([[1.0, 0.0]], clusters=["a", "b", "c"])
    with pytest.raises(ValueError):
        mean_range([])
    with pytest.raises(ValueError):
        t_interval([0.1])
    assert bootstrap([]) == []


def test_mean_range_and_t_interval():
    assert mean_range([0.1, 0.4, 0.25]) == pytest.approx({"mean": 0.25, "min": 0.1, "max": 0.4, "n": 3})
    # two seeds, mean 2, s = sqrt(2), t_{0.975, 1} = 12.7062...: 2 ± 12.7062 · sqrt(2)/sqrt(2)
    lo, hi = t_interval([1.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 12.7062047, 2 + 12.7062047))
    lo, hi = t_interval([0.02, 0.03, 0.025, 0.035, 0.03])
    assert 0.0 < lo < 0.028 < hi
    wide, narrow = t_interval([1.0, 2.0, 3.0], level=0.99), t_interval([1.0, 2.0, 3.0], level=0.9)
    assert wide[0] < narrow[0] < 2.0 < narrow[1] < wide[1]
