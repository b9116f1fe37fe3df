"""`trident eval`: models against baselines on a split, every metric with a 95 % interval
from a bootstrap of test files.

Systems, each writing one assertion per task of the split: the baselines of
:mod:`trident.baselines` (``targets``, ``trivial``, ``most_frequent``, ``retrieval``, and the
regression oracles ``observed`` and ``observed-all``), then each model given: its greedy edit
system (``pretrain.evaluate``: the model's own choice of retrieved start, critic-doubted
positions denoised), plus ``k`` samples per task from the sampler RL trains (``rl.rollout``) for
pass@k. With ``completion`` (the default) a model's assertions are completed — the value of
``assert EXPR == VALUE`` observed on the unmutated library and filled in
(:mod:`sandbox.completion`) — and a ``NAME:written`` row shows the same assertions as written.

Metrics per task, averaged over tasks: ``exact_match``, ``token_f1``, ``ast_valid``, ``pass@1``
(the one assertion passes), ``pass@k`` (one of the k samples passes; models only), ``kill``
(share of the task's mutants the assertion kills, over tasks with mutants), ``pans`` (passing,
assertion, non-trivial, parses), ``semantic`` (all-MiniLM-L6-v2 cosine to the target) and
``length`` (characters of the assertion). Every candidate runs in the sandbox against the task
and its mutants; a task with an ``infra`` verdict (the sandbox failed, not the candidate) is
left out of the execution metrics, never scored 0.

Intervals resample whole test files (tasks of one file are correlated), and say how many files
stand behind them. Models after the first get paired differences to it, and every model paired
differences to each system in ``compare`` (``observed`` by default), on the same resampled files.

Also, per model: pass rate against the sampler's number of steps (from an all-[MASK] slot) and
the critic's calibration (its value ``V = exp(Σ log σ(z_i))`` of each greedy assertion, as
written, against whether it passed). Written to ``out/eval.json`` and, every system's assertion
and verdict for every task, ``out/outputs.jsonl``; ``out/report.md`` and ``out/plots/`` come
from :mod:`trident.report`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from pretrain.sampler import SamplerConfig
from rl.rollout import RolloutConfig
from sandbox.api import Limits
from sandbox.tasks import Task

from .baselines import BASELINES, baselines, trivial_assertion
from .errors import TridentError

__all__ = ["EvalJobConfig", "BASELINES", "METRICS", "trivial_assertion", "baselines", "evaluate", "run"]

METRICS = ("exact_match", "token_f1", "ast_valid", "pass@1", "pass@k", "kill", "pans", "semantic", "length")


def _greedy_sampler() -> SamplerConfig:
    from pretrain.evaluate import EvalConfig

    return EvalConfig().sampler


@dataclass
class EvalJobConfig:
    """`trident eval`: models and baselines on a split, with bootstrap 95 % intervals and a report."""

    models: dict[str, Path] = field(default_factory=dict, metadata={"help": "name -> model directory (the final/ of `trident sft` or `trident rl`); on the command line --model [NAME=]DIR, repeated; the first is the one the others are compared with"})
    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine` (its train split feeds the retrieval baselines)"})
    split: Literal["valid", "test"] = field(default="test", metadata={"help": "split to evaluate on"})
    out: Path | None = field(default=None, metadata={"help": "folder for eval.json, report.md and plots/; default: eval/ beside the first model's run folder (runs/NAME/eval)"})
    max_tasks: int | None = field(default=None, metadata={"help": "evaluate at most this many tasks (first in file order)"})
    k: int = field(default=4, metadata={"help": "samples per task for pass@k, from the sampler RL trains (rollout); 0 = no pass@k"})
    sampler: SamplerConfig = field(default_factory=_greedy_sampler, metadata={"help": "the greedy system's sampler (as `trident sft` evaluates)"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "the sampler of the k samples, as in an RL config (its samples is set to k)"})
    retrieve_k: int = field(default=5, metadata={"help": "the greedy system chooses its start among this many most similar training targets"})
    adapt_cap: int = field(default=16, metadata={"help": "at most this many name adaptations per retrieved target"})
    steps: list[int] = field(default_factory=lambda: [4, 8, 16, 48], metadata={"help": "sampler steps of the pass-rate-against-steps curve (from an all-[MASK] slot); [] = no curve"})
    semantic: bool = field(default=True, metadata={"help": "score the semantic similarity (all-MiniLM-L6-v2, offline)"})
    batch_size: int = field(default=64, metadata={"help": "tasks generated together"})
    workers: int = field(default=0, metadata={"help": "sandbox workers; 0 = one per core"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "sandbox limits"})
    resamples: int = field(default=2000, metadata={"help": "bootstrap resamples of the tasks"})
    seed: int = field(default=0, metadata={"help": "seed of the samples and of the bootstrap"})
    runs: dict[str, Path] = field(default_factory=dict, metadata={"help": "extra run folders whose curves the report plots (label -> folder); the models' own run folders are found by themselves"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    completion: bool = field(default=True, metadata={"help": "complete the models' assertions: the value of `assert EXPR == VALUE` (and `is None/True/False`) observed on the unmutated library and filled in (sandbox.completion); each model also gets a NAME:written row without it"})
    ranker_samples: list[Path] = field(default_factory=list, metadata={"help": "samples.jsonl files of RL runs: executed candidates of training tasks that each model's ranker (rl.ranker) is fit on; each model then also gets NAME:ranked (its k samples' best by the ranker) and NAME:likely (their best by likelihood) rows; [] = no ranker"})
    compare: list[str] = field(default_factory=lambda: ["observed"], metadata={"help": "systems every model gets paired differences against (file-clustered), beside the first model"})

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"k={self.k} must be >= 0 (0 = no pass@k)")
        if self.k:
            self.rollout = replace(self.rollout, samples=self.k)
        if any(s < 1 for s in self.steps):
            raise ValueError(f"steps={self.steps}: every value must be >= 1")
        if self.retrieve_k < 1 or self.adapt_cap < 1:
            raise ValueError("retrieve_k and adapt_cap must be >= 1")
        if self.resamples < 100:
            raise ValueError(f"resamples={self.resamples} is too few for a 95 % interval; use >= 1000")


# ------------------------------------------------------------------------------- models


def _model_outputs(path: Path, tasks: list[Task], train: list[Task], cfg: EvalJobConfig) -> dict[str, Any]:
    """A model's greedy assertions, their critic values, its k samples and its steps curve texts."""
    import torch

    from pretrain.data import DataConfig, Encoder, collate
    from pretrain.evaluate import EvalConfig, generate, start_rows
    from pretrain.model import DiffusionLM
    from rl.evaluate import candidates, sampled_candidates
    from rl.ppo import value_readout
    from rl.rollout import slot_positions

    ecfg = EvalConfig(split=cfg.split, batch_size=cfg.batch_size, sampler=cfg.sampler, retrieve_k=cfg.retrieve_k,
                      adapt_cap=cfg.adapt_cap, workers=cfg.workers, sandbox=cfg.sandbox)
    greedy = candidates(path, tasks, train, ecfg)
    model = DiffusionLM.load(path).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    L = model.slot_len
    values: list[float] = []
    with torch.no_grad():
        for lo in range(0, len(tasks), cfg.batch_size):
            rows = start_rows(encoder, tasks[lo:lo + cfg.batch_size], greedy[lo:lo + cfg.batch_size])
            batch = collate(rows, model.special, 0.0).to(model.device)
            critic = model(batch.input_ids, batch.attention_mask, last=L).critic[:, -L:]
            log_v = value_readout(critic, slot_positions(batch.input_ids[:, -L:], model.special.pad))
            values += log_v.exp().tolist()
    samples = sampled_candidates(path, tasks, train, cfg.rollout, seed=cfg.seed) if cfg.k else [[] for _ in tasks]
    curve = {s: generate(model, encoder, tasks, replace(cfg.sampler, steps=s), batch_size=cfg.batch_size)
             for s in cfg.steps}
    return {"greedy": greedy, "values": values, "samples": samples, "curve": curve}


# ------------------------------------------------------------------------------- scoring


def _text_metrics(tasks: Sequence[Task], texts: Sequence[str], semantic: bool) -> dict[str, list[float]]:
    from pretrain.sampler import is_assertion
    from rewards.text import exact_match, f1, python_tokens

    out = {"exact_match": [float(x) for x in exact_match(None, list(texts), target=[t.target for t in tasks])],
           "token_f1": [f1(python_tokens(c), python_tokens(t.target)) for c, t in zip(texts, tasks)],
           "ast_valid": [float(is_assertion(t)) for t in texts],
           "length": [float(len(t.strip())) for t in texts]}
    if semantic:
        from rewards.semantic import semantic as cosine

        out["semantic"] = [float(x) for x in cosine(None, list(texts), target=[t.target for t in tasks])]
    return out


WRITTEN = ":written"  # suffix of a model's row without completion (its assertions as the model wrote them)
_ALL, _KEEP, _MUTATED = "all", "keep", "mutated"
_METRIC_TASKS = {"exact_match": _ALL, "token_f1": _ALL, "ast_valid": _ALL, "semantic": _ALL, "length": _ALL,
                 "pass@1": _KEEP, "pass@k": _KEEP, "pans": _KEEP, "kill": _MUTATED}


def _generate(models: dict[str, Path], tasks: list[Task], train: list[Task], cfg: EvalJobConfig, pool: Any,
              systems: dict[str, list[str]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each model's outputs (greedy, critic values, samples, curve), its row in ``systems`` and,
    with completion on, its ``NAME:written`` row; returns the outputs and what completion did."""
    outputs: dict[str, dict[str, Any]] = {}
    completion: dict[str, dict[str, Any]] = {}
    for i, (name, path) in enumerate(models.items()):
        print(f"eval: generating with {name} ({i + 1}/{len(models)}): greedy, {cfg.k} samples per task, "
              f"steps {cfg.steps}", flush=True)
        out = outputs[name] = _model_outputs(Path(path), tasks, train, cfg)
        systems[name] = out["greedy"]
        if not cfg.completion:
            continue
        done = pool.complete([(t, [g, *s]) for t, g, s in zip(tasks, out["greedy"], out["samples"])])
        systems[name] = [row[0].text for row in done]
        systems[name + WRITTEN] = out["greedy"]
        out["samples"] = [[c.text for c in row[1:]] for row in done]
        greedy = [row[0] for row in done]
        completion[name] = {"completable": sum(c.expression is not None for c in greedy) / len(tasks),
                            "filled": sum(c.filled for c in greedy) / len(tasks)}
    for name, path in models.items():
        if cfg.ranker_samples and cfg.k:
            out = outputs[name]
            out["ranker"] = _rank(Path(path), tasks, train, out["samples"], cfg)
            if "error" not in out["ranker"]:
                systems[name + ":ranked"] = out["ranker"].pop("ranked")
                systems[name + ":likely"] = out["ranker"].pop("likely")
    return outputs, completion


def _rank(path: Path, tasks: list[Task], train: list[Task], samples: list[list[str]], cfg: EvalJobConfig) -> dict[str, Any]:
    """The model's ranker (``rl.ranker``), fit on the executed training candidates of
    ``cfg.ranker_samples``, applied to each task's samples: the best by the ranker and by
    likelihood, each sample's P(pass) and P(kill | pass); or ``{"error": why}``."""
    from pretrain.data import DataConfig, Encoder
    from pretrain.model import DiffusionLM
    from rl.ranker import executed, features, fit

    found = [p for p in cfg.ranker_samples if Path(p).is_file()]
    if not found:
        return {"error": f"no samples file among {[str(p) for p in cfg.ranker_samples]}"}
    by_id = {t.id: t for t in train}
    ex = executed(found, set(by_id))
    model = DiffusionLM.load(path).eval()
    encoder = Encoder(model.tokenizer, DataConfig(slot_len=model.slot_len, max_prompt=model.max_prompt))
    try:
        ranker = fit(features(model, encoder, [by_id[e.task_id] for e in ex], [e.text for e in ex]),
                     [e.passed for e in ex], [e.killed for e in ex])
    except ValueError as err:
        return {"error": str(err)}
    flat = [(t, x) for t, row in zip(tasks, samples) for x in row]
    x = features(model, encoder, [t for t, _ in flat], [c for _, c in flat])
    score, likely = ranker.score(x), x[:, -1]
    ranked, best_likely, k = [], [], 0
    for row in samples:
        idx = range(k, k + len(row))
        ranked.append(row[max(idx, key=lambda i: float(score[i])) - k] if row else "")
        best_likely.append(row[max(idx, key=lambda i: float(likely[i])) - k] if row else "")
        k += len(row)
    return {"ranked": ranked, "likely": best_likely, "p_pass": ranker.p_pass(x).tolist(),
            "p_kill": ranker.p_kill(x).tolist(), "trained_on": ranker.trained_on}


def evaluate(models: dict[str, Path], tasks: list[Task], train: list[Task], cfg: EvalJobConfig) -> dict[str, Any]:
    """Every baseline and model on ``tasks``: the content of ``eval.json`` (see :mod:`trident.report`),
    and under ``"outputs"`` every system's assertion and verdict per task (``outputs.jsonl``)."""
    from common.stats import auroc, bootstrap, paired
    from rewards.execution import kill, pans, passes
    from sandbox.observable import Observation
    from sandbox.pool import Pool, observe_tasks
    from tqdm import tqdm

    t0 = time.perf_counter()
    with Pool(workers=cfg.workers, limits=cfg.sandbox) as pool:
        if any(t.observations is None for t in tasks):
            print("eval: the task file holds no observations (version 1): observing the prefixes' names", flush=True)
            tasks = observe_tasks(tasks, pool=pool, progress=cfg.progress)
        observations = [{k: Observation.from_dict(v) for k, v in (t.observations or {}).items()} for t in tasks]
        systems = baselines(tasks, train, observations)
        outputs, completion = _generate(models, tasks, train, cfg, pool, systems)

        # One pool run for every candidate of every system, against the task and its mutants.
        names = list(systems)
        per_task: list[list[str]] = []
        for i in range(len(tasks)):
            row = [systems[n][i] for n in names]
            for name in models:
                row += outputs[name]["samples"][i] + [outputs[name]["curve"][s][i] for s in cfg.steps]
            per_task.append(row)
        total = sum(map(len, per_task))
        print(f"eval: running {total} candidates on {len(tasks)} tasks and their mutants", flush=True)
        bar = tqdm(total=total, desc="sandbox", unit="cand", disable=not cfg.progress)
        verdicts = pool.score(list(zip(tasks, per_task)), mutants=True, on_done=bar.update)
        bar.close()
    keep = [i for i, row in enumerate(verdicts) if all(v.status != "infra" for v in row)]
    if not keep:
        raise ValueError("every task had an infra verdict (the sandbox failed): nothing to score; see the verdicts' "
                         "reasons with `trident score`")
    mutated = [i for i in keep if tasks[i].mutants]
    index = {_ALL: list(range(len(tasks))), _KEEP: keep, _MUTATED: mutated}
    clusters = {key: [tasks[i].test_module for i in idx] for key, idx in index.items()}  # tasks of one test file

    def interval(rows: list[list[float]], metric: str) -> list[dict[str, float]]:
        return bootstrap(rows, cfg.resamples, cfg.seed, clusters=clusters[_METRIC_TASKS[metric]])

    # Per system and metric: per-task values over the tasks where the metric is defined.
    values: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(names):
        texts = systems[name]
        v = _text_metrics(tasks, texts, cfg.semantic)
        # The rewards' own scorers, on verdicts already run (no infra among the kept tasks).
        kept = {"completions": [texts[i] for i in keep], "verdicts": [verdicts[i][j] for i in keep],
                "task": [tasks[i] for i in keep]}
        v["pass@1"] = passes(None, **kept)
        v["pans"] = pans(None, **kept)
        if mutated:
            v["kill"] = kill(None, [texts[i] for i in mutated], verdicts=[verdicts[i][j] for i in mutated],
                             task=[tasks[i] for i in mutated])
        values[name] = v
    curves: dict[str, list[dict[str, float]]] = {}
    calibration: dict[str, dict[str, Any]] = {}
    offset = len(names)
    sample_verdicts: dict[str, list[list[Any]]] = {}
    for j, name in enumerate(models):
        k, S = cfg.k, len(cfg.steps)
        sample_verdicts[name] = [verdicts[i][offset:offset + k] for i in range(len(tasks))]
        if k:
            values[name]["pass@k"] = [float(any(v.passed for v in verdicts[i][offset:offset + k])) for i in keep]
        rows = [[float(verdicts[i][offset + k + s].passed) for i in keep] for s in range(S)]
        curves[name] = [{"steps": steps, "pass": b["mean"], "lo": b["lo"], "hi": b["hi"]} for steps, b in
                        zip(cfg.steps, interval(rows, "pass@1") if rows else [])]
        offset += k + S
        rk = outputs[name].get("ranker")
        if rk is not None and "error" not in rk:
            flat = [(i, v) for i in keep for v in sample_verdicts[name][i]]
            pp = [rk["p_pass"][i * k + s] for i in keep for s in range(len(sample_verdicts[name][i]))]  # k per task
            pk = [rk["p_kill"][i * k + s] for i in keep for s in range(len(sample_verdicts[name][i]))]
            passed = [v.passed for _, v in flat]
            among = [n for n, (i, v) in enumerate(flat) if v.passed and tasks[i].mutants]
            rk.update({"auroc_pass": auroc(pp, passed), "auroc_kill_given_pass": auroc([pk[n] for n in among],
                                                                                    [bool(flat[n][1].kills) for n in among]),
                       "samples": len(flat), "passing_with_mutants": len(among)})
            del rk["p_pass"], rk["p_kill"]
        g = names.index(name + WRITTEN) if name + WRITTEN in names else names.index(name)
        predicted = [outputs[name]["values"][i] for i in keep]
        passed = [int(verdicts[i][g].passed) for i in keep]
        calibration[name] = {"predicted": predicted, "passed": passed, "auroc": auroc(predicted, [bool(p) for p in passed])}

    report_systems: dict[str, dict[str, Any]] = {}
    for name in names:
        base = name.split(":", 1)[0]
        kind = "baseline" if name in BASELINES else "model"
        entry: dict[str, Any] = {"kind": kind, "metrics": {}}
        if kind == "baseline":
            entry["about"] = BASELINES[name]
        else:
            entry["path"] = str(models[base])
            entry["completion"] = name == base and cfg.completion
            entry["diff"] = {}
            entry["vs"] = {}
        report_systems[name] = entry
    for metric in METRICS:
        have = [n for n in names if metric in values[n]]
        if not have:
            continue
        for n, b in zip(have, interval([values[n][metric] for n in have], metric)):
            report_systems[n]["metrics"][metric] = _interval(b)
        ranked = [n for n in models if metric in values[n]]
        if len(ranked) > 1:
            for n, b in zip(ranked[1:], interval([values[n][metric] for n in ranked], metric)[1:]):
                report_systems[n]["diff"][metric] = {"diff": b["diff"], "lo": b["diff_lo"], "hi": b["diff_hi"]}
        for n in have:
            if report_systems[n]["kind"] != "model":
                continue
            for ref in cfg.compare:
                if ref in values and metric in values[ref]:
                    d = paired(values[n][metric], values[ref][metric], cfg.resamples, cfg.seed,
                               clusters=clusters[_METRIC_TASKS[metric]])
                    report_systems[n]["vs"].setdefault(ref, {})[metric] = d
    return {
        "split": cfg.split, "tasks": len(tasks), "scored": len(keep), "with_mutants": len(mutated), "k": cfg.k,
        "clusters": {key: len(set(c)) for key, c in clusters.items()},
        "task_file": str(cfg.tasks), "metrics": [m for m in METRICS if m != "pass@k" or cfg.k],
        "systems": report_systems, "completion": completion,
        "ranker": {n: outputs[n]["ranker"] for n in models if "ranker" in outputs[n]},
        "samples": {n: [{"task": tasks[i].id, "target": tasks[i].target, "candidate": systems[n][i]}
                        for i in range(min(8, len(tasks)))] for n in names},
        "steps_curve": curves, "calibration": calibration,
        "settings": {"greedy sampler": asdict(cfg.sampler), "samples for pass@k": f"{cfg.k}, from rl.rollout "
                     f"(start {cfg.rollout.start}, temperature {cfg.rollout.sampler.temperature})",
                     "completion": cfg.completion,
                     "bootstrap": f"{cfg.resamples} resamples of test files (clusters)", "seed": cfg.seed,
                     "sandbox min_tier": str(cfg.sandbox.min_tier), "seconds": round(time.perf_counter() - t0, 1)},
        "outputs": _output_rows(tasks, names, systems, verdicts, models, outputs, sample_verdicts),
    }


def _output_rows(tasks: list[Task], names: list[str], systems: dict[str, list[str]], verdicts: list[list[Any]],
                 models: dict[str, Path], outputs: dict[str, dict[str, Any]],
                 sample_verdicts: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
    """One row per task and system (and per model sample): the assertion and its verdict."""
    def row(i: int, system: str, text: str, v: Any, **extra: Any) -> dict[str, Any]:
        return {"task": tasks[i].id, "test_file": tasks[i].test_module, "system": system, **extra, "assertion": text,
                "status": v.status, "reason": v.reason[:500], "kills": v.kills, "mutants": v.mutants}

    rows = []
    for i in range(len(tasks)):
        rows += [row(i, n, systems[n][i], verdicts[i][j]) for j, n in enumerate(names)]
        for name in models:
            rows += [row(i, name, text, v, sample=s)
                     for s, (text, v) in enumerate(zip(outputs[name]["samples"][i], sample_verdicts[name][i]))]
    return rows


def _interval(b: dict[str, float]) -> dict[str, float]:
    return {"mean": b["mean"], "lo": b["lo"], "hi": b["hi"]}


# ------------------------------------------------------------------------------- entry


def _run_folders(models: dict[str, Path], extra: dict[str, Path]) -> dict[str, Path]:
    """The run folders the report plots: each model's (the folder its final/ lies in) and ``extra``."""
    found = {name: Path(p).parent for name, p in models.items() if Path(p).name == "final"}
    return {**extra, **found}


def default_out(models: dict[str, Path]) -> Path:
    first = Path(next(iter(models.values())))
    root = first.parent.parent if first.name == "final" else first.parent
    return root / "eval"


def check(cfg: EvalJobConfig) -> None:
    """Refuse what cannot run, before any work: no model, a folder that is no model, no task file."""
    if not cfg.models:
        raise TridentError("no model to evaluate: give --model DIR (repeat it to compare several; NAME=DIR names one)")
    for name, path in cfg.models.items():
        if not (Path(path) / "trident_model.json").is_file():
            raise TridentError(f"model {name!r}: '{path}' is not a Trident model directory (no trident_model.json); give the "
                          f"final/ folder of a `trident sft` or `trident rl` run")
    if not Path(cfg.tasks).is_file():
        raise TridentError(f"task file '{cfg.tasks}' does not exist; run `trident mine` first or give tasks=")


def run(cfg: EvalJobConfig) -> dict[str, Any]:
    """Evaluate, write ``eval.json``, ``report.md`` and ``plots/``; print the table's summary."""
    from sandbox.tasks import load_tasks

    from .config import dump_config
    from .report import summary, write_report

    check(cfg)
    all_tasks = load_tasks(cfg.tasks)
    tasks = [t for t in all_tasks if t.split == cfg.split][:cfg.max_tasks]
    train = [t for t in all_tasks if t.split == "train"]
    if not tasks:
        raise TridentError(f"task file '{cfg.tasks}' has no {cfg.split} split; mine more test files or choose split=")
    out = Path(cfg.out) if cfg.out is not None else default_out(cfg.models)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    try:
        result = evaluate(dict(cfg.models), tasks, train, cfg)
    except ValueError as exc:
        raise TridentError(str(exc)) from None
    rows = result.pop("outputs")
    tmp = out / ".outputs.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(out / "outputs.jsonl")
    tmp = out / ".eval.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out / "eval.json")
    report = write_report(result, out, _run_folders(dict(cfg.models), dict(cfg.runs)))
    print(summary(result))
    print(f"eval: {out / 'eval.json'}\nreport: {report}")
    return result
