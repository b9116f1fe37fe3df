"""The evaluation report: ``eval.json`` plus the stages' run folders -> ``report.md`` and ``plots/*.png``.

:func:`write_report` writes a Markdown report (the table of every system with bootstrap 95 %
intervals, the models' paired differences, the plots, a few sample assertions, the settings);
:func:`summary` is the few lines printed at the end of a run. The input is the dict that
:mod:`trident.evaluation` writes to ``eval.json``; its schema is described there and in
``write_report``'s docstring.

Run folders are found by what their ``metrics.jsonl`` holds, not by their label: a run with
``loss/total`` rows is a supervised stage (teacher, sft), one with ``rewards/*/mean`` rows is an
RL run, one with ``weight/*`` rows was trained with knowledge distillation.

matplotlib is imported inside the plotting functions, so importing this module stays light.
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

__all__ = ["write_report", "summary"]

MINUS = "\u2212"
DASH = "\u2013"  # a metric the system has no value for
TARGETS_MIN_PASS = 0.99  # below this the sandbox, not the targets, is suspect
WARNING = "the tasks' own assertions should all pass; check the sandbox"
SMOOTH = 5  # running-mean window of the RL curves
BINS = 10  # equal-width bins of the calibration plot on [0, 1]
SAMPLE_ROWS = 5
CELL_CHARS = 120  # longer assertions are cut in the sample table
FIGSIZE = (6.0, 3.5)
DPI = 110

Rows = list[dict[str, Any]]


# ------------------------------------------------------------------------------- formatting


def _fmt_interval(metric: str, m: Mapping[str, float] | None) -> str:
    """``25.9 [22.0, 29.7]`` (percent), or ``0.62 [0.60, 0.65]`` for the semantic cosine."""
    if m is None:
        return DASH
    if metric == "semantic":
        return f"{m['mean']:.2f} [{m['lo']:.2f}, {m['hi']:.2f}]"
    if metric == "length":
        return f"{m['mean']:.0f} [{m['lo']:.0f}, {m['hi']:.0f}]"
    return f"{100 * m['mean']:.1f} [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]"


def _signed(x: float, digits: int) -> str:
    """``+2.1`` / ``−0.4``; a value that rounds to zero is ``+0.0``, never ``−0.0``."""
    x = round(x, digits) or 0.0
    return f"{x:+.{digits}f}".replace("-", MINUS)


def _fmt_diff(metric: str, d: Mapping[str, float] | None) -> str:
    """A paired difference: percentage points, or cosine units for ``semantic``."""
    if d is None:
        return DASH
    scale, digits = {"semantic": (1, 2), "length": (1, 0)}.get(metric, (100, 1))
    diff, lo, hi = (_signed(scale * d[key], digits) for key in ("diff", "lo", "hi"))
    return f"{diff} [{lo}, {hi}]"


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _code_cell(text: str) -> str:
    """``text`` as inline code in a Markdown table cell: one line, cut to CELL_CHARS, ``|`` escaped."""
    text = " ".join(text.split())
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS - 1] + "…"
    fence, pad = ("``", " ") if "`" in text else ("`", "")  # a backtick inside needs a longer fence
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _metric_names(evaluation: dict, metrics: list[str]) -> list[str]:
    """Column headers: ``pass@k`` with its k (``pass@4``)."""
    return [f"pass@{evaluation['k']}" if m == "pass@k" else m for m in metrics]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested settings as ``a.b: value`` pairs."""
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# ------------------------------------------------------------------------------- systems


def _models(evaluation: dict) -> list[str]:
    return [name for name, s in evaluation["systems"].items() if s["kind"] == "model"]


def _targets_pass(evaluation: dict) -> float | None:
    """The ``targets`` baseline's mean pass@1, or None when it was not evaluated."""
    targets = evaluation["systems"].get("targets")
    if targets is None or "pass@1" not in targets["metrics"]:
        return None
    return targets["metrics"]["pass@1"]["mean"]


def _warning(evaluation: dict) -> str | None:
    """The sandbox warning's text, when the tasks' own assertions do not (almost) all pass."""
    rate = _targets_pass(evaluation)
    if rate is None or rate >= TARGETS_MIN_PASS:
        return None
    return f"the `targets` baseline passes only {_percent(rate)} of the tasks: {WARNING}."


def _best_model(evaluation: dict) -> str | None:
    """The model with the highest mean pass@1 (kill breaks ties)."""
    def key(name: str) -> tuple[float, float]:
        metrics = evaluation["systems"][name]["metrics"]
        return tuple(metrics[m]["mean"] if m in metrics else -1.0 for m in ("pass@1", "kill"))

    models = _models(evaluation)
    return max(models, key=key) if models else None


def summary(evaluation: dict) -> str:
    """A few plain-text lines: each system's pass@1 and kill with intervals, the best model, a
    warning when the ``targets`` baseline does not pass ~100 %."""
    lines = [f"eval on {evaluation['split']}: {evaluation['scored']} of {evaluation['tasks']} tasks scored, "
             f"{evaluation['with_mutants']} with mutants (pass@1 and kill in %, length in characters; 95 % intervals "
             f"from a bootstrap of test files)"]
    width = max(len(name) for name in evaluation["systems"])
    for name, system in evaluation["systems"].items():
        metrics = system["metrics"]
        lines.append(f"  {name:<{width}}  pass@1 {_fmt_interval('pass@1', metrics.get('pass@1')):<20}  "
                     f"kill {_fmt_interval('kill', metrics.get('kill')):<20}  "
                     f"length {_fmt_interval('length', metrics.get('length'))}")
    best = _best_model(evaluation)
    if best is not None:
        metrics = evaluation["systems"][best]["metrics"]
        lines.append(f"best model: {best} (pass@1 {_fmt_interval('pass@1', metrics.get('pass@1'))})")
    warning = _warning(evaluation)
    if warning is not None:
        lines.append(f"WARNING: {warning}")
    return "\n".join(lines)


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


def _plots(evaluation: dict, runs: Mapping[str, Path], folder: Path) -> list[Plot]:
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


# ------------------------------------------------------------------------------- report


def _how_to_read(evaluation: dict) -> list[str]:
    return [
        "## How to read this",
        "",
        "**pass@1** is the share of tasks whose assertion passes on the original code; "
        f"**pass@k** the share where one of k = {evaluation['k']} samples passes. "
        "**kill** is the mean share of a task's mutants the assertion kills (it fails on the mutant), "
        f"over the {evaluation['with_mutants']} tasks with mutants. "
        "**PANS** is the share of tasks whose assertion passes, is an assertion, is not trivial and parses. "
        "**token F1** is gamed by the most frequent assertion, so compare systems on pass and kill. "
        "**semantic** is a sentence-embedding cosine to the target in [−1, 1]; **length** is the assertion's "
        "length in characters; every other metric is in %. "
        f"Brackets are 95 % intervals from a bootstrap that resamples whole test files "
        f"({evaluation.get('clusters', {}).get('keep', '?')} files behind pass@1, "
        f"{evaluation.get('clusters', {}).get('mutated', '?')} behind kill); "
        "a model's row holds its completed assertions (the observed value filled in), its `:written` row "
        "the same assertions as the model wrote them; "
        "tasks whose sandbox run failed (infra) are left out of the execution metrics.",
        "",
    ]


def _main_table(evaluation: dict) -> list[str]:
    metrics = evaluation["metrics"]
    rows = [[f"{name}" + (" (baseline)" if s["kind"] == "baseline" else "")]
            + [_fmt_interval(m, s["metrics"].get(m)) for m in metrics]
            for name, s in evaluation["systems"].items()]
    return ["## Results", ""] + _table(["system"] + _metric_names(evaluation, metrics), rows) + [""]


def _diff_table(evaluation: dict) -> list[str]:
    models = _models(evaluation)
    lines = ["## Paired differences", ""]
    if len(models) < 2:
        return lines + ["Only one model was evaluated: no paired differences.", ""]
    metrics = [m for m in evaluation["metrics"] if any(m in evaluation["systems"][n]["diff"] for n in models[1:])]
    rows = [[f"{name} − {models[0]}"] + [_fmt_diff(m, evaluation["systems"][name]["diff"].get(m)) for m in metrics]
            for name in models[1:] if evaluation["systems"][name]["diff"]]
    return lines + [f"Each model against `{models[0]}` on the same resampled test files, in percentage points "
                    "(semantic in cosine units, length in characters); an interval that excludes 0 is a difference "
                    "beyond resampling noise.", ""] + _table(["model"] + _metric_names(evaluation, metrics), rows) + [""]


def _vs_table(evaluation: dict) -> list[str]:
    """Every model against the reference systems (``compare``: the observed oracle by default)."""
    pairs = [(name, ref, d) for name, s in evaluation["systems"].items() if s["kind"] == "model"
             for ref, d in s.get("vs", {}).items()]
    if not pairs:
        return []
    metrics = [m for m in ("pass@1", "kill", "length") if any(m in d for _, _, d in pairs)]
    rows = [[f"{name} − {ref}"] + [_fmt_diff(m, d.get(m)) for m in metrics] for name, ref, d in pairs]
    return ["## Against the regression oracle", "",
            "Each model against a baseline that learns nothing, on the same resampled test files: "
            "an interval above 0 means the model beats it.", ""] + _table(["model"] + metrics, rows) + [""]


def _ranker_section(evaluation: dict) -> list[str]:
    """Each model's ranker: what it was fit on and how well it ranks the model's samples here."""
    rankers = evaluation.get("ranker") or {}
    if not rankers:
        return []
    lines = ["## The critic as ranker", "",
             "Fit on executed candidates of training tasks only (RL's samples), on the model's own features; AUROC on "
             "this split's samples (completed): P(pass) against passing, P(kill | pass) against killing at least one "
             "mutant among the passing samples of tasks with mutants. `NAME:ranked` takes each task's best sample by "
             "the ranker, `NAME:likely` by likelihood.", ""]
    rows = []
    for name, r in rankers.items():
        if "error" in r:
            rows.append([name, f"not fit: {r['error']}", DASH, DASH])
            continue
        t = r["trained_on"]
        rows.append([name, f"{t['candidates']:.0f} candidates, {t['passed']:.0f} passing, {t['killed']:.0f} killing",
                     f"{r['auroc_pass']:.3f} ({r['samples']} samples)",
                     f"{r['auroc_kill_given_pass']:.3f} ({r['passing_with_mutants']} passing)"])
    return lines + _table(["model", "fit on", "AUROC pass", "AUROC kill given pass"], rows) + [""]


def _systems(evaluation: dict) -> list[str]:
    lines = ["## Systems", ""]
    for name, s in evaluation["systems"].items():
        lines.append(f"- **{name}**: {s['about']}" if s["kind"] == "baseline" else f"- **{name}**: model `{s['path']}`")
    return lines + [""]


def _plot_section(plots: list[Plot]) -> list[str]:
    lines = ["## Plots", ""]
    for plot in plots:
        if plot.missing is None:
            lines += [f"![{plot.name}](plots/{plot.name}.png)", "", plot.caption, ""]
        else:
            lines += [f"*{plot.missing}.*", ""]
    return lines


def _sample_table(evaluation: dict) -> list[str]:
    samples = evaluation.get("samples") or {}
    systems = [name for name in evaluation["systems"] if samples.get(name)] or list(samples)
    if not systems:
        return []
    by_task = {name: {row["task"]: row["candidate"] for row in samples[name]} for name in systems}
    first = samples[systems[0]][:SAMPLE_ROWS]
    rows = [[_code_cell(str(row["task"])), _code_cell(row["target"])]
            + [_code_cell(by_task[name][row["task"]]) if row["task"] in by_task[name] else DASH for name in systems]
            for row in first]
    return ["## Samples", ""] + _table(["task", "target"] + systems, rows) + [""]


def _settings(evaluation: dict) -> list[str]:
    lines = ["## Settings", "", f"- task file: `{evaluation['task_file']}`"]
    for key, value in _flatten(evaluation.get("settings") or {}):
        lines.append(f"- {key}: {value if isinstance(value, str) else json.dumps(value)}")
    return lines + [""]


def write_report(evaluation: dict, out: Path, runs: Mapping[str, Path] = {}) -> Path:
    """Write ``out/report.md`` and ``out/plots/*.png``; return the report.md path.

    ``evaluation`` is the content of ``eval.json`` (:func:`trident.evaluation.evaluate`): ``split``,
    ``tasks``, ``scored``, ``with_mutants``, ``k``, ``task_file``, ``metrics`` (the table's columns),
    ``systems`` (name -> ``kind``, ``about`` or ``path``, ``metrics`` of ``{mean, lo, hi}``, and for
    models ``diff`` of ``{diff, lo, hi}`` to the first model), and optional ``samples``,
    ``steps_curve``, ``calibration`` and ``settings``. ``runs`` maps a stage label to its run
    folder; each folder's ``metrics.jsonl`` (if any) feeds the training curves.
    """
    out = Path(out)
    plots = _plots(evaluation, runs, out / "plots")
    lines = [f"# Trident evaluation: {evaluation['split']} split",
             "",
             f"{evaluation['tasks']} tasks, {evaluation['scored']} scored, {evaluation['with_mutants']} with mutants.",
             ""]
    warning = _warning(evaluation)
    if warning is not None:
        lines += [f"**Warning:** {warning}", ""]
    best = _best_model(evaluation)
    if best is not None:
        lines += [f"Best model on pass@1: **{best}**.", ""]
    lines += (_how_to_read(evaluation) + _main_table(evaluation) + _vs_table(evaluation) + _diff_table(evaluation)
              + _ranker_section(evaluation)
              + _systems(evaluation)
              + _plot_section(plots) + _sample_table(evaluation) + _settings(evaluation))
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
