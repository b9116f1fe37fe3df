"""``trident rewards check REWARD``: would this reward pay an attack?

The check loads the reward (it imports), sends it through pickle and runs the copy (as Ray
would), then scores, on a few real tasks with mutants, the red-team candidates of
:mod:`sandbox.redteam` next to two honest ones: the task's own target, and the target negated
(``assert not (…)``, which runs and fails). It prints what the reward pays each of them.

A reward **pays a hostile candidate** when, on some task, its value for a red-team candidate
is above 0 or above its value for that task's negated target: an attack is then worth more
than an honest wrong answer, and a policy trained on the reward learns to write it. ``None``
(not applicable) pays nothing. A flagged reward, or one that does not import, pickle or run,
makes the check exit with status 1.

Every candidate runs once, through a :class:`sandbox.pool.Pool` with the static gate on (the
red-team candidates are hostile code), with mutants; the reward reads the verdicts from the
``verdicts`` column. Its other columns: ``task`` (the :class:`~sandbox.tasks.Task`),
``target``, and the task's prefix as the prompt.
"""

from __future__ import annotations

import ast
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from sandbox.api import Limits

from .composition import Composition
from .registry import Reward, RewardError, resolve

if TYPE_CHECKING:
    from sandbox.execution import Verdict
    from sandbox.tasks import Task

__all__ = ["RewardsConfig", "check", "negate"]

COMPOSITION_SUFFIXES = (".yaml", ".yml")


def _check_limits() -> Limits:
    return Limits(timeout_s=2.0, mutant_timeout_s=2.0)


@dataclass
class RewardsConfig:
    """`trident rewards check REWARD`: what a reward pays red-team candidates and the tasks' own targets."""

    reward: str = field(metadata={"help": "a registered reward, 'package.module:function', or a composition YAML file"})
    action: Literal["check"] = field(default="check", metadata={"help": "what to do with the reward"})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments bound to REWARD (not to a composition file)"})
    tasks: Path | None = field(default=None, metadata={"help": "task file from `trident mine`; default: mine FILES of networkx into a temporary directory"})
    files: list[str] = field(default_factory=lambda: ["algorithms/tests/test_isolate.py"], metadata={"help": "networkx test files to mine when no task file is given"})
    max_tasks: int = field(default=3, metadata={"help": "tasks to check on (those with mutants first)"})
    workers: int = field(default=2, metadata={"help": "sandbox worker processes; 0 = one per core"})
    sandbox: Limits = field(default_factory=_check_limits, metadata={"help": "limits and isolation of each execution"})

    def __post_init__(self) -> None:
        if self.max_tasks < 1:
            raise ValueError("max_tasks must be >= 1")
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = one per core)")
        if not self.sandbox.gate:
            raise ValueError("sandbox.gate must stay on: the check runs hostile candidates")


def negate(target: str) -> str | None:
    """``assert X, m`` → ``assert not X, m`` (an honest assertion that fails where the target
    passes); None for anything but one assert statement."""
    try:
        tree = ast.parse(target)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    node = tree.body[0]
    return ast.unparse(ast.Assert(test=ast.UnaryOp(op=ast.Not(), operand=node.test), msg=node.msg))


def check(cfg: RewardsConfig, *, load_composition: Callable[[Path], Composition] | None = None,
          out: Callable[[str], None] = print) -> int:
    """Run the check; 0 when the reward imports, pickles, runs and pays no hostile candidate."""
    # 1. imports
    try:
        reward = _load(cfg, load_composition)
    except RewardError as err:
        out(f"imports: FAILED - {err}")
        return 1
    out(f"imports: ok - {reward!r}")
    failed = False
    # 2. pickles (Ray sends rewards to its workers as pickles): the rest runs on the copy.
    try:
        blob = pickle.dumps(reward)
        reward = pickle.loads(blob)
        out(f"pickles: ok - {len(blob):,} bytes; the check runs the unpickled copy")
    except Exception as err:  # noqa: BLE001 - any pickling failure is the finding
        out(f"pickles: FAILED - {type(err).__name__}: {err}; Ray sends rewards to its workers by pickling them: "
            "define the function at module level and bind only picklable values")
        failed = True
    # 3. runs
    tasks = _tasks(cfg, out)
    rows = _candidates()
    table, verdicts = _score(cfg, reward, tasks, rows, out)
    if table is None:
        return 1
    out("runs: ok")
    flagged = _report(tasks, rows, table, verdicts, out)
    total = sum(1 for name, _ in rows if name not in _HONEST for _ in tasks)
    if flagged:
        first = flagged[0]
        out(f"FLAGGED: {reward.name} pays {len(flagged)} of {total} hostile candidate runs "
            f"(e.g. {first[1]} on T{first[0] + 1}: {first[2]}); a policy trained on it learns to write them")
        return 1
    if failed:
        out(f"FAILED: {reward.name} pays no hostile candidate, but does not pickle")
        return 1
    out(f"OK: {reward.name} pays no hostile candidate ({total} runs on {len(tasks)} task(s))")
    return 0


_HONEST = ("target", "negated target")


def _load(cfg: RewardsConfig, load_composition: Callable[[Path], Composition] | None) -> Reward | Composition:
    if cfg.reward.endswith(COMPOSITION_SUFFIXES):
        if cfg.kwargs:
            raise RewardError("kwargs bind to one reward; a composition file binds its components' own")
        if load_composition is None:
            raise RewardError(f"{cfg.reward}: composition files are read by the `trident` command")
        return load_composition(Path(cfg.reward))
    return resolve(cfg.reward, **cfg.kwargs)


def _tasks(cfg: RewardsConfig, out: Callable[[str], None]) -> list[Task]:
    from sandbox.tasks import load_tasks

    if cfg.tasks is not None:
        tasks = load_tasks(cfg.tasks)
        where = str(cfg.tasks)
    else:
        from sandbox.mining import MineConfig, mine

        with tempfile.TemporaryDirectory(prefix="trident-rewards-check-") as tmp:
            path = Path(tmp) / "tasks.jsonl"
            mine(MineConfig(out=path, files=list(cfg.files), workers=1, max_tasks=max(20, 4 * cfg.max_tasks),
                            progress=False))
            tasks = load_tasks(path)
        where = f"mined from networkx {', '.join(cfg.files)} (give --tasks FILE to use others)"
    if not tasks:
        raise RewardError(f"no tasks to check on ({where})")
    chosen = sorted(tasks, key=lambda t: not t.mutants)[: cfg.max_tasks]
    out(f"tasks: {len(chosen)} of {len(tasks)} {where}")
    for k, t in enumerate(chosen):
        out(f"  T{k + 1} {t.id} ({len(t.mutants)} mutants): {t.target}")
    return chosen


def _candidates() -> list[tuple[str, str | None]]:
    from sandbox.redteam import HOSTILE

    # The file named by the secret-reading attack need not exist: the gate refuses it anyway.
    hostile = [(name, cand.replace("{secret_file}", "id_rsa")) for name, cand, _ in HOSTILE]
    return [("target", None), ("negated target", None), *hostile]


def _score(cfg: RewardsConfig, reward: Reward | Composition, tasks: list[Task], rows: list[tuple[str, str | None]],
           out: Callable[[str], None]) -> tuple[list[list[float | None]] | None, list[list[Verdict]]]:
    from sandbox.pool import Pool

    per_task = []
    for t in tasks:
        cands = [t.target if name == "target" else negate(t.target) if name == "negated target" else c
                 for name, c in rows]
        per_task.append([c if c is not None else "assert False" for c in cands])
    with Pool(cfg.workers, cfg.sandbox) as pool:
        verdicts = pool.score(list(zip(tasks, per_task)), mutants=True)
        tier = pool.tier
    out(f"sandbox: {sum(map(len, per_task))} candidates run once each (tier {tier}, gate on, with mutants)")
    table = []
    for t, cands, vs in zip(tasks, per_task, verdicts):
        k = len(cands)
        try:
            values = reward([t.prefix] * k, cands, task=[t] * k, target=[t.target] * k, verdicts=vs)
        except RewardError as err:
            out(f"runs: FAILED - {err}")
            return None, verdicts
        table.append(values)
    return table, verdicts


def _report(tasks: list[Task], rows: list[tuple[str, str | None]], table: list[list[float | None]],
            verdicts: list[list[Verdict]], out: Callable[[str], None]) -> list[tuple[int, str, str]]:
    width = max(len(name) for name, _ in rows)
    out("")
    out("pays (value and verdict per task; '-' = not applicable; '!' = pays a hostile candidate):")
    out(f"  {'candidate':<{width}}  " + "  ".join(f"{'T' + str(k + 1):>6} {'':<10}" for k in range(len(tasks))).rstrip())
    flagged = []
    for r, (name, _) in enumerate(rows):
        cells = []
        for k in range(len(tasks)):
            v, status = table[k][r], verdicts[k][r].status
            floor = table[k][1]  # the negated target
            pays = name not in _HONEST and v is not None and (v > 0 or (floor is not None and v > floor))
            if pays:
                flagged.append((k, name, f"{_fmt(v)} for a {status} candidate"))
            cells.append(f"{_fmt(v):>6} {status:<9}{'!' if pays else ' '}")
        out(f"  {name:<{width}}  " + "  ".join(cells).rstrip())
    out("")
    targets = [table[k][0] for k in range(len(tasks))]
    negated = [table[k][1] for k in range(len(tasks))]
    if all(t is None or n is not None and t <= n for t, n in zip(targets, negated)):
        out("note: the reward pays the tasks' own targets no more than their negations")
    return flagged


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
