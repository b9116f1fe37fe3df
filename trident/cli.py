"""The ``trident`` command: one subcommand per job.

Every job reads its configuration the same way: dataclass defaults < ``--config FILE`` (YAML) <
the job's flags < ``key=value`` overrides. ``trident JOB --help`` lists every key.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import ConfigError, dump_config, field_help, load_config


def _run_mine(cfg: Any) -> int:
    from sandbox.mining import mine

    dump_config(cfg, cfg.out.with_name(cfg.out.name.removesuffix(".jsonl") + ".config.yaml"))
    summary = mine(cfg)
    print(f"mined {summary['package']} {summary['package_version']}: kept {summary['kept']} of "
          f"{summary['candidate_slots']} candidate slots (yield {summary['yield']:.1%}); "
          f"{summary['killing_mutant_share']:.1%} with a killing mutant; splits {summary['splits']}")
    top = list(summary["drops"].items())[:6]
    if top:
        print("dropped: " + ", ".join(f"{reason} {n}" for reason, n in top))
    print(f"tasks: {cfg.out}\nsummary: {cfg.summary_path}")
    return 0


def _score_config() -> type:
    from sandbox.api import ScoreConfig

    return ScoreConfig


def _run_score(cfg: Any) -> int:
    from sandbox.api import score_file

    counts = score_file(cfg.tasks, cfg.candidates, cfg.out, mutants=cfg.mutants, progress=cfg.progress,
                        limits=cfg.sandbox, workers=cfg.workers)
    print(f"scored {sum(counts.values())} candidates: " + json.dumps(counts, sort_keys=True) + f"\nverdicts: {cfg.out}")
    return 0


def _observe_config() -> type:
    from sandbox.observe_job import ObserveConfig

    return ObserveConfig


def _run_observe(cfg: Any) -> int:
    from sandbox.observe_job import observe_job

    rows = observe_job(cfg)
    for r in rows:
        o = r["observation"]
        what = o["text"] if o["kind"] != "none" else o.get("reason", "")
        print(f"{r['task_id']}  {r['expression']}  ->  {o['kind']}: {what}")
    observed = sum(r["observation"]["kind"] != "none" for r in rows)
    print(f"observed {observed} of {len(rows)} expressions" + (f"\nobservations: {cfg.out}" if cfg.out else ""))
    return 0 if observed else 1


def _sft_config() -> type:
    from pretrain.sft import SFTConfig

    return SFTConfig


def _run_sft(cfg: Any) -> int:
    from pretrain.sft import train

    train(cfg)
    return 0


def _seqkd_config() -> type:
    from pretrain.seqkd import SeqKDConfig

    return SeqKDConfig


def _run_seqkd(cfg: Any) -> int:
    from pretrain.seqkd import run

    run(cfg)
    return 0


def _rewards_config() -> type:
    from rewards.check import RewardsConfig

    return RewardsConfig


def _run_rewards(cfg: Any) -> int:
    from rewards.check import check
    from rewards.composition import Composition, CompositionConfig

    def load_composition(path: Path) -> Composition:
        return Composition.from_config(load_config(CompositionConfig, path))

    return check(cfg, load_composition=load_composition)


def _rl_config() -> type:
    from rl.config import RLConfig

    return RLConfig


def _run_rl(cfg: Any) -> int:
    from rl.driver import run

    run(cfg)
    return 0


def _eval_config() -> type:
    from .evaluation import EvalJobConfig

    return EvalJobConfig


def _run_eval(cfg: Any) -> int:
    from .evaluation import run

    run(cfg)
    return 0


def _pipeline_config() -> type:
    from .pipeline import PipelineConfig

    return PipelineConfig


def _run_pipeline(cfg: Any) -> int:
    from .pipeline import run

    run(cfg)
    return 0


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    config: Callable[[], type]  # lazily imported config class
    run: Callable[[Any], int]
    flags: tuple[tuple[str, str, str], ...] = ()  # (flag, config key, help)
    # (config key, help, choices or None): positional arguments, before the key=value overrides
    positionals: tuple[tuple[str, str, tuple[str, ...] | None], ...] = ()
    # (flag, config key, help): a flag given once per entry of a name -> path mapping, as [NAME=]PATH
    named: tuple[tuple[str, str, str], ...] = ()
    # (flag, config key, help): a flag given once per entry of a list of strings
    repeated: tuple[tuple[str, str, str], ...] = ()


def _mine_config() -> type:
    from sandbox.mining import MineConfig

    return MineConfig


JOBS = (
    Job("mine", "mine verified assertion tasks from an installed library's test suite", _mine_config, _run_mine,
        (("--package", "package", "installed package to mine (default: networkx)"),
         ("--out", "out", "task file to write"),
         ("--max-files", "max_files", "mine at most this many test files"),
         ("--max-tasks", "max_tasks", "keep at most this many tasks"))),
    Job("score", "run candidate assertions against tasks and their mutants", _score_config, _run_score,
        (("--tasks", "tasks", "task file"), ("--candidates", "candidates", "candidate JSONL"), ("--out", "out", "verdict JSONL"))),
    Job("observe", "observe what expressions evaluate to at tasks' slots on the unmutated library",
        _observe_config, _run_observe,
        (("--tasks", "tasks", "task file"), ("--task", "task", "one task id"),
         ("--expressions", "expressions", 'JSONL of {"task_id", "expression"}'), ("--out", "out", "JSONL to write")),
        repeated=(("--expr", "expr", "an expression to observe at --task; repeat for several"),)),
    Job("rewards", "check a reward: what it pays red-team candidates and the tasks' own targets",
        _rewards_config, _run_rewards, (("--tasks", "tasks", "task file (default: mine a few networkx tasks)"),),
        (("action", "what to do: check", ("check",)),
         ("reward", "a registered reward, package.module:function, or a composition YAML file", None))),
    Job("sft", "stage 1: train the masked-diffusion model with its critic head", _sft_config, _run_sft,
        (("--tasks", "tasks", "task file from `trident mine`"), ("--out", "out", "run folder"))),
    Job("seqkd", "sequence-level KD data: a teacher's best of N samples per task, for `trident sft sequence_kd.path=`",
        _seqkd_config, _run_seqkd,
        (("--teacher", "teacher", "teacher model directory"), ("--tasks", "tasks", "task file"), ("--out", "out", "output JSONL"))),
    Job("rl", "stage 2: actor-critic RL from execution on Ray (RAY_ADDRESS when set, else a local Ray)", _rl_config,
        _run_rl, (("--model", "model", "SFT model directory to start from"), ("--tasks", "tasks", "task file"),
                  ("--out", "out", "run folder"))),
    Job("eval", "evaluate models against baselines on a split, with bootstrap 95% intervals and a report",
        _eval_config, _run_eval, (("--split", "split", "split to evaluate on (valid or test)"),
                                  ("--tasks", "tasks", "task file"), ("--out", "out", "folder for eval.json, report.md, plots/")),
        named=(("--model", "models", "model directory, [NAME=]DIR; repeat to compare (the first is the reference)"),)),
    Job("pipeline", "run the staged pipeline mine -> tokenizer -> [teacher ->] sft -> rl -> eval", _pipeline_config,
        _run_pipeline, (("--from", "start", "(re)run from this stage on; earlier stages must be finished"),
                        ("--until", "until", "stop after this stage"), ("--name", "name", "run name: runs/NAME/"))),
    Job("demo", "the embedded default: the whole pipeline on a networkx subset, tiny models, local Ray, CPU "
        "(configs/demo.yaml)", _pipeline_config, _run_pipeline,
        (("--from", "start", "(re)run from this stage on"), ("--until", "until", "stop after this stage"))),
)


def _named_paths(specs: list[str], flag: str) -> dict[str, str]:
    """``[NAME=]PATH`` arguments as a name -> path mapping; a path's name defaults to its run folder
    (``runs/x/rl/final`` -> ``rl``)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        p = Path(path)
        name = name or (p.parent.name if p.name == "final" else p.name)
        if name in out:
            raise ConfigError(f"{flag} {spec}: the name {name!r} is taken by {out[name]}; name them apart with NAME=DIR")
        out[name] = path
    return out


def _literal(text: str) -> str:
    """A help text argparse shows as written (it %-formats help strings)."""
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trident",
        description="Train models to write unit-test assertions; improve them with RL from real execution.",
    )
    sub = parser.add_subparsers(dest="job", metavar="JOB")
    for job in JOBS:
        rows = field_help(job.config())
        width = max(len(k) for k, _, _ in rows)
        epilog = "configuration keys (set with --config FILE or key=value):\n" + "\n".join(
            f"  {k:<{width}}  {t}: {h}" for k, t, h in rows
        )
        # argparse %-formats every help= text (not descriptions or epilogs): a literal % is doubled
        p = sub.add_parser(job.name, help=_literal(job.help), description=job.help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", type=Path, help="YAML file of configuration keys")
        for key, text, choices in job.positionals:
            p.add_argument(f"pos:{key}", metavar=key.upper(), choices=choices, help=_literal(f"{text} (key: {key})"))
        for flag, key, text in job.flags:
            p.add_argument(flag, dest=f"flag:{key}", metavar=key.upper(), help=_literal(f"{text} (key: {key})"))
        for flag, key, text in job.named:
            p.add_argument(flag, dest=f"named:{key}", action="append", metavar="[NAME=]PATH", help=_literal(f"{text} (key: {key})"))
        for flag, key, text in job.repeated:
            p.add_argument(flag, dest=f"named:{key}", action="append", metavar=key.upper(), help=_literal(f"{text} (key: {key})"))
        p.add_argument("overrides", nargs="*", default=[], metavar="key=value", help="configuration overrides, applied last")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come before and after the flags: argparse hands the later ones
    # back as unknown, and they join the rest; anything else unknown is an error.
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(getattr(args, "overrides", None) or []) + extra
    if args.job is None:
        parser.print_help()
        return 2
    job = next(j for j in JOBS if j.name == args.job)
    flags = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("flag:") and v is not None}
    # Flags arrive as text; route them through the override parser so they are type-checked too.
    overrides = [f"{k}={v}" for k, v in flags.items()] + list(args.overrides)
    positionals = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("pos:")}
    try:
        for flag, key, _ in job.named:
            specs = getattr(args, f"named:{key}")
            if specs:
                positionals[key] = _named_paths(specs, flag)
        for _, key, _ in job.repeated:
            if getattr(args, f"named:{key}"):
                positionals[key] = list(getattr(args, f"named:{key}"))
        if job.name == "demo" and args.config is None:
            from .pipeline import demo_config

            args.config = demo_config()
        cfg = load_config(job.config(), args.config, overrides, base=positionals)
        return job.run(cfg)
    except ConfigError as err:
        print(f"trident {job.name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trident {job.name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - user-facing errors from the layers below
        from pretrain.errors import PretrainError
        from rewards.registry import RewardError
        from rl.learner import RLError
        from sandbox.mining import MiningError
        from sandbox.tasks import TaskFormatError
        from sandbox.zygote import SandboxError

        from .errors import TridentError

        if isinstance(err, (MiningError, TaskFormatError, SandboxError, RewardError, PretrainError, RLError, TridentError)):
            print(f"trident {job.name}: error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
