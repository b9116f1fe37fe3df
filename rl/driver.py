"""`trident rl`: the RL loop on Ray — rollouts, sandbox rewards, learner; overlap, faults, resume.

One iteration k: the rollout actors sample ``samples`` assertions for each of the iteration's
tasks (a fixed share of tasks per actor, a seed per iteration and share, so a lost share is
redone identically); the candidates go to the sandbox actors, one unit per task; verdicts become rewards (``rl.rewarding.compose``); the learner actor updates on the batch. With
``overlap`` the driver produces iteration k+1 — with the weights the rollout actors hold, one
version behind — while the learner trains on k, and syncs the new weights once it is done.

Run folder ``out/``: ``config.yaml``, ``metrics.jsonl`` (+ TensorBoard events), ``samples.jsonl``
(every candidate, its verdict and reward), ``checkpoints/iter_N/`` (learner state, driver state)
with a ``latest`` pointer (both written atomically), ``final/`` (the policy, loadable like an SFT
model) and ``summary.json``. A run whose folder holds checkpoints resumes from the latest: the
next iteration, the same next batch of tasks and seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from common.stats import auroc
from pretrain.metrics import MetricLogger
from pretrain.sampler import is_assertion
from pretrain.sft import Cursor
from rewards.composition import Composition
from sandbox.tasks import Task, load_tasks

from .config import RLConfig
from .learner import RLError
from .rewarding import compose
from .rollout import Rollouts

__all__ = ["run", "Batch"]

CHECKPOINTS, LATEST, FINAL = "checkpoints", "latest", "final"
LEARNER_FILE = "learner.pt"  # a checkpoint's learner state: model, critic, optimizer, RNG


class Batch:
    """One iteration's rollouts and rewards, with the timings and metrics of producing them."""

    def __init__(self, iteration: int, rollouts: list[Rollouts], rewards: list[torch.Tensor],
                 metrics: dict[str, float], records: list[dict[str, Any]],
                 start_rewards: list[torch.Tensor] | None = None) -> None:
        self.iteration, self.rollouts, self.rewards, self.metrics, self.records = iteration, rollouts, rewards, metrics, records
        self.start_rewards = start_rewards  # learner.credit=split: the reward of each sample's start


def _plain(cfg: RLConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg), default=str))


def _check_cpus(cfg: RLConfig, *, local: bool) -> None:
    """Every actor takes one CPU; on a Ray with fewer they would wait for one forever. A local
    Ray this run started is refused with the fix; a cluster (an autoscaler may add nodes) warned of."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 0))
    if cpus >= cfg.actors:
        return
    r = cfg.ray
    what = (f"the Ray has {cpus:g} CPUs and this run's actors take {cfg.actors}, one each ({cfg.learner.workers} "
            f"learner, {r.rollout_workers} rollout, {r.sandbox_workers} sandbox)")
    if local:
        raise RLError(f"{what}: they would wait forever; lower ray.rollout_workers, ray.sandbox_workers or "
                      f"learner.workers, or raise ray.num_cpus (logical CPUs may exceed the cores)")
    print(f"rl: warning: {what}; they wait until the cluster has the CPUs (add nodes, or lower the workers)",
          flush=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Run:
    def __init__(self, cfg: RLConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)

    # ------------------------------------------------------------------ setup

    def _check(self) -> Path | None:
        """The checkpoint to resume from, or None; refuses what cannot run, before any Ray starts."""
        cfg = self.cfg
        if not (Path(cfg.model) / "trident_model.json").is_file():
            raise RLError(f"model '{cfg.model}' is not a Trident model directory (no trident_model.json); give the "
                          f"final/ folder of a `trident sft` run as model=")
        if not Path(cfg.tasks).is_file():
            raise RLError(f"task file '{cfg.tasks}' does not exist; run `trident mine` first or give tasks=")
        latest = self.out / CHECKPOINTS / LATEST
        if not latest.is_file():
            return None
        ckpt = self.out / CHECKPOINTS / latest.read_text().strip()
        if not cfg.resume:
            raise RLError(f"'{self.out}' already holds an RL run (checkpoint {ckpt.name}); resume it (resume=true) or "
                          f"give another out=: nothing there is overwritten")
        if not (ckpt / "driver.json").is_file() or not (ckpt / LEARNER_FILE).is_file():
            raise RLError(f"checkpoint '{ckpt}' named by '{latest}' is incomplete; point '{latest}' at an older "
                          f"iter_N folder or start in another out=")
        saved = json.loads((ckpt / "driver.json").read_text())["config"]
        mine = _plain(cfg)
        for key in ("model", "tasks", "tasks_per_iteration", "max_tasks", "mutants_only", "seed", "rollout", "rewards",
                    "select_tasks"):
            if saved.get(key) != mine.get(key):
                raise RLError(f"'{self.out}' holds a run with a different {key} ({saved.get(key)!r} vs "
                              f"{mine.get(key)!r}); resume with the same {key}, or give another out=")
        return ckpt

    def _tasks(self) -> tuple[list[Task], list[Task], list[Task]]:
        """(the tasks RL learns on, the training tasks edit starts are retrieved from, the held-out
        tasks checkpoints are selected on). With ``mutants_only`` RL learns on the tasks with
        mutants, but starts come from every training task, as in the evaluation: the candidates a
        task sees are those it is scored with. ``select_tasks`` holds out whole test files (in the
        order of a hash of their names, the same for every seed) of the tasks RL would learn on,
        as the splits do: no held-out task shares a file with one RL learns on."""
        pool = [t for t in load_tasks(self.cfg.tasks) if t.split == "train"]
        if not pool:
            raise RLError(f"task file '{self.cfg.tasks}' has no train split to learn from; mine more test files")
        train = pool
        if self.cfg.mutants_only:
            train = [t for t in pool if t.mutants]
            if not train:
                raise RLError(f"task file '{self.cfg.tasks}' has no training task with mutants; mine with "
                              f"mutants_per_task > 0 (trident mine --help) or set mutants_only=false")
        held: list[Task] = []
        if self.cfg.select_tasks:
            modules = sorted({t.test_module for t in train}, key=lambda m: hashlib.sha256(m.encode()).hexdigest())
            out: set[str] = set()
            for m in modules:
                if sum(1 for t in train if t.test_module in out) >= self.cfg.select_tasks:
                    break
                out.add(m)
            held = [t for t in train if t.test_module in out]
            train = [t for t in train if t.test_module not in out]
            if not train:
                raise RLError(f"select_tasks={self.cfg.select_tasks} holds out every training task's file, leaving "
                              f"none to learn on; lower select_tasks (or 0 for none)")
        return (train[:self.cfg.max_tasks] if self.cfg.max_tasks else train), pool, held

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict[str, Any]:
        import ray

        from .cluster import LearnerGroup, RolloutPool, SandboxPool, connect

        cfg = self.cfg
        resume = self._check()
        summary_path = self.out / "summary.json"
        final = self.out / FINAL
        if (self.out / FINAL / "trident_model.json").is_file() and summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            if summary.get("iterations", 0) >= cfg.iterations:
                print(f"rl: '{self.out}' is finished ({summary['iterations']} iterations); model: {self.out / FINAL} "
                      f"(raise iterations to train on, or give another out=)")
                return summary
        composition = Composition.from_config(cfg.rewards)
        train, pool, held = self._tasks()
        self.out.mkdir(parents=True, exist_ok=True)
        import yaml

        _write_atomic(self.out / "config.yaml", yaml.safe_dump(_plain(cfg), sort_keys=False))

        r = cfg.ray
        how, joined, local = connect(r.address, r.num_cpus or max(os.cpu_count() or 1, cfg.actors))
        if held:
            print(f"rl: {len(held)} training tasks of {len({t.test_module for t in held})} test files held out to "
                  f"select the checkpoint on (select_tasks)")
        print(f"rl: {len(train)} training tasks, {cfg.iterations} iterations of {cfg.tasks_per_iteration} tasks x "
              f"{cfg.rollout.samples} samples on {how}")
        actors: list[Any] = []
        learner = None
        try:
            _check_cpus(cfg, local=local)
            learner = LearnerGroup(str(cfg.model), cfg.learner, seed=cfg.seed)
            rollouts = RolloutPool(r.rollout_workers, str(cfg.model), cfg.rollout, pool, r.retries, r.rollout_threads)
            sandbox = SandboxPool(r.sandbox_workers, cfg.sandbox, r.retries)
            actors = [rollouts, sandbox]
            cursor, start = Cursor(len(train), cfg.seed), 0
            if resume is not None:
                state = json.loads((resume / "driver.json").read_text())
                learner.load_state(torch.load(resume / LEARNER_FILE, map_location="cpu", weights_only=False))
                cursor = Cursor(len(train), cfg.seed, **state["cursor"])
                start = state["iteration"]
                _drop_rows(self.out / "metrics.jsonl", "step", start)
                _drop_rows(self.out / "samples.jsonl", "iteration", start)
                print(f"rl: resuming '{self.out}' at iteration {start} from {resume.name}")
            it, history, wall = self._loop(learner, rollouts, sandbox, composition, train, cursor, start, held)
            chosen = self._selected() if held else None
            if chosen is None:
                self._save_final(ray.get(learner.lead.weights.remote()))
            else:
                state = torch.load(chosen[0] / LEARNER_FILE, map_location="cpu", weights_only=False)
                self._save_final(state["model"])
            summary = self._summary(it, history, wall, rollouts, sandbox)
            if chosen is not None:
                summary["selected"] = chosen[1]
                print(f"rl: final/ is the checkpoint of iteration {chosen[1]['iteration']}: held-out pass "
                      f"{chosen[1]['pass']:.3f} and kill {chosen[1]['kill']:.3f} (SFT {chosen[1]['reference_pass']:.3f} "
                      f"and {chosen[1]['reference_kill']:.3f})")
            _write_atomic(summary_path, json.dumps(summary, indent=1) + "\n")
        finally:
            for pool in actors:
                pool.shutdown()
            if learner is not None:
                learner.shutdown()
            if joined:
                ray.shutdown()
        print(f"rl: {it} iterations in {summary['wall_s']:.0f} s; model: {final}")
        return summary

    def _save_final(self, weights: dict[str, torch.Tensor]) -> None:
        """``final/``: the policy, written here (the learner may run on another node), atomically."""
        from pretrain.model import DiffusionLM

        model = DiffusionLM.load(self.cfg.model)
        model.load_state_dict(weights)
        tmp = self.out / ".final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save(tmp)
        final = self.out / FINAL
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

    def _loop(self, learner, rollouts, sandbox, composition: Composition, train: list[Task], cursor: Cursor,
              start: int, held: list[Task] = ()) -> tuple[int, list[dict[str, float]], float]:
        """Iterations ``start``.. until ``iterations`` or the time budget; returns the iteration
        reached, the metrics of this session's iterations and the wall time."""
        import ray
        from tqdm import tqdm

        cfg = self.cfg
        info = ray.get(learner.lead.info.remote())
        version, bias = info["updates"], info["mask_logit_bias"]
        rollouts.set_weights(learner.lead.weights.remote(), version, bias)
        t_run = time.perf_counter()
        deadline = None if cfg.max_minutes is None else t_run + cfg.max_minutes * 60
        history: list[dict[str, float]] = []
        it = start
        if start >= cfg.iterations:
            return it, history, 0.0
        reference = None
        if held:  # the SFT model's held-out rates: from the latest checkpoint, else scored now
            chosen = self._selected()
            reference = ({"pass": chosen[1]["reference_pass"], "kill": chosen[1]["reference_kill"]} if chosen
                         else self._held_out(rollouts, sandbox, held))
        log = MetricLogger(self.out)
        samples = open(self.out / "samples.jsonl", "a", encoding="utf-8")
        bar = tqdm(total=cfg.iterations, initial=start, desc="rl", unit="it", disable=not cfg.progress, dynamic_ncols=True)
        # cursor_at[i]: the data cursor before batch i was drawn (what a checkpoint after i-1 stores)
        cursor_at = {start: cursor.state()}
        batch = self._produce(start, train, cursor, rollouts, sandbox, composition)
        cursor_at[start + 1] = cursor.state()
        try:
            while True:
                t0 = time.perf_counter()
                train_refs = learner.train(batch.rollouts, batch.rewards, batch.start_rewards)
                last = it + 1 >= cfg.iterations or (deadline is not None and time.perf_counter() > deadline)
                nxt = None
                if cfg.overlap and not last:  # k+1 is sampled with the weights before k's update
                    nxt = self._produce(it + 1, train, cursor, rollouts, sandbox, composition)
                    cursor_at[it + 2] = cursor.state()
                metrics = learner.metrics(train_refs)
                t_learned = time.perf_counter()
                version += 1
                rollouts.set_weights(learner.lead.weights.remote(), version, bias)
                if not cfg.overlap and not last:
                    nxt = self._produce(it + 1, train, cursor, rollouts, sandbox, composition)
                    cursor_at[it + 2] = cursor.state()
                wall = time.perf_counter() - t0
                metrics.update(batch.metrics)
                metrics["time/iteration_s"] = wall
                metrics["time/wait_s"] = max(0.0, wall - metrics.get("time/learn_s", 0.0))
                metrics["time/wait_frac"] = metrics["time/wait_s"] / wall if wall > 0 else 0.0
                metrics["time/sync_s"] = time.perf_counter() - t_learned if cfg.overlap else 0.0
                metrics["perf/samples_per_s"] = sum(len(x) for x in batch.rollouts) / wall if wall > 0 else 0.0
                metrics["rl/staleness"] = float(version - 1 - min(x.version for x in batch.rollouts))
                metrics["ray/actors_replaced"] = float(rollouts.replaced + sandbox.replaced)
                metrics["ray/units_redone"] = float(rollouts.redone + sandbox.redone)
                select = None
                if held and ((it + 1) % cfg.checkpoint_every == 0 or nxt is None):
                    # the rollout actors hold the weights the checkpoint below saves
                    t_sel = time.perf_counter()
                    rates = self._held_out(rollouts, sandbox, held)
                    select = {"iteration": it + 1, **rates, "score": rates["pass"] + rates["kill"],
                              "reference_pass": reference["pass"], "reference_kill": reference["kill"]}
                    metrics.update({"select/pass": rates["pass"], "select/kill": rates["kill"],
                                    "select/gain": select["score"] - reference["pass"] - reference["kill"],
                                    "time/select_s": time.perf_counter() - t_sel})
                log.log(it, metrics)
                for rec in batch.records:
                    samples.write(json.dumps({"iteration": it, **rec}) + "\n")
                samples.flush()
                history.append(metrics)
                it += 1
                bar.update(1)
                bar.set_postfix(reward=f"{metrics.get(f'rewards/{composition.name}/mean', float('nan')):.3f}",
                                pass_=f"{metrics.get('rl/pass_rate', float('nan')):.2f}")
                if it % cfg.checkpoint_every == 0 or nxt is None:
                    self._checkpoint(learner, it, cursor_at[it], version, select)
                if nxt is None:
                    return it, history, time.perf_counter() - t_run
                batch = nxt
        finally:
            bar.close()
            log.close()
            samples.close()

    def _held_out(self, rollouts, sandbox, held: list[Task]) -> dict[str, float]:
        """The evaluation's greedy system on the held-out tasks with the rollout actors' weights:
        the share that passes and the mean share of mutants killed (tasks with mutants); an
        ``infra`` verdict leaves its task out."""
        items = [(t, [x]) for t, x in zip(held, rollouts.greedy(held))]
        if self.cfg.completion:  # as the evaluation scores the model
            items = [(t, row) for (t, _), row in zip(items, sandbox.complete(items))]
        rows = sandbox.score(items, mutants=True)
        ok = [(t, row[0]) for t, row in zip(held, rows) if row[0].status != "infra"]
        mutated = [(t, v) for t, v in ok if t.mutants]
        return {"pass": sum(v.passed for _, v in ok) / max(1, len(ok)),
                "kill": sum(len(v.kills) / len(t.mutants) for t, v in mutated) / max(1, len(mutated))}

    def _selected(self) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint whose held-out pass + kill rate is highest (the later one of a tie) and
        its record, or None before the first."""
        best = None
        root = self.out / CHECKPOINTS
        for folder in sorted(root.glob("iter_*")) if root.is_dir() else ():
            try:
                record = json.loads((folder / "driver.json").read_text()).get("select")
            except (OSError, ValueError):
                continue
            if record and (folder / LEARNER_FILE).is_file() and (best is None or record["score"] >= best[1]["score"]):
                best = (folder, record)
        return best

    def _produce(self, it: int, train: list[Task], cursor: Cursor, rollouts, sandbox, composition: Composition) -> Batch:
        """Rollouts and rewards of iteration ``it`` (verdicts come back from the sandbox actors as they finish)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        picked = [train[i] for i in cursor.take(cfg.tasks_per_iteration)]
        n = len(rollouts.actors)
        shares = [picked[j::n] for j in range(n) if picked[j::n]]
        offsets = [sum(len(s) for s in shares[:j]) for j in range(len(shares))]
        chunks = [(s, it, cfg.seed * 1_000_003 + it * 101 + j, offsets[j]) for j, s in enumerate(shares)]
        done = rollouts.rollouts(chunks)
        t_roll = time.perf_counter() - t0
        t1 = time.perf_counter()
        # Rows are task-major within each share, and shares are in task order: one flat list each.
        G = cfg.rollout.samples
        tasks = [task for share in shares for task in share]
        texts_all = [text for ro in done for text in ro.texts]
        # learner.credit=split: a task's starts that no sample kept as they were run too
        split = cfg.learner.credit == "split"
        starts_all = [s for ro in done for s in (ro.start_texts or ro.texts)] if split else texts_all
        extras = [sorted(set(starts_all[i * G:(i + 1) * G]) - set(texts_all[i * G:(i + 1) * G])) for i in range(len(tasks))]
        items = [(task, texts_all[i * G:(i + 1) * G] + extras[i]) for i, task in enumerate(tasks)]
        if cfg.completion:
            # Execution fills in the values the samples assert (sandbox.completion): the reward
            # judges the completed text; the policy's log-probability covers only what it wrote.
            items = [(task, done_row) for (task, _), done_row in zip(items, sandbox.complete(items))]
        scored_all = [text for _, row in items for text in row[:G]]
        rows = sandbox.score(items, mutants=composition.mutants)
        verdicts_all = [v for row in rows for v in row[:G]]
        rew, metrics, records = compose(composition, [t for t in tasks for _ in range(G)], scored_all, verdicts_all)
        if cfg.completion:
            for rec, written in zip(records, texts_all):
                rec["written"] = written
            metrics["rl/completed"] = sum(a != b for a, b in zip(scored_all, texts_all)) / max(1, len(texts_all))
        rewards = list(torch.split(rew, [len(ro) for ro in done]))
        start_rewards = None
        if split:
            start_rewards = list(torch.split(self._start_rewards(composition, tasks, texts_all, starts_all, extras,
                                                                 [row[G:] for row in rows], rew, metrics, records),
                                             [len(ro) for ro in done]))
        final_v = torch.cat([ro.final_log_v for ro in done]).exp()
        ok = [i for i, v in enumerate(verdicts_all) if v.status != "infra"]
        if ok:
            score = auroc([float(final_v[i]) for i in ok], [verdicts_all[i].passed for i in ok])
            if not math.isnan(score):
                metrics["critic/auroc_pass"] = score
        metrics["time/rollout_s"] = t_roll
        metrics["time/reward_s"] = time.perf_counter() - t1
        metrics["time/produce_s"] = time.perf_counter() - t0
        metrics["rl/samples"] = float(len(ok))
        metrics["rl/ast_valid"] = sum(1 for t in texts_all if is_assertion(t)) / max(1, len(texts_all))
        metrics["rl/distinct"] = len(set(texts_all)) / max(1, len(texts_all))
        chosen = [ro.start for ro in done if ro.start is not None]
        if chosen:
            # the start each sample edited, and how sure the start choice was (log-prob of the drawn one)
            starts = [st.texts[int(c)] for st in chosen for c in st.chosen]
            for rec, start in zip(records, starts):
                rec["start"] = start
            metrics["start/logp"] = float(torch.cat([st.logp for st in chosen]).mean())
        return Batch(it, done, rewards, metrics, records, start_rewards)

    def _start_rewards(self, composition: Composition, tasks: list[Task], texts: list[str], starts: list[str],
                       extras: list[list[str]], extra_verdicts: list[list[Any]], rew: torch.Tensor,
                       metrics: dict[str, float], records: list[dict[str, Any]]) -> torch.Tensor:
        """(N,) the reward of each sample's start as it was: a sample's own where it kept it (or
        another sample of its task wrote it), else the start's run among ``extras``; and the
        metrics of what the edits did."""
        G = self.cfg.rollout.samples
        extra_rew = torch.empty(0)
        if any(extras):
            extra_rew, _, _ = compose(composition, [t for t, row in zip(tasks, extras) for _ in row],
                                      [x for row in extras for x in row], [v for row in extra_verdicts for v in row])
        out, k = torch.empty(len(texts)), 0
        for i in range(len(tasks)):
            known = {texts[j]: float(rew[j]) for j in range(i * G, (i + 1) * G)}
            for x in extras[i]:
                known[x] = float(extra_rew[k])
                k += 1
            for j in range(i * G, (i + 1) * G):
                out[j] = known[starts[j]]
        edited = [j for j in range(len(texts)) if texts[j] != starts[j]]
        metrics["credit/edited"] = len(edited) / max(1, len(texts))
        metrics["credit/start_runs"] = float(k)
        gains = (rew - out)[edited]
        gains = gains[~torch.isnan(gains)]
        if gains.numel():
            metrics["credit/edit_gain"] = float(gains.mean())  # what the edits changed, over edited samples
            metrics["credit/edit_changed"] = float((gains != 0).float().mean())
        for rec, r0 in zip(records, out.tolist()):
            rec["start_reward"] = None if math.isnan(r0) else r0
        return out

    def _checkpoint(self, learner, iteration: int, cursor: dict[str, int], version: int,
                    select: dict[str, Any] | None = None) -> Path:
        import ray

        root = self.out / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        name = f"iter_{iteration:06d}"
        tmp = root / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        torch.save(ray.get(learner.lead.state.remote()), tmp / LEARNER_FILE)
        (tmp / "driver.json").write_text(json.dumps({"iteration": iteration, "cursor": cursor, "version": version,
                                                     "config": _plain(self.cfg), "select": select}, indent=1) + "\n")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / LATEST, name + "\n")
        others = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("iter_") and p.name != name)
        best = self._selected() if select is not None else None  # kept whatever its age: final/ may be it
        for old in others[:max(0, len(others) - (self.cfg.keep_checkpoints - 1))]:
            if best is None or old != best[0]:
                shutil.rmtree(old)
        return final

    def _summary(self, iterations: int, history: list[dict[str, float]], wall: float, rollouts, sandbox) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            xs = [h[key] for h in history if key in h and h[key] is not None and math.isfinite(h[key])]
            return sum(xs) / len(xs) if xs else None

        keys = ("time/rollout_s", "time/reward_s", "time/learn_s", "time/wait_s", "time/iteration_s",
                "time/wait_frac", "perf/samples_per_s", "rl/pass_rate", "rl/kill_rate")
        return {"iterations": iterations, "wall_s": wall, "this_session": len(history),
                "means": {k: mean(k) for k in keys}, "actors_replaced": rollouts.replaced + sandbox.replaced,
                "units_redone": rollouts.redone + sandbox.redone}


def _drop_rows(path: Path, key: str, start: int) -> None:
    """Remove the JSONL rows of iterations >= ``start`` (logged after the checkpoint a run resumes
    from, and about to be run again), atomically."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [x for x in lines if x.strip() and json.loads(x).get(key, -1) < start]
    if len(kept) != len(lines):
        _write_atomic(path, "".join(kept))


def run(cfg: RLConfig) -> dict[str, Any]:
    """Run (or resume) an RL run; returns its summary."""
    return Run(cfg).run()
