"""The composable masked-diffusion loss: a :class:`LossState` flows through ordered modifiers.

Notation: B batch, T positions handed to the loss (whole rows, or only the slot ``[:, -L:]``:
the same loss, since context positions never carry any; columns that are context in every row
are dropped before any softmax work), V vocabulary.
``kind`` holds the ``KIND_*`` of :mod:`pretrain.corruption` per position.

How a step's loss is built::

    state = LossState(logits, input_ids, targets, kind, weights, t, special)
    for m in modifiers:            # in config order
        m(state)                   # may transform logits, re-weight, add extra terms, log
    loss = Σ w·ℓ / Σ w  (over w > 0)  +  Σ extra terms

``ℓ = state.token_loss`` (B, T) is computed from the *current* logits the first time anything
reads it, so a logit transform placed before it (e.g. ``dynamic_logit_bias``) really reaches
the loss and its gradient. From then on the logits are frozen: a modifier that changes them
later raises :class:`LossOrderError`, which names both modifiers and the order that fixes it.

Modifiers are found by name (``@register_modifier("name")``) or by path
(``"package.module:ClassName"``, a subclass of :class:`Modifier`) and built from config
entries such as::

    modifiers:
      - {name: mask_ratio_weighting, max_weight: 10}
      - {name: dynamic_logit_bias, target_prob: 0.05}

A modifier's parameters are the fields of its dataclass (typed, documented, checked in
``__post_init__``); any running state (the [MASK] bias) goes through ``state_dict`` /
``load_state_dict`` into checkpoints.

The per-token loss is a pluggable :data:`TokenLoss`: ``cross_entropy`` by default; the trainer
hands in the weighted sum of the configured token components (pretrain/components.py: ``ce``,
``focal``, ``kl``, ``jsd``), each kept in ``state.parts`` and logged as ``loss/<name>``; teacher
logits arrive as ``teacher_logits``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence, TypeVar

import torch
import torch.nn.functional as F

from .corruption import KIND_CONTEXT, KIND_IDENTITY, KIND_MASKED, KIND_WRONG
from .errors import PretrainError
from .tokenizer import SpecialIds

__all__ = [
    "LossConfigError", "LossOrderError", "LossState", "Modifier", "register_modifier", "known_modifiers",
    "build_modifier", "DiffusionLoss", "critic_loss", "cross_entropy", "TOKEN_LOSSES",
    "DynamicLogitBias", "TaskWeighting", "HardNegativeMining", "StateDependentPenalty", "EntropyPenalty",
    "MaskRatioWeighting",
]


class LossConfigError(PretrainError):
    """A loss configuration that cannot be used; the message names the modifier and the fix."""


class LossOrderError(LossConfigError):
    """A modifier changed the logits after the per-token loss had been computed from them."""


# --------------------------------------------------------------------------- the state


@dataclass(eq=False)
class LossState:
    """Everything one loss computation carries from modifier to modifier.

    ``logits`` (B, T, V) fp32 (``DiffusionLoss`` casts once); ``input_ids``, ``targets``,
    ``kind`` (B, T) long; ``weights`` (B, T) float, the per-token loss weights (0: no loss;
    context positions are zeroed here whatever the caller gave, the loss lives on the slot);
    ``t`` (B,) the noise level of each row. ``teacher_logits`` (B, T, V) a teacher's logits on
    the same inputs (no grad), for the distillation components. ``extra`` holds named scalar
    terms added to the loss; ``parts`` the per-position values of the token components the
    token loss is made of (pretrain/components.py), each logged as ``loss/<name>``; ``metrics`` floats or 0-dim tensors (tensors are turned into floats in one
    device sync at the end), names slash-namespaced, ``modifier/<name>/...`` for modifiers.
    ``training``: whether stateful modifiers may update their state (eval leaves it alone).
    """

    logits: torch.Tensor  # (B, T, V)
    input_ids: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T)
    kind: torch.Tensor  # (B, T)
    weights: torch.Tensor  # (B, T)
    t: torch.Tensor  # (B,)
    special: SpecialIds
    token_loss_fn: TokenLoss = field(default=None, repr=False)  # type: ignore[assignment]
    teacher_logits: torch.Tensor | None = field(default=None, repr=False)  # (B, T, V) for distillation terms
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T) per token component, logged reduced
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    training: bool = True

    # Bookkeeping, not fields (no annotation): who is running, for error messages, and caches.
    _current = None  # "'name' (#i)" of the modifier being run
    _reader = None  # who first read token_loss (and so froze the logits)
    _token_loss = None  # (B, T) once computed
    _frozen_version = None  # logits._version when frozen, to catch in-place changes
    _log_probs = None  # (B, T, V) cache, valid for _cache_key
    _probs = None  # (B, T, V) cache, valid for _cache_key
    _tempered = None  # {temperature: (student, teacher) log-probs}, valid for _cache_key
    _cache_key = None

    def __post_init__(self) -> None:
        if self.token_loss_fn is None:
            self.token_loss_fn = cross_entropy
        B, T = self.kind.shape
        if self.logits.shape[:2] != (B, T):
            raise ValueError(f"logits {tuple(self.logits.shape)} do not match kind {(B, T)}: pass (B, T, V) and (B, T)")
        for name in ("input_ids", "targets", "weights"):
            if getattr(self, name).shape != (B, T):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected {(B, T)}")
        if self.t.shape != (B,):
            raise ValueError(f"t has shape {tuple(self.t.shape)}, expected ({B},)")
        if self.teacher_logits is not None and self.teacher_logits.shape != self.logits.shape:
            raise ValueError(f"teacher_logits {tuple(self.teacher_logits.shape)} do not match the student's logits "
                             f"{tuple(self.logits.shape)}: teacher and student must share the tokenizer and the slot")
        self.weights = torch.where(self.kind != KIND_CONTEXT, self.weights.float(), 0.0)  # (B, T)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "logits" and self._reader is not None:
            self._refuse_logit_change()
        object.__setattr__(self, name, value)

    def _refuse_logit_change(self) -> None:
        who = self._current or "a modifier"
        raise LossOrderError(
            f"loss modifier {who} changes the logits after {self._reader} read the per-token loss computed "
            f"from them, so the change would not reach the loss; reorder the loss modifiers in the config so "
            f"that {who} comes before {self._reader}")

    def check_logits_unchanged(self) -> None:
        """Catch an in-place change of frozen logits (assignment is caught by ``__setattr__``)."""
        if self._reader is not None and self.logits._version != self._frozen_version:
            self._refuse_logit_change()

    # ------------------------------------------------------------------ derived, cached

    @property
    def token_loss(self) -> torch.Tensor:
        """(B, T) per-token loss of the current logits; reading it freezes the logits."""
        if self._token_loss is None:
            loss = self.token_loss_fn(self)
            if loss.shape != self.kind.shape:
                raise ValueError(f"token loss {getattr(self.token_loss_fn, '__name__', self.token_loss_fn)!r} returned "
                                 f"shape {tuple(loss.shape)}, expected {tuple(self.kind.shape)}")
            object.__setattr__(self, "_token_loss", loss)
            object.__setattr__(self, "_reader", self._current or "the reduction")
            object.__setattr__(self, "_frozen_version", self.logits._version)
        return self._token_loss  # type: ignore[return-value]

    @property
    def log_probs(self) -> torch.Tensor:
        """(B, T, V) fp32 log-softmax of the current logits, computed once per logits tensor
        so that the loss, entropy, penalties and bias feedback share one softmax."""
        self._refresh_cache()
        if self._log_probs is None:
            object.__setattr__(self, "_log_probs", torch.log_softmax(self.logits.float(), dim=-1))
        return self._log_probs  # type: ignore[return-value]

    @property
    def probs(self) -> torch.Tensor:
        """(B, T, V) fp32 softmax of the current logits (``log_probs.exp()``, cached alike)."""
        self._refresh_cache()
        if self._probs is None:
            object.__setattr__(self, "_probs", self.log_probs.exp())
        return self._probs  # type: ignore[return-value]

    def _refresh_cache(self) -> None:
        # Keyed by the tensor itself (not its id, which a freed tensor's successor may reuse).
        key = self._cache_key
        if key is None or key[0] is not self.logits or key[1] != self.logits._version:
            key = (self.logits, self.logits._version)
            object.__setattr__(self, "_log_probs", None)
            object.__setattr__(self, "_probs", None)
            object.__setattr__(self, "_tempered", None)
            object.__setattr__(self, "_cache_key", key)

    def tempered(self, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(student, teacher) fp32 log-softmax of the current and the teacher's logits at
        ``temperature``, each (B, T, V), computed once per temperature (kl and jsd share them;
        at 1 the student's is ``log_probs``). Needs ``teacher_logits``."""
        self._refresh_cache()
        cache = self._tempered if self._tempered is not None else {}
        if temperature not in cache:
            student = self.log_probs if temperature == 1.0 else torch.log_softmax(self.logits.float() / temperature, -1)
            teacher = torch.log_softmax(self.teacher_logits.float() / temperature, -1)  # type: ignore[union-attr]
            cache[temperature] = (student, teacher)
            object.__setattr__(self, "_tempered", cache)
        return cache[temperature]

    @property
    def in_loss(self) -> torch.Tensor:
        """(B, T) bool: positions the reduction counts now (weight > 0)."""
        return self.weights > 0

    def add_extra(self, name: str, value: torch.Tensor) -> None:
        """Add a scalar term to the loss, logged as ``loss/<name>`` (same name: summed)."""
        if value.dim() != 0:
            raise ValueError(f"extra loss term {name!r} must be a scalar, got shape {tuple(value.shape)}")
        self.extra[name] = self.extra[name] + value if name in self.extra else value


TokenLoss = Callable[[LossState], torch.Tensor]
"""A per-token loss: reads the state (``log_probs``, ``targets``…), returns ℓ (B, T)."""


def cross_entropy(state: LossState) -> torch.Tensor:
    """ℓ_bt = -log softmax(logits_bt)[targets_bt], fp32: (B, T)."""
    return -state.log_probs.gather(-1, state.targets.unsqueeze(-1)).squeeze(-1)


TOKEN_LOSSES: dict[str, TokenLoss] = {"ce": cross_entropy}


# --------------------------------------------------------------------------- modifiers


class Modifier:
    """One step of the loss pipeline: ``__call__(state) -> None`` mutates the state.

    A modifier may replace ``state.logits`` (out of place, so gradients flow through; only
    before anything reads ``state.token_loss``), multiply or set ``state.weights``, add terms
    with ``state.add_extra(name, value)`` and write ``state.metrics["modifier/<name>/..."]``.

    Built-ins are dataclasses whose fields are their config parameters; a user modifier may be
    one too, or a plain class whose ``__init__`` keywords are its parameters. Stateful
    modifiers override ``state_dict`` / ``load_state_dict`` (checkpointed by the trainer).
    """

    name: ClassVar[str] = ""  # set by @register_modifier; metrics go under modifier/<name>/

    def __call__(self, state: LossState) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(state)")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise LossConfigError(f"loss modifier {self.name or type(self).__name__!r} keeps no state, but the "
                                  f"checkpoint holds {sorted(state)} for it; resume with the modifiers it was saved with")

    def metric(self, key: str) -> str:
        return f"modifier/{self.name or type(self).__name__}/{key}"


_REGISTRY: dict[str, type[Modifier]] = {}
M = TypeVar("M", bound=type[Modifier])


def register_modifier(name: str) -> Callable[[M], M]:
    """Register a :class:`Modifier` subclass under ``name`` (a name is taken once)."""
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise LossConfigError(f"loss modifier name {name!r} is not valid: use a non-empty name without ':' or spaces around it")

    def register(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Modifier)):
            raise LossConfigError(f"@register_modifier({name!r}) must decorate a subclass of pretrain.losses.Modifier, "
                                  f"not {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and _where(existing) != _where(cls):
            raise LossConfigError(f"loss modifier name {name!r} is already taken by {_where(existing)}; "
                                  f"register {_where(cls)} under another name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def known_modifiers() -> list[str]:
    return sorted(_REGISTRY)


def build_modifier(name: str, **params: Any) -> Modifier:
    """A modifier from its registered name or ``"package.module:ClassName"`` and parameters."""
    if not isinstance(name, str) or not name.strip():
        raise LossConfigError(f"a loss modifier is a registered name or 'package.module:ClassName', not {name!r}; "
                              f"known: {', '.join(known_modifiers())}")
    name = name.strip()
    if ":" in name:
        cls = _import_modifier(name)
        label = cls.name or name
    else:
        cls = _REGISTRY.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, known_modifiers(), n=1)
            raise LossConfigError(f"unknown loss modifier {name!r}; known: {', '.join(known_modifiers())}"
                                  + (f" (did you mean {close[0]!r}?)" if close else "")
                                  + "; or give 'package.module:ClassName'")
        label = name
    valid = _parameters(cls)
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            raise LossConfigError(f"loss modifier {label!r} has no parameter {key!r}; its parameters: "
                                  f"{', '.join(valid) or 'none'}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    try:
        if dataclasses.is_dataclass(cls):
            modifier = cls(**_typed(cls, params, label))  # typed: converts and checks each value
        else:
            modifier = cls(**params)
    except LossConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise LossConfigError(f"loss modifier {label!r}: {err}") from None
    if not cls.name:
        modifier.name = label  # type: ignore[misc]  # a path-loaded class names its metrics by its path
    return modifier


def _typed(cls: type, params: dict[str, Any], label: str, what: str = "loss modifier") -> dict[str, Any]:
    """``params`` checked against the dataclass field types of ``cls`` (int, float, bool, str,
    Literal), ints widened to float where a float is expected. ``what`` names the thing in errors."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in params.items():
        tp = hints[key]
        if typing.get_origin(tp) is Literal:
            if value not in typing.get_args(tp):
                raise LossConfigError(f"{what} {label!r}: {key}={value!r} is not one of: "
                                      + ", ".join(map(str, typing.get_args(tp))))
        elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif tp in (int, bool, str) and not (type(value) is tp):
            raise LossConfigError(f"{what} {label!r}: {key} expects {tp.__name__}, got {value!r}")
        elif tp is float:
            raise LossConfigError(f"{what} {label!r}: {key} expects float, got {value!r}")
        out[key] = value
    return out


def _parameters(cls: type[Modifier]) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    sig = inspect.signature(cls.__init__)
    return [p.name for p in list(sig.parameters.values())[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _where(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _import_modifier(ref: str) -> type[Modifier]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise LossConfigError(f"loss modifier path {ref!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise LossConfigError(f"cannot import loss modifier {ref!r}: no module named {err.name!r}; "
                                  "is its package installed or on PYTHONPATH?") from None
        raise LossConfigError(f"importing {module_name!r} for loss modifier {ref!r} failed: {err}") from err
    except Exception as err:  # noqa: BLE001 - a user's module may raise anything on import
        raise LossConfigError(f"importing {module_name!r} for loss modifier {ref!r} raised "
                              f"{type(err).__name__}: {err}") from err
    cls = getattr(module, attr, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Modifier)
                       and v.__module__ == module.__name__)
        raise LossConfigError(f"module {module_name!r} has no {attr!r} (loss modifier {ref!r}); its modifiers: "
                              f"{', '.join(found) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, Modifier)):
        raise LossConfigError(f"loss modifier {ref!r} is {cls!r}, not a subclass of pretrain.losses.Modifier; "
                              "subclass it and implement __call__(state)")
    return cls


# --------------------------------------------------------------------------- built-ins


@register_modifier("dynamic_logit_bias")
@dataclass(eq=False)
class DynamicLogitBias(Modifier):
    """Feedback control of the [MASK] logit toward a target probability.

    Why: the model should predict [MASK] ("not ready") at a masked position it cannot yet
    decide, with a calibrated share of the mass. A learned scalar bias b is added to the
    [MASK] logit at masked positions, out of place (the gradient wrt logits flows through):

        logits'[b, t, mask] = logits[b, t, mask] + b     where kind[b, t] == KIND_MASKED

    After the shift, the observed mean probability p̂ = mean_{masked} softmax(logits')[mask]
    (detached) drives a proportional controller, in training mode only:

        b ← clamp(b + lr · (target_prob − p̂), −max_abs, max_abs)

    (p̂ below target raises b). The bias is checkpointed via ``state_dict`` and ``bias`` is
    what the trainer copies into ``model.mask_logit_bias`` so samplers apply the same shift.
    """

    target_prob: float = field(default=0.05, metadata={"help": "mean [MASK] probability wanted at masked positions, in (0, 1)"})
    lr: float = field(default=0.1, metadata={"help": "controller gain: bias += lr * (target_prob - observed) per training step"})
    init: float = field(default=0.0, metadata={"help": "starting bias (a checkpoint's state replaces it)"})
    max_abs: float = field(default=10.0, metadata={"help": "the bias is clamped to [-max_abs, max_abs]"})
    _bias: torch.Tensor = field(init=False, repr=False)  # 0-dim fp32; a tensor, so no device sync per step

    def __post_init__(self) -> None:
        if not 0.0 < self.target_prob < 1.0:
            raise ValueError(f"target_prob={self.target_prob} must lie in (0, 1)")
        if self.lr < 0:
            raise ValueError(f"lr={self.lr} must be >= 0 (0 freezes the bias)")
        if self.max_abs <= 0:
            raise ValueError(f"max_abs={self.max_abs} must be > 0")
        if abs(self.init) > self.max_abs:
            raise ValueError(f"init={self.init} lies outside [-max_abs, max_abs] = [-{self.max_abs}, {self.max_abs}]")
        self._bias = torch.tensor(float(self.init))

    @property
    def bias(self) -> float:
        """The current bias (copy into ``model.mask_logit_bias`` when saving the model)."""
        return float(self._bias)

    def __call__(self, state: LossState) -> None:
        mask_id = state.special.mask
        masked = state.kind == KIND_MASKED  # (B, T)
        bias = self._bias.to(state.logits.device)
        logits = state.logits.clone()  # (B, T, V); out of place: the clone's gradient is the identity
        logits[..., mask_id] = logits[..., mask_id] + bias * masked
        state.logits = logits
        # The softmax outside no_grad: it is cached and the loss reuses it, with its graph.
        log_p_mask = state.log_probs[..., mask_id].detach()  # (B, T)
        with torch.no_grad():
            p_mask = log_p_mask.exp()
            n = masked.sum()
            observed = (p_mask * masked).sum() / n.clamp(min=1)
            if state.training:
                step = torch.where(n > 0, self.lr * (self.target_prob - observed), 0.0)
                self._bias = (bias + step).clamp(-self.max_abs, self.max_abs)
        state.metrics[self.metric("bias")] = self._bias
        state.metrics[self.metric("mask_prob")] = observed

    def state_dict(self) -> dict[str, Any]:
        return {"bias": self.bias}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"bias"} or not isinstance(state["bias"], (int, float)) or not math.isfinite(state["bias"]):
            raise LossConfigError(f"loss modifier 'dynamic_logit_bias': checkpoint state {dict(state)!r} is not "
                                  "{'bias': <finite float>}; the checkpoint is corrupt or from another modifier")
        self._bias = torch.tensor(float(state["bias"])).clamp(-self.max_abs, self.max_abs)


@register_modifier("task_weighting")
@dataclass(eq=False)
class TaskWeighting(Modifier):
    """Scale the three slot tasks against each other: weights (B, T) *= unmask at
    KIND_MASKED (predict the token), remask at KIND_WRONG (predict [WRONG]), identity at
    KIND_IDENTITY (copy the visible token)."""

    unmask: float = field(default=1.0, metadata={"help": "weight factor at masked positions"})
    remask: float = field(default=1.0, metadata={"help": "weight factor at wrong-token positions (target [WRONG])"})
    identity: float = field(default=1.0, metadata={"help": "weight factor at identity positions"})

    def __post_init__(self) -> None:
        for key in ("unmask", "remask", "identity"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 0")

    def __call__(self, state: LossState) -> None:
        factor = torch.ones_like(state.weights)  # (B, T)
        factor = torch.where(state.kind == KIND_MASKED, self.unmask, factor)
        factor = torch.where(state.kind == KIND_WRONG, self.remask, factor)
        factor = torch.where(state.kind == KIND_IDENTITY, self.identity, factor)
        state.weights = state.weights * factor


@register_modifier("hard_negative_mining")
@dataclass(eq=False)
class HardNegativeMining(Modifier):
    """Weight identity positions (visible, correct tokens the model must keep).

    ``constant``: weights at KIND_IDENTITY *= weight. ``hardest_k``: per row, only the k
    identity positions (with weight > 0) of highest per-token loss ℓ keep their weight
    (*= weight); the other identity positions get 0. Copying a visible token is easy almost
    everywhere, so the few hard ones carry the signal. Reads ``token_loss`` (freezes logits).
    """

    mode: Literal["constant", "hardest_k"] = field(default="constant", metadata={"help": "constant | hardest_k"})
    weight: float = field(default=1.0, metadata={"help": "weight factor of the identity positions kept"})
    k: int = field(default=4, metadata={"help": "hardest_k: identity positions kept per row"})

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight={self.weight} must be >= 0")
        if self.k < 1:
            raise ValueError(f"k={self.k} must be >= 1")

    def __call__(self, state: LossState) -> None:
        identity = state.kind == KIND_IDENTITY  # (B, T)
        if self.mode == "constant":
            state.weights = torch.where(identity, state.weights * self.weight, state.weights)
            return
        candidates = identity & (state.weights > 0)
        score = torch.where(candidates, state.token_loss.detach(), float("-inf"))  # (B, T)
        k = min(self.k, score.shape[1])
        top = score.topk(k, dim=1).indices  # (B, k)
        keep = torch.zeros_like(identity).scatter_(1, top, True) & candidates  # rows with < k: -inf picks dropped
        state.weights = torch.where(identity, torch.where(keep, state.weights * self.weight, 0.0), state.weights)
        state.metrics[self.metric("kept")] = keep.sum().float()


@register_modifier("state_dependent_penalty")
@dataclass(eq=False)
class StateDependentPenalty(Modifier):
    """Penalise probability mass on outputs that are invalid for the input state.

    Over slot positions in the loss (weight > 0), with p = softmax(logits) (B, T, V):

    - masked position: mass on tokens a sampler never commits,
      ``m = Σ_{v ∈ special.never_generated()} p_v`` ([MASK], [WRONG], [FOCAL], [PREFIX], [SLOT]);
    - visible position (identity or wrong): the only valid outputs are "keep it" (its own
      input token) or "it is wrong" ([WRONG]): ``m = 1 − p[input_id] − p[WRONG]``.

    Extra term ``state_penalty = weight · mean(m)`` (unweighted mean over those positions).
    Placed after ``dynamic_logit_bias`` it also pushes the biased [MASK] mass down, against
    the controller's target; put it before to penalise the model's own [MASK] mass only.
    """

    weight: float = field(default=0.1, metadata={"help": "coefficient of the penalty term"})

    def __call__(self, state: LossState) -> None:
        p = state.probs  # (B, T, V)
        special = state.special
        never = torch.tensor(special.never_generated(), device=p.device)
        masked_mass = p.index_select(-1, never).sum(-1)  # (B, T)
        keep = p.gather(-1, state.input_ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
        visible_mass = (1.0 - keep - p[..., special.wrong]).clamp(min=0.0)  # (B, T)
        masked = state.kind == KIND_MASKED
        visible = (state.kind == KIND_IDENTITY) | (state.kind == KIND_WRONG)
        mass = torch.where(masked, masked_mass, torch.where(visible, visible_mass, 0.0))
        where = (masked | visible) & state.in_loss
        mean = (mass * where).sum() / where.sum().clamp(min=1)
        state.add_extra("state_penalty", self.weight * mean)
        state.metrics[self.metric("invalid_mass")] = mean.detach()


@register_modifier("entropy_penalty")
@dataclass(eq=False)
class EntropyPenalty(Modifier):
    """Extra term ``entropy = weight · mean H(softmax(logits))`` over positions with weight > 0,
    ``H = −Σ_v p_v log p_v`` in fp32. weight > 0 sharpens predictions; < 0 is a bonus that
    keeps them spread (against early over-confidence). Reads the logits as they are now."""

    weight: float = field(default=0.01, metadata={"help": "coefficient; negative = entropy bonus"})

    def __call__(self, state: LossState) -> None:
        logp = state.log_probs  # (B, T, V)
        entropy = -(state.probs * logp).sum(-1)  # (B, T)
        where = state.in_loss
        mean = (entropy * where).sum() / where.sum().clamp(min=1)
        state.add_extra("entropy", self.weight * mean)
        state.metrics[self.metric("entropy")] = mean.detach()


@register_modifier("mask_ratio_weighting")
@dataclass(eq=False)
class MaskRatioWeighting(Modifier):
    """ELBO weighting of masked positions: weights at KIND_MASKED *= min(1/t_b, max_weight).

    The masked-diffusion ELBO weighs the loss of a row masked at level t by 1/t; the cap
    keeps rows with tiny t (one masked token) from dominating a batch."""

    max_weight: float = field(default=10.0, metadata={"help": "cap on 1/t"})

    def __post_init__(self) -> None:
        if self.max_weight <= 0:
            raise ValueError(f"max_weight={self.max_weight} must be > 0")

    def __call__(self, state: LossState) -> None:
        scale = (1.0 / state.t.float()).clamp(max=self.max_weight)  # (B,)
        masked = state.kind == KIND_MASKED
        state.weights = torch.where(masked, state.weights * scale[:, None], state.weights)


# --------------------------------------------------------------------------- the loss


class DiffusionLoss:
    """The ordered modifiers, the per-token loss and the reduction.

    ``__call__(logits, input_ids, targets, kind, weights, t, special) -> (loss, metrics)``;
    shapes as in :class:`LossState`. ``train()`` / ``eval()`` say whether stateful modifiers
    update (default: training). Metrics: ``loss/diffusion`` (Σ w·ℓ / Σ w), ``loss/<name>``
    per extra term, ``loss/total``, ``train/{masked,remask,identity}_acc`` (argmax accuracy
    at weight > 0 positions of each kind, when there are any), ``train/loss_tokens``, and the
    modifiers' ``modifier/<name>/...``.
    """

    def __init__(self, modifiers: Sequence[Modifier] = (), token_loss: TokenLoss = cross_entropy) -> None:
        for m in modifiers:
            if not isinstance(m, Modifier):
                raise LossConfigError(f"{m!r} is not a pretrain.losses.Modifier; build modifiers with build_modifier "
                                      "or DiffusionLoss.from_config")
        self.modifiers = list(modifiers)
        self.token_loss = token_loss
        self.training = True

    @classmethod
    def from_config(cls, entries: Sequence[Mapping[str, Any]], token_loss: str = "ce") -> DiffusionLoss:
        """From a config list, in order: ``[{"name": ..., **params}, ...]``."""
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
            raise LossConfigError(f"loss modifiers must be a list of {{name: ..., param: value}} entries, got {entries!r}")
        modifiers = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise LossConfigError(f"loss modifier #{i} is {entry!r}; write it as {{name: <modifier>, <param>: <value>}} "
                                      f"with name one of: {', '.join(known_modifiers())}")
            params = {str(k): v for k, v in entry.items() if k != "name"}
            modifiers.append(build_modifier(entry["name"], **params))
        if token_loss not in TOKEN_LOSSES:
            raise LossConfigError(f"unknown token loss {token_loss!r}; known: {', '.join(sorted(TOKEN_LOSSES))}")
        return cls(modifiers, token_loss=TOKEN_LOSSES[token_loss])

    def train(self, mode: bool = True) -> DiffusionLoss:
        self.training = mode
        return self

    def eval(self) -> DiffusionLoss:
        return self.train(False)

    @property
    def mask_logit_bias(self) -> float:
        """The [MASK] bias a sampler should add: the last ``dynamic_logit_bias``'s, else 0."""
        biases = [m.bias for m in self.modifiers if isinstance(m, DynamicLogitBias)]
        return biases[-1] if biases else 0.0

    def __call__(
        self,
        logits: torch.Tensor,  # (B, T, V)
        input_ids: torch.Tensor,  # (B, T)
        targets: torch.Tensor,  # (B, T)
        kind: torch.Tensor,  # (B, T)
        weights: torch.Tensor,  # (B, T)
        t: torch.Tensor,  # (B,)
        special: SpecialIds,
        teacher_logits: torch.Tensor | None = None,  # (B, T, V)
    ) -> tuple[torch.Tensor, dict[str, float]]:
        columns = (kind != KIND_CONTEXT).any(0)  # (T,) positions that are slot in some row
        if not bool(columns.all()):
            # Context never carries loss: drop the columns that are context in every row, so a
            # caller handing whole rows pays (B, L, V) softmax work, not (B, T, V). Gradients
            # reach the full logits through the index (zero at the dropped columns).
            keep = columns.nonzero().squeeze(1)  # (T',)
            logits = logits.index_select(1, keep)
            input_ids, targets, kind, weights = (x.index_select(1, keep) for x in (input_ids, targets, kind, weights))
            if teacher_logits is not None:
                teacher_logits = teacher_logits.index_select(1, keep)
        state = LossState(logits=logits.float(), input_ids=input_ids, targets=targets, kind=kind, weights=weights,
                          t=t, special=special, token_loss_fn=self.token_loss, training=self.training,
                          teacher_logits=teacher_logits)
        for i, m in enumerate(self.modifiers):
            object.__setattr__(state, "_current", f"{m.name or type(m).__name__!r} (#{i})")
            m(state)
            state.check_logits_unchanged()
        object.__setattr__(state, "_current", None)
        return self.reduce(state)

    @staticmethod
    def reduce(state: LossState) -> tuple[torch.Tensor, dict[str, float]]:
        """``Σ w·ℓ / Σ w`` over w > 0 (0 with a live graph when no weight is left) + extras."""
        w = torch.where(state.kind != KIND_CONTEXT, state.weights, 0.0)  # (B, T); context never carries loss
        live = w > 0
        ell = torch.where(live, state.token_loss, 0.0)  # (B, T); also keeps inf/NaN at w=0 out
        w_sum = w.sum()
        diffusion = (w * ell).sum() / w_sum.clamp(min=1e-12)
        total = diffusion
        for term in state.extra.values():
            total = total + term

        metrics = state.metrics
        metrics["loss/diffusion"] = diffusion.detach()
        for name, part in state.parts.items():  # each token component's own value, before its weight
            metrics[f"loss/{name}"] = (w * torch.where(live, part, 0.0)).sum().detach() / w_sum.clamp(min=1e-12)
        for name, term in state.extra.items():
            metrics[f"loss/{name}"] = term.detach()
        metrics["loss/total"] = total.detach()
        metrics["train/loss_tokens"] = live.sum().float()
        with torch.no_grad():
            correct = state.logits.argmax(-1) == state.targets  # (B, T)
            counts = {}
            for label, k in (("masked", KIND_MASKED), ("remask", KIND_WRONG), ("identity", KIND_IDENTITY)):
                where = live & (state.kind == k)
                counts[label] = where.sum().float()
                metrics[f"train/{label}_acc"] = (correct & where).sum().float()
        keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
        device = state.logits.device
        # One device sync for every tensor-valued metric.
        values = torch.stack([metrics[k].detach().float().reshape(()).to(device) for k in keys]
                             + list(counts.values())).tolist()
        out: dict[str, float] = {k: v for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
        out.update(zip(keys, values[: len(keys)]))
        for label, n in zip(counts, values[len(keys):]):
            key = f"train/{label}_acc"
            if n > 0:
                out[key] /= n
            else:
                del out[key]  # no such positions: no accuracy (rather than a NaN in the logs)
        return total, out

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Each modifier's state under ``"<index>:<name>"`` (stateless ones: ``{}``)."""
        return {self._key(i, m): m.state_dict() for i, m in enumerate(self.modifiers)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        expected = [self._key(i, m) for i, m in enumerate(self.modifiers)]
        if list(state) != expected:
            raise LossConfigError(f"the checkpoint's loss modifiers {list(state)} differ from the configured ones "
                                  f"{expected}; resume with the loss modifiers the checkpoint was trained with")
        for key, m in zip(expected, self.modifiers):
            m.load_state_dict(state[key])

    @staticmethod
    def _key(i: int, m: Modifier) -> str:
        return f"{i}:{m.name or type(m).__name__}"


# --------------------------------------------------------------------------- critic


def critic_loss(
    critic_logits: torch.Tensor,  # (B, T) raw z
    labels: torch.Tensor,  # (B, T) float, 1 = this position ends up correct
    mask: torch.Tensor,  # (B, T) bool, positions with a label
    weights: torch.Tensor | None = None,  # (B, T) float per-position weights, e.g. the batch's token weights
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE-with-logits (fp32), ``Σ w·bce / Σ w`` over ``mask`` (plain mean without ``weights``);
    0 (with a live graph) when the mask is empty. With the batch's token weights the trailing
    [PAD] positions count little, as in the generator's loss, so the critic learns mostly where
    it is used: the assertion's tokens and its [EOS].
    Metrics ``loss/critic``, ``critic/acc`` (σ(z) > ½ agrees with the label) and
    ``critic/pos_frac`` (share of positive labels, to read the accuracy against)."""
    z = critic_logits.float()
    y = labels.float()
    mask = mask.bool()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")  # (B, T)
    n = mask.sum()
    w = mask.float() if weights is None else torch.where(mask, weights.float(), 0.0)  # (B, T)
    loss = (w * bce).sum() / w.sum().clamp(min=1e-12)
    with torch.no_grad():
        correct = ((z > 0) == (y > 0.5)) & mask
        stats = torch.stack([loss.detach(), correct.sum().float(), (y * mask).sum(), n.float()]).tolist()
    value, right, pos, count = stats
    metrics = {"loss/critic": value}
    if count > 0:
        metrics["critic/acc"] = right / count
        metrics["critic/pos_frac"] = pos / count
    return loss, metrics
