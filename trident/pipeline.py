"""`trident pipeline`: the stages mine -> tokenizer -> [teacher ->] sft -> rl -> eval in order.

Each stage works in ``ROOT/NAME/STAGE/`` (``runs/default/sft/`` …) and is wired to the ones
before it here — the task file, the tokenizer, the model each starts from — so the stage sections
of the configuration leave those paths alone. A stage that finishes writes ``stage.json`` (its
resolved configuration, when, how long); a re-run skips it, and refuses to skip one whose
configuration has changed since (``--from STAGE`` redoes it). A stage that was interrupted is
simply run again: mining, SFT and RL resume from what they saved.

``--from STAGE`` redoes STAGE and every stage after it (their earlier folders are moved aside to
``STAGE.prev-N/``, so nothing is lost); the stages before it must have finished. ``--until STAGE``
stops after it. The same command runs under ``ray job submit`` (the RL stage then uses that
cluster); see docs/pipeline.md.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from pretrain.components import LossConfig
from pretrain.sft import SFTConfig
from rl.config import RLConfig
from sandbox.mining import MineConfig

from .config import config_to_dict, dump_config
from .errors import TridentError
from .evaluation import EvalJobConfig

__all__ = ["PipelineConfig", "TokenizerConfig", "STAGES", "plan", "run", "demo_config"]

Stage = Literal["mine", "tokenizer", "teacher", "sft", "rl", "eval"]
STAGES: tuple[str, ...] = ("mine", "tokenizer", "teacher", "sft", "rl", "eval")
MARKER = "stage.json"


def _trident_kd() -> list[Any]:
    return [{"name": "focal", "gamma": 2.0, "weight": {"start": 0.5, "end": 0.3}},
            {"name": "jsd", "beta": 0.5, "temperature": 2.0, "weight": {"start": 0.3, "end": 0.4}},
            {"name": "semantic", "rows": 8, "weight": {"start": 0.2, "end": 0.3}}]


@dataclass
class TokenizerConfig:
    """The BPE tokenizer every model of the run reads, trained on the train split's tasks."""

    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size"})
    min_frequency: int = field(default=2, metadata={"help": "a pair merges only when it occurs at least this often"})

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(f"tokenizer.vocab_size={self.vocab_size} is below the byte alphabet plus specials; use >= 300")


@dataclass
class PipelineConfig:
    """`trident pipeline`: every stage of a run, in order, each in ROOT/NAME/STAGE/."""

    name: str = field(default="default", metadata={"help": "run name: the stages work in ROOT/NAME/"})
    root: Path = field(default=Path("runs"), metadata={"help": "folder of all runs"})
    start: Stage | None = field(default=None, metadata={"help": "--from: redo this stage and the ones after it (earlier folders kept as STAGE.prev-N/); the stages before must have finished"})
    until: Stage | None = field(default=None, metadata={"help": "--until: stop after this stage"})
    mine: MineConfig = field(default_factory=MineConfig, metadata={"help": "stage mine (out is set by the pipeline)"})
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig, metadata={"help": "stage tokenizer"})
    teacher: SFTConfig | None = field(default=None, metadata={"help": "stage teacher, when set: a model trained first, which the sft stage distils from with the kd components (tasks, out and tokenizer are set by the pipeline)"})
    kd: list[Any] = field(default_factory=_trident_kd, metadata={"help": "with a teacher: the sft stage's loss components (default: the Trident preset focal + JSD + semantic; see docs/distillation.md)"})
    sft: SFTConfig = field(default_factory=SFTConfig, metadata={"help": "stage sft (tasks, out, tokenizer and, with a teacher, loss are set by the pipeline)"})
    rl: RLConfig = field(default_factory=RLConfig, metadata={"help": "stage rl (model, tasks and out are set by the pipeline)"})
    eval: EvalJobConfig = field(default_factory=EvalJobConfig, metadata={"help": "stage eval on the test split: sft and rl against the baselines (models, tasks, out are set by the pipeline)"})
    seeds: list[int] = field(default_factory=list, metadata={"help": "run the model stages once per seed, in ROOT/NAME/seed-S/ (mine and tokenizer once, shared), every stage's seed set to S; then seeds.md and seeds.json give each system's mean and range over the seeds and the paired differences per seed ([] = one run with the stages' own seeds)"})

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name={self.name!r} must be a plain folder name (no '/', not starting with '.')")
        if self.teacher is not None:
            LossConfig(components=self.kd, teacher=Path("teacher"))  # an unknown component fails here, before any work
        if self.start == "teacher" and self.teacher is None:
            raise ValueError("start=teacher, but this pipeline has no teacher stage; set teacher: {...} or start from sft")
        if self.until == "teacher" and self.teacher is None:
            raise ValueError("until=teacher, but this pipeline has no teacher stage; set teacher: {...} or stop at sft")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds} repeats a seed; give distinct seeds")


# ---------------------------------------------------------------------------------- stages


def plan(cfg: PipelineConfig) -> dict[str, Any]:
    """Each stage's configuration with its paths wired to the stages before it, in order
    (``teacher`` only when the pipeline has one)."""
    root = cfg.root / cfg.name
    tasks = root / "mine" / "tasks.jsonl"
    tokenizer = root / "tokenizer"
    stages: dict[str, Any] = {
        "mine": replace(cfg.mine, out=tasks, summary=None),
        "tokenizer": cfg.tokenizer,
    }
    for seed in cfg.seeds or [None]:
        stages.update(_model_stages(cfg, root, tasks, tokenizer, seed))
    return stages


def seed_folder(seed: int) -> str:
    return f"seed-{seed}"


def _model_stages(cfg: PipelineConfig, root: Path, tasks: Path, tokenizer: Path, seed: int | None) -> dict[str, Any]:
    """teacher, sft, rl and eval, in ROOT/NAME/ or, for one of several seeds, ROOT/NAME/seed-S/
    (stage names ``seed-S/sft`` and so on) with every stage's seed set to S."""
    where = root if seed is None else root / seed_folder(seed)
    key = (lambda name: name) if seed is None else (lambda name: f"{seed_folder(seed)}/{name}")
    seeded = (lambda c: c) if seed is None else (lambda c: replace(c, seed=seed))
    stages: dict[str, Any] = {}
    sft = seeded(replace(cfg.sft, tasks=tasks, out=where / "sft", tokenizer=tokenizer))
    runs = {}
    if cfg.teacher is not None:
        stages[key("teacher")] = seeded(replace(cfg.teacher, tasks=tasks, out=where / "teacher", tokenizer=tokenizer))
        sft = replace(sft, loss=LossConfig(components=cfg.kd, teacher=where / "teacher" / "final"))
        runs["teacher"] = where / "teacher"
    stages[key("sft")] = sft
    stages[key("rl")] = seeded(replace(cfg.rl, model=where / "sft" / "final", tasks=tasks, out=where / "rl"))
    models = {"sft": where / "sft" / "final", "rl": where / "rl" / "final"}
    if cfg.teacher is not None:
        models["teacher"] = where / "teacher" / "final"
    stages[key("eval")] = seeded(replace(cfg.eval, models=models, tasks=tasks, out=where / "eval", runs=runs,
                                         ranker_samples=[where / "rl" / "samples.jsonl"]))
    return stages


def _kind(name: str) -> str:
    """The stage a (possibly per-seed) stage name is: ``seed-1/rl`` -> ``rl``."""
    return name.rsplit("/", 1)[-1]


def _mine(c: MineConfig) -> str:
    from sandbox.mining import mine

    c.out.parent.mkdir(parents=True, exist_ok=True)
    dump_config(c, c.out.with_name("config.yaml"))
    s = mine(c)
    return (f"{s['kept']} tasks of {s['candidate_slots']} slots, {s['killing_mutant_share']:.0%} with a killing mutant; "
            f"splits {s['splits']}")


def _tokenizer(c: TokenizerConfig, tasks: Path, out: Path) -> str:
    from pretrain.tokenizer import save_tokenizer, task_texts, train_tokenizer
    from sandbox.tasks import load_tasks

    train = [t for t in load_tasks(tasks) if t.split == "train"]
    if not train:
        raise TridentError(f"task file '{tasks}' has no train split to train a tokenizer on; mine more test files "
                           f"(mine.files, mine.max_files) or raise mine.valid_fraction/test_fraction less")
    tok = train_tokenizer(task_texts(train), vocab_size=c.vocab_size, min_frequency=c.min_frequency)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    dump_config(c, out / "config.yaml")
    return f"{len(tok)} tokens from {len(train)} training tasks"


def _sft(c: SFTConfig) -> str:
    from pretrain.sft import train

    s = train(c)
    return f"{s.get('steps', '?')} steps; model {c.out / 'final'}"


def _rl(c: RLConfig) -> str:
    from rl.driver import run as rl_run

    s = rl_run(c)
    return f"{s.get('iterations', '?')} iterations; model {c.out / 'final'}"


def _eval(c: EvalJobConfig) -> str:
    from .evaluation import run as eval_run

    eval_run(c)
    return f"report {c.out / 'report.md'}"


def _runner(name: str, stage_cfg: Any, stages: dict[str, Any], root: Path) -> Callable[[], str]:
    name = _kind(name)
    if name == "mine":
        return lambda: _mine(stage_cfg)
    if name == "tokenizer":
        return lambda: _tokenizer(stage_cfg, stages["mine"].out, root / "tokenizer")
    if name in ("teacher", "sft"):
        return lambda: _sft(stage_cfg)
    if name == "rl":
        return lambda: _rl(stage_cfg)
    return lambda: _eval(stage_cfg)


# ---------------------------------------------------------------------------------- markers


def _plain(stage_cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(config_to_dict(stage_cfg), default=str))


# Keys that change how a stage reports, not what it makes: a finished stage is not redone for them.
_COSMETIC = {"progress", "log_every", "workers", "threads", "resume"}


def _changed(old: Any, new: Any, prefix: str = "") -> str | None:
    """The first key (dotted) whose value differs between two plain configurations, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key in _COSMETIC:
                continue
            found = _changed(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else prefix.rstrip(".")


def _finished(folder: Path) -> dict[str, Any] | None:
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None  # a marker cut short: the stage is redone (it resumes from what it saved)


def _mark(folder: Path, name: str, stage_cfg: Any, seconds: float, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"stage": name, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "seconds": round(seconds, 1), "result": what, "config": _plain(stage_cfg)}, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def _move_aside(folder: Path) -> Path:
    n = 1
    while folder.with_name(f"{folder.name}.prev-{n}").exists():
        n += 1
    dest = folder.with_name(f"{folder.name}.prev-{n}")
    shutil.move(str(folder), str(dest))
    return dest


# ---------------------------------------------------------------------------------- run


def run(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the stages in order; returns ``{stage: "skipped" | "ran" | "not reached"}``."""
    root = cfg.root / cfg.name
    stages = plan(cfg)
    order = list(stages)
    kinds = list(dict.fromkeys(_kind(n) for n in order))
    if cfg.start is not None and cfg.start not in kinds:
        raise TridentError(f"--from {cfg.start}: this pipeline's stages are {', '.join(kinds)}")
    # With seeds, --from and --until name a stage of every seed: positions are by stage kind.
    first = kinds.index(cfg.start) if cfg.start else 0
    last = kinds.index(cfg.until) if cfg.until else len(kinds) - 1
    if first > last:
        raise TridentError(f"--from {cfg.start} comes after --until {cfg.until}: nothing to run")
    position = {name: kinds.index(_kind(name)) for name in order}
    for name in [n for n in order if position[n] < first]:  # checked before anything moves or runs
        if _finished(root / name) is None:
            raise TridentError(f"--from {cfg.start}: stage {name} before it has not finished in '{root}'; run without "
                               f"--from (finished stages are skipped) or --from {name}")
    root.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, root / "pipeline.yaml")
    print(f"pipeline '{root}': stages {' -> '.join(n for n in order if first <= position[n] <= last)}", flush=True)
    status: dict[str, str] = {}
    t_all = time.perf_counter()
    for name in order:
        i = position[name]
        folder = root / name
        if i < first:
            status[name] = "skipped"
            continue
        if i > last:
            status[name] = "not reached"
            continue
        done = _finished(folder)
        if done is not None and cfg.start is None:
            key = _changed(done["config"], _plain(stages[name]))
            if key is not None:
                raise TridentError(f"stage {name} finished in '{folder}' with another {key} than this configuration "
                                   f"asks for; redo it and the stages after it with --from {name}, or give another "
                                   f"name= to start a new run")
            print(f"[{name}] finished earlier ({done['result']}); skipped", flush=True)
            status[name] = "skipped"
            continue
        if cfg.start is not None and folder.exists() and i >= first:
            print(f"[{name}] redone: the earlier folder is kept as {_move_aside(folder)}", flush=True)
        print(f"[{name}] running in {folder}", flush=True)
        t0 = time.perf_counter()
        what = _runner(name, stages[name], stages, root)()
        seconds = time.perf_counter() - t0
        _mark(folder, name, stages[name], seconds, what)
        print(f"[{name}] done in {seconds / 60:.1f} min: {what}", flush=True)
        status[name] = "ran"
    print(f"pipeline '{root}' done in {(time.perf_counter() - t_all) / 60:.1f} min: "
          + ", ".join(f"{k} {v}" for k, v in status.items()), flush=True)
    if status.get("eval") in ("ran", "skipped"):
        print(f"report: {root / 'eval' / 'report.md'}")
    evals = [root / seed_folder(s) / "eval" / "eval.json" for s in cfg.seeds]
    if cfg.seeds and all(p.is_file() for p in evals):
        from .seeds import write_seeds

        print(f"seeds: {write_seeds(root, dict(zip(cfg.seeds, evals)))}")
    return status


def demo_config() -> Path:
    """``configs/demo.yaml`` of the repository this package was installed from (README: ``pip install -e``)."""
    path = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    if not path.is_file():
        raise TridentError(f"the demo's configuration '{path}' is missing: `trident demo` runs from a clone of the "
                           f"repository installed with `pip install -e .`; or run `trident pipeline --config FILE`")
    return path
