"""Composition: several rewards, weighted, gated and clipped, into one reward.

From YAML (read with ``trident.config.load_config(CompositionConfig, path)``)::

    name: trident                 # the composition's name: TRL's reward name, metrics prefix
    components:
      - {name: pans, weight: 0.5}
      - {name: kill, weight: 0.5}
      - {name: mypkg.rewards:short, label: short, weight: 0.1, kwargs: {max_tokens: 24}}
    gate: [ast_valid]             # every gate must reach gate_min, else the total is gate_value
    gate_min: 1.0
    gate_value: 0.0
    reduce: sum                   # sum: Σ w·v over components that apply; mean: that / Σ w
    clip: [0.0, 1.0]              # optional bounds of the total

Per candidate, in order:

1. its verdict is ``infra`` (the sandbox failed) → total ``None``, never 0 or 1;
2. a gate value is ``None`` → total ``None``; a gate value below ``gate_min`` → ``gate_value``;
3. otherwise the components that apply (value not ``None``) are reduced — ``sum``: Σ wᵢvᵢ
   (TRL's rule for several reward functions); ``mean``: Σ wᵢvᵢ / Σ wᵢ — and clipped; when no
   component applies the total is ``None``.

The verdicts are computed once for all components and gates (with mutants if any of them needs
mutants), and every component value is kept in the result (:class:`Scored`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .registry import Reward, RewardError, _batch, finish_all, resolve

if TYPE_CHECKING:
    from sandbox.execution import Verdict

    from .execution import Executor

__all__ = ["ComponentConfig", "CompositionConfig", "Composition", "Scored", "metrics"]


@dataclass
class ComponentConfig:
    """One reward in a composition."""

    name: str = field(metadata={"help": "a registered reward (e.g. pass, kill, token_f1) or 'package.module:function'"})
    weight: float = field(default=1.0, metadata={"help": "weight of this reward in the total"})
    label: str | None = field(default=None, metadata={"help": "key of this component in results and metrics (default: the reward's name)"})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments bound to the reward"})


def _default_components() -> list[ComponentConfig]:
    return [ComponentConfig("pans", 0.5), ComponentConfig("kill", 0.5)]


@dataclass
class CompositionConfig:
    """A composed reward: weighted components, gates and clipping (docs/rewards.md)."""

    name: str = field(default="trident", metadata={"help": "name of the composed reward (TRL's reward name, metrics prefix)"})
    components: list[ComponentConfig] = field(default_factory=_default_components, metadata={"help": "rewards to combine, each {name, weight, label, kwargs}"})
    gate: list[str] = field(default_factory=lambda: ["ast_valid"], metadata={"help": "rewards that must each reach gate_min for the components to count"})
    gate_min: float = field(default=1.0, metadata={"help": "value a gate must reach"})
    gate_value: float = field(default=0.0, metadata={"help": "total of a candidate that fails a gate"})
    reduce: Literal["sum", "mean"] = field(default="sum", metadata={"help": "sum: Σ w·v over applicable components; mean: Σ w·v / Σ w over them"})
    clip: tuple[float, float] | None = field(default=None, metadata={"help": "[low, high] bounds of the total, or null"})

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("components is empty: give at least one {name: REWARD, weight: W}")
        labels = [c.label or c.name for c in self.components]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"component label(s) {', '.join(twice)} appear twice; give each a distinct label")
        if self.clip is not None:
            low, high = self.clip
            if low > high:
                raise ValueError(f"clip [{low}, {high}] is empty: low must not exceed high")
            if not low <= self.gate_value <= high:
                raise ValueError(f"gate_value {self.gate_value} lies outside clip [{low}, {high}]")


@dataclass
class Scored:
    """The composed reward of one candidate, with everything it was made of."""

    total: float | None  # None: not scored (infra verdict, a gate or every component not applicable)
    components: dict[str, float | None]  # label -> value
    gates: dict[str, float | None]  # gate name -> value
    verdict: Verdict | None  # None when no component reads verdicts
    gated: bool = False  # a gate was not reached, so total = gate_value
    note: str = ""  # why the total is None, when it is


class Composition:
    """Rewards combined as :class:`CompositionConfig` describes; callable in TRL's signature
    (returns the totals), :meth:`score` keeps every component and the verdict."""

    def __init__(self, components: Sequence[tuple[str, Reward, float]], *, gate: Sequence[Reward] = (),
                 gate_min: float = 1.0, gate_value: float = 0.0, reduce: str = "sum",
                 clip: tuple[float, float] | None = None, name: str = "trident",
                 executor: Executor | None = None) -> None:
        if reduce not in ("sum", "mean"):
            raise RewardError(f"composition {name!r}: reduce must be 'sum' or 'mean', not {reduce!r}")
        self.components = list(components)
        labels = [label for label, _, _ in self.components]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise RewardError(f"composition {name!r}: component label(s) {', '.join(twice)} appear twice; "
                              "give each a distinct label")
        self.gate = list(gate)
        self.gate_min, self.gate_value, self.reduce, self.clip = gate_min, gate_value, reduce, clip
        self.__name__ = name
        self.executor = executor
        every = [r for _, r, _ in self.components] + self.gate
        self.execution = any(r.execution for r in every)
        self.mutants = any(r.execution and r.mutants for r in every)

    @classmethod
    def from_config(cls, cfg: CompositionConfig, executor: Executor | None = None) -> Composition:
        comps = []
        for c in cfg.components:
            r = resolve(c.name, **c.kwargs)
            comps.append((c.label or (r.name if ":" in c.name else c.name), r, c.weight))
        return cls(comps, gate=[resolve(g) for g in cfg.gate], gate_min=cfg.gate_min, gate_value=cfg.gate_value,
                   reduce=cfg.reduce, clip=tuple(cfg.clip) if cfg.clip is not None else None, name=cfg.name,
                   executor=executor)

    @property
    def name(self) -> str:
        return self.__name__

    def with_executor(self, executor: Executor | None) -> Composition:
        return Composition(self.components, gate=self.gate, gate_min=self.gate_min, gate_value=self.gate_value,
                           reduce=self.reduce, clip=self.clip, name=self.name, executor=executor)

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.components, self.gate, self.gate_min, self.gate_value, self.reduce, self.clip, self.name))

    def __repr__(self) -> str:
        parts = " + ".join(f"{w:g}·{label}" for label, _, w in self.components)
        gate = f" if {' and '.join(g.name for g in self.gate)}" if self.gate else ""
        return f"Composition({self.name!r}: {parts}{gate})"

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[str] | None = None,
                 **columns: Any) -> list[float | None]:
        return [s.total for s in self.score(prompts, completions, **columns)]

    def score(self, prompts: Sequence[Any] | None = None, completions: Sequence[str] | None = None,
              **columns: Any) -> list[Scored]:
        """Every component, gate and verdict of each candidate, and its total."""
        completions, prompts = _batch(prompts, completions)
        n = len(completions)
        verdicts = None
        if self.execution:
            from .execution import as_verdicts, run_verdicts

            if columns.get("verdicts") is None:
                columns["verdicts"] = run_verdicts(completions, columns, mutants=self.mutants, executor=self.executor,
                                                   who=f"composition {self.name!r}")
            verdicts = as_verdicts(columns["verdicts"])
            columns["verdicts"] = verdicts
        every = [r for r in self.gate] + [r for _, r, _ in self.components]
        values = finish_all([r.start(prompts, completions, columns) for r in every])
        gate_values, comp_values = values[: len(self.gate)], values[len(self.gate) :]
        out = []
        for i in range(n):
            comps = {label: vals[i] for (label, _, _), vals in zip(self.components, comp_values)}
            gates = {g.name: vals[i] for g, vals in zip(self.gate, gate_values)}
            verdict = verdicts[i] if verdicts is not None else None
            out.append(self._total(comps, gates, verdict))
        return out

    def _total(self, comps: dict[str, float | None], gates: dict[str, float | None], verdict: Verdict | None) -> Scored:
        def unscored(note: str) -> Scored:
            return Scored(None, comps, gates, verdict, note=note)

        if verdict is not None and verdict.status == "infra":
            return unscored(f"the sandbox failed (infra): {verdict.reason}")
        missing = [g for g, v in gates.items() if v is None]
        if missing:
            return unscored(f"gate {missing[0]} does not apply")
        if any(v < self.gate_min for v in gates.values()):  # type: ignore[operator]
            return Scored(self.gate_value, comps, gates, verdict, gated=True)
        applicable = [(w, comps[label]) for label, _, w in self.components if comps[label] is not None]
        if not applicable:
            return unscored("no component applies")
        total = sum(w * v for w, v in applicable)  # type: ignore[operator]
        if self.reduce == "mean":
            weight = sum(w for w, _ in applicable)
            if weight == 0:
                return unscored("the applicable components weigh 0")
            total /= weight
        if self.clip is not None:
            total = min(max(total, self.clip[0]), self.clip[1])
        return Scored(float(total), comps, gates, verdict)


def _rebuild(components: list, gate: list, gate_min: float, gate_value: float, reduce: str,
             clip: tuple[float, float] | None, name: str) -> Composition:
    return Composition(components, gate=gate, gate_min=gate_min, gate_value=gate_value, reduce=reduce, clip=clip,
                       name=name)


def metrics(scored: Sequence[Scored], name: str = "total", prefix: str = "rewards", nested: bool = False) -> dict[str, float]:
    """Means over the candidates where each applies: ``rewards/<label>/mean`` per component
    and gate (``rewards/<name>/<label>/mean`` when ``nested``, so that they cannot collide with
    another reward's), ``rewards/<name>/mean`` of the totals, and the shares of totals that were
    gated (``rewards/<name>/gated``) and not scored (``rewards/<name>/unscored``)."""
    out: dict[str, float] = {}
    if not scored:
        return out
    where = f"{prefix}/{name}" if nested else prefix
    for key in list(scored[0].gates) + list(scored[0].components):
        vals = [v for s in scored for v in [s.components.get(key, s.gates.get(key))] if v is not None]
        if vals:
            out[f"{where}/{key}/mean"] = sum(vals) / len(vals)
    totals = [s.total for s in scored if s.total is not None]
    if totals:
        out[f"{prefix}/{name}/mean"] = sum(totals) / len(totals)
    out[f"{prefix}/{name}/gated"] = sum(s.gated for s in scored) / len(scored)
    out[f"{prefix}/{name}/unscored"] = sum(s.total is None for s in scored) / len(scored)
    return out
