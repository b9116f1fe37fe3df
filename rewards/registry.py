"""The reward registry and :class:`Reward`, the one wrapper every reward is called through.

A reward is a function in TRL's signature::

    fn(prompts, completions, **columns) -> list[float | None]

one value per completion, ``None`` where the reward does not apply (excluded from means, NaN
in TRL). ``columns`` are per-completion lists (``task``, ``target``, ``verdicts``, any dataset
column) plus whatever the caller adds (TRL adds ``trainer_state``, ``log_metric``, …). A
function that takes a ``verdicts`` parameter is an *execution reward*: it reads sandbox
verdicts, which :class:`Reward` computes once when the caller did not pass them.

Rewards are found by name (``@reward("name")`` registers one; the built-ins are registered
when first looked up) or by path, ``"package.module:function"``. :func:`resolve` binds keyword
arguments from config and returns a :class:`Reward`: picklable (for Ray), named (``__name__``,
for TRL's logs), and strict — a reward that raises or returns something that is not a float
or ``None`` ends in one :class:`RewardError` naming the reward and the candidate.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import inspect
import math
import numbers
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from sandbox.execution import Verdict

    from .execution import Executor

__all__ = ["RewardError", "Reward", "reward", "resolve", "known_rewards", "Spec"]

# Columns the built-ins read; listed apart from a reward's own keywords in error messages.
COLUMNS = ("task", "task_id", "target", "verdicts")

# Modules whose import registers the built-in rewards (imported on the first lookup by name).
BUILTIN_MODULES = ("rewards.text", "rewards.execution", "rewards.semantic")


class RewardError(Exception):
    """A reward could not be found, bound, or run; the message names the reward (and the
    candidate, when one is to blame) and is meant to be shown to the user as is."""


@dataclass(frozen=True)
class Spec:
    """What the decorator records about a reward function."""

    name: str
    execution: bool | None  # reads verdicts; None: decided by a ``verdicts`` parameter
    mutants: bool  # its verdicts must come from runs under the task's mutants


_REGISTRY: dict[str, Callable[..., Any]] = {}
_BUILTINS_LOADED = False
_LOCK = threading.Lock()


def reward(name: str, *, execution: bool | None = None, mutants: bool = True) -> Callable[[Callable], Callable]:
    """Register a reward function under ``name``; the function itself is returned unchanged
    (so it stays picklable by reference).

    ``execution``: the function reads sandbox verdicts (default: it has a ``verdicts``
    parameter). ``mutants``: those verdicts must include runs under the task's mutants (only
    ``kill``-like rewards need them; they cost one run per mutant per passing candidate).

    A name is taken once: registering a different function under a taken name is an error
    (re-registering the same ``module.qualname``, as a module reload does, replaces it).
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise RewardError(f"reward name {name!r} is not valid: use a non-empty name without ':' or surrounding spaces")

    def register(fn: Callable) -> Callable:
        if not callable(fn):
            raise RewardError(f"@reward({name!r}) must decorate a function, not {type(fn).__name__}")
        with _LOCK:
            existing = _REGISTRY.get(name)
            if existing is not None and existing is not fn and _where(existing) != _where(fn):
                raise RewardError(f"reward name {name!r} is already taken by {_where(existing)}; "
                                  f"register {_where(fn)} under another name")
            fn.trident_reward = Spec(name, execution, mutants)  # type: ignore[attr-defined]
            _REGISTRY[name] = fn
        return fn

    return register


def known_rewards() -> list[str]:
    """Every registered name, built-ins included, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def resolve(ref: str | Callable[..., Any] | Reward, /, **kwargs: Any) -> Reward:
    """The :class:`Reward` for a registered name, a ``"package.module:function"`` path or a
    callable, with ``kwargs`` bound (as from a config's ``kwargs:``)."""
    if isinstance(ref, Reward):
        return ref.bind(**kwargs) if kwargs else ref
    if callable(ref):
        return Reward(ref, kwargs=kwargs)
    if not isinstance(ref, str) or not ref.strip():
        raise RewardError(f"a reward is a registered name or 'package.module:function', not {ref!r}")
    ref = ref.strip()
    if ":" in ref:
        return Reward(_import(ref), kwargs=kwargs, ref=ref)
    _load_builtins()
    fn = _REGISTRY.get(ref)
    if fn is None:
        names = sorted(_REGISTRY)
        close = difflib.get_close_matches(ref, names, n=1)
        raise RewardError(f"unknown reward {ref!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f"; known rewards: {', '.join(names)}; "
                          "a reward of your own is referenced as 'package.module:function'")
    return Reward(fn, kwargs=kwargs, ref=ref)


class Reward:
    """A reward function with its config-bound keyword arguments, called in TRL's signature.

    ``reward(prompts, completions, **columns)`` returns one ``float | None`` per completion.
    An execution reward called without a ``verdicts`` column gets them from the sandbox (one
    run per candidate, through ``executor`` or :class:`~rewards.execution.SerialExecutor`).
    """

    def __init__(self, fn: Callable[..., Any], *, kwargs: Mapping[str, Any] | None = None, ref: str | None = None,
                 name: str | None = None, executor: Executor | None = None) -> None:
        if isinstance(fn, Reward):
            raise RewardError("Reward(...) wraps a function; use resolve() or .bind() on a Reward")
        self.fn = fn
        self.kwargs = dict(kwargs or {})
        spec: Spec | None = getattr(fn, "trident_reward", None)
        self.ref = ref or (spec.name if spec is not None else _where(fn, sep=":"))
        self.__name__ = name or (spec.name if spec is not None else getattr(fn, "__name__", type(fn).__name__))
        self.executor = executor
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins and C callables
            sig = None
        params = sig.parameters if sig is not None else {}
        self._var_kw = sig is None or any(p.kind is p.VAR_KEYWORD for p in params.values())
        self._accepts = frozenset(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        self._required = tuple(n for n, p in params.items()
                               if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
                               and n not in ("prompts", "completions"))
        self.execution = bool(spec.execution) if spec is not None and spec.execution is not None else "verdicts" in params
        self.mutants = spec.mutants if spec is not None else True
        # A registered reward's keywords are its named parameters (its **kwargs only absorbs
        # columns); a plain function with **kwargs may read any keyword.
        strict = spec is not None or not self._var_kw
        for key in self.kwargs:
            if key in ("prompts", "completions"):
                raise RewardError(f"reward {self.name!r}: {key!r} cannot be bound from config")
            if strict and sig is not None and key not in self._accepts:
                own = sorted(self._accepts - {"prompts", "completions", *COLUMNS})
                raise RewardError(f"reward {self.name!r} takes no keyword {key!r}; it takes: {', '.join(own) or 'none'}")

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.__name__

    def bind(self, **kwargs: Any) -> Reward:
        """A copy with more keyword arguments bound (later ones win)."""
        return Reward(self.fn, kwargs={**self.kwargs, **kwargs}, ref=self.ref, name=self.name, executor=self.executor)

    def with_executor(self, executor: Executor | None) -> Reward:
        """A copy that runs missing verdicts through ``executor`` (e.g. a :class:`sandbox.pool.Pool`)."""
        return Reward(self.fn, kwargs=self.kwargs, ref=self.ref, name=self.name, executor=executor)

    def __reduce__(self) -> tuple:
        # The function travels by reference (module-level functions) or however the pickler
        # can (Ray's cloudpickle also takes closures); the executor holds processes and stays.
        return (_rebuild, (self.fn, self.kwargs, self.ref, self.name))

    def __repr__(self) -> str:
        bound = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"Reward({self.ref!r}{', ' + bound if bound else ''})"

    # ------------------------------------------------------------------ calling
    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[str] | None = None,
                 **columns: Any) -> list[float | None]:
        completions, prompts = _batch(prompts, completions)
        if self.execution and columns.get("verdicts") is None:
            from .execution import run_verdicts

            columns["verdicts"] = run_verdicts(completions, columns, mutants=self.mutants, executor=self.executor,
                                               who=f"reward {self.name!r}")
        return self.call(prompts, completions, columns)

    def call(self, prompts: list[Any], completions: list[str], columns: dict[str, Any]) -> list[float | None]:
        """Call the function on a batch whose columns are ready (verdicts included)."""
        return finish(self.start(prompts, completions, columns))

    def start(self, prompts: list[Any], completions: list[str], columns: dict[str, Any]) -> Pending:
        """Begin a call; :func:`finish` (or :func:`finish_all`, which runs async rewards
        concurrently) checks the values, and on a failure finds the candidate to blame."""
        n = len(completions)
        if "verdicts" in columns and columns["verdicts"] is not None:
            from .execution import as_verdicts

            columns = {**columns, "verdicts": as_verdicts(columns["verdicts"])}
        _check_columns(self.name, columns, n)
        kwargs = self._arguments(columns)
        try:
            out = self.fn(prompts, completions, **kwargs)
        except Exception as err:  # noqa: BLE001 - blamed on a candidate below
            return Pending(self, prompts, completions, columns, error=err)
        return Pending(self, prompts, completions, columns, result=out)

    def _arguments(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        clash = sorted(set(self.kwargs) & set(columns))
        if clash:
            raise RewardError(f"reward {self.name!r}: {', '.join(map(repr, clash))} is both bound from config "
                              "and passed as a column; rename one of them")
        given = {**columns, **self.kwargs}
        if not self._var_kw:
            given = {k: v for k, v in given.items() if k in self._accepts}
        missing = [k for k in self._required if k not in given]
        if missing:
            raise RewardError(f"reward {self.name!r} needs column(s) {', '.join(map(repr, missing))}; "
                              f"columns given: {', '.join(sorted(columns)) or 'none'}")
        return given


def _rebuild(fn: Callable[..., Any], kwargs: dict[str, Any], ref: str, name: str) -> Reward:
    return Reward(fn, kwargs=kwargs, ref=ref, name=name)


class Pending:
    """A started reward call: its result (maybe a coroutine) or the exception it raised."""

    def __init__(self, reward: Reward, prompts: list[Any], completions: list[str], columns: dict[str, Any],
                 result: Any = None, error: BaseException | None = None) -> None:
        self.reward, self.prompts, self.completions, self.columns = reward, prompts, completions, columns
        self.result, self.error = result, error

    @property
    def awaitable(self) -> bool:
        return self.error is None and inspect.isawaitable(self.result)


def finish(pending: Pending) -> list[float | None]:
    """The checked values of one started call."""
    return finish_all([pending])[0]


def finish_all(pendings: Sequence[Pending]) -> list[list[float | None]]:
    """The checked values of several started calls; coroutines among them run concurrently."""
    waiting = [p for p in pendings if p.awaitable]
    if waiting:
        async def gather() -> list[Any]:
            return await asyncio.gather(*(p.result for p in waiting), return_exceptions=True)

        for p, out in zip(waiting, run_coroutine(gather())):
            if isinstance(out, BaseException) and not isinstance(out, Exception):
                raise out
            p.result, p.error = (None, out) if isinstance(out, Exception) else (out, None)
    return [_checked(p) for p in pendings]


def run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion from synchronous code, also where an event loop is already
    running in this thread (then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box.append(err)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _checked(p: Pending) -> list[float | None]:
    name, n = p.reward.name, len(p.completions)
    if p.error is not None:
        if isinstance(p.error, RewardError):
            raise p.error
        raise _blame(p) from p.error
    out = p.result
    if isinstance(out, (str, bytes)) or not isinstance(out, Sequence) and not hasattr(out, "__len__"):
        raise RewardError(f"reward {name!r} returned {type(out).__name__}, not a list of one float or None per completion")
    values = list(out)
    if len(values) != n:
        raise RewardError(f"reward {name!r} returned {len(values)} value(s) for {n} completion(s); "
                          "return one float or None per completion")
    checked: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            checked.append(None)
            continue
        if not isinstance(v, numbers.Real) or isinstance(v, (str, bytes)):
            raise RewardError(f"reward {name!r} returned {v!r} ({type(v).__name__}) for {_describe(p, i)}; "
                              "a reward value is a float, or None where the reward does not apply")
        v = float(v)
        if not math.isfinite(v):
            raise RewardError(f"reward {name!r} returned {v} for {_describe(p, i)}; "
                              "return None where the reward does not apply, never NaN or infinity")
        checked.append(v)
    return checked


def _blame(p: Pending) -> RewardError:
    """One error naming the reward and the first candidate that makes it raise on its own."""
    err, n, fn = p.error, len(p.completions), p.reward
    assert err is not None
    if n > 1:
        for i in range(n):
            one = Pending(fn, p.prompts[i : i + 1], p.completions[i : i + 1], _slice(p.columns, i, n))
            try:
                kwargs = fn._arguments(one.columns)
                out = fn.fn(one.prompts, one.completions, **kwargs)
                if inspect.isawaitable(out):
                    run_coroutine(out)
            except Exception as single:  # noqa: BLE001 - this is the one to report
                return RewardError(f"reward {fn.name!r} raised {type(single).__name__}: {single} "
                                   f"on {_describe(p, i)}")
    where = _describe(p, 0) if n == 1 else f"a batch of {n} candidates (each alone runs fine)"
    return RewardError(f"reward {fn.name!r} raised {type(err).__name__}: {err} on {where}")


def _describe(p: Pending, i: int) -> str:
    n = len(p.completions)
    text = p.completions[i]
    shown = text if len(text) <= 120 else text[:117] + "..."
    task_id = _task_id(p.columns, i)
    return f"candidate {i} of {n}" + (f" (task {task_id})" if task_id else "") + f": {shown!r}"


def _task_id(columns: Mapping[str, Any], i: int) -> str | None:
    for key in ("task_id", "task"):
        col = columns.get(key)
        if isinstance(col, (list, tuple)) and i < len(col):
            item = col[i]
            if isinstance(item, str) and key == "task_id":
                return item
            if isinstance(item, Mapping):
                return item.get("id")
            if hasattr(item, "id"):
                return item.id
    return None


def _slice(columns: Mapping[str, Any], i: int, n: int) -> dict[str, Any]:
    return {k: v[i : i + 1] if isinstance(v, (list, tuple)) and len(v) == n else v for k, v in columns.items()}


def _batch(prompts: Sequence[Any] | None, completions: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    if completions is None:
        raise RewardError("a reward needs completions: reward(prompts, completions, **columns)")
    if isinstance(completions, str):
        raise RewardError("completions is a list of strings, one per candidate, not one string")
    completions = list(completions)
    prompts = [None] * len(completions) if prompts is None else list(prompts)
    if len(prompts) != len(completions):
        raise RewardError(f"{len(prompts)} prompt(s) for {len(completions)} completion(s); give one prompt per completion")
    return completions, prompts


def _check_columns(name: str, columns: Mapping[str, Any], n: int) -> None:
    for key in ("task", "task_id", "target", "verdicts"):
        col = columns.get(key)
        if col is not None and (not isinstance(col, (list, tuple)) or len(col) != n):
            size = len(col) if isinstance(col, (list, tuple)) else type(col).__name__
            raise RewardError(f"reward {name!r}: column {key!r} must hold one value per completion "
                              f"({n}), got {size}")


def _where(fn: Any, sep: str = ".") -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}{sep}{qualname}"


def _import(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise RewardError(f"reward path {ref!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise RewardError(f"cannot import reward {ref!r}: no module named {err.name!r}; "
                              "is its package installed or on PYTHONPATH?") from None
        raise RewardError(f"importing {module_name!r} for reward {ref!r} failed: {err}") from err
    except Exception as err:  # noqa: BLE001 - a user's module may raise anything on import
        raise RewardError(f"importing {module_name!r} for reward {ref!r} raised {type(err).__name__}: {err}") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            raise RewardError(f"module {module_name!r} has no {attr!r} (reward {ref!r}); "
                              f"its functions: {', '.join(names) or 'none'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardError(f"reward {ref!r} is a {type(obj).__name__}, not a function")
    return obj


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _BUILTINS_LOADED = True

