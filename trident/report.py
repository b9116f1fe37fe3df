"""The evaluation report: ``eval.json`` plus the stages' run folders -> ``report.md`` and ``plots/*.png``.

:func:`write_report` writes a Markdown report (the table of every system with bootstrap 95 %
intervals, the models' paired differences, the plots, a few sample assertions, the settings);
:func:`summary` is the few lines printed at the end of a run. The input is the dict that
:mod:`trident.evaluation` writes to ``eval.json``; its schema is described there and in
``write_report``'s docstring.

Run folders are found by what their ``metrics.jsonl`` holds, not by their label: a run with
``loss/total`` rows is a supervised stage (teacher, sft), one with ``rewards/*/mean`` rows is an
RL run, one with ``weight/*`` rows was trained with knowledge distillation.

The plots are drawn by :mod:`trident.plots`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .plots import Plot, make_plots

__all__ = ["write_report", "summary"]

MINUS = "\u2212"
DASH = "\u2013"  # a metric the system has no value for
TARGETS_MIN_PASS = 0.99  # below this the sandbox, not the targets, is suspect
WARNING = "the tasks' own assertions should all pass; check the sandbox"
SAMPLE_ROWS = 5
CELL_CHARS = 120  # longer assertions are cut in the sample table



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
    plots = make_plots(evaluation, runs, out / "plots")
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
