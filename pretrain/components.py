"""The Trident loss components: named, scheduled, logged terms of the Stage 1 loss.

Chosen with the ``loss`` section of ``trident sft`` (YAML or ``key=value`` on the CLI)::

    loss:
      teacher: runs/teacher/sft/final        # a DiffusionLM directory: kl, jsd and layer need one
      components:
        - {name: focal, gamma: 2.0, weight: {start: 0.5, end: 0.3}}
        - {name: jsd, beta: 0.5, temperature: 2.0, weight: {start: 0.3, end: 0.4}}
        - {name: semantic, weight: {start: 0.2, end: 0.3, shape: cosine}}

An entry is a name (weight 1, default parameters: ``loss.components=[ce,kl]``) or a mapping with
``name``, an optional ``weight`` (a number, or a :class:`~pretrain.distill.WeightSchedule` as
``{start, end, shape, at}``) and the component's parameters. Three kinds, by where they act:

- **token** (``ce``, ``focal``, ``kl``, ``jsd``): a per-position loss ℓ_c (B, T). The loss the
  modifiers see and reduce is ``ℓ = Σ_c w_c(progress) · ℓ_c``, so mask-ratio weighting, hard
  negatives and the rest apply to every token component alike.
- **sequence** (``semantic``, ``ast``, ``pans``, or ``risk`` with any reward of ``rewards/``):
  minimum-risk training. Each row's slot is sampled from the student's own distribution at the
  positions it must fill; the reward R of the decoded assertion (risk 1 − R) weights the
  score-function gradient ``−(R − b) ∇ mean log p(sample)`` with a leave-one-out baseline b.
- **hidden** (``layer``): intermediate-layer distillation, MSE between student layers (through
  a learned projection each) and the teacher layers a map pairs them with.

Every component's raw value is logged as ``loss/<name>`` (for sequence components: the mean
risk 1 − R of the sampled slots) and its current weight as ``weight/<name>``, each step.
Progress runs from 0 at the first step to 1 at the last, so a schedule meets both endpoints.

Notation: B batch, L slot length, V vocabulary, H hidden size.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .corruption import KIND_IDENTITY
from .distill import SHAPES, WeightSchedule, focal_from_log_probs, jsd_from_log_probs, kl_from_log_probs
from .losses import LossConfigError, LossState, _typed, cross_entropy
from .sampler import sample_tokens

if TYPE_CHECKING:
    from sandbox.tasks import Task

    from .model import DiffusionLM

__all__ = ["LossConfig", "Component", "TokenComponent", "SequenceComponent", "MinimumRisk", "LayerDistillation",
           "Components", "register_component", "known_components", "build_component", "SequenceBatch",
           "check_teacher_dir", "load_teacher"]


@dataclass
class LossConfig:
    """The Trident loss: which components, their weights over training, and the teacher."""

    components: list[Any] = field(default_factory=lambda: ["ce"], metadata={"help": "loss components: names or {name, weight: w | {start, end, shape, at}, param: value}; known: ce, focal, kl, jsd, semantic, ast, pans, risk, layer"})
    teacher: Path | None = field(default=None, metadata={"help": "teacher DiffusionLM directory (a `trident sft` final/) with the student's tokenizer; needed by kl, jsd and layer"})

    def __post_init__(self) -> None:
        built = Components.from_config(self.components)  # an unknown name or parameter fails here, before any work
        needs = [c.name for c in built.items if c.needs_teacher]
        if needs and self.teacher is None:
            raise LossConfigError(f"loss component(s) {', '.join(map(repr, needs))} distil from a teacher, but "
                                  f"loss.teacher is not set; give loss.teacher=<a DiffusionLM directory, e.g. a "
                                  f"`trident sft` run's final/> or drop them")


# --------------------------------------------------------------------------- components


class Component(nn.Module):
    """One term of the loss. A component's parameters are the keyword-only arguments of its
    ``__init__`` (checked against their annotations when built from config); ``schedule`` is
    set by :func:`build_component`. An ``nn.Module``, so that learned parts (the layer
    projections) train and checkpoint with the student."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["token", "sequence", "hidden"]] = "token"
    needs_teacher: ClassVar[bool] = False
    schedule: WeightSchedule

    def describe(self) -> str:
        return self.name


class TokenComponent(Component):
    """A per-position loss ℓ_c (B, T) read from the :class:`LossState`."""

    def token(self, state: LossState) -> torch.Tensor:
        raise NotImplementedError


class SequenceComponent(Component):
    """A sequence-level term: ``start`` (may hand work to a thread), then ``finish`` gives the
    surrogate (a scalar with grad) and the raw risk to log."""

    kind = "sequence"

    def start(self, batch: SequenceBatch) -> Any:
        raise NotImplementedError

    def finish(self, batch: SequenceBatch, started: Any) -> tuple[torch.Tensor, float]:
        raise NotImplementedError


_COMPONENTS: dict[str, type[Component]] = {}


def register_component(name: str) -> Callable[[type[Component]], type[Component]]:
    def register(cls: type[Component]) -> type[Component]:
        if name in _COMPONENTS and _COMPONENTS[name] is not cls:
            raise LossConfigError(f"loss component name {name!r} is already taken by {_COMPONENTS[name].__qualname__}")
        cls.name = name
        _COMPONENTS[name] = cls
        return cls

    return register


def known_components() -> list[str]:
    return sorted(_COMPONENTS)


def _params_of(cls: type[Component]) -> list[str]:
    """The parameters of a component class: its ``__init__`` keywords."""
    import inspect

    sig = inspect.signature(cls.__init__)
    return [p.name for p in list(sig.parameters.values())[1:] if p.kind == p.KEYWORD_ONLY]


def build_component(name: str, weight: Any = 1.0, **params: Any) -> Component:
    """A component from its name, weight (number or schedule mapping) and parameters."""
    cls = _COMPONENTS.get(name) if isinstance(name, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(name), known_components(), n=1)
        raise LossConfigError(f"unknown loss component {name!r}; known: {', '.join(known_components())}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
    valid = _params_of(cls)
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            raise LossConfigError(f"loss component {name!r} has no parameter {key!r}; its parameters: "
                                  f"{', '.join(['weight', *valid])}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    typed = _typed(_annotations(cls), params, name, what="loss component")
    try:
        comp = cls(**typed)
    except (TypeError, ValueError) as err:
        raise LossConfigError(f"loss component {name!r}: {err}") from None
    comp.schedule = _schedule(name, weight)
    return comp


def _annotations(cls: type[Component]) -> type:
    """A class holding the annotations of ``cls.__init__``: the shape ``_typed`` reads."""
    import typing

    hints = typing.get_type_hints(cls.__init__)
    hints.pop("return", None)
    return type(f"{cls.__name__}Params", (), {"__annotations__": hints})


def _schedule(name: str, weight: Any) -> WeightSchedule:
    if isinstance(weight, bool):
        raise LossConfigError(f"loss component {name!r}: weight {weight!r} is not a number or a schedule")
    if isinstance(weight, (int, float)):
        weight = {"start": weight, "end": weight}
    if not isinstance(weight, Mapping):
        raise LossConfigError(f"loss component {name!r}: weight must be a number or {{start, end, shape, at}}, "
                              f"not {weight!r}")
    unknown = set(weight) - {"start", "end", "shape", "at"}
    if unknown or "start" not in weight:
        raise LossConfigError(f"loss component {name!r}: a weight schedule is {{start, end, shape, at}} "
                              f"(end defaults to start; shape one of {', '.join(SHAPES)}), not {dict(weight)!r}")
    try:
        return WeightSchedule(float(weight["start"]), float(weight.get("end", weight["start"])),
                              weight.get("shape", "linear"), float(weight.get("at", 0.5)))
    except (TypeError, ValueError) as err:
        raise LossConfigError(f"loss component {name!r}: {err}") from None


# ..................................................................... token components


@register_component("ce")
class CrossEntropy(TokenComponent):
    """Cross-entropy to the corruption's targets (the masked-diffusion loss)."""

    def __init__(self) -> None:
        super().__init__()

    def token(self, state: LossState) -> torch.Tensor:
        return cross_entropy(state)


@register_component("focal")
class Focal(TokenComponent):
    """Focal loss ``-α (1 - p_y)^γ log p_y``: the easy tokens (most of a slot) count less."""

    def __init__(self, *, gamma: float = 2.0, alpha: float = 1.0) -> None:
        super().__init__()
        if gamma < 0 or alpha <= 0:
            raise ValueError(f"gamma={gamma} must be >= 0 and alpha={alpha} > 0")
        self.gamma, self.alpha = gamma, alpha

    def token(self, state: LossState) -> torch.Tensor:
        logp = state.log_probs.gather(-1, state.targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return focal_from_log_probs(logp, self.gamma, self.alpha)


class _Teacher(TokenComponent):
    needs_teacher = True

    def __init__(self, *, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.temperature = temperature

    def log_probs(self, state: LossState) -> tuple[torch.Tensor, torch.Tensor]:
        """Student and teacher log-probabilities at this temperature (shared through the state)."""
        if state.teacher_logits is None:
            raise LossConfigError("a teacher component ran without teacher logits; set loss.teacher")
        return state.tempered(self.temperature)


@register_component("kl")
class KL(_Teacher):
    """``KL(teacher ‖ student)`` at a temperature, times T² (Hinton et al.)."""

    def token(self, state: LossState) -> torch.Tensor:
        return kl_from_log_probs(*self.log_probs(state)) * self.temperature**2


@register_component("jsd")
class JSD(_Teacher):
    """Generalised JSD (TRL's GKD): ``β KL(t‖m) + (1-β) KL(s‖m)``, m the β-mixture; times T²."""

    def __init__(self, *, beta: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta={beta} must lie in [0, 1]")
        self.beta = beta

    def token(self, state: LossState) -> torch.Tensor:
        return jsd_from_log_probs(*self.log_probs(state), self.beta) * self.temperature**2


# ..................................................................... sequence components


@dataclass
class SequenceBatch:
    """What a sequence component needs of one training batch.

    ``logits`` (B, L, V) the student's slot logits (with grad); ``input_ids`` and ``kind``
    (B, L) the corrupted slot; ``tasks`` one :class:`~sandbox.tasks.Task` per row; ``gold``
    the rows' targets and ``teacher_text`` their sequence-level KD outputs (None: none);
    ``decode`` a slot's ids to text. The sampled slot, its texts and log-probabilities are
    computed once and shared by every sequence component of the step.
    """

    logits: torch.Tensor
    input_ids: torch.Tensor
    kind: torch.Tensor
    tasks: Sequence[Task]
    gold: Sequence[str]
    teacher_text: Sequence[str | None]
    decode: Callable[[Sequence[int]], str]
    forbidden: torch.Tensor
    generator: torch.Generator
    drawn: torch.Tensor | None = None  # (B, L) a draw from softmax(logits) already made (the critic's)
    _sample: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _texts: dict[int, str] = field(default_factory=dict, repr=False)
    _mean_logp: torch.Tensor | None = field(default=None, repr=False)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's own slot: a sample at every position it must fill (masked or wrong),
        the visible right tokens kept. Returns the slot (B, L) and where it sampled (B, L)."""
        if self._sample is None:
            filled = self.kind != KIND_IDENTITY
            drawn = self.drawn
            if drawn is None:
                drawn = sample_tokens(self.logits.detach(), self.forbidden, self.generator)  # (B, L)
            self._sample = (torch.where(filled, drawn, self.input_ids), filled)
        return self._sample

    def text(self, row: int) -> str:
        if row not in self._texts:
            self._texts[row] = self.decode(self.sample()[0][row].tolist())
        return self._texts[row]

    def mean_log_prob(self) -> torch.Tensor:
        """(B,) each row's mean log-probability of its sampled positions, with grad."""
        if self._mean_logp is None:
            slot, filled = self.sample()
            logits = self.logits.float()
            logp = logits.gather(-1, slot.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)  # (B, L)
            where = filled.float()
            self._mean_logp = (logp * where).sum(-1) / where.sum(-1).clamp(min=1)
        return self._mean_logp


_POOL = None


def _pool():
    """Threads that compute sequence rewards while the step's critic pass runs."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trident-reward")
    return _POOL


@register_component("risk")
class MinimumRisk(SequenceComponent):
    """Minimum-risk training with any reward of ``rewards/`` (risk = 1 − reward).

    ``reward``: a registered reward or ``package.module:function``; ``rows``: rows per step
    that are scored (0 = all; an execution reward costs a sandbox run per row, a model-based
    one an encoding); ``reference``: what ``target`` means to the reward — ``gold``,
    ``teacher`` (the row's sequence-level KD output, gold where it has none) or ``both`` (the
    mean of the two rewards).

    Surrogate: ``−Σ_b (R_b − b_b) · mean_i log p(ŷ_bi) / n`` over the scored rows with a reward
    (None, e.g. a sandbox failure, leaves a row out), ``b_b`` the mean reward of the other rows.
    """

    default_reward: ClassVar[str] = ""

    def __init__(self, *, reward: str = "", rows: int = 0, reference: Literal["gold", "teacher", "both"] = "gold") -> None:
        super().__init__()
        reward = reward or self.default_reward
        if not reward:
            raise ValueError("give reward=<a registered reward or package.module:function>")
        if rows < 0:
            raise ValueError(f"rows={rows} must be >= 0 (0 = every row)")
        from rewards.registry import resolve

        self.reward_ref, self.rows, self.reference = reward, rows, reference
        self.reward = resolve(reward)

    def describe(self) -> str:
        return self.name if self.reward_ref == self.default_reward else f"{self.name}({self.reward_ref})"

    def start(self, batch: SequenceBatch) -> tuple[list[int], Any]:
        """Pick the rows, decode their samples and start their rewards in a worker thread."""
        B = batch.logits.shape[0]
        rows = list(range(B)) if not self.rows or self.rows >= B else \
            sorted(torch.randperm(B, generator=batch.generator)[:self.rows].tolist())
        texts = [batch.text(b) for b in rows]
        args = (texts, [batch.tasks[b] for b in rows], [batch.gold[b] for b in rows], [batch.teacher_text[b] for b in rows])
        return rows, _pool().submit(self._rewards, *args)

    def finish(self, batch: SequenceBatch, started: tuple[list[int], Any]) -> tuple[torch.Tensor, float]:
        rows, future = started
        rewards = future.result()
        device = batch.logits.device
        r = torch.tensor([math.nan if v is None else float(v) for v in rewards], device=device)  # (B',)
        ok = ~torch.isnan(r)
        n = ok.sum()
        r0 = torch.where(ok, r, 0.0)
        baseline = (r0.sum() - r0) / (n - 1).clamp(min=1)  # leave-one-out: the mean of the others
        advantage = torch.where(ok, r0 - baseline, 0.0).detach()
        mean_logp = batch.mean_log_prob()[torch.tensor(rows, device=device)]
        surrogate = -(advantage * mean_logp).sum() / n.clamp(min=1)
        risk = float(1.0 - r0.sum() / n) if int(n) else float("nan")
        return surrogate, risk

    def sequence(self, batch: SequenceBatch) -> tuple[torch.Tensor, float]:
        return self.finish(batch, self.start(batch))

    def _rewards(self, texts: list[str], tasks: list[Task], gold: list[str], teacher: list[str | None]) -> list[float | None]:
        if self.reference == "gold":
            return self.reward(None, texts, task=tasks, target=gold)
        theirs = [t if t is not None else g for t, g in zip(teacher, gold)]
        to_teacher = self.reward(None, texts, task=tasks, target=theirs)
        if self.reference == "teacher":
            return to_teacher
        to_gold = self.reward(None, texts, task=tasks, target=gold)
        return [None if a is None or b is None else (a + b) / 2 for a, b in zip(to_gold, to_teacher)]


@register_component("semantic")
class Semantic(MinimumRisk):
    """Minimum risk with ``semantic``: cosine similarity of all-MiniLM-L6-v2 embeddings."""

    default_reward = "semantic"


@register_component("ast")
class AstValid(MinimumRisk):
    """Minimum risk with ``ast_valid``: the sampled slot parses as Python."""

    default_reward = "ast_valid"


@register_component("pans")
class Pans(MinimumRisk):
    """Minimum risk with ``pans``: passes in the sandbox, asserts, non-trivial, parses."""

    default_reward = "pans"


# ..................................................................... hidden components


@register_component("layer")
class LayerDistillation(Component):
    """Intermediate-layer distillation: ``mean_k MSE(P_k h_s[k], LN(h_t[map[k]]))`` over the slot
    positions that carry loss. ``map``: ``[[student_layer, teacher_layer], ...]`` with layers
    counted from 1 (the output of that transformer layer); empty = each student layer k paired
    with teacher layer round(k · n_teacher / n_student). ``P_k`` is a learned linear projection
    (H_s → H_t), trained with the student and saved in its checkpoints; the teacher's states are
    standardised per position (layer norm without parameters) so the term's scale does not hang
    on the teacher's."""

    kind = "hidden"
    needs_teacher = True

    def __init__(self, *, map: list = ()) -> None:  # noqa: A002 - the config key users write
        super().__init__()
        self.pairs = [tuple(p) for p in map]
        for p in self.pairs:
            if len(p) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in p):
                raise ValueError(f"map entry {list(p)!r} must be [student_layer, teacher_layer], layers counted from 1")
        self.projections = nn.ModuleList()

    def setup(self, student: DiffusionLM, teacher: DiffusionLM, seed: int = 0) -> None:
        """Resolve the map against both models and build the projections (initialised from
        ``seed``, so that a run is the same whatever ran before it in the process)."""
        ns, nt = student.num_layers, teacher.num_layers
        if not self.pairs:
            self.pairs = [(k, max(1, round(k * nt / ns))) for k in range(1, ns + 1)]
        for s, t in self.pairs:
            if s > ns or t > nt:
                raise LossConfigError(f"loss component 'layer': map pair [{s}, {t}] names a layer the models lack "
                                      f"(student has {ns} layers, teacher {nt}); layers count from 1")
        hs, ht = student.backbone.config.hidden_size, teacher.backbone.config.hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.projections = nn.ModuleList(nn.Linear(hs, ht) for _ in self.pairs).to(student.device)

    def hidden(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], where: torch.Tensor) -> torch.Tensor:
        """``student``/``teacher``: per-layer states (B, L, H); ``where`` (B, L) bool."""
        w = where.float()
        total = w.sum().clamp(min=1)
        losses = []
        for (s, t), proj in zip(self.pairs, self.projections):
            target = F.layer_norm(teacher[t].float(), teacher[t].shape[-1:])  # (B, L, H_t)
            err = (proj(student[s].float()) - target).pow(2).mean(-1)  # (B, L)
            losses.append((err * w).sum() / total)
        return torch.stack(losses).mean()


# --------------------------------------------------------------------------- the teacher


def check_teacher_dir(path: Path | None) -> Path:
    """``path`` if it holds a Trident model, else one error that says how to get one."""
    from .errors import TrainError
    from .model import TRIDENT_FILE

    if path is None:
        raise TrainError("the loss components distil from a teacher, but loss.teacher is not set; give a "
                         "DiffusionLM directory (a `trident sft` run's final/)")
    path = Path(path)
    if not (path / TRIDENT_FILE).is_file():
        raise TrainError(f"loss.teacher '{path}' is not a Trident model directory ({TRIDENT_FILE} missing); train a "
                         f"teacher with `trident sft out=<dir>` and give its <dir>/final")
    return path


def load_teacher(path: Path | None, student: DiffusionLM, device: torch.device | str) -> DiffusionLM:
    """The frozen teacher at ``path``, checked against the student: the same tokenizer (its
    distributions are over the same ids) and the same slot length (the same positions)."""
    from .errors import TrainError
    from .model import DiffusionLM

    path = check_teacher_dir(path)
    teacher = DiffusionLM.load(path, device=device)
    mine, theirs = student.tokenizer.get_vocab(), teacher.tokenizer.get_vocab()
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()), key=lambda kv: kv[1])[:3]
        raise TrainError(f"loss.teacher '{path}' has another tokenizer than the student ({len(theirs)} vs {len(mine)} "
                         f"tokens; first differences {diff}); train the student with the teacher's: "
                         f"tokenizer={path} (and a fresh out=)")
    if teacher.slot_len != student.slot_len:
        raise TrainError(f"loss.teacher '{path}' has slot length {teacher.slot_len}, the student {student.slot_len}; "
                         f"set data.slot_len={teacher.slot_len}")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


# --------------------------------------------------------------------------- the set


class Components(nn.Module):
    """The configured components with their schedules: what a training step asks of them.

    ``progress`` (0 → 1 over training) sets every weight; the token loss is a callable for
    :class:`~pretrain.losses.DiffusionLoss`; sequence and hidden terms are added by the step.
    """

    def __init__(self, components: Sequence[Component]) -> None:
        super().__init__()
        names = [c.name for c in components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LossConfigError(f"loss component(s) {', '.join(map(repr, dupes))} listed twice; give each once")
        if not any(c.kind == "token" for c in components):
            raise LossConfigError("loss.components has no token component; keep one of ce, focal, kl, jsd "
                                  "(the sequence and layer terms train on top of a token loss)")
        self.items = nn.ModuleList(components)
        self.progress = 0.0

    @classmethod
    def from_config(cls, entries: Any) -> Components:
        """From ``loss.components``: names or ``{name, weight, param: value}`` mappings."""
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise LossConfigError(f"loss.components must be a list of names or {{name: ..., weight: ...}} entries, "
                                  f"got {entries!r}")
        built = []
        for i, entry in enumerate(entries):
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise LossConfigError(f"loss component #{i} is {entry!r}; write a name, or {{name: <component>, "
                                      f"weight: <w>, <param>: <value>}} with name one of: {', '.join(known_components())}")
            params = {str(k): v for k, v in entry.items() if k not in ("name", "weight")}
            built.append(build_component(entry["name"], entry.get("weight", 1.0), **params))
        return cls(built)

    # .................................................................. views

    def of_kind(self, kind: str) -> list[Component]:
        return [c for c in self.items if c.kind == kind]

    @property
    def needs_teacher(self) -> bool:
        return any(c.needs_teacher for c in self.items)

    @property
    def needs_layers(self) -> bool:
        return bool(self.of_kind("hidden"))

    @property
    def is_plain_ce(self) -> bool:
        """Cross-entropy alone at a constant weight 1: the loss before components existed."""
        c = list(self.items)
        return len(c) == 1 and c[0].name == "ce" and c[0].schedule(0.0) == c[0].schedule(1.0) == 1.0

    def describe(self) -> str:
        """``focal 0.5→0.3 + jsd 0.3→0.4 + semantic 0.2→0.3``."""
        def w(c: Component) -> str:
            a, b = c.schedule.start, c.schedule.end
            return f"{a:g}" if a == b else f"{a:g}→{b:g}" + ("" if c.schedule.shape == "linear" else f" {c.schedule.shape}")
        return " + ".join(f"{c.describe()} {w(c)}" for c in self.items)

    def weight(self, comp: Component) -> float:
        return comp.schedule(self.progress)

    def weights(self) -> dict[str, float]:
        return {f"weight/{c.name}": self.weight(c) for c in self.items}

    def setup(self, student: DiffusionLM, teacher: DiffusionLM | None, seed: int = 0) -> None:
        for c in self.of_kind("hidden"):
            c.setup(student, teacher, seed)  # type: ignore[attr-defined]

    # .................................................................. the token loss

    def token_loss(self, state: LossState) -> torch.Tensor:
        """``ℓ = Σ_c w_c ℓ_c`` (B, T); each ℓ_c is kept in ``state.parts`` for its log line."""
        total = None
        for c in self.of_kind("token"):
            part = c.token(state)  # type: ignore[attr-defined]
            state.parts[c.name] = part
            w = self.weight(c)
            term = part * w if w != 1.0 else part
            total = term if total is None else total + term
        return total  # type: ignore[return-value]

    # .................................................................. sequence and hidden terms

    def start_sequence(self, batch: SequenceBatch) -> Callable[[], tuple[torch.Tensor | None, dict[str, float]]]:
        """Start every sequence component's rewards (in worker threads); the returned function
        waits for them and gives the weighted surrogate terms and the raw risks."""
        started = [(c, c.start(batch)) for c in self.of_kind("sequence")]  # type: ignore[attr-defined]

        def finish() -> tuple[torch.Tensor | None, dict[str, float]]:
            total, metrics = None, {}
            for c, job in started:
                surrogate, risk = c.finish(batch, job)  # type: ignore[attr-defined]
                metrics[f"loss/{c.name}"] = risk
                term = self.weight(c) * surrogate
                total = term if total is None else total + term
            return total, metrics

        return finish

    def hidden_terms(self, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                     where: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        total, metrics = None, {}
        for c in self.of_kind("hidden"):
            raw = c.hidden(student, teacher, where)  # type: ignore[attr-defined]
            metrics[f"loss/{c.name}"] = float(raw.detach())
            term = self.weight(c) * raw
            total = term if total is None else total + term
        return total, metrics
