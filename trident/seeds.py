"""Several seeds of one pipeline: each system's mean and range over the seeds, and the paired
differences seed by seed.

``trident pipeline ... seeds=[0,1,2]`` evaluates each seed's models in ``seed-S/eval/``; this
module reads those ``eval.json`` files and writes ``seeds.json`` and ``seeds.md`` beside them:

- per system and metric (pass@1, kill, length): the mean over seeds, the smallest and largest
  seed's figure;
- per model, against the first model (``sft``) and against each reference system (the
  ``observed`` oracle): the paired difference of each seed (its own interval from the bootstrap
  of test files), the mean over seeds with a Student-t 95 % interval over the seeds, and how many
  seeds have the difference above 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from common.stats import mean_range, t_interval

__all__ = ["summarise", "write_seeds"]

METRICS = ("pass@1", "kill", "length")


def _percent(metric: str, x: float) -> str:
    return f"{x:.0f}" if metric == "length" else f"{100 * x:.1f}"


def summarise(evals: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """The content of ``seeds.json`` from each seed's ``eval.json`` content."""
    seeds = sorted(evals)
    names = [n for n in evals[seeds[0]]["systems"] if all(n in evals[s]["systems"] for s in seeds)]
    systems: dict[str, Any] = {}
    for name in names:
        row: dict[str, Any] = {}
        for metric in METRICS:
            xs = [evals[s]["systems"][name]["metrics"].get(metric, {}).get("mean") for s in seeds]
            if all(x is not None for x in xs):
                row[metric] = {**mean_range(xs), "per_seed": xs}
        systems[name] = row
    paired: list[dict[str, Any]] = []
    models = [n for n in names if evals[seeds[0]]["systems"][n]["kind"] == "model"]
    for name in models:
        first = [evals[s]["systems"][name] for s in seeds]
        refs: dict[str, list[dict[str, Any]]] = {}
        if first[0].get("diff"):
            refs[models[0]] = [e["diff"] for e in first]
        for ref in first[0].get("vs", {}):
            refs[ref] = [e.get("vs", {}).get(ref, {}) for e in first]
        for ref, per_seed in refs.items():
            for metric in METRICS:
                ds = [d.get(metric) for d in per_seed]
                if not all(ds):
                    continue
                diffs = [d["diff"] for d in ds]
                lo, hi = t_interval(diffs) if len(diffs) > 1 else (float("nan"), float("nan"))
                paired.append({"system": name, "against": ref, "metric": metric, "per_seed": ds,
                               "mean": sum(diffs) / len(diffs), "lo": lo, "hi": hi,
                               "above_0": sum(d > 0 for d in diffs), "interval_above_0": sum(d["lo"] > 0 for d in ds)})
    return {"seeds": seeds, "split": evals[seeds[0]]["split"], "tasks": evals[seeds[0]]["tasks"],
            "systems": systems, "paired": paired}


def _markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [f"# {len(seeds)} seeds ({', '.join(map(str, seeds))}), {summary['split']} split, {summary['tasks']} tasks",
             "", "Each system's figure is the mean over seeds, with the smallest and largest seed's in brackets "
             "(pass@1 and kill in %, length in characters).", "",
             "| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, row in summary["systems"].items():
        cells = [f"{_percent(m, row[m]['mean'])} [{_percent(m, row[m]['min'])}, {_percent(m, row[m]['max'])}]"
                 if m in row else "—" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences", "",
              "Per seed, the difference on the same tasks with its 95 % interval from a bootstrap of test files; "
              "then the mean over seeds with a Student-t 95 % interval over the seeds, and the seeds whose difference "
              "(and whose interval) lies above 0.", "",
              "| difference | metric | per seed | mean [95 % over seeds] | above 0 |", "|---|---|---|---|---|"]
    for p in summary["paired"]:
        m = p["metric"]
        per = "; ".join(f"{_percent(m, d['diff'])} [{_percent(m, d['lo'])}, {_percent(m, d['hi'])}]" for d in p["per_seed"])
        lines.append(f"| {p['system']} − {p['against']} | {m} | {per} | {_percent(m, p['mean'])} "
                     f"[{_percent(m, p['lo'])}, {_percent(m, p['hi'])}] | {p['above_0']} of {len(seeds)} "
                     f"({p['interval_above_0']} with the interval) |")
    return "\n".join(lines) + "\n"


def write_seeds(root: Path, evals: Mapping[int, Path]) -> Path:
    """Write ``root/seeds.json`` and ``root/seeds.md`` from each seed's ``eval.json``; returns the latter."""
    summary = summarise({s: json.loads(Path(p).read_text()) for s, p in evals.items()})
    for name, text in (("seeds.json", json.dumps(summary, indent=1) + "\n"), ("seeds.md", _markdown(summary))):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / name)
    return root / "seeds.md"
