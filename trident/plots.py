"""The report's plots: the stages' run folders and ``eval.json`` -> ``plots/*.png``.

Run folders are found by what their ``metrics.jsonl`` holds, not by their label: a run with
``loss/total`` rows is a supervised stage (teacher, sft), one with ``rewards/*/mean`` rows is an
RL run, one with ``weight/*`` rows was trained with knowledge distillation. A plot whose data are
absent is a :class:`Plot` with ``missing`` saying why. matplotlib is imported inside the plotting
functions, so importing this module stays light.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Plot", "make_plots", "SMOOTH"]

SMOOTH = 5  # running-mean window of the RL curves
BINS = 10  # equal-width bins of the calibration plot on [0, 1]
FIGSIZE = (6.0, 3.5)
DPI = 110

Rows = list[dict[str, Any]]


# ------------------------------------------------------------------------------- run folders


def _read_metrics(folder: Path) -> Rows | None:
    """The rows of ``folder/metrics.jsonl``, or None when there is none."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a run killed mid-write leaves a partial last line
    return [row for row in rows if isinstance(row, dict) and "step" in row]


def _series(rows: Rows, key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of ``key``; rows without it are skipped."""
    have = [row for row in rows if key in row and row[key] is not None]
    return [row["step"] for row in have], [row[key] for row in have]


def _keys(rows: Rows, prefix: str, suffix: str = "") -> list[str]:
    """The keys that start with ``prefix`` and end with ``suffix``, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update((k, None) for k in row if k.startswith(prefix) and k.endswith(suffix))
    return list(seen)


def _total_reward(folder: Path) -> str:
    """The name of an RL run's total reward: its config's ``rewards.name`` (``trident`` without one)."""
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    rewards = config.get("rewards") if isinstance(config, dict) else None
    return rewards["name"] if isinstance(rewards, dict) and "name" in rewards else "trident"


def _running_mean(values: list[float], window: int = SMOOTH) -> list[float]:
    """Trailing mean over up to ``window`` values."""
    return [sum(values[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]


# ------------------------------------------------------------------------------- plots


@dataclass
class Plot:
    """One figure of the report: written to ``plots/{name}.png``, or absent for ``missing``."""

    name: str
    caption: str  # one sentence of what it shows
    missing: str | None = None  # why it is absent; None when it was written


@contextmanager
def _figure(path: Path, title: str, ncols: int = 1, nrows: int = 1) -> Iterator[Any]:
    """A titled figure of ``nrows x ncols`` small axes, saved to ``path`` and closed on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(FIGSIZE[0] * (1 + 0.4 * (ncols - 1)), FIGSIZE[1] * nrows),
                             dpi=DPI, squeeze=False)
    try:
        fig.suptitle(title)
        yield axes
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _smoothed(ax: Any, x: list[float], y: list[float], label: str, color: str, width: float = 1.5) -> None:
    """The raw curve, light, with its running mean on top."""
    ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8)
    ax.plot(x, _running_mean(y), color=color, linewidth=width, label=label)


def _plot_loss(runs: Mapping[str, Rows], path: Path) -> Plot:
    plot = Plot("loss", "Training loss (`loss/total`) of each supervised stage against its step; markers are "
                        "the validation loss (`valid/loss`).")
    curves = {label: rows for label, rows in runs.items() if _series(rows, "loss/total")[0]}
    if not curves:
        plot.missing = "no training-loss curve: no run folder given has `loss/total` in its metrics.jsonl"
        return plot
    with _figure(path, "Training loss") as axes:
        ax = axes[0][0]
        for i, (label, rows) in enumerate(curves.items()):
            color = f"C{i}"
            ax.plot(*_series(rows, "loss/total"), color=color, label=f"{label} train")
            steps, valid = _series(rows, "valid/loss")
            if steps:
                ax.plot(steps, valid, "o", color=color, markersize=4, label=f"{label} valid")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize="small")
    return plot


def _plot_reward(runs: Mapping[str, Rows], folders: Mapping[str, Path], path: Path) -> Plot:
    plot = Plot("reward", f"RL reward per iteration (the total, thick, and each component's mean) and the "
                          f"rollouts' pass and kill rates; light lines are raw, dark ones a running mean of {SMOOTH}.")
    rl = {label: rows for label, rows in runs.items() if _keys(rows, "rewards/", "/mean")}
    if not rl:
        plot.missing = "no RL reward curve: no run folder given has `rewards/*/mean` in its metrics.jsonl"
        return plot
    with _figure(path, "RL rewards", ncols=2, nrows=len(rl)) as axes:
        for (label, rows), (left, right) in zip(rl.items(), axes):
            total = _total_reward(folders[label])
            for i, key in enumerate(_keys(rows, "rewards/", "/mean")):
                name = key.removeprefix("rewards/").removesuffix("/mean")
                is_total = name == total
                _smoothed(left, *_series(rows, key), label=f"{name} (total)" if is_total else name,
                          color="black" if is_total else f"C{i}", width=2.5 if is_total else 1.2)
            left.set(title=f"{label}: rewards", xlabel="iteration", ylabel="mean reward")
            left.legend(fontsize="small")
            for i, key in enumerate(("rl/pass_rate", "rl/kill_rate")):
                steps, rate = _series(rows, key)
                if steps:
                    _smoothed(right, steps, [100 * r for r in rate], label=key.removeprefix("rl/"), color=f"C{i}")
            right.set(title=f"{label}: rollouts", xlabel="iteration", ylabel="rate (%)")
            if right.lines:
                right.legend(fontsize="small")
    return plot


def _plot_steps(curves: Mapping[str, Rows], path: Path) -> Plot:
    plot = Plot("steps", "Pass rate of each model's sampler (from an all-[MASK] slot) against its number of "
                         "denoising steps; the band is the bootstrap 95 % interval.")
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        plot.missing = "no steps curve: the evaluation did not sweep the sampler's number of steps"
        return plot
    with _figure(path, "Pass rate against sampler steps") as axes:
        ax = axes[0][0]
        for i, (name, points) in enumerate(curves.items()):
            points = sorted(points, key=lambda p: p["steps"])
            steps = [p["steps"] for p in points]
            ax.plot(steps, [100 * p["pass"] for p in points], "o-", color=f"C{i}", label=name)
            ax.fill_between(steps, [100 * p["lo"] for p in points], [100 * p["hi"] for p in points],
                            color=f"C{i}", alpha=0.2)
        all_steps = sorted({p["steps"] for points in curves.values() for p in points})
        if all_steps[0] > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(all_steps, [str(s) for s in all_steps])
        ax.set_xlabel("sampler steps")
        ax.set_ylabel("pass rate (%)")
        ax.legend(fontsize="small")
    return plot


def _reliability(predicted: list[float], passed: list[float]) -> list[tuple[float, float, int]]:
    """``(mean predicted, observed pass rate, count)`` of each non-empty bin of BINS on [0, 1]."""
    bins: list[list[tuple[float, float]]] = [[] for _ in range(BINS)]
    for p, y in zip(predicted, passed):
        bins[min(max(int(p * BINS), 0), BINS - 1)].append((p, y))
    return [(sum(p for p, _ in b) / len(b), sum(y for _, y in b) / len(b), len(b)) for b in bins if b]


def _fmt_auroc(auroc: float | None) -> str:
    return "n/a" if auroc is None or math.isnan(auroc) else f"{auroc:.2f}"


def _plot_calibration(calibration: Mapping[str, Mapping[str, Any]], path: Path) -> Plot:
    plot = Plot("calibration", f"Critic calibration: the observed pass rate against the critic's mean predicted "
                               f"value in {BINS} equal-width bins (marker area grows with the bin's count); "
                               f"a calibrated critic lies on the diagonal.")
    series = {name: c for name, c in calibration.items() if c["predicted"]}
    if not series:
        plot.missing = "no calibration plot: the evaluation holds no critic values"
        return plot
    with _figure(path, "Critic calibration") as axes:
        ax = axes[0][0]
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
        for i, (name, c) in enumerate(series.items()):
            points = _reliability(c["predicted"], c["passed"])
            most = max(n for _, _, n in points)
            x, y = [p[0] for p in points], [p[1] for p in points]
            ax.plot(x, y, "-", color=f"C{i}", linewidth=1)
            ax.scatter(x, y, s=[15 + 150 * n / most for _, _, n in points], color=f"C{i}", alpha=0.8,
                       label=f"{name} (AUROC {_fmt_auroc(c['auroc'])})")
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="mean predicted value", ylabel="observed pass rate")
        ax.legend(fontsize="small")
    return plot


def _plot_kd_weights(runs: Mapping[str, Rows], path: Path) -> Plot:
    plot = Plot("kd_weights", "Knowledge-distillation component weights (`weight/*`) against step, for each run "
                              "trained with a teacher.")
    kd = {label: rows for label, rows in runs.items() if _keys(rows, "weight/")}
    if not runs:
        plot.missing = "no KD weights: no run folder with a metrics.jsonl was given"
    elif not kd:
        plot.missing = "no KD in this run: the student was trained without a teacher"
    if plot.missing is not None:
        return plot
    with _figure(path, "KD component weights") as axes:
        ax = axes[0][0]
        styles = ("-", "--", ":", "-.")
        for j, (label, rows) in enumerate(kd.items()):
            for i, key in enumerate(_keys(rows, "weight/")):
                name = key.removeprefix("weight/")
                ax.plot(*_series(rows, key), styles[j % len(styles)], color=f"C{i}",
                        label=f"{label}: {name}" if len(kd) > 1 else name)
        ax.set_xlabel("step")
        ax.set_ylabel("weight")
        ax.legend(fontsize="small")
    return plot


def make_plots(evaluation: dict, runs: Mapping[str, Path], folder: Path) -> list[Plot]:
    """Draw every plot whose data exist into ``folder``; remove stale files of the absent ones."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {label: rows for label, run in runs.items() if (rows := _read_metrics(Path(run))) is not None}
    plots = [
        _plot_loss(metrics, folder / "loss.png"),
        _plot_reward(metrics, {label: Path(run) for label, run in runs.items()}, folder / "reward.png"),
        _plot_steps(evaluation.get("steps_curve") or {}, folder / "steps.png"),
        _plot_calibration(evaluation.get("calibration") or {}, folder / "calibration.png"),
        _plot_kd_weights(metrics, folder / "kd_weights.png"),
    ]
    for plot in plots:
        if plot.missing is not None:
            (folder / f"{plot.name}.png").unlink(missing_ok=True)
    return plots
