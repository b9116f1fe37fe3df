"""`trident sft`: supervised training of the masked-diffusion model and its critic head.

Why our own loop rather than Hugging Face ``Trainer``: a step is two forward passes (the
generator on the corrupted slot, then the critic on the generator's own samples), the loss
chain carries state that must be checkpointed with the model (the [MASK] logit bias), and exact
resume needs the corruption and sampling generators and the data cursor saved too. Fitting that
into ``Trainer`` means overriding its private hooks; a plain loop keeps it in one readable place
and costs nothing in speed (``bench/bench_trainer.py`` measures it against a bare PyTorch loop).

A run folder ``out/`` holds ``config.yaml``, ``tokenizer/``, ``metrics.jsonl`` (+ TensorBoard
events), ``checkpoints/step_N/`` with a ``latest`` pointer (each written atomically), and
``final/`` (the model directory) when training ends.

Notation: B batch, T sequence length, L slot length, V vocabulary.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from sandbox.tasks import SPLITS, Task, load_tasks

from .components import Components, LossConfig, SequenceBatch, check_teacher_dir, load_teacher
from .corruption import KIND_IDENTITY, KIND_MASKED, Corrupted, corrupt
from .data import Batch, DataConfig, Encoded, Encoder, collate
from .losses import DiffusionLoss, critic_loss
from .metrics import MetricLogger
from .sampler import sample_tokens
from .errors import TrainError
from .evaluate import EvalConfig
from .hardware import native_bf16, resolve_precision
from .model import BackboneConfig, DiffusionLM
from .tokenizer import load_tokenizer, save_tokenizer, task_texts, train_tokenizer

CHECKPOINTS = "checkpoints"
LATEST = "latest"
FINAL = "final"


def default_modifiers() -> list[dict[str, Any]]:
    return [
        {"name": "mask_ratio_weighting", "max_weight": 10.0},
        {"name": "dynamic_logit_bias", "target_prob": 0.05, "lr": 0.05},
        {"name": "hard_negative_mining", "mode": "constant", "weight": 0.5},
    ]


@dataclass
class CorruptionConfig:
    """How slots are corrupted for training (pretrain/corruption.py)."""

    eps: float = field(default=1e-3, metadata={"help": "smallest noise level t"})
    antithetic: bool = field(default=True, metadata={"help": "spread the batch's t evenly over [eps, 1) (lower variance)"})
    wrong_prob: float = field(default=0.1, metadata={"help": "share of unmasked slot tokens replaced by wrong tokens (target [WRONG])"})
    wrong_source: Literal["random", "model"] = field(default="model", metadata={"help": "wrong tokens: uniform random, or the model's own samples (one extra no-grad pass)"})
    suffix_rows: float = field(default=0.5, metadata={"help": "share of rows masked as a suffix (the states a left-to-right block sampler visits)"})

    def __post_init__(self) -> None:
        if not 0 < self.eps < 1:
            raise ValueError(f"corruption.eps={self.eps} must lie in (0, 1)")
        for name in ("wrong_prob", "suffix_rows"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"corruption.{name}={getattr(self, name)} must lie in [0, 1]")


@dataclass
class CriticConfig:
    """Two-pass critic training: total = generator loss + weight · critic BCE."""

    weight: float = field(default=0.5, metadata={"help": "α, the critic loss weight; 0 turns the second pass off"})
    keep_masked: float = field(default=0.5, metadata={"help": "per row, up to this share of the sampled positions stays [MASK] in the critic's input"})

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"critic.weight={self.weight} must be >= 0")
        if not 0 <= self.keep_masked <= 1:
            raise ValueError(f"critic.keep_masked={self.keep_masked} must lie in [0, 1]")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay."""

    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final learning rate as a share of the peak"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.98, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip; 0 = none"})

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr={self.lr} must be > 0")


@dataclass
class SequenceKDConfig:
    """Sequence-level KD: train on a teacher's outputs (from `trident seqkd`) mixed with gold."""

    path: Path | None = field(default=None, metadata={"help": "JSONL of teacher outputs written by `trident seqkd`; null = gold only"})
    ratio: float = field(default=0.5, metadata={"help": "chance that a row whose task has a teacher output trains on it instead of gold"})

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ValueError(f"sequence_kd.ratio={self.ratio} must lie in [0, 1]")


@dataclass
class SFTConfig:
    """`trident sft`: train the masked-diffusion model with its critic head on mined tasks."""

    tasks: Path = field(default=Path("runs/default/mine/tasks.jsonl"), metadata={"help": "task file from `trident mine` (train split for training, valid for validation)"})
    out: Path = field(default=Path("runs/default/sft"), metadata={"help": "run folder: checkpoints, metrics, final model"})
    tokenizer: Path | None = field(default=None, metadata={"help": "existing tokenizer directory; null = train one on the train split"})
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size when training a tokenizer"})
    model: BackboneConfig = field(default_factory=BackboneConfig, metadata={"help": "backbone sizes or a local pretrained encoder"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "prompt and slot layout"})
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig, metadata={"help": "slot corruption"})
    modifiers: list[dict[str, Any]] = field(default_factory=default_modifiers, metadata={"help": "diffusion loss modifiers, applied in this order: [{name: ..., param: value}, ...]"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "the Trident loss components with their weight schedules, and the teacher"})
    sequence_kd: SequenceKDConfig = field(default_factory=SequenceKDConfig, metadata={"help": "sequence-level KD: teacher outputs mixed with gold"})
    critic: CriticConfig = field(default_factory=CriticConfig, metadata={"help": "critic head training"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "optimizer and schedule"})
    batch_size: int = field(default=32, metadata={"help": "tasks per step"})
    max_steps: int = field(default=900, metadata={"help": "training steps (the schedule's length); the default takes ~25 min on 2 CPU cores"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop early after this many minutes of training (a checkpoint is written); null = no limit"})
    log_every: int = field(default=10, metadata={"help": "steps between metric lines"})
    eval_every: int = field(default=250, metadata={"help": "steps between validation losses; 0 = only at the end"})
    eval_tasks: int = field(default=256, metadata={"help": "valid tasks used for the validation loss"})
    save_every: int = field(default=250, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (oldest removed first)"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "auto = cuda when available, else cpu"})
    precision: Literal["auto", "fp32", "bf16"] = field(default="auto", metadata={"help": "auto = bf16 on a GPU or a CPU with native bfloat16 (AVX512-BF16, AMX), else fp32; bf16 = autocast (emulated, many times slower, on other CPUs); fp32 = exact"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch; 0 = leave torch's default"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation, data order, corruption and sampling"})
    resume: bool = field(default=True, metadata={"help": "go on from out/checkpoints/latest when it exists"})
    max_train_tasks: int | None = field(default=None, metadata={"help": "use at most this many training tasks (smoke runs)"})
    final_eval: bool = field(default=True, metadata={"help": "evaluate the final model on the valid split with the baselines (eval.json)"})
    evaluation: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "how the final model is evaluated"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes={self.max_minutes} must be > 0, or null for no limit")
        DiffusionLoss.from_config(self.modifiers)  # an unknown modifier or parameter fails here, before any work


# ---------------------------------------------------------------------------------------- data


def _device(cfg: SFTConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _load_splits(cfg: SFTConfig) -> dict[str, list[Task]]:
    """The task file read once, by split (``train`` cut to ``max_train_tasks``)."""
    if not cfg.tasks.is_file():
        raise TrainError(f"task file '{cfg.tasks}' not found; mine one with `trident mine --out {cfg.tasks}`")
    splits: dict[str, list[Task]] = {name: [] for name in SPLITS}
    for task in load_tasks(cfg.tasks):
        splits[task.split].append(task)
    if not splits["train"]:
        raise TrainError(f"'{cfg.tasks}' has no train split; mine more files (max_files) so that splits fill")
    if cfg.max_train_tasks is not None:
        splits["train"] = splits["train"][:cfg.max_train_tasks]
    return splits


class Cursor:
    """The data position: epoch and index into that epoch's permutation (seeded by seed+epoch)."""

    def __init__(self, n: int, seed: int, epoch: int = 0, index: int = 0) -> None:
        self.n, self.seed, self.epoch, self.index = n, seed, epoch, index
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.index >= self.n:
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation()
            take = min(k - len(out), self.n - self.index)
            out += self._order[self.index:self.index + take]
            self.index += take
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


# ---------------------------------------------------------------------------------------- step


class Step:
    """One training step's math: corruption, generator loss, critic pass. Owns no optimizer."""

    def __init__(self, model: DiffusionLM, loss: DiffusionLoss, cfg: SFTConfig, device: torch.device, *,
                 components: Components | None = None, teacher: DiffusionLM | None = None,
                 encoder: Encoder | None = None) -> None:
        self.model, self.loss, self.cfg, self.device = model, loss, cfg, device
        self.precision = resolve_precision(cfg.precision, device)
        self.components = components if components is not None else Components.from_config(["ce"])
        self.teacher = teacher
        if self.components.needs_teacher and teacher is None:
            raise TrainError("the loss components need a teacher model; set loss.teacher")
        self.encoder = encoder
        loss.token_loss = self.components.token_loss
        s = model.special
        self.forbidden = torch.tensor(sorted(set(s.never_generated())), device=device)
        self.vocab = model.backbone.config.vocab_size

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def corrupt(self, batch: Batch, generator: torch.Generator) -> Corrupted:
        c = self.cfg.corruption
        proposals = None
        L = self.model.slot_len
        if c.wrong_prob > 0 and c.wrong_source == "model":
            # Hard wrong tokens: the model's own guesses from an all-[MASK] slot.
            blank = batch.input_ids.masked_fill(batch.slot_mask, self.model.special.mask)
            with torch.no_grad(), self.autocast():
                logits = self.model(blank, batch.attention_mask, last=L).logits  # (B, L, V)
            proposals = batch.input_ids.clone()
            proposals[:, -L:] = sample_tokens(logits, self.forbidden, generator)
        return corrupt(batch.input_ids, batch.slot_mask, self.model.special, self.vocab, generator=generator,
                       eps=c.eps, antithetic=c.antithetic, wrong_prob=c.wrong_prob, proposals=proposals,
                       suffix_rows=c.suffix_rows, content=batch.content)

    def losses(self, batch: Batch, generator: torch.Generator, tasks: Sequence[Task] | None = None,
               teacher_texts: Sequence[str | None] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss of one batch and its metrics (generator pass, then critic pass).

        Both passes see the whole row but compute their heads on the slot only (``last=L``);
        the loss needs nothing else, since context positions carry no loss. A teacher, when the
        components need one, reads the same corrupted rows without grad. Sequence components run
        when ``tasks`` (one per row) are given: training does, validation does not (their rewards
        may cost a sandbox run per row).
        """
        L = self.model.slot_len
        comps = self.components
        corr = self.corrupt(batch, generator)
        layers = comps.needs_layers
        with self.autocast():
            out = self.model(corr.input_ids, batch.attention_mask, last=L, layers=layers)  # logits (B, L, V)
        teacher = None
        if self.teacher is not None:
            with torch.no_grad(), self.autocast():
                teacher = self.teacher(corr.input_ids, batch.attention_mask, last=L, layers=layers)
        slot = slice(-L, None)
        gen, metrics = self.loss(out.logits, corr.input_ids[:, slot], corr.targets[:, slot], corr.kind[:, slot],
                                 batch.weights[:, slot], corr.t, self.model.special,
                                 teacher_logits=teacher.logits if teacher is not None else None)
        total = gen
        metrics.update(comps.weights())
        if layers:
            term, m = comps.hidden_terms(out.layers, teacher.layers, batch.weights[:, slot] > 0)  # type: ignore[union-attr]
            total = total + term
            metrics.update(m)
        alpha = self.cfg.critic.weight
        sequence = tasks is not None and bool(comps.of_kind("sequence"))
        # One draw from the generator's slot distribution serves the critic's input and the
        # sequence components' samples (the costliest part of either, on CPU).
        sampled = sample_tokens(out.logits.detach(), self.forbidden, generator) if alpha > 0 or sequence else None
        finish_sequence = None
        if sequence:
            if self.encoder is None:
                raise TrainError("sequence loss components need the step's encoder to decode samples")
            seq = SequenceBatch(out.logits, corr.input_ids[:, slot], corr.kind[:, slot], tasks, [t.target for t in tasks],
                                teacher_texts or [None] * len(tasks), self.encoder.decode, self.forbidden, generator,
                                drawn=sampled)
            finish_sequence = comps.start_sequence(seq)  # rewards run while the critic pass does
        if alpha > 0:
            critic_in, labels = self.critic_input(batch, corr, out.logits.detach(), generator, sampled)
            with self.autocast():
                crit = self.model(critic_in, batch.attention_mask, last=L).critic  # (B, L)
            weights = batch.weights[:, slot]
            c_loss, c_metrics = critic_loss(crit.float(), labels, weights > 0, weights)
            total = total + alpha * c_loss
            metrics.update(c_metrics)
        if finish_sequence is not None:
            term, m = finish_sequence()
            total = total + term
            metrics.update(m)
        metrics["loss/total"] = float(total.detach())
        return total, metrics

    def critic_input(self, batch: Batch, corr: Corrupted, slot_logits: torch.Tensor,
                     generator: torch.Generator, sampled: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic's input (B, T) and its labels on the slot (B, L) (two passes).

        Masked slot positions get the generator's own samples from ``slot_logits`` (B, L, V),
        except a random share per row (up to ``keep_masked``) that stays [MASK]. Label 1 = the
        position ends up right: a kept token when it is the clean one (identity yes, wrong no),
        a sampled one when it equals the target, a still-masked one when the sample drawn there
        equals the target. So σ(z) means "ends up right" on every state. ``sampled`` (B, L): a
        draw from ``slot_logits`` already made (else one is drawn here).
        """
        L = slot_logits.shape[1]
        if sampled is None:
            sampled = sample_tokens(slot_logits, self.forbidden, generator)  # (B, L)
        masked = corr.kind[:, -L:] == KIND_MASKED
        B = masked.shape[0]
        share = torch.rand(B, generator=generator).to(self.device) * self.cfg.critic.keep_masked  # (B,)
        keep = (torch.rand(masked.shape, generator=generator).to(self.device) < share[:, None]) & masked
        critic_in = corr.input_ids.clone()
        critic_in[:, -L:] = torch.where(masked & ~keep, sampled, corr.input_ids[:, -L:])
        right = torch.where(masked, sampled == batch.input_ids[:, -L:], corr.kind[:, -L:] == KIND_IDENTITY)
        return critic_in, right.float()


# ---------------------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(self, cfg: SFTConfig) -> None:
        self.cfg = cfg
        self.out = cfg.out
        self.device = _device(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

    # .................................................................. setup

    def _tokenizer(self, train: list[Task]):
        if self.cfg.tokenizer is not None:
            return load_tokenizer(self.cfg.tokenizer)
        path = self.out / "tokenizer"
        if (path / "tokenizer.json").is_file():
            return load_tokenizer(path)
        if self.cfg.loss.teacher is not None:
            # A student distils from its teacher's distributions: it must read the same tokens.
            tok = load_tokenizer(self.cfg.loss.teacher)
            save_tokenizer(tok, path)
            print(f"sft: using the teacher's tokenizer from '{self.cfg.loss.teacher}'")
            return tok
        tok = train_tokenizer(task_texts(train), vocab_size=self.cfg.vocab_size)
        save_tokenizer(tok, path)
        return tok

    def _check_run_folder(self) -> Path | None:
        """The checkpoint to resume from, or None for a fresh run; refuses to overwrite a run."""
        latest = self.out / CHECKPOINTS / LATEST
        if not latest.is_file():
            return None
        step_dir = self.out / CHECKPOINTS / latest.read_text().strip()
        if not self.cfg.resume:
            raise TrainError(f"'{self.out}' already holds a run (checkpoint {step_dir.name}); resume it (resume=true), "
                             f"or give another out= to start afresh: nothing there is overwritten")
        if not (step_dir / "trainer.pt").is_file():
            raise TrainError(f"checkpoint '{step_dir}' named by '{latest}' is incomplete; point '{latest}' at an "
                             f"older step_N folder or start in another out=")
        saved = json.loads((step_dir / "config.json").read_text())
        mine = _plain_config(self.cfg)
        for key in ("model", "data", "tasks", "vocab_size", "batch_size", "loss"):
            if key == "loss" and key not in saved:
                continue  # a run from before the loss components trained with cross-entropy alone
            if saved.get(key) != mine.get(key):
                raise TrainError(f"'{self.out}' holds a run with a different {key} ({saved.get(key)!r} vs {mine.get(key)!r}); "
                                 f"resume with the same {key}, or give another out=")
        return step_dir

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        components = Components.from_config(cfg.loss.components)
        if components.needs_teacher:
            check_teacher_dir(cfg.loss.teacher)  # before anything is written
        resume_dir = self._check_run_folder()
        done = self.out / "summary.json"
        if ((self.out / FINAL / "trident_model.json").is_file() and done.is_file()
                and json.loads(done.read_text()).get("steps", 0) >= cfg.max_steps):
            print(f"sft: '{self.out}' is finished (step {cfg.max_steps}); model: {self.out / FINAL} "
                  f"(raise max_steps to train on, or give another out= to train afresh)")
            return json.loads(done.read_text())
        splits = _load_splits(cfg)
        train, valid = splits["train"], splits["valid"]
        self.out.mkdir(parents=True, exist_ok=True)
        _write_config(cfg, self.out / "config.yaml")

        if resume_dir is not None:
            model = DiffusionLM.load(resume_dir / "model", device=self.device)
        else:
            tok = self._tokenizer(train)
            model = DiffusionLM.build(cfg.model, tok, slot_len=cfg.data.slot_len, max_prompt=cfg.data.max_prompt, seed=cfg.seed)
            model.to(self.device)
        encoder = Encoder(model.tokenizer, cfg.data)
        encoded = [(e, t) for e, t in ((encoder.encode(t), t) for t in train) if e is not None]
        rows = [e for e, _ in encoded]
        row_tasks = [t for _, t in encoded]
        skipped = len(train) - len(rows)
        valid_rows = [e for e in (encoder.encode(t) for t in valid) if e is not None][:cfg.eval_tasks]
        stats = encoder.prompt_stats(train)
        print(f"sft: prompts: whole context median {stats['median']:.0f} tokens (90th percentile {stats['p90']:.0f}), "
              f"max_prompt {cfg.data.max_prompt}: {stats['cut_any']:.0%} of the training tasks cut (setup "
              f"{stats['cut_setup']:.0%}, focal {stats['cut_focal']:.0%}, prefix {stats['cut_prefix']:.0%}, "
              f"observations {stats['cut_observations']:.0%}; cut first: the setup, then the focal code's end, then the "
              f"prefix's start, the observations last)")
        kd_texts, kd_rows = self._sequence_kd(encoder, row_tasks)

        loss = DiffusionLoss.from_config(cfg.modifiers)
        teacher = None
        if components.needs_teacher:
            teacher = load_teacher(cfg.loss.teacher, model, self.device)
        elif cfg.loss.teacher is not None:
            print(f"sft: loss.teacher is set but no loss component distils from it (kl, jsd, layer); not loaded")
        components.setup(model, teacher, cfg.seed)  # layer projections, on the student's device
        decay, no_decay = _param_groups(torch.nn.ModuleList([model, components]))
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optim.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
        cursor = Cursor(len(rows), cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        step = 0
        if resume_dir is not None:
            state = torch.load(resume_dir / "trainer.pt", map_location="cpu", weights_only=False)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            loss.load_state_dict(state["loss"])
            components.load_state_dict(state.get("components", {}))
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
            cursor = Cursor(len(rows), cfg.seed, **state["cursor"])
            step = state["step"]
        else:
            torch.manual_seed(cfg.seed)  # dropout; a resumed run restores the saved state instead

        trainer_step = Step(model, loss, cfg, self.device, components=components, teacher=teacher, encoder=encoder)
        logger = MetricLogger(self.out)
        bar = _progress(cfg, step)
        if trainer_step.precision == "bf16" and self.device.type == "cpu" and not native_bf16():
            print("sft: warning: precision=bf16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX) is emulated "
                  "and many times slower than fp32; precision=auto (fp32 here) or precision=fp32 avoids it")
        print(f"sft: {model.num_parameters() / 1e6:.1f}M parameters on {self.device} ({trainer_step.precision}); "
              f"{len(rows)} training tasks ({skipped} longer than the slot skipped), {len(valid_rows)} for validation; "
              f"loss: {components.describe()}" + (f", teacher {teacher.num_parameters() / 1e6:.1f}M" if teacher else "") + "; "
              + (f"resuming at step {step}" if step else "fresh run"))
        start = time.monotonic()
        window: dict[str, list[float]] = {}
        tokens = 0
        t_log = time.monotonic()
        stopped_early = False
        try:
            while step < cfg.max_steps:
                model.train()
                loss.train()
                idx = cursor.take(cfg.batch_size)
                texts = [kd_texts.get(i) for i in idx]
                if kd_rows:  # sequence-level KD: a row trains on the teacher's output at the configured ratio
                    coins = torch.rand(len(idx), generator=gen).tolist()
                    picked = [kd_rows[i] if i in kd_rows and c < cfg.sequence_kd.ratio else rows[i] for i, c in zip(idx, coins)]
                else:
                    picked = [rows[i] for i in idx]
                batch = collate(picked, model.special, cfg.data.pad_weight).to(self.device)
                components.progress = step / max(1, cfg.max_steps - 1)  # 0 at the first step, 1 at the last
                total, metrics = trainer_step.losses(batch, gen, [row_tasks[i] for i in idx], texts)
                opt.zero_grad(set_to_none=True)
                total.backward()
                if cfg.optim.grad_clip > 0:
                    metrics["train/grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip))
                opt.step()
                sched.step()
                step += 1
                tokens += int(batch.attention_mask.sum())
                for k, v in metrics.items():
                    window.setdefault(k, []).append(v)
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    now = time.monotonic()
                    row = {k: sum(v) / len(v) for k, v in window.items()}
                    row["train/lr"] = sched.get_last_lr()[0]
                    row["train/epoch"] = cursor.epoch + cursor.index / max(1, cursor.n)
                    row["perf/tokens_per_s"] = tokens / max(now - t_log, 1e-9)
                    logger.log(step, row)
                    bar.set_postfix(loss=f"{row['loss/total']:.3f}")
                    window, tokens, t_log = {}, 0, now
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
                    logger.log(step, self.validate(trainer_step, valid_rows))
                out_of_time = cfg.max_minutes is not None and (time.monotonic() - start) / 60 >= cfg.max_minutes
                if step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time:
                    self.save(model, loss, components, opt, sched, gen, cursor, step)
                if out_of_time and step < cfg.max_steps:
                    stopped_early = True
                    print(f"sft: max_minutes={cfg.max_minutes} reached at step {step}; checkpoint written")
                    break
        finally:
            bar.close()
        val = self.validate(trainer_step, valid_rows)
        logger.log(step, val)
        logger.close()
        model.mask_logit_bias = loss.mask_logit_bias
        model.save(self.out / FINAL)
        summary = {"steps": step, "stopped_early": stopped_early, "train_tasks": len(rows), "skipped_long": skipped,
                   "parameters": model.num_parameters(), "minutes": (time.monotonic() - start) / 60, **val}
        print(f"sft: done at step {step}; valid loss {val.get('valid/loss', float('nan')):.4f}; model: {self.out / FINAL}")
        held_out = splits[cfg.evaluation.split] if cfg.final_eval else []
        if held_out:
            from .evaluate import evaluate, write_report

            report = evaluate(model, encoder, held_out, train, cfg.evaluation)
            write_report(report, self.out / "eval.json")
            summary["eval"] = {k: v for k, v in report.items() if k != "samples"}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary

    def _sequence_kd(self, encoder: Encoder, tasks: list[Task]) -> tuple[dict[int, str], dict[int, Encoded]]:
        """The teacher outputs of ``sequence_kd.path`` by training row: their texts (for the
        semantic reference) and, where they fit the slot, their encoded rows."""
        path = self.cfg.sequence_kd.path
        if path is None:
            return {}, {}
        from .seqkd import read_outputs

        outputs = read_outputs(path)
        texts: dict[int, str] = {}
        encoded: dict[int, Encoded] = {}
        for i, task in enumerate(tasks):
            text = outputs.get(task.id)
            if text is None:
                continue
            texts[i] = text
            slot = encoder.slot(text)
            if slot is not None:
                encoded[i] = Encoded(task.id, encoder.prompt(task), slot[0], slot[1])
        if not encoded:
            raise TrainError(f"sequence_kd.path '{path}' holds no output for this run's training tasks; make it from "
                             f"the same task file with `trident seqkd --tasks {self.cfg.tasks}`")
        print(f"sft: sequence-level KD: teacher outputs for {len(encoded)} of {len(tasks)} training tasks, "
              f"used at ratio {self.cfg.sequence_kd.ratio}")
        return texts, encoded

    # .................................................................. validation

    @torch.no_grad()
    def validate(self, step: Step, rows: list[Encoded]) -> dict[str, float]:
        """Loss on a fixed valid subset under fixed corruption (comparable across steps)."""
        if not rows:
            return {}
        model = step.model
        model.eval()
        step.loss.eval()
        g = torch.Generator().manual_seed(12345)
        sums: dict[str, float] = {}
        n = 0
        for lo in range(0, len(rows), self.cfg.batch_size):
            batch = collate(rows[lo:lo + self.cfg.batch_size], model.special, self.cfg.data.pad_weight).to(self.device)
            _, metrics = step.losses(batch, g)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        model.train()
        step.loss.train()
        return {_valid_name(k): v / n for k, v in sums.items()}

    # .................................................................. checkpoints

    def save(self, model: DiffusionLM, loss: DiffusionLoss, components: Components, opt, sched, gen: torch.Generator,
             cursor: Cursor, step: int) -> Path:
        """Write ``checkpoints/step_N`` atomically, then point ``latest`` at it."""
        root = self.out / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:07d}"
        tmp = root / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.mask_logit_bias = loss.mask_logit_bias
        model.save(tmp / "model")
        torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "loss": loss.state_dict(), "components": components.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(), "cursor": cursor.state()}, tmp / "trainer.pt")
        (tmp / "config.json").write_text(json.dumps(_plain_config(self.cfg), indent=1) + "\n")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(name + "\n")
        os.replace(pointer, root / LATEST)
        kept = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
        for old in kept[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old)
        return final


def _valid_name(name: str) -> str:
    """``loss/total`` -> ``valid/loss``, ``train/masked_acc`` -> ``valid/masked_acc``,
    ``loss/critic`` -> ``valid/loss_critic``, ``modifier/x/y`` -> ``valid/modifier_x/y``."""
    if name == "loss/total":
        return "valid/loss"
    if name.startswith("train/"):
        return "valid/" + name.removeprefix("train/")
    return "valid/" + name.replace("/", "_", 1)


def _plain_config(cfg: SFTConfig) -> dict[str, Any]:
    """The resolved config as JSON-able values (paths as text, tuples as lists)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def _write_config(cfg: SFTConfig, path: Path) -> None:
    import yaml

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(_plain_config(cfg), sort_keys=False))
    os.replace(tmp, path)


def _param_groups(model: torch.nn.Module) -> tuple[list, list]:
    """Weight decay on matrices only (not on norms, biases or the critic's scalar bias)."""
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return decay, no_decay


def _lr_lambda(cfg: SFTConfig):
    warm, total, floor = cfg.optim.warmup_steps, cfg.max_steps, cfg.optim.min_lr_ratio

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _progress(cfg: SFTConfig, step: int):
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, initial=step, desc="sft", unit="step", disable=not cfg.progress, dynamic_ncols=True)


def train(cfg: SFTConfig) -> dict[str, Any]:
    """Run (or resume) an SFT run; returns its summary."""
    return Trainer(cfg).run()
