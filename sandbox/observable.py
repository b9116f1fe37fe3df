"""Observable forms: what a test could assert about a value, chosen by the value's type.

An *observation* runs a task's prefix on the unmutated library, evaluates an expression there
and reports the value in a form an assertion can check, as regression-oracle generators
(Pynguin, EvoSuite) do:

- ``literal``: the value has a Python literal that equals it — ``3``, ``'abc'``, ``[1, (2, 3)]``,
  ``{'a', 'b'}``, ``{1: None}``, ``True``. Sets are written with their elements sorted and
  dicts with their keys sorted (by the elements' own text), so a value prints the same under
  every hash seed; a ``frozenset`` is written as a set (the two compare equal). Integers and
  floats of other types (numpy scalars, ``IntEnum``) are written as the plain number they
  equal. A literal is checked by parsing it back (``ast.literal_eval``) and comparing with ``==``.
- ``approx``: a float (finite): ``pytest.approx(0.3333333333333333)``. Inside a collection a
  float stays exact (its ``repr`` round-trips).
- ``len``: a collection with no literal (a graph's node view, a generator-free container of
  objects): its length.
- ``object``: anything else: its type's qualified name in ``text``, and its public non-callable
  attributes whose values have short literals in ``attributes`` (at most :data:`MAX_ATTRIBUTES`).
- ``raises``: evaluating the expression raised: the exception type's name.
- ``none``: not observable; ``reason`` says why (a literal longer than
  :data:`MAX_LITERAL_CHARS`, a NaN or infinite float, a value whose literal does not compare
  equal to it, two runs that disagree, an expression the gate or the capability layer refuses…).

:func:`observable` runs in the sandbox's child, after the candidate's code, on the value it
produced; what it reads (``repr`` of library objects, properties) is library code. An
observation is a proposal, never a verdict: an assertion built from one runs as any candidate.
"""

from __future__ import annotations

import ast
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

MAX_LITERAL_CHARS = 200  # a longer literal is no assertion a developer would write
MAX_ATTRIBUTES = 8
MAX_ATTRIBUTE_CHARS = 60
KINDS = ("literal", "approx", "len", "object", "raises", "none")


@dataclass(frozen=True)
class Observation:
    """One expression's observable form (see the module docstring)."""

    kind: str
    text: str = ""
    reason: str = ""
    attributes: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.reason:
            out["reason"] = self.reason
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"observation kind {kind!r} is not one of {', '.join(KINDS)}")
        attributes = data.get("attributes") or {}
        return cls(kind, str(data.get("text", "")), str(data.get("reason", "")),
                   tuple((str(k), str(v)) for k, v in attributes.items()))

    @property
    def observed(self) -> bool:
        return self.kind != "none"

    @property
    def equality(self) -> bool:
        """Whether ``EXPR == text`` is the assertion this observation gives."""
        return self.kind in ("literal", "approx")


def unobservable(reason: str) -> Observation:
    return Observation("none", reason=reason)


class _NoLiteral(Exception):
    pass


def literal_text(value: Any, depth: int = 0) -> str:
    """The literal of ``value`` in a form independent of hash seeds (see the module docstring);
    raises :class:`_NoLiteral` when it has none."""
    if depth > 20:
        raise _NoLiteral("nested too deeply")
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, numbers.Integral):
        number = int(value)
        if number != value:
            raise _NoLiteral(f"{type(value).__name__} does not equal its integer")
        return repr(number)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise _NoLiteral(f"a float that is {number!r} has no literal")
        return repr(number)
    if isinstance(value, (str, bytes)):
        return repr(str(value) if isinstance(value, str) else bytes(value))
    if isinstance(value, (list, tuple)):
        items = [literal_text(v, depth + 1) for v in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, (set, frozenset)):
        if not value:
            return "set()"
        return "{" + ", ".join(sorted(literal_text(v, depth + 1) for v in value)) + "}"
    if isinstance(value, dict):
        pairs = sorted((literal_text(k, depth + 1), literal_text(v, depth + 1)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    raise _NoLiteral(f"a {type(value).__name__} has no literal")


def _type_name(value: Any) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _sized(value: Any) -> int | None:
    if isinstance(value, (str, bytes)):
        return None
    try:
        iter(value)
        return len(value)
    except Exception:  # noqa: BLE001 - library code decides what len and iter do
        return None


def observable(value: Any) -> Observation:
    """The observable form of ``value`` (see the module docstring)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return unobservable(f"the value is {number!r}")
        return Observation("approx", f"pytest.approx({number!r})")
    try:
        text = literal_text(value)
    except _NoLiteral as err:
        text, why = None, str(err)
    except RecursionError:
        text, why = None, "nested too deeply"
    if text is not None:
        if len(text) > MAX_LITERAL_CHARS:
            n = _sized(value)
            if n is not None:
                return Observation("len", str(n))
            return unobservable(f"its literal is {len(text)} characters long; at most {MAX_LITERAL_CHARS} are kept")
        try:
            same = bool(ast.literal_eval(text) == value)
        except Exception:  # noqa: BLE001 - a library's __eq__ may raise
            same = False
        if same:
            return Observation("literal", text)
        why = "its literal does not compare equal to it"
    n = _sized(value)
    if n is not None:
        return Observation("len", str(n))
    if isinstance(value, (str, bytes, list, tuple, set, frozenset, dict)):
        return unobservable(why)
    return Observation("object", _type_name(value), attributes=_attributes(value))


def _attributes(value: Any) -> tuple[tuple[str, str], ...]:
    """Public, non-callable attributes of ``value`` whose values have short literals."""
    out: list[tuple[str, str]] = []
    try:
        names = sorted(n for n in dir(value) if not n.startswith("_"))
    except Exception:  # noqa: BLE001
        return ()
    for name in names:
        if len(out) >= MAX_ATTRIBUTES:
            break
        try:
            attr = getattr(value, name)
            if callable(attr):
                continue
            text = literal_text(attr)
        except Exception:  # noqa: BLE001 - properties are library code
            continue
        if len(text) <= MAX_ATTRIBUTE_CHARS:
            out.append((name, text))
    return tuple(out)


def raised(exc: BaseException) -> Observation:
    return Observation("raises", type(exc).__name__)


def agree(first: Observation, second: Observation) -> Observation:
    """The observation when two runs under different seeds agree, else why it is not one."""
    if first == second or not first.observed:
        return first
    if not second.observed:
        return second
    return unobservable(f"nondeterministic: {first.kind} {first.text[:60]!r} in one run, "
                        f"{second.kind} {second.text[:60]!r} in a second run under another hash and random seed")
