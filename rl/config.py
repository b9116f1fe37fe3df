"""`trident rl` configuration (configs/rl.yaml): what to train from, on which tasks, how rollouts,
rewards, the learner and the Ray cluster are set up. No Ray here: ``trident rl --help`` reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rewards.composition import CompositionConfig
from sandbox.api import Limits

from .learner import LearnerConfig, RLError
from .rollout import RolloutConfig

__all__ = ["RayConfig", "RLConfig"]


@dataclass
class RayConfig:
    """Where the actors run and how many there are."""

    address: str | None = field(default=None, metadata={"help": "Ray address to connect to; default: RAY_ADDRESS when set (a `ray job submit` sets it), else start a local Ray"})
    num_cpus: int | None = field(default=None, metadata={"help": "logical CPUs of a local Ray (default: enough for every actor, at least the machine's cores)"})
    rollout_workers: int = field(default=1, metadata={"help": "rollout actors, each holding a policy copy"})
    sandbox_workers: int = field(default=2, metadata={"help": "sandbox actors, each with its own zygote servers (one CPU each)"})
    rollout_threads: int = field(default=1, metadata={"help": "torch threads per rollout actor (Ray gives an actor one CPU)"})
    retries: int = field(default=3, metadata={"help": "times a unit of work lost with its actor is redone on a fresh actor before it counts as infra"})

    def __post_init__(self) -> None:
        if self.rollout_workers < 1 or self.sandbox_workers < 1:
            raise RLError("ray.rollout_workers and ray.sandbox_workers must be >= 1")
        if self.retries < 0:
            raise RLError(f"ray.retries={self.retries} must be >= 0")


@dataclass
class RLConfig:
    """Stage 2: actor-critic RL from execution, on Ray (docs/rl.md)."""

    model: Path = field(default=Path("runs/default/sft/final"), metadata={"help": "SFT model directory to start from (also the frozen KL reference)"})
    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine` (its train split is trained on)"})
    out: Path = field(default=Path("runs/default/rl"), metadata={"help": "run folder: config, metrics, samples, checkpoints, final model"})
    iterations: int = field(default=20, metadata={"help": "RL iterations (one batch of rollouts and one learner update each)"})
    tasks_per_iteration: int = field(default=16, metadata={"help": "training tasks per iteration (times rollout.samples samples)"})
    max_tasks: int | None = field(default=None, metadata={"help": "train on at most this many training tasks (first in file order)"})
    mutants_only: bool = field(default=False, metadata={"help": "train only on tasks whose code has mutants, so every group carries a kill signal"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop (with a checkpoint) after this many minutes of wall time"})
    overlap: bool = field(default=True, metadata={"help": "sample and score iteration k+1 while the learner trains on k (one version stale; importance-weighted)"})
    checkpoint_every: int = field(default=5, metadata={"help": "checkpoint every N iterations (and at the end)"})
    select_tasks: int = field(default=0, metadata={"help": "hold out whole test files of the training tasks, at least this many tasks, never trained on; at every checkpoint score the evaluation's greedy system on them (select/* metrics) and make final/ the checkpoint with the highest pass + kill rate there (0 = off: final/ is the last weights)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept"})
    resume: bool = field(default=True, metadata={"help": "resume from the run folder's latest checkpoint"})
    seed: int = field(default=0, metadata={"help": "seed of task order, sampling and the learner"})
    progress: bool = field(default=True, metadata={"help": "progress bar"})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "rollout sampling"})
    learner: LearnerConfig = field(default_factory=LearnerConfig, metadata={"help": "PPO learner"})
    rewards: CompositionConfig = field(default_factory=CompositionConfig, metadata={"help": "composed reward (rewards in [0, 1])"})
    sandbox: Limits = field(default_factory=Limits, metadata={"help": "sandbox limits"})
    completion: bool = field(default=True, metadata={"help": "complete each sample before it is scored: the value of `assert EXPR == VALUE` (and `is None/True/False`) observed on the unmutated library and filled in (sandbox.completion); the filled literal is the environment's, so the policy's log-probability covers only the tokens it wrote"})
    ray: RayConfig = field(default_factory=RayConfig, metadata={"help": "Ray cluster and actors"})

    @property
    def actors(self) -> int:
        """The run's Ray actors, one CPU each: learners, rollout and sandbox actors."""
        return self.learner.workers + self.ray.rollout_workers + self.ray.sandbox_workers

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise RLError(f"iterations={self.iterations} must be >= 1")
        if self.tasks_per_iteration < 1:
            raise RLError(f"tasks_per_iteration={self.tasks_per_iteration} must be >= 1")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            raise RLError("checkpoint_every and keep_checkpoints must be >= 1")
        if self.learner.credit == "split" and (self.rollout.start != "edit" or self.rollout.start_temperature <= 0):
            raise RLError("learner.credit=split credits the start choice with its start's own reward: it needs "
                          "rollout.start=edit and rollout.start_temperature > 0 (or learner.credit=sample)")
        if self.select_tasks < 0:
            raise RLError(f"select_tasks={self.select_tasks} must be >= 0 (0 = final/ is the last weights)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise RLError(f"max_minutes={self.max_minutes} must be > 0 (or null for no limit)")
