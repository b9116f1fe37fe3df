"""Rollouts: a policy copy samples assertions for tasks and records the denoising trajectories.

A :class:`RolloutWorker` is a plain class (the driver wraps it in ``ray.remote``): it holds a
copy of the policy, takes the learner's weights each iteration (:meth:`RolloutWorker.set_weights`)
and turns a list of tasks into :class:`Rollouts` — ``samples`` per task, from an all-[MASK] slot
or by editing the start the model itself picks among retrieved training targets (the edit system
of ``pretrain.evaluate``). Everything the learner needs travels with them: the start rows, the
trajectory (states, committed positions, tokens, the behaviour policy's per-step log-probs and
the critic logits of every state), the decoded texts and the critic's value of the final slot.

Deterministic given the weights, the tasks and the seed: a rollout lost with its actor is redone
identically elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import torch

from pretrain.data import Batch, DataConfig, Encoded, Encoder, collate
from pretrain.evaluate import edit_starts, start_candidates, start_rows
from pretrain.model import DiffusionLM
from pretrain.retrieval import Retriever
from pretrain.sampler import SamplerConfig, Trajectory, diffusion_generate, edit_start, slot_scores
from sandbox.tasks import Task

from .ppo import segment_log_softmax, value_readout

__all__ = ["RolloutConfig", "Rollouts", "RolloutWorker", "StartChoice", "enumeration_weights", "slot_positions"]


def _default_sampler() -> SamplerConfig:
    # The evaluation's edit system, sampled at temperature 1 so that a task's samples differ; the
    # rollout's mask_share adds random edits so that there is something to learn at every start.
    return SamplerConfig(temperature=1.0, steps=48, block_size=1, eos_when_parses=True, syntax_guard=True,
                         edit_threshold=0.05, remask="critic", remask_budget=0.1)


@dataclass
class RolloutConfig:
    """How rollouts are sampled."""

    samples: int = field(default=4, metadata={"help": "samples per task (the group of the 'group' advantage)"})
    start: Literal["edit", "mask"] = field(default="edit", metadata={"help": "edit: denoise from the start the model picks among retrieved training targets, its doubtful positions remasked; mask: from an all-[MASK] slot"})
    retrieve_k: int = field(default=5, metadata={"help": "edit: the model picks its start among this many most similar training targets"})
    adapt_cap: int = field(default=16, metadata={"help": "edit: at most this many name adaptations per retrieved target"})
    start_temperature: float = field(default=1.0, metadata={"help": "edit: draw each sample's start among its task's candidates with probability proportional to exp(log-likelihood / start_temperature), an action the learner trains (the evaluation takes the most likely); 0 = always the most likely, not learned"})
    start_top: int = field(default=8, metadata={"help": "edit: the start is drawn among the task's this many most likely candidates (the learner re-scores them every minibatch)"})
    start_draw: Literal["sample", "all"] = field(default="sample", metadata={"help": "edit: sample: each sample's start drawn from π(c); all: the task's candidates in turn (each once when samples = start_top), the start term weighted by π(c) so its gradient is the exact expectation over the choice"})
    own_share: float = field(default=0.5, metadata={"help": "edit: this share of each task's samples (the last ones of its group) is the policy's own, denoised from an all-[MASK] slot with no retrieved start (their start term weighs 0); the rest edit a start; so what the policy proposes is learned, not only which fixed start it picks"})
    mask_share: float = field(default=0.3, metadata={"help": "edit: besides the positions the critic doubts, mask a share of the start's other positions, drawn per sample from U(0, mask_share), so that every sample has something to decide"})
    sampler: SamplerConfig = field(default_factory=_default_sampler, metadata={"help": "sampler settings (temperature > 0 so a task's samples differ; remask critic | confidence | none)"})

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"rollout.samples={self.samples} must be >= 1 (4 or more for the 'group' advantage)")
        if self.start not in ("edit", "mask"):
            raise ValueError(f"rollout.start={self.start!r} must be 'edit' or 'mask'")
        if self.sampler.top_p < 1.0:
            raise ValueError(f"rollout.sampler.top_p={self.sampler.top_p}: RL needs top_p=1 (a token outside the nucleus "
                             f"the learner recomputes would have no log-probability); lower the temperature instead")
        if not 0.0 <= self.mask_share <= 1.0:
            raise ValueError(f"rollout.mask_share={self.mask_share} must lie in [0, 1]")
        if not 0.0 <= self.own_share <= 1.0:
            raise ValueError(f"rollout.own_share={self.own_share} must lie in [0, 1]")
        if self.start_temperature < 0:
            raise ValueError(f"rollout.start_temperature={self.start_temperature} must be >= 0 (0 = the most likely start)")
        if self.start_draw not in ("sample", "all"):
            raise ValueError(f"rollout.start_draw={self.start_draw!r} must be 'sample' or 'all'")
        if self.retrieve_k < 1 or self.adapt_cap < 1 or self.start_top < 1:
            raise ValueError("rollout.retrieve_k, rollout.adapt_cap and rollout.start_top must be >= 1")


def slot_positions(states: torch.Tensor, pad: int) -> torch.Tensor:
    """(..., L) bool: the slot positions the value counts — all but the [PAD]s after an [EOS]
    (a state's undecided positions hold [MASK], never [PAD])."""
    return states != pad


@dataclass
class StartChoice:
    """The start action of an edit rollout: each sample's start drawn among its task's candidate
    starts with ``π(c) ∝ exp(ℓ(c) / temperature)``, ℓ the policy's slot log-likelihood
    (:func:`pretrain.sampler.slot_log_likelihood`) — the score whose argmax the evaluation starts
    from. What the learner needs to recompute ``log π(c)``: the candidate rows and who owns them."""

    input_ids: torch.Tensor  # (C, T') every candidate: prompt + slot
    attention_mask: torch.Tensor  # (C, T')
    owner: torch.Tensor  # (C,) long: the candidate's task, 0.. within these rollouts
    texts: list[str]  # (C,)
    chosen: torch.Tensor  # (N,) long: each sample's candidate
    logp: torch.Tensor  # (N,) log π(chosen) under the behaviour policy
    log_value: torch.Tensor  # (N,) log Σ_c π(c) V(c): the behaviour critic's value before the choice
    temperature: float
    weight: torch.Tensor | None = None  # (N,) the start term's weight per sample (start_draw 'all'); None = 1


@dataclass
class Rollouts:
    """One batch of samples: ``N = len(texts)`` rows, ``samples`` consecutive rows per task."""

    iteration: int
    version: int  # the policy version (learner updates so far) that sampled them
    task_ids: list[str]  # (N,)
    group: torch.Tensor  # (N,) long: the task's index in the iteration's task list
    texts: list[str]  # (N,) decoded assertions
    input_ids: torch.Tensor  # (N, T) prompt + start slot (what the trajectory began from)
    attention_mask: torch.Tensor  # (N, T)
    trajectory: Trajectory
    final_log_v: torch.Tensor  # (N,) log V of the finished slot under the behaviour policy's critic
    start: StartChoice | None = None  # the learned start action (edit rollouts with start_temperature > 0)
    seconds: float = 0.0
    start_texts: list[str] | None = None  # (N,) edit rollouts: each sample's start decoded before any edit

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def step_mask(self) -> torch.Tensor:
        """(N, K) bool: the steps each sample really took (a prefix of each row)."""
        return self.trajectory.active.t().contiguous()

    def values(self, pad: int) -> torch.Tensor:
        """(N, K) log V(x_k) of the behaviour policy's critic at every recorded state."""
        tr = self.trajectory
        assert tr.critic is not None, "the trajectory was recorded without critic logits"
        return value_readout(tr.critic, slot_positions(tr.states, pad)).t().contiguous()


def explore_mask(slot: torch.Tensor, share: float, generator: torch.Generator, special) -> torch.Tensor:
    """(B, L) bool: a random subset of each row's decided tokens, each row masking a share drawn
    from U(0, ``share``) of them. [EOS] and [PAD] stay: a masked [EOS] would reopen the whole
    tail of the slot (its [PAD]s read as [MASK] then), not explore a token."""
    decided = (slot != special.mask) & (slot != special.pad) & (slot != special.eos)
    B, L = slot.shape
    row_share = torch.rand(B, 1, generator=generator) * share
    return decided & (torch.rand(B, L, generator=generator) < row_share)


def enumeration_weights(picks: torch.Tensor, prob: torch.Tensor, group: int) -> torch.Tensor:
    """(N,) weights of enumerated start choices: ``picks`` (N,) the candidate of each sample, in
    groups of ``group`` consecutive samples per task, ``prob`` (N,) the behaviour policy's π of
    it. A candidate taken n times in its group weighs ``group · π(c) / n`` each, so that a
    group's mean of ``w · f(c)`` is ``Σ_c π(c) f(c)`` over the candidates it took: the exact
    expectation over the choice when every candidate is taken."""
    n = (picks.view(-1, group)[:, :, None] == picks.view(-1, group)[:, None, :]).sum(-1).flatten()
    return group * prob / n


class RolloutWorker:
    """A policy copy that samples :class:`Rollouts` (plain class; Ray wraps it in the driver).

    ``train`` are the training tasks edit starts are retrieved from (a task never retrieves itself).
    """

    def __init__(self, model_dir: str, cfg: RolloutConfig, train: Sequence[Task] = (), *, device: str = "cpu",
                 threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.cfg = cfg
        self.model = DiffusionLM.load(model_dir, device=device).eval()
        self.encoder = Encoder(self.model.tokenizer, DataConfig(slot_len=self.model.slot_len,
                                                                 max_prompt=self.model.max_prompt))
        if cfg.start == "edit" and not train:
            raise ValueError("rollout.start='edit' needs training tasks to retrieve starts from; give the task "
                             "file's train split, or set rollout.start=mask")
        # A training task retrieves from other test files only, as a valid task does (splits are by file).
        self.retriever = Retriever(train, other_modules=True) if cfg.start == "edit" else None
        self.version = 0

    def set_weights(self, state: dict[str, torch.Tensor], version: int, mask_logit_bias: float | None = None) -> int:
        self.model.load_state_dict(state)
        if mask_logit_bias is not None:
            self.model.mask_logit_bias = mask_logit_bias
        self.version = version
        return version

    @torch.no_grad()
    def greedy(self, tasks: Sequence[Task]) -> list[str]:
        """One assertion per task from the evaluation's greedy system (``pretrain.evaluate``: the
        most likely retrieved start, critic-doubted positions denoised greedily) with the weights
        this copy holds: what ``trident eval`` and ``rl.evaluate`` score, here on held-out
        training tasks (they retrieve from other test files only, as a valid task does)."""
        from pretrain.evaluate import EvalConfig, generate

        ev = EvalConfig(retrieve_k=self.cfg.retrieve_k, adapt_cap=self.cfg.adapt_cap)
        starts = None
        if self.retriever is not None:
            starts = edit_starts(self.model, self.encoder, tasks, self.retriever, retrieve_k=ev.retrieve_k,
                                 adapt_cap=ev.adapt_cap, batch_size=ev.batch_size)
        return generate(self.model, self.encoder, tasks, ev.sampler, starts=starts, batch_size=ev.batch_size)

    def _explore(self, ids: torch.Tensor, seed: int) -> torch.Tensor:
        L = self.model.slot_len
        g = torch.Generator().manual_seed(seed + 7919)
        extra = explore_mask(ids[:, -L:].cpu(), self.cfg.mask_share, g, self.model.special).to(ids.device)
        out = ids.clone()
        out[:, -L:] = torch.where(extra, torch.full_like(extra, self.model.special.mask, dtype=ids.dtype), ids[:, -L:])
        return out

    @torch.no_grad()
    def rollout(self, tasks: Sequence[Task], *, iteration: int, seed: int, group_offset: int = 0) -> Rollouts:
        """``cfg.samples`` samples of each task (rows task-major), sampled with ``seed``."""
        t0 = time.perf_counter()
        model, cfg = self.model, self.cfg
        G = cfg.samples
        starts, choice = None, None
        if cfg.start == "edit" and cfg.start_temperature > 0:
            choice, rows = self._choose_starts(tasks, seed)
        else:
            if cfg.start == "edit":
                assert self.retriever is not None
                starts = edit_starts(model, self.encoder, tasks, self.retriever, retrieve_k=cfg.retrieve_k,
                                     adapt_cap=cfg.adapt_cap)
            rows = [r for r in start_rows(self.encoder, tasks, starts) for _ in range(G)]
        if cfg.start == "edit":
            rows = self._own_rows(tasks, rows, choice)
        batch = collate(rows, model.special, 0.0).to(model.device)
        ids = batch.input_ids
        L = model.slot_len
        sampler = replace(cfg.sampler, seed=seed)
        start_texts = None
        if cfg.start == "edit":
            start_texts = [self.encoder.decode(row.tolist()) for row in ids[:, -L:]]
            ids = edit_start(model, ids, batch.attention_mask, sampler)
            if cfg.mask_share > 0:
                ids = self._explore(ids, seed)
        result = diffusion_generate(model, ids, batch.attention_mask, sampler, record=True)
        final = torch.cat([ids[:, :-L], result.tokens], dim=1)
        critic = model(final, batch.attention_mask, last=L).critic[:, -L:]
        final_log_v = value_readout(critic, slot_positions(result.tokens, model.special.pad)).cpu()
        texts = [self.encoder.decode(row.tolist()) for row in result.tokens]
        group = torch.arange(len(tasks)).repeat_interleave(G) + group_offset
        assert result.trajectory is not None
        return Rollouts(iteration=iteration, version=self.version, task_ids=[t.id for t in tasks for _ in range(G)],
                        group=group, texts=texts, input_ids=ids.cpu(), attention_mask=batch.attention_mask.cpu(),
                        trajectory=result.trajectory, final_log_v=final_log_v, start=choice,
                        seconds=time.perf_counter() - t0, start_texts=start_texts)

    def own_samples(self) -> int:
        """Samples of each group that are the policy's own (see ``RolloutConfig.own_share``)."""
        return round(self.cfg.samples * self.cfg.own_share) if self.cfg.start == "edit" else self.cfg.samples

    def _own_rows(self, tasks: Sequence[Task], rows: list[Encoded], choice: StartChoice | None) -> list[Encoded]:
        """``rows`` with the last :meth:`own_samples` of each task's group replaced by its prompt and
        an all-[MASK] slot; their start term (``choice``) weighs 0."""
        G, own = self.cfg.samples, self.own_samples()
        if not own:
            return rows
        rows = list(rows)
        blank = start_rows(self.encoder, tasks, None)
        mine = torch.zeros(len(rows), dtype=torch.bool)
        for i in range(len(tasks)):
            for j in range((i + 1) * G - own, (i + 1) * G):
                rows[j] = blank[i]
                mine[j] = True
        if choice is not None:
            weight = choice.weight if choice.weight is not None else torch.ones(len(rows))
            choice.weight = torch.where(mine, torch.zeros_like(weight), weight)
        return rows

    def _choose_starts(self, tasks: Sequence[Task], seed: int) -> tuple[StartChoice, list[Encoded]]:
        """Draw ``samples`` starts per task among its ``start_top`` most likely candidates (a task
        without any fitting candidate has one: its nearest target, or an all-[MASK] slot); the
        rows, task-major."""
        model, cfg, G = self.model, self.cfg, self.cfg.samples
        assert self.retriever is not None
        rows, owner, texts = start_candidates(self.encoder, tasks, self.retriever, retrieve_k=cfg.retrieve_k,
                                              adapt_cap=cfg.adapt_cap)
        for i in sorted(set(range(len(tasks))) - set(owner)):
            nearest = self.retriever.nearest(tasks[i]).target
            rows.append(start_rows(self.encoder, [tasks[i]], [nearest])[0])
            owner.append(i)
            texts.append(nearest)
        cand = collate(rows, model.special, 0.0)
        ll, log_v = self._score(cand)
        keep = []
        for i in range(len(tasks)):
            members = [c for c, o in enumerate(owner) if o == i]
            keep += sorted(sorted(members, key=lambda c: -float(ll[c]))[:cfg.start_top])
        # The kept rows as scored (the learner recomputes log π from exactly these tensors).
        at = torch.tensor(keep)
        rows, texts, ll, log_v = [rows[c] for c in keep], [texts[c] for c in keep], ll[at], log_v[at]
        cand_ids, cand_attn = cand.input_ids[at], cand.attention_mask[at]
        owners = torch.tensor([owner[c] for c in keep])
        logp = segment_log_softmax(ll / cfg.start_temperature, owners, len(tasks))
        # log Σ_c π(c) V(c) per task: the value before the choice, the start action's baseline
        joint = logp + log_v
        top = torch.full((len(tasks),), float("-inf")).scatter_reduce(0, owners, joint, "amax")
        before = top + torch.zeros(len(tasks)).index_add(0, owners, (joint - top[owners]).exp()).log()
        g = torch.Generator().manual_seed(seed + 104729)
        chosen = []
        for i in range(len(tasks)):
            members = torch.nonzero(owners == i).flatten()
            if cfg.start_draw == "all":
                chosen.append(members[torch.arange(G) % len(members)])
            else:
                chosen.append(members[torch.multinomial(logp[members].exp(), G, replacement=True, generator=g)])
        picks = torch.cat(chosen)
        weight = enumeration_weights(picks, logp[picks].exp(), G) if cfg.start_draw == "all" else None
        choice = StartChoice(input_ids=cand_ids, attention_mask=cand_attn, owner=owners, texts=texts,
                             chosen=picks, logp=logp[picks], log_value=before[owners[picks]],
                             temperature=cfg.start_temperature, weight=weight)
        return choice, [rows[int(c)] for c in picks]

    def _score(self, cand: Batch, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot log-likelihood and log V of collated candidate rows."""
        model = self.model
        ll, log_v = [], []
        for lo in range(0, len(cand.input_ids), batch_size):
            ids = cand.input_ids[lo:lo + batch_size].to(model.device)
            score, critic = slot_scores(model, ids, cand.attention_mask[lo:lo + batch_size].to(model.device))
            ll.append(score.cpu())
            log_v.append(value_readout(critic, slot_positions(ids[:, -model.slot_len:], model.special.pad)).cpu())
        return torch.cat(ll), torch.cat(log_v)
