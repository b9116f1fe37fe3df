"""Configuration for every ``trident`` entry point.

A command's configuration is a (possibly nested) dataclass. Its values come from
four layers, each overriding the one before::

    dataclass defaults  <  YAML file  <  ``base`` (explicit CLI flags)  <  ``key=value`` overrides

Values are type-checked against the field annotations and every mistake is reported
as a :class:`ConfigError` whose message names the offending key and how to fix it,
so a CLI can print it and exit without a traceback.

Supported field types: ``int``, ``float``, ``bool``, ``str``, ``pathlib.Path``,
``Optional[X]`` / ``X | None``, ``list[X]``, ``tuple[X, ...]`` (and fixed tuples),
``dict[str, X]``, ``typing.Literal[...]`` and nested dataclasses (addressed with
dotted keys such as ``limits.timeout_s=2``). Help text for ``--help`` listings comes
from ``field(metadata={"help": "..."})``.

Only PyYAML is imported, so CLI start-up stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = ["ConfigError", "load_config", "config_to_dict", "dump_config", "field_help"]

T = TypeVar("T")

_MISSING = dataclasses.MISSING
_NONE_TYPE = type(None)
# Words accepted for bool fields in ``key=value`` overrides (compared lower-cased).
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_SCALARS = (str, int, float, bool)


class ConfigError(ValueError):
    """A configuration mistake; the message is meant to be shown to the user as is."""


# --------------------------------------------------------------------------- public API


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> T:
    """Build a ``cls`` instance from its defaults and the given layers.

    Precedence (later wins): defaults of ``cls`` < YAML file at ``path`` < ``base``
    < ``overrides``.

    Args:
        cls: the configuration dataclass.
        path: optional YAML file holding a mapping of config keys.
        overrides: ``"key=value"`` strings; ``key`` may be dotted (``limits.timeout_s=2``)
            and ``value`` is read as YAML (``files=[a,b]``, ``seed=null``).
        base: values from explicit CLI flags, keyed by (possibly dotted) config key.
            Every entry is applied, so leave out flags the user did not give.

    Raises:
        ConfigError: unknown key, wrong type, unreadable file, or a ``ValueError``
            raised by the dataclass's ``__post_init__``.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    if isinstance(overrides, str):
        # A lone string is a Sequence too; iterating it char by char would be baffling.
        raise TypeError("overrides must be a sequence of 'key=value' strings, not one string")

    tree: dict[str, Any] = {}  # only the explicitly given values, nested like the dataclasses
    if path is not None:
        for key, value in _read_yaml(path).items():
            _apply(cls, tree, str(key), value)
    for key, value in (base or {}).items():
        _apply(cls, tree, str(key), value)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad override {item!r}: expected key=value, e.g. workers=2")
        _apply(cls, tree, key, _Raw(text))
    return _build(cls, tree, "", None)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return ``cfg`` (a dataclass instance) as plain dicts/lists/scalars.

    Paths become strings and tuples lists, so the result can be written as JSON or
    YAML and read back with :func:`load_config`.
    """
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {cfg!r}")
    return _plain(cfg)


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved ``cfg`` to ``path`` as YAML, creating parent folders.

    The file is written beside the target and renamed into place, so a crash never
    leaves a half-written record of a run's configuration.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def field_help(cls: type) -> list[tuple[str, str, str]]:
    """List ``(dotted key, type, help text with default)`` for every settable key of ``cls``.

    Nested dataclasses are expanded into their dotted keys; the defaults shown are
    those a nested section really gets (e.g. from its ``default_factory``).
    """
    rows: list[tuple[str, str, str]] = []
    _collect_help(cls, "", None, rows)
    return rows


# --------------------------------------------------------------------------- layers


class _Raw:
    """The text of a ``key=value`` override, typed only once the field's type is known.

    Keeping the text lets str/Path fields take it verbatim (``name=007`` stays
    ``"007"``) and bool fields accept ``1``/``0``, which YAML alone would make ints.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def parse(self, key: str) -> Any:
        """The text read as YAML; ConfigError naming ``key`` if it is not valid YAML."""
        try:
            return yaml.safe_load(self.text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config key '{key}': cannot read {self.text!r} as YAML ({_yaml_problem(exc)})"
            ) from None

    def shown(self) -> Any:
        """What to quote in an error message: the parsed value, else the text."""
        try:
            return yaml.safe_load(self.text)
        except yaml.YAMLError:
            return self.text

    def __repr__(self) -> str:
        return repr(self.text)


def _read_yaml(path: str | os.PathLike) -> Mapping[Any, Any]:
    """Read the top-level mapping of a YAML config file (an empty file is ``{}``)."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{os.fspath(path)}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{os.fspath(path)}': {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{os.fspath(path)}' is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file '{os.fspath(path)}' must hold a mapping of config keys (key: value lines) "
            f"at top level, got {type(data).__name__}"
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, with its 1-based line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _apply(
    owner: type,
    node: dict[str, Any],
    dotted: str,
    value: Any,
    prefix: str = "",
    template: Any = None,
) -> None:
    """Set ``dotted`` (relative to ``owner``, whose values live in ``node``) to ``value``.

    A mapping given for a nested dataclass is merged into what earlier layers set,
    so a later layer changes only the keys it names. A dotted key reaching into a
    ``dict[str, X]`` field adds one entry on top of the current (or default) dict.
    ``template`` is the default instance of ``owner`` when one is known.
    """
    name, _, rest = dotted.partition(".")
    key = prefix + name
    fields = _init_fields(owner)
    if name not in fields:
        raise _unknown_key(owner, key)
    tp = _hints(owner)[name]
    section = _section_type(tp)
    existing = node.get(name)
    default = _default_value(fields[name], template)
    sub_template = default if section is not None and isinstance(default, section) else None

    if not rest:
        if section is not None and isinstance(value, _Raw):
            value = value.parse(key)  # a section's value is a mapping, never text
        if section is not None and isinstance(value, Mapping) and existing is not None:
            merged = _as_tree(existing, key)
            for sub_key, sub_value in value.items():
                _apply(section, merged, str(sub_key), sub_value, key + ".", sub_template)
            node[name] = merged
        else:
            node[name] = value
    elif section is not None:
        node[name] = _as_tree(existing, key)
        _apply(section, node[name], rest, value, key + ".", sub_template)
    elif _is_dict_type(tp):
        current = existing if name in node else default
        if isinstance(current, _Raw):
            current = current.parse(key)
        entries = dict(current) if isinstance(current, Mapping) else {}
        entries[rest] = value
        node[name] = entries
    else:
        raise ConfigError(
            f"config key '{key}' is a {_type_name(tp)}, not a section, so '{prefix}{dotted}' is not a valid key"
        )


def _as_tree(value: Any, key: str) -> dict[str, Any]:
    """A fresh dict of a section's explicitly set values, to merge more values into."""
    if isinstance(value, _Raw):
        value = value.parse(key)
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _init_fields(type(value))}
    return {}  # unset or None: the section starts from its defaults


# --------------------------------------------------------------------------- building


def _build(cls: type[T], data: Mapping[Any, Any], prefix: str, template: Any) -> T:
    """Construct ``cls`` from ``data``; fields not in ``data`` come from ``template``
    (the default instance of this section, if any) or else the dataclass defaults."""
    fields = _init_fields(cls)
    for k in data:
        if k not in fields:
            raise _unknown_key(cls, prefix + str(k))
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name in data:
            tp = hints[name]
            # Only sections need the default instance: it supplies their unset keys.
            sub_template = _default_value(f, template) if _section_type(tp) is not None else None
            kwargs[name] = _convert(tp, data[name], key, sub_template)
        elif template is not None:
            kwargs[name] = getattr(template, name)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"config key '{key}' is required: set it in the config file or with {key}=VALUE")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # from the dataclass's own __post_init__ checks
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _convert(tp: Any, value: Any, key: str, template: Any = None) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in that type."""
    raw = value if isinstance(value, _Raw) else None
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    if tp is Any or tp is object:
        return raw.parse(key) if raw else value
    if origin is Union or origin is types.UnionType:
        return _convert_union(tp, args, value, key, template)
    if origin is Literal:
        candidates = [raw.shown(), raw.text] if raw else [value]
        for candidate in candidates:
            for choice in args:
                # type() check so True never matches Literal[1] (bool is an int subclass).
                if type(candidate) is type(choice) and candidate == choice:
                    return choice
        shown = candidates[0]
        names = [str(a) for a in args]
        msg = f"config key '{key}': {shown!r} is not one of: {', '.join(names)}"
        close = difflib.get_close_matches(str(shown), names, n=1)
        raise ConfigError(msg + (f" (did you mean '{close[0]}'?)" if close else ""))
    if tp is str:
        if raw:
            parsed = raw.shown()  # YAML unquotes 'a b'; anything else keeps the typed text
            return parsed if isinstance(parsed, str) else raw.text
        if isinstance(value, str):
            return value
        raise _type_error(key, "str", value)
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        text = _convert(str, value, key) if not isinstance(value, pathlib.PurePath) else value
        return tp(text)
    if tp is bool:
        if raw and raw.text.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[raw.text.strip().lower()]
        value = raw.shown() if raw else value
        if isinstance(value, bool):
            return value
        raise _type_error(key, "bool", value)
    if tp is int:
        value = raw.shown() if raw else value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(key, "int", value)
    if tp is float:
        value = raw.shown() if raw else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML follows YAML 1.1, which reads `1e-4` (no dot) as a string.
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _type_error(key, "float", value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        value = raw.parse(key) if raw else value
        if isinstance(value, Mapping):
            return _build(tp, value, key + ".", template if isinstance(template, tp) else None)
        raise _type_error(key, f"a mapping of {tp.__name__} keys", value)
    if tp in (list, tuple) or origin in (list, tuple, Sequence):
        return _convert_sequence(tp, origin or tp, args, value, key)
    if tp is dict or origin in (dict, Mapping):
        value = raw.parse(key) if raw else value
        if not isinstance(value, Mapping):
            raise _type_error(key, _type_name(tp), value)
        key_tp, value_tp = args or (Any, Any)
        return {
            _convert(key_tp, k, f"{key}.{k}"): _convert(value_tp, v, f"{key}.{k}")
            for k, v in value.items()
        }
    # Some other annotation: accept values that are already of that type.
    value = raw.parse(key) if raw else value
    check = origin or tp
    if isinstance(check, type) and not isinstance(value, check):
        raise _type_error(key, _type_name(tp), value)
    return value


def _convert_union(tp: Any, args: tuple[Any, ...], value: Any, key: str, template: Any) -> Any:
    """``X | None`` and friends: None when allowed, else the first member that fits."""
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) < len(args):
        plain = value.shown() if isinstance(value, _Raw) else value
        if plain is None or plain == "None":  # Python spelling too: users type seed=None
            return None
    if len(members) == 1:  # Optional[X]: X's own error message is the clearest
        return _convert(members[0], value, key, template)
    for member in members:
        try:
            return _convert(member, value, key, template)
        except ConfigError:
            continue
    raise _type_error(key, _type_name(tp), value)


def _convert_sequence(tp: Any, kind: Any, args: tuple[Any, ...], value: Any, key: str) -> Any:
    """``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]`` from a YAML list.

    An override may also give a single scalar (``files=a`` means ``[a]``).
    """
    if isinstance(value, _Raw):
        parsed = value.parse(key)
        if isinstance(parsed, list):
            items = parsed
        elif isinstance(parsed, _SCALARS):
            items = [value]  # keep the text, so `files=007` stays "007" for list[str]
        else:
            raise _type_error(key, _type_name(tp), parsed)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _type_error(key, _type_name(tp), value)

    if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise ConfigError(f"config key '{key}': expected {len(args)} items ({_type_name(tp)}), got {len(items)}")
        elem_types = list(args)
    else:
        elem_types = [args[0] if args else Any] * len(items)
    converted = [_convert(t, item, f"{key}[{i}]") for i, (t, item) in enumerate(zip(elem_types, items))]
    return tuple(converted) if kind is tuple else converted


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations (works with ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


@functools.lru_cache(maxsize=None)
def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields a config may set, in declaration order (``init=False`` ones are derived)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _default_value(f: dataclasses.Field, template: Any) -> Any:
    """The value field ``f`` gets when unset: from ``template`` if given, else its default."""
    if template is not None:
        return getattr(template, f.name)
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _unwrap_optional(tp: Any) -> Any:
    """``X`` for ``Optional[X]``; anything else unchanged."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if len(members) == 1:
            return members[0]
    return tp


def _section_type(tp: Any) -> type | None:
    """The dataclass behind a nested-section annotation (``Sub`` or ``Sub | None``)."""
    tp = _unwrap_optional(tp)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _is_dict_type(tp: Any) -> bool:
    tp = _unwrap_optional(tp)
    return tp is dict or typing.get_origin(tp) in (dict, Mapping)


def _unknown_key(cls: type, key: str) -> ConfigError:
    """Error for an unknown ``key``, listing the valid keys of its level."""
    parent, _, name = key.rpartition(".")
    valid = list(_init_fields(cls))
    msg = f"unknown config key '{key}' for {cls.__name__}; valid keys: {', '.join(valid)}"
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        msg += f" (did you mean '{parent + '.' if parent else ''}{close[0]}'?)"
    return ConfigError(msg)


def _type_error(key: str, expected: str, value: Any) -> ConfigError:
    if isinstance(value, _Raw):
        value = value.shown()
    return ConfigError(f"config key '{key}': expected {expected}, got {value!r} ({type(value).__name__})")


def _type_name(tp: Any) -> str:
    """A short, readable spelling of an annotation, e.g. ``list[int] | None``."""
    if tp is _NONE_TYPE or tp is None:
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        return "path"
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _plain(value: Any) -> Any:
    """Recursively turn dataclasses, paths and tuples into YAML/JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _init_fields(type(value))}
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return value


def _collect_help(cls: type, prefix: str, template: Any, rows: list[tuple[str, str, str]]) -> None:
    """Append ``field_help`` rows for ``cls`` (keys under ``prefix``) to ``rows``."""
    hints = _hints(cls)
    for name, f in _init_fields(cls).items():
        key, tp = prefix + name, hints[name]
        default = _default_value(f, template)
        section = _section_type(tp)
        if section is not None and (default is _MISSING or isinstance(default, section)):
            _collect_help(section, key + ".", default if default is not _MISSING else None, rows)
            continue
        text = f.metadata.get("help", "")
        if default is _MISSING:
            suffix = "(required)"
        else:
            suffix = f"(default: {json.dumps(_plain(default), default=str)})"
        rows.append((key, _type_name(tp), f"{text} {suffix}".strip()))
        if section is not None:  # e.g. `Sub | None = None`: its keys can still be set
            _collect_help(section, key + ".", None, rows)
