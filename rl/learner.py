"""The learner: PPO per denoising step for the policy, BCE toward the reward for the value head.

A plain class (the driver wraps it in ``ray.remote`` with ``num_gpus`` from the config). One
update over a batch of :class:`~rl.rollout.Rollouts` and their rewards:

1. samples without a reward (an ``infra`` verdict, a gate that does not apply) are left out;
2. advantages from the registered estimator (``gae``/``mc`` read the behaviour policy's recorded
   critic values ``V(x_k) = exp(Σ log σ(z_i))``; ``group`` needs none), whitened over the batch;
   a learned start choice (``rl.rollout.StartChoice``) is the first action, taken in the state
   before any start whose value is ``Σ_c π(c) V(c)`` over the candidates;
3. ``epochs`` passes over shuffled minibatches of whole task groups; in each, up to ``step_subsample``
   steps per sample are re-run (one forward per step on the rows that chose it, then backward,
   so memory holds one step's graph): PPO clipped surrogate with the importance ratio against the
   recorded log-probs, ``kl_coef`` · k3 KL to the frozen reference, ``entropy_coef`` bonus, and
   ``value_coef`` · BCE of the new critic's ``V(x_k)`` toward R; the start choice's own clipped
   term, KL and entropy (one forward over the candidates of the minibatch's tasks; metrics under
   ``start/``); gradient clipping; one step.

Rewards must lie in [0, 1] (V is a probability): a composition with other bounds is refused with
the fix (``clip: [0, 1]``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch

from pretrain.model import DiffusionLM
from pretrain.sampler import evaluate_step, slot_scores

from .advantages import CRITIC_FREE, get_advantage
from .ppo import (explained_variance, greedy_rewards, group_minibatches, ppo_loss, segment_entropy,
                  segment_log_softmax, subsample_steps, value_loss, value_readout)
from .rollout import Rollouts, StartChoice, slot_positions

__all__ = ["LearnerConfig", "Learner", "RLError"]


class RLError(ValueError):
    """Bad RL input or configuration; the message names the fix."""


@dataclass
class LearnerConfig:
    """How the learner updates policy and value head."""

    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    epochs: int = field(default=2, metadata={"help": "PPO passes over each batch"})
    minibatch: int = field(default=32, metadata={"help": "samples per optimizer step (whole task groups: a step closes at this many or more)"})
    clip: float = field(default=0.2, metadata={"help": "PPO clip range epsilon"})
    kl_coef: float = field(default=0.05, metadata={"help": "weight of the k3 KL to the frozen SFT reference"})
    entropy_coef: float = field(default=0.0, metadata={"help": "weight of the entropy bonus at committed positions"})
    value_coef: float = field(default=0.5, metadata={"help": "weight of the value head's BCE toward the reward"})
    advantage: str = field(default="group_mean", metadata={"help": "advantage estimator: group_mean (critic-free; measured best, docs/rl.md) | group | gae | mc | a registered one"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    credit: Literal["sample", "split"] = field(default="sample", metadata={"help": "sample: every action of a sample (its start choice and its denoising steps) gets the sample's advantage; split: the start choice is credited with the reward of its start as it was (also run in the sandbox), the denoising steps with what their edits changed, R - R(start) (needs a learned start: rollout.start=edit, start_temperature > 0)"})
    whiten: bool = field(default=True, metadata={"help": "normalise advantages to mean 0, std 1 over the batch's valid steps"})
    step_subsample: int = field(default=8, metadata={"help": "at most this many steps per sample per update (0 = every step)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0 = off)"})
    train_layers: int = field(default=0, metadata={"help": "0 = train every parameter; N = only the top N transformer layers and the heads above them (the embeddings, tied to the output projection, and the lower layers keep the SFT weights)"})
    num_gpus: float = field(default=0.0, metadata={"help": "GPUs for the learner actor (0 = CPU)"})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"help": "fp32 | bf16 (autocast; on a GPU)"})
    threads: int = field(default=1, metadata={"help": "torch threads of a CPU learner (Ray gives an actor one CPU)"})
    workers: int = field(default=1, metadata={"help": "data-parallel learner actors (each with num_gpus): every minibatch is split among them and their gradients summed (NCCL on GPUs, gloo on CPU), so the update is the one learner's"})

    def __post_init__(self) -> None:
        from .advantages import AdvantageError

        if self.lr <= 0:
            raise RLError(f"learner.lr={self.lr} must be > 0")
        if self.epochs < 1 or self.minibatch < 1:
            raise RLError("learner.epochs and learner.minibatch must be >= 1")
        if not 0 < self.clip < 1:
            raise RLError(f"learner.clip={self.clip} must lie in (0, 1) (0.2 is usual)")
        if min(self.kl_coef, self.entropy_coef, self.value_coef) < 0:
            raise RLError("learner.kl_coef, entropy_coef and value_coef must be >= 0")
        if not 0 <= self.lam <= 1:
            raise RLError(f"learner.lam={self.lam} must lie in [0, 1]")
        if self.credit not in ("sample", "split"):
            raise RLError(f"learner.credit={self.credit!r} must be 'sample' or 'split'")
        if self.precision not in ("fp32", "bf16"):
            raise RLError(f"learner.precision={self.precision!r} must be fp32 or bf16")
        if self.workers < 1:
            raise RLError(f"learner.workers={self.workers} must be >= 1 (1 = one learner actor)")
        if self.train_layers < 0:
            raise RLError(f"learner.train_layers={self.train_layers} must be >= 0 (0 = every parameter)")
        if self.num_gpus < 0:
            raise RLError(f"learner.num_gpus={self.num_gpus} must be >= 0 (0 = CPU)")
        try:
            get_advantage(self.advantage)
        except AdvantageError as exc:
            raise RLError(f"learner.advantage: {exc}") from None


def _freeze_below(model: DiffusionLM, top: int) -> None:
    """Leave only the top ``top`` transformer layers and what lies above them (a final norm, the
    heads' norm and biases, the critic head) trainable; the embeddings, which the output
    projection shares, and the layers below keep their weights."""
    backbone = model.backbone
    n = backbone.config.num_hidden_layers
    layers = next((m for m in backbone.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n), None)
    if layers is None:
        raise RLError(f"learner.train_layers: found no list of {n} transformer layers in this {type(backbone).__name__}; "
                      f"set learner.train_layers=0 to train every parameter")
    if top > n:
        raise RLError(f"learner.train_layers={top} but the model has {n} transformer layers; give at most {n} "
                      f"(0 = every parameter)")
    backbone.requires_grad_(False)
    for layer in layers[n - top:]:
        layer.requires_grad_(True)
    inside = {id(p) for p in layers.parameters()} | {id(p) for p in backbone.get_input_embeddings().parameters()}
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is not None:
        inside |= {id(p) for p in embeddings.parameters()}
    for p in backbone.parameters():  # what sits above the layers, e.g. ModernBERT's final norm
        if id(p) not in inside:
            p.requires_grad_(True)


def _device(cfg: LearnerConfig) -> torch.device:
    if cfg.num_gpus > 0:
        if not torch.cuda.is_available():
            raise RLError(f"learner.num_gpus={cfg.num_gpus} but torch sees no GPU here; set learner.num_gpus=0 to "
                          "learn on CPU")
        return torch.device("cuda")
    return torch.device("cpu")


def _to_cpu(x: Any) -> Any:
    """``x`` with every tensor in it moved to CPU (a GPU learner's optimizer state, for a driver
    or checkpoint without CUDA; ``load_state_dict`` moves it back to the parameters' device)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


class Learner:
    """Policy (with its critic head) under training, the frozen reference and the optimizer."""

    def __init__(self, model_dir: str, cfg: LearnerConfig, *, seed: int = 0) -> None:
        self.cfg = cfg
        self.device = _device(cfg)
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.policy = DiffusionLM.load(model_dir, device=self.device)
        self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.policy.eval()  # no dropout: the recomputed log-probs must be those that were sampled
        if cfg.train_layers:
            _freeze_below(self.policy, cfg.train_layers)
        self.opt = torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0
        self.pad = self.policy.special.pad
        self.rank, self.world = 0, 1

    # ---------------------------------------------------------------- data parallel

    def rendezvous(self) -> str:
        """``tcp://ADDRESS:PORT`` where this learner (rank 0) can host the process group: its
        outward address (loopback without a route) and a free port."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(("10.254.254.254", 1))  # UDP: no packet is sent, it only picks the interface
            address = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
        finally:
            probe.close()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return f"tcp://{address}:{port}"

    def join(self, rank: int, world: int, init_method: str, timeout_s: float = 300.0) -> int:
        """Join the learners' process group as ``rank`` of ``world`` (every learner calls it at
        once): NCCL on a GPU, gloo on CPU. From then on each takes its share of every minibatch
        and the gradients are summed before the step, so all hold the same weights."""
        import datetime

        import torch.distributed as dist

        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        self.rank, self.world = rank, world
        return rank

    def _sum_gradients(self) -> None:
        """All-reduce (sum) the gradients over the learners, as one flat buffer; a parameter this
        learner left without gradient counts as zero."""
        import torch.distributed as dist

        params = [p for p in self.policy.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        at = 0
        for p in params:
            n = p.numel()
            p.grad = flat[at:at + n].view_as(p).clone()
            at += n

    # ---------------------------------------------------------------- weights and state

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}

    def info(self) -> dict[str, Any]:
        return {"updates": self.updates, "mask_logit_bias": float(self.policy.mask_logit_bias),
                "device": str(self.device)}

    def state(self) -> dict[str, Any]:
        """Everything a resume needs besides the driver's own: weights, optimizer, RNG, updates."""
        return {"model": self.weights(), "optimizer": _to_cpu(self.opt.state_dict()), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "updates": self.updates}

    def load_state(self, state: dict[str, Any]) -> int:
        self.policy.load_state_dict(state["model"])
        try:
            self.opt.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise RLError(f"the checkpoint's optimizer state does not fit this learner ({exc}): it was saved with "
                          f"another learner.train_layers; resume with the run's own, or start a fresh out=") from None
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.updates = int(state["updates"])
        return self.updates

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---------------------------------------------------------------- update

    @staticmethod
    def _action_mask(ro: Rollouts) -> torch.Tensor:
        """(N, A) bool: the actions each sample took — the start choice first when it was learned
        (column 0), then the denoising steps."""
        if ro.start is None:
            return ro.step_mask
        return torch.cat([torch.ones(len(ro), 1, dtype=torch.bool), ro.step_mask], dim=1)

    def _values(self, ro: Rollouts) -> torch.Tensor:
        """(N, A) log V of the state each action was taken in (before the start choice:
        ``log Σ_c π(c) V(c)``)."""
        if ro.start is None:
            return ro.values(self.pad)
        return torch.cat([ro.start.log_value[:, None], ro.values(self.pad)], dim=1)

    @staticmethod
    def _shift(mean: torch.Tensor, width: int, start_only: bool) -> torch.Tensor:
        """(width,) what whitening subtracts from each action column: ``mean`` from every column, or
        from the start column alone."""
        shift = mean.expand(width).clone()
        if start_only:
            shift[1:] = 0
        return shift

    def advantages(self, batch: Sequence[Rollouts], rewards: Sequence[torch.Tensor],
                   start_rewards: Sequence[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per chunk: (advantages (N, A), action mask (N, A)) over the samples that have a reward.
        With a learned start choice it is action 0, the first step of the MDP (the estimators
        see it as one: ``gae`` bootstraps it from ``V(x_0)``, ``group`` gives it the group's).

        ``credit='split'`` takes ``start_rewards`` (one (N,) tensor per chunk: the reward of each
        sample's start as it was, NaN = none): the estimator sees the start choice alone, rewarded
        with its start's reward, and each denoising step gets ``R - R(start)``: the execution of
        the start is an exact baseline for the edits made from it (0 where they changed nothing)."""
        fn = get_advantage(self.cfg.advantage)
        split = self.cfg.credit == "split"
        if split and start_rewards is None:
            raise RLError("learner.credit='split' needs the reward of each sample's start (the driver scores them "
                          "with learner.credit=split); pass start_rewards, or set learner.credit=sample")
        out = []
        for c, (ro, r) in enumerate(zip(batch, rewards)):
            valid = ~torch.isnan(r)
            r0 = start_rewards[c] if split else None
            if split and ro.start is None:
                raise RLError("learner.credit='split' credits a learned start choice; these rollouts have none "
                              "(set rollout.start=edit with start_temperature > 0, or learner.credit=sample)")
            if r0 is not None:
                valid &= ~torch.isnan(r0)
            mask = self._action_mask(ro) & valid[:, None]
            values = self._values(ro).exp() if self.cfg.advantage not in CRITIC_FREE else None
            # Only samples with a reward reach the estimator: an unrewarded one must not pull a
            # group's baseline toward 0.
            rows = valid.nonzero().flatten()
            adv = torch.zeros(mask.shape, dtype=torch.float32)
            if rows.numel() and r0 is None:
                adv[rows] = fn(r[rows], None if values is None else values[rows], mask[rows], ro.group[rows],
                               lam=self.cfg.lam).float()
            elif rows.numel():
                adv[rows, :1] = fn(r0[rows], None if values is None else values[rows, :1], mask[rows, :1],
                                   ro.group[rows], lam=self.cfg.lam).float()
                adv[rows, 1:] = (r[rows] - r0[rows])[:, None].float()
            out.append((torch.where(mask, adv, 0.0), mask))
        if self.cfg.whiten:
            # With split only the start column is centred (and sets the mean and std): the steps
            # keep their exact baseline, 0 where the edits changed nothing, scaled by the same std.
            flat = torch.cat([a[m[:, 0], 0] if split else a[m] for a, m in out])
            if flat.numel() > 1:
                mean, std = flat.mean(), flat.std()
                out = [(torch.where(m, (a - self._shift(mean, a.shape[1], split)) / (std + 1e-6), 0.0), m)
                       for a, m in out]
        return out

    def train(self, batch: Sequence[Rollouts], rewards: Sequence[torch.Tensor],
              start_rewards: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
        """One update on ``batch`` (chunks of rollouts) with ``rewards`` (one (N,) tensor per chunk,
        NaN = no reward) and, for ``credit='split'``, the rewards of the samples' starts. Returns
        the metrics of the update (means over optimizer steps)."""
        t0 = time.perf_counter()
        for r in rewards:
            finite = r[~torch.isnan(r)]
            if finite.numel() and (float(finite.min()) < 0 or float(finite.max()) > 1):
                raise RLError(f"rewards must lie in [0, 1] for the value V = P(success), got [{float(finite.min()):g}, "
                              f"{float(finite.max()):g}]; add 'clip: [0, 1]' to the reward composition")
        advs = self.advantages(batch, rewards, start_rewards)
        # The reference's start log-probs, once per batch (it is frozen): one forward over the candidates.
        with torch.no_grad(), self._autocast():
            ref_start = [None if ro.start is None else self._start_log_probs(self.reference, ro.start,
                                                                             torch.arange(len(ro)))[0].float()
                         for ro in batch]
        sums: dict[str, float] = {}
        n_opt = 0
        for _ in range(self.cfg.epochs):
            rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
            for c, (_, mask) in enumerate(advs):
                rows = torch.nonzero(mask.any(-1)).flatten()
                for idx in group_minibatches(batch[c].group[rows], rows, self.cfg.minibatch, rng):
                    m = self._minibatch(batch[c], rewards[c], advs[c][0], advs[c][1], idx, ref_start[c])
                    for k, v in m.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n_opt += 1
        metrics = {k: v / max(1, n_opt) for k, v in sums.items()}
        metrics.update(self._value_metrics(batch, rewards, advs))
        metrics.update(self._greedy_metrics(batch, rewards, ref_start))
        self.updates += 1
        metrics["rl/optimizer_steps"] = float(n_opt)
        metrics["time/learn_s"] = time.perf_counter() - t0
        return metrics

    def _minibatch(self, ro: Rollouts, r: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                   idx: torch.Tensor, ref_start: torch.Tensor | None = None) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        tr = ro.trajectory
        off = 0 if ro.start is None else 1  # column 0 of adv and mask is the start action
        starts = mask[idx, 0] if off else torch.zeros(len(idx), dtype=torch.bool)
        chosen = subsample_steps(mask[idx, off:], cfg.step_subsample, self.generator)  # (n, K)
        total = int(chosen.sum()) + int(starts.sum())  # of the whole minibatch: every learner's share
        if total == 0:
            return {}
        # With several learners each takes every world-th sample; the shares below stay those of
        # the whole minibatch, so the summed gradients are the one learner's.
        mine = torch.arange(len(idx)) % self.world == self.rank
        chosen, starting = chosen & mine[:, None], idx[starts & mine]
        steps = int(chosen.sum())
        self.opt.zero_grad(set_to_none=True)
        L = tr.states.shape[-1]
        prompt_all = ro.input_ids[idx, :-L]
        attn_all = ro.attention_mask[idx]
        sums: dict[str, float] = {}
        for k in torch.nonzero(chosen.any(0)).flatten().tolist():
            sub = torch.nonzero(chosen[:, k]).flatten()  # positions within idx
            rows = idx[sub]
            share = len(sub) / total
            prompt, attn = prompt_all[sub].to(dev), attn_all[sub].to(dev)
            state, tokens = tr.states[k, rows].to(dev), tr.tokens[k, rows].to(dev)
            commit = tr.committed[k, rows].to(dev)
            with self._autocast():
                step = evaluate_step(self.policy, prompt, attn, state, tokens, commit, tr)
                with torch.no_grad():
                    ref = evaluate_step(self.reference, prompt, attn, state, tokens, commit, tr)
            one = torch.ones(len(sub), 1, dtype=torch.bool, device=dev)
            loss, m = ppo_loss(step.logp[:, None], tr.logprobs[k, rows].to(dev)[:, None], adv[rows, k + off].to(dev)[:, None],
                               one, clip=cfg.clip, ref_logp=ref.logp.detach()[:, None], kl_coef=cfg.kl_coef,
                               entropy=step.entropy[:, None], entropy_coef=cfg.entropy_coef)
            log_v = value_readout(step.critic, slot_positions(state, self.pad))
            v_loss = value_loss(log_v, r[rows].to(dev))
            ((loss + cfg.value_coef * v_loss) * share).backward()
            m["rl/value_loss"] = v_loss.detach()
            for name, value in m.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(sub) / steps
        if len(starting):
            assert ref_start is not None
            sums.update(self._start_loss(ro, starting, adv[starting, 0].to(dev), ref_start[starting],
                                         len(starting) / total))
        if self.world > 1:
            self._sum_gradients()
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            sums["rl/grad_norm"] = float(norm)
        self.opt.step()
        sums["rl/steps_per_sample"] = (total - int(starts.sum())) / len(idx)  # denoising steps re-run
        return sums

    def _start_log_probs(self, model: DiffusionLM, st: StartChoice, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(chosen) (n,) of ``rows``' start choices under ``model``, and the entropy (n,) of
        each one's choice: one forward over the candidates of their tasks."""
        dev = self.device
        tasks, local = torch.unique(st.owner[st.chosen[rows]], return_inverse=True)
        cand = torch.nonzero(torch.isin(st.owner, tasks)).flatten()
        seg = torch.searchsorted(tasks, st.owner[cand]).to(dev)
        ll, _ = slot_scores(model, st.input_ids[cand].to(dev), st.attention_mask[cand].to(dev))
        logp = segment_log_softmax(ll / st.temperature, seg, len(tasks))
        where = torch.full((len(st.owner),), -1, dtype=torch.long)
        where[cand] = torch.arange(len(cand))
        entropy = segment_entropy(logp, seg, len(tasks))
        return logp[where[st.chosen[rows]].to(dev)], entropy[local.to(dev)]

    def _start_loss(self, ro: Rollouts, rows: torch.Tensor, adv: torch.Tensor, ref: torch.Tensor,
                    share: float) -> dict[str, float]:
        """The start action's PPO term for ``rows`` (backward done, weighted by ``share``) with the
        reference's log-probs ``ref`` of their choices; its metrics under ``start/``."""
        cfg, st = self.cfg, ro.start
        assert st is not None
        with self._autocast():
            logp, entropy = self._start_log_probs(self.policy, st, rows)
        ref = ref.to(self.device)
        weight = None if st.weight is None else st.weight[rows].to(self.device)[:, None]
        loss, m = ppo_loss(logp[:, None], st.logp[rows].to(self.device)[:, None], adv[:, None],
                           torch.ones(len(rows), 1, dtype=torch.bool, device=self.device), clip=cfg.clip,
                           ref_logp=ref[:, None], kl_coef=cfg.kl_coef, entropy=entropy[:, None],
                           entropy_coef=cfg.entropy_coef, weights=weight)
        (loss * share).backward()
        return {"start/" + k.split("/", 1)[1]: float(v) for k, v in m.items()}

    @staticmethod
    def _greedy_metrics(batch: Sequence[Rollouts], rewards: Sequence[torch.Tensor],
                        ref_start: Sequence[torch.Tensor | None]) -> dict[str, float]:
        """A held-out signal at no cost: the batch's tasks are new to the policy, so the reward of
        the sample whose start the behaviour policy finds most likely, against the one the frozen
        reference (the SFT model) would have taken among the same samples, estimates what the
        updates so far did to the evaluation's greedy start choice (``start/greedy_gain``; the
        samples carry their edits, which the evaluation does not make)."""
        own, ref = [torch.zeros(0)], [torch.zeros(0)]
        for ro, r, rs in zip(batch, rewards, ref_start):
            if rs is not None:  # a learned start choice
                own.append(greedy_rewards(ro.start.logp, r, ro.group))
                ref.append(greedy_rewards(rs.cpu(), r, ro.group))
        a, b = torch.cat(own), torch.cat(ref)
        if not a.numel():
            return {}
        return {"start/greedy_reward": float(a.mean()), "start/ref_greedy_reward": float(b.mean()),
                "start/greedy_gain": float((a - b).mean())}

    def _value_metrics(self, batch: Sequence[Rollouts], rewards: Sequence[torch.Tensor],
                       advs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Explained variance of the behaviour critic's V(x_k) for R over valid steps; advantage stats."""
        vs, rs, flat = [], [], []
        for ro, r, (a, m) in zip(batch, rewards, advs):
            flat.append(a[m])
            values = self._values(ro).exp()
            vs.append(values[m])
            rs.append(torch.nan_to_num(r, nan=0.0)[:, None].expand_as(m)[m])
        out: dict[str, float] = {}
        v, t, a = torch.cat(vs), torch.cat(rs), torch.cat(flat)
        if t.numel():
            out["value/explained_variance"] = explained_variance(v, t)
            out["value/mean"] = float(v.mean())
            out["rl/adv_abs_mean"] = float(a.abs().mean())
        return {k: x for k, x in out.items() if not (isinstance(x, float) and math.isnan(x))}
