"""Statistics shared by evaluation and RL: AUROC, clustered paired bootstrap intervals, seed summaries.

Only numpy here (scipy's Student t is imported inside :func:`t_interval`), so importing this
module stays cheap.

The bootstrap works on ``M`` systems scored on the same ``T`` tasks, optionally grouped into
``C`` clusters (for example each task's test file). Tasks of one cluster are not independent,
so a resample draws whole clusters: ``C`` cluster labels out of ``C`` with replacement. With
``w_c`` the number of times cluster ``c`` was drawn, ``S_c`` the sum of a system's values over
the cluster's tasks and ``N_c`` its number of tasks, the resampled statistic is the mean over
all tasks of the drawn clusters,

    m* = sum_c w_c S_c / sum_c w_c N_c.

Without clusters every task is its own cluster (``N_c = 1``) and this is the ordinary mean of
``T`` tasks drawn with replacement. An interval is the 2.5 and 97.5 percentiles of ``m*``
over ``n`` resamples (linear interpolation). Differences between systems are paired: every
system uses the same draws ``w``, and the difference's statistic is computed from the per-task
differences with the same formula.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

__all__ = ["auroc", "bootstrap", "mean_range", "paired", "t_interval"]

_QUANTILES = (0.025, 0.975)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for the positive ``labels`` (ties count half).

    With ``P`` positives, ``N`` negatives and ``R`` the sum of the positives' ranks among all
    scores (1-based, tied scores sharing the mean of their ranks), the Mann-Whitney form is

        AUROC = (R - P (P + 1) / 2) / (P N),

    the share of (positive, negative) pairs where the positive scores higher, a tie counting
    1/2. ``nan`` when either class is missing.
    """
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2  # 1-based ranks i+1..j share their mean
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _resample(rows: np.ndarray, n: int, seed: int, clusters: Sequence[Hashable] | None) -> tuple[np.ndarray, int]:
    """The resampling core: ``(K, n)`` resampled means of each of the ``K`` rows of ``rows``
    (``K x T``), every row under the same ``n`` cluster draws, and the number of clusters ``C``.

    Cluster ``c`` drawn ``w_c`` times contributes ``w_c S_c`` to the numerator and ``w_c N_c``
    to the denominator of ``m* = sum_c w_c S_c / sum_c w_c N_c``.
    """
    T = rows.shape[1]
    if T == 0:
        raise ValueError("bootstrap: no tasks (every row is empty)")
    if n < 1:
        raise ValueError(f"bootstrap: n must be at least 1, got {n}")
    if clusters is None:
        codes = np.arange(T)
    else:
        if len(clusters) != T:
            raise ValueError(f"bootstrap: {len(clusters)} cluster labels for {T} tasks")
        index: dict[Hashable, int] = {}
        codes = np.array([index.setdefault(c, len(index)) for c in clusters], dtype=np.int64)
    C = int(codes.max()) + 1
    sums = np.zeros((rows.shape[0], C))
    np.add.at(sums.T, codes, rows.T)  # S_c per row: (K, C)
    counts = np.bincount(codes, minlength=C).astype(np.float64)  # N_c: (C,)
    draws = np.random.default_rng(seed).integers(0, C, size=(n, C))
    w = np.bincount((draws + C * np.arange(n)[:, None]).ravel(), minlength=n * C).reshape(n, C).astype(np.float64)
    return (sums @ w.T) / (counts @ w.T), C


def _interval(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(draws, _QUANTILES)
    return float(lo), float(hi)


def _matrix(values: Sequence[Sequence[float]]) -> np.ndarray:
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise ValueError(f"bootstrap: rows differ in length ({sorted(lengths)}); every system must be scored "
                         "on the same tasks")
    return np.asarray([list(map(float, v)) for v in values], dtype=np.float64)


def bootstrap(values: Sequence[Sequence[float]], n: int = 2000, seed: int = 0,
              clusters: Sequence[Hashable] | None = None) -> list[dict[str, float]]:
    """Mean of each row of ``values`` (``M`` systems over the same ``T`` tasks) with a 95 %
    percentile interval, and for each row after the first the paired difference to the first.

    Per row: ``mean`` (mean over the tasks), ``lo``/``hi`` (percentiles of ``m*``, see the
    module docstring), ``clusters`` (``C``, the number of distinct cluster labels; ``T`` when
    ``clusters`` is None, every task its own cluster) and ``n`` (``T``). Rows ``m >= 1`` add
    ``diff`` = mean of ``x_m - x_0`` and ``diff_lo``/``diff_hi`` from the resampled means of
    ``x_m - x_0`` under the same draws as every other row. ``clusters`` holds one hashable label
    per task; whole clusters are resampled. Deterministic for a given ``seed``; no rows: ``[]``.
    """
    if len(values) == 0:
        return []
    x = _matrix(values)  # (M, T)
    M, T = x.shape
    draws, C = _resample(np.concatenate([x, x[1:] - x[:1]]), n, seed, clusters)  # (2M - 1, n)
    out = []
    for m in range(M):
        lo, hi = _interval(draws[m])
        row: dict[str, float] = {"mean": float(x[m].mean()), "lo": lo, "hi": hi, "clusters": C, "n": T}
        if m:
            dlo, dhi = _interval(draws[M + m - 1])
            row.update({"diff": float((x[m] - x[0]).mean()), "diff_lo": dlo, "diff_hi": dhi})
        out.append(row)
    return out


def paired(a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0,
           clusters: Sequence[Hashable] | None = None) -> dict[str, float]:
    """Mean of ``a - b`` over the same ``T`` tasks with a 95 % clustered percentile interval.

    ``diff`` = (1/T) sum_t (a_t - b_t); ``lo``/``hi`` are the percentiles of ``m*`` of the
    per-task differences (module docstring), from the same resampling as :func:`bootstrap`, so
    ``paired(x_m, x_0)`` matches ``bootstrap([x_0, ..., x_m])[m]``'s ``diff_lo``/``diff_hi`` for
    the same ``seed`` and ``clusters``. Also ``clusters`` (``C``) and ``n`` (``T``).
    """
    x = _matrix([a, b])
    d = x[:1] - x[1:]
    draws, C = _resample(d, n, seed, clusters)
    lo, hi = _interval(draws[0])
    return {"diff": float(d.mean()), "lo": lo, "hi": hi, "clusters": C, "n": x.shape[1]}


def mean_range(xs: Sequence[float]) -> dict[str, float]:
    """Summary of per-seed figures: ``mean`` = (1/k) sum_i x_i, ``min``, ``max`` and ``n`` = k."""
    if len(xs) == 0:
        raise ValueError("mean_range: no figures")
    v = np.asarray(xs, dtype=np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def t_interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of per-seed differences ``xs`` (k >= 2):

        mean ± t_{(1 + level)/2, k - 1} · s / sqrt(k),

    with ``s`` the sample standard deviation (divisor ``k - 1``).
    """
    from scipy.stats import t

    if len(xs) < 2:
        raise ValueError(f"t_interval: needs at least two figures, got {len(xs)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"t_interval: level must lie in (0, 1), got {level}")
    v = np.asarray(xs, dtype=np.float64)
    k = len(v)
    half = float(t.ppf((1.0 + level) / 2.0, k - 1)) * float(v.std(ddof=1)) / math.sqrt(k)
    mean = float(v.mean())
    return mean - half, mean + half
