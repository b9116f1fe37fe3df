"""`trident rl` on a real local Ray: a tiny 2-iteration run, resume, actors killed mid-iteration,
and `ray job submit` to a head this test starts. Real networkx tasks, a tiny model from a config."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def tiny(model, tasks, out, **kw):
    from rl.config import RayConfig, RLConfig
    from rl.learner import LearnerConfig
    from rl.rollout import RolloutConfig

    base = dict(model=model, tasks=tasks, out=out, iterations=2, tasks_per_iteration=4, progress=False,
                checkpoint_every=1, rollout=RolloutConfig(samples=2), learner=LearnerConfig(minibatch=4),
                ray=RayConfig(sandbox_workers=2))
    base.update(kw)
    return RLConfig(**base)


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_two_iterations_on_local_ray(local_ray, tiny_model_dir, small_tasks_file, tmp_path):
    from pretrain.model import DiffusionLM
    from rl.driver import run

    out = tmp_path / "run"
    summary = run(tiny(tiny_model_dir, small_tasks_file, out))
    assert summary["iterations"] == 2
    metrics = rows(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1]
    for key in ("rl/policy_loss", "rl/clip_frac", "rl/kl_ref", "rl/value_loss", "rl/pass_rate", "time/rollout_s",
                "time/reward_s", "time/learn_s", "time/wait_s", "perf/samples_per_s", "rewards/trident/mean"):
        assert all(m.get(key) is not None for m in metrics), key
    assert metrics[1]["rl/staleness"] == 1.0  # iteration 1 was sampled while the learner trained on 0
    assert all("rl/completed" in m for m in metrics)  # completion is on by default
    samples = rows(out / "samples.jsonl")
    assert len(samples) == 2 * 4 * 2  # iterations x tasks x samples, each with its verdict
    assert all(s["status"] != "infra" for s in samples)
    assert (out / "checkpoints" / "latest").read_text().strip() == "iter_000002"
    model = DiffusionLM.load(out / "final")
    start = DiffusionLM.load(tiny_model_dir)
    moved = [n for n, p in model.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert moved, "the learner changed no weight"
    # a finished run is not run again
    assert run(tiny(tiny_model_dir, small_tasks_file, out))["iterations"] == 2


def test_resume_continues_at_the_next_iteration_with_the_same_batch(local_ray, tiny_model_dir, small_tasks_file, tmp_path):
    from rl.driver import run

    straight = tmp_path / "a"
    run(tiny(tiny_model_dir, small_tasks_file, straight, iterations=3))
    stopped = tmp_path / "b"
    run(tiny(tiny_model_dir, small_tasks_file, stopped, iterations=2))
    summary = run(tiny(tiny_model_dir, small_tasks_file, stopped, iterations=3))  # resumes from iter_000002
    assert summary["iterations"] == 3 and summary["this_session"] == 1
    assert [m["step"] for m in rows(stopped / "metrics.jsonl")] == [0, 1, 2]

    def tasks_of(folder: Path, it: int) -> list[str]:
        return [s["task_id"] for s in rows(folder / "samples.jsonl") if s["iteration"] == it]

    for it in range(3):
        assert tasks_of(stopped, it) == tasks_of(straight, it), it
    # stopped after iteration 2 was logged but before its checkpoint: its rows are not doubled
    shutil.rmtree(stopped / "final")
    (stopped / "summary.json").unlink()
    (stopped / "checkpoints" / "latest").write_text("iter_000002\n")
    run(tiny(tiny_model_dir, small_tasks_file, stopped, iterations=3))
    assert [m["step"] for m in rows(stopped / "metrics.jsonl")] == [0, 1, 2]
    assert tasks_of(stopped, 2) == tasks_of(straight, 2)
    # a different run config is refused with the fix, and nothing is overwritten
    from rl.learner import RLError

    with pytest.raises(RLError, match="different tasks_per_iteration"):
        run(tiny(tiny_model_dir, small_tasks_file, stopped, iterations=4, tasks_per_iteration=5))
    with pytest.raises(RLError, match="resume it"):
        run(tiny(tiny_model_dir, small_tasks_file, stopped, iterations=4, resume=False))


def test_the_sandbox_worker_completes_what_a_sample_asserts(small_tasks):
    from rl.rewarding import SandboxWorker

    task = next(t for t in small_tasks if t.observations and any(o["kind"] == "literal" for o in t.observations.values()))
    name, seen = next((k, o) for k, o in task.observations.items() if o["kind"] == "literal")
    worker = SandboxWorker()
    done = worker.complete(task, [f"assert {name} == 'guessed'", f"assert {name} != 'guessed'", "assert x =="])
    assert done == [f"assert {name} == {seen['text']}" if seen["text"] not in ("None", "True", "False")
                    else f"assert {name} is {seen['text']}", f"assert {name} != 'guessed'", "assert x =="]
    assert worker.score(task, done[:1], mutants=False)[0].passed


def test_killed_sandbox_actor_still_gives_one_reward_per_sample(local_ray, small_tasks):
    from rewards.composition import Composition, CompositionConfig
    from rl.cluster import SandboxPool
    from rl.rewarding import compose
    from sandbox.api import Limits

    tasks = [t for t in small_tasks if t.split == "train"][:8]
    items = [(t, [t.target, "assert False"]) for t in tasks]
    pool = SandboxPool(2, Limits(), retries=2)
    killed = []

    def kill_once(i, verdicts):
        if not killed:  # the first result in: kill an actor that still has work waiting on it
            killed.append(i)
            for actor in pool.actors:
                ray.kill(actor, no_restart=True)

    verdicts = pool.score(items, mutants=True, on_result=kill_once)
    assert killed and pool.replaced >= 1 and pool.redone >= 1
    flat = [v for row in verdicts for v in row]
    assert len(flat) == 2 * len(tasks) and all(v.status != "infra" for v in flat)
    assert [row[0].status for row in verdicts] == ["passed"] * len(tasks)  # each task's own target
    assert [row[1].status for row in verdicts] == ["failed"] * len(tasks)
    comp = Composition.from_config(CompositionConfig())
    rewards, _, _ = compose(comp, [t for t in tasks for _ in range(2)], [c for _, cs in items for c in cs], flat)
    assert rewards.shape == (2 * len(tasks),) and not torch.isnan(rewards).any()
    pool.shutdown()


def test_killed_rollout_actor_is_replaced_and_its_share_redone(local_ray, tiny_model_dir, small_tasks):
    from rl.cluster import RolloutPool
    from rl.rollout import RolloutConfig, RolloutWorker

    train = [t for t in small_tasks if t.split == "train"]
    cfg = RolloutConfig(samples=2)
    pool = RolloutPool(1, str(tiny_model_dir), cfg, train, retries=1, threads=1)
    chunks = [(train[:2], 0, 11, 0), (train[2:4], 0, 12, 2)]
    ray.kill(pool.actors[0], no_restart=True)  # dies before its share is done
    got = pool.rollouts(chunks)
    assert pool.replaced == 1 and pool.redone >= 1
    here = RolloutWorker(str(tiny_model_dir), cfg, train)
    for chunk, ro in zip(chunks, got):
        again = here.rollout(chunk[0], iteration=0, seed=chunk[2], group_offset=chunk[3])
        assert ro.texts == again.texts  # redone identically: same weights, tasks and seed
        assert ro.group.tolist() == again.group.tolist()
    pool.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["token", "disabled"])
def test_ray_job_submit_to_a_local_head(auth, ray_head, tiny_model_dir, small_tasks_file, tmp_path):
    """`ray job submit` of a tiny run to a head started here: with token auth on (the client
    and the job's driver hold the head's token) and with auth turned off for this head."""
    head = ray_head(auth)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "rl.yaml").write_text(
        f"model: {tiny_model_dir}\ntasks: {small_tasks_file}\nout: {tmp_path / 'out'}\niterations: 2\n"
        "tasks_per_iteration: 4\nprogress: false\nrollout: {samples: 2}\nlearner: {minibatch: 4}\n"
        "ray: {sandbox_workers: 1}\n")
    command = ["-m", "trident", "rl", "--config", "rl.yaml"]
    if auth == "token":  # without the token the head refuses the job
        refused = head.submit(job_dir, command, env={k: v for k, v in head.env.items() if k != "RAY_AUTH_TOKEN"})
        assert refused.returncode != 0
        assert "authentication token" in (refused.stdout + refused.stderr).lower()
        assert not (tmp_path / "out").exists()
    job = head.submit(job_dir, command)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "succeeded" in job.stdout.lower()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["iterations"] == 2


def test_mutants_only_keeps_the_training_tasks_with_mutants(tiny_model_dir, small_tasks_file, small_tasks, tmp_path):
    from rl.driver import Run
    from rl.learner import RLError
    from sandbox.tasks import write_tasks

    train = [t for t in small_tasks if t.split == "train"]
    kept, pool, held = Run(tiny(tiny_model_dir, small_tasks_file, tmp_path / "a", mutants_only=True))._tasks()
    assert held == []
    assert [t.id for t in kept] == [t.id for t in train if t.mutants]
    assert 0 < len(kept) < len(train)
    assert [t.id for t in pool] == [t.id for t in train]  # starts are retrieved from every training task
    bare = tmp_path / "bare.jsonl"
    write_tasks(bare, (dataclasses.replace(t, mutants=[]) for t in small_tasks), package="networkx")
    with pytest.raises(RLError, match="no training task with mutants.*mutants_only=false"):
        Run(tiny(tiny_model_dir, bare, tmp_path / "b", mutants_only=True))._tasks()


def test_select_tasks_holds_out_whole_files_and_final_is_the_best_checkpoint(local_ray, tiny_model_dir,
                                                                            small_tasks_file, tmp_path):
    from pretrain.model import DiffusionLM
    from rl.driver import LEARNER_FILE, Run, run
    from rl.learner import RLError

    out = tmp_path / "run"
    cfg = tiny(tiny_model_dir, small_tasks_file, out, iterations=3, select_tasks=5, keep_checkpoints=1)
    train, _, held = Run(cfg)._tasks()
    assert len(held) >= 5
    assert not {t.test_module for t in held} & {t.test_module for t in train}  # whole files, as the splits
    summary = run(cfg)
    assert summary["iterations"] == 3
    assert not {s["task_id"] for s in rows(out / "samples.jsonl")} & {t.id for t in held}  # never trained on
    metrics = rows(out / "metrics.jsonl")
    for m in metrics:  # a checkpoint every iteration, each scored on the held-out tasks
        assert 0 <= m["select/pass"] <= 1 and 0 <= m["select/kill"] <= 1 and m["time/select_s"] > 0
    scores = [m["select/pass"] + m["select/kill"] for m in metrics]
    best = max(i for i, x in enumerate(scores) if x == max(scores)) + 1  # the later one of a tie
    assert summary["selected"]["iteration"] == best
    chosen = out / "checkpoints" / f"iter_{best:06d}"
    assert chosen.is_dir()  # kept beyond keep_checkpoints: final/ is it
    weights = torch.load(chosen / LEARNER_FILE, map_location="cpu", weights_only=False)["model"]
    final = DiffusionLM.load(out / "final").state_dict()
    assert all(torch.equal(final[n], p) for n, p in weights.items())
    with pytest.raises(RLError, match="leaving none to learn on"):
        Run(tiny(tiny_model_dir, small_tasks_file, tmp_path / "all", select_tasks=10_000))._tasks()


def test_two_data_parallel_learners_make_the_one_learners_update(local_ray, tiny_model_dir, small_tasks):
    from rl.cluster import LearnerGroup
    from rl.learner import Learner, LearnerConfig
    from rl.rollout import RolloutConfig, RolloutWorker

    train = [t for t in small_tasks if t.split == "train"]
    worker = RolloutWorker(str(tiny_model_dir), RolloutConfig(samples=4, mask_share=0.3), train)
    ro = worker.rollout(train[:6], iteration=0, seed=3)
    rewards = torch.rand(len(ro), generator=torch.Generator().manual_seed(0))
    rewards[5] = float("nan")  # an unscored sample is left out on every learner alike
    cfg = LearnerConfig(minibatch=8, epochs=2, lr=1e-3, step_subsample=2)
    one = Learner(str(tiny_model_dir), cfg, seed=7)
    want = one.train([ro], [rewards])
    group = LearnerGroup(str(tiny_model_dir), dataclasses.replace(cfg, workers=2), seed=7)
    try:
        got = group.metrics(group.train([ro], [rewards]))
        weights = ray.get([a.weights.remote() for a in group.actors])
    finally:
        group.shutdown()
    moved = 0
    for name, p in one.weights().items():
        assert torch.equal(weights[0][name], weights[1][name]), name  # the learners stay in step
        assert torch.allclose(weights[0][name], p, atol=1e-6), name  # and make the one learner's update
        moved += not torch.equal(p, one.reference.state_dict()[name])
    assert moved > 0
    assert got["rl/optimizer_steps"] == want["rl/optimizer_steps"]
    assert got["rl/grad_norm"] == pytest.approx(want["rl/grad_norm"], rel=1e-4)


def test_a_run_with_two_learners(local_ray, tiny_model_dir, small_tasks_file, tmp_path):
    from pretrain.model import DiffusionLM
    from rl.config import RayConfig
    from rl.driver import run
    from rl.learner import LearnerConfig

    out = tmp_path / "run"
    summary = run(tiny(tiny_model_dir, small_tasks_file, out, iterations=1,
                       learner=LearnerConfig(minibatch=4, workers=2), ray=RayConfig(sandbox_workers=1)))
    assert summary["iterations"] == 1
    (metrics,) = rows(out / "metrics.jsonl")
    assert metrics["rl/optimizer_steps"] >= 1 and metrics["rl/grad_norm"] > 0
    model, start = DiffusionLM.load(out / "final"), DiffusionLM.load(tiny_model_dir)
    assert any(not torch.equal(p, start.state_dict()[n]) for n, p in model.state_dict().items())


def test_a_run_with_split_credit_scores_the_starts(local_ray, tiny_model_dir, small_tasks_file, tmp_path):
    from rl.driver import run
    from rl.learner import LearnerConfig
    from rl.rollout import RolloutConfig

    out = tmp_path / "run"
    summary = run(tiny(tiny_model_dir, small_tasks_file, out, iterations=1, learner=LearnerConfig(minibatch=4, credit="split"),
                       rollout=RolloutConfig(samples=2, start_draw="all", start_top=2, mask_share=0.5)))
    assert summary["iterations"] == 1
    (metrics,) = rows(out / "metrics.jsonl")
    assert 0 <= metrics["credit/edited"] <= 1 and metrics["rl/optimizer_steps"] >= 1
    samples = rows(out / "samples.jsonl")
    assert all(s["start_reward"] is not None and 0 <= s["start_reward"] <= 1 for s in samples)
    # every start an edit replaced was run on its own; a kept one has its sample's reward
    assert metrics["credit/start_runs"] >= 1
    kept = [s for s in samples if s["candidate"] == s["start"]]
    assert all(s["start_reward"] == s["reward"] for s in kept)


def test_a_local_ray_with_too_few_cpus_for_the_actors_is_refused(tiny_model_dir, small_tasks_file, tmp_path):
    """Four actors at one CPU each on a local Ray of 2 would wait forever: one error with the fix,
    before any actor starts, nothing written but the run's config."""
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "trident", "rl", f"model={tiny_model_dir}", f"tasks={small_tasks_file}",
                           f"out={out}", "iterations=1", "progress=false", "ray.num_cpus=2", "ray.sandbox_workers=2"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert "2 CPUs" in err and "take 4" in err and "ray.num_cpus" in err, err[-2000:]
    assert not (out / "checkpoints").exists()
